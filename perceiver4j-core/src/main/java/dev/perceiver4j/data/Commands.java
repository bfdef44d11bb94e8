package dev.perceiver4j.data;

import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/** External processes (npm, apt-get, dpkg) with a timeout, the PATH lookup, and plain HTTPS downloads. */
final class Commands {
    static final Duration TIMEOUT = Duration.ofMinutes(5);
    private static final int STDERR_TAIL = 2000;

    private Commands() {}

    /** The executable {@code name} on PATH, if any. */
    static Optional<Path> onPath(String name) {
        String path = System.getenv("PATH");
        if (path == null) {
            return Optional.empty();
        }
        for (String dir : path.split(File.pathSeparator)) {
            if (dir.isEmpty()) {
                continue;
            }
            Path candidate = Path.of(dir, name);
            if (Files.isRegularFile(candidate) && Files.isExecutable(candidate)) {
                return Optional.of(candidate);
            }
        }
        return Optional.empty();
    }

    /**
     * Runs {@code command} in {@code dir} with the given timeout (the process is destroyed when it
     * runs past it); stdout and stderr go to files in {@code dir}. Returns stdout.
     *
     * @throws IOException naming the command, the exit status or timeout, and stderr's tail
     */
    static String run(List<String> command, Path dir, Duration timeout) throws IOException {
        String shown = String.join(" ", command);
        Path stdout = Files.createTempFile(dir, ".stdout-", ".txt");
        Path stderr = Files.createTempFile(dir, ".stderr-", ".txt");
        try {
            Process process;
            try {
                process = new ProcessBuilder(command)
                        .directory(dir.toFile())
                        .redirectOutput(stdout.toFile())
                        .redirectError(stderr.toFile())
                        .start();
                process.getOutputStream().close(); // no input: a prompt reads end-of-file instead of hanging
            } catch (IOException e) {
                throw new IOException("cannot start `" + shown + "`: " + e.getMessage(), e);
            }
            boolean finished;
            try {
                finished = process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
            } catch (InterruptedException e) {
                stop(process);
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while running `" + shown + "`", e);
            }
            if (!finished) {
                stop(process);
                throw new IOException("`" + shown + "` did not finish within " + timeout.toSeconds()
                        + " s and was stopped" + tail(stderr));
            }
            if (process.exitValue() != 0) {
                throw new IOException("`" + shown + "` failed with exit status " + process.exitValue() + tail(stderr));
            }
            return Files.readString(stdout, StandardCharsets.UTF_8);
        } finally {
            Files.deleteIfExists(stdout);
            Files.deleteIfExists(stderr);
        }
    }

    /** Destroys the process and its descendants (npm starts helpers) and waits briefly for it to go. */
    private static void stop(Process process) {
        process.descendants().forEach(ProcessHandle::destroyForcibly);
        process.destroyForcibly();
        try {
            process.waitFor(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static String tail(Path stderr) {
        try {
            String text = new String(Files.readAllBytes(stderr), StandardCharsets.UTF_8).strip();
            if (text.isEmpty()) {
                return " (no output on stderr)";
            }
            if (text.length() > STDERR_TAIL) {
                text = "..." + text.substring(text.length() - STDERR_TAIL);
            }
            return "; stderr:\n" + text;
        } catch (IOException e) {
            return " (stderr unreadable: " + e.getMessage() + ")";
        }
    }

    /** Downloads {@code url} to {@code target} over HTTPS (redirects followed, 5-minute timeout). */
    static void download(String url, Path target) throws IOException {
        HttpRequest request = HttpRequest.newBuilder(URI.create(url)).timeout(TIMEOUT).GET().build();
        HttpResponse<Path> response;
        try (HttpClient client = HttpClient.newBuilder()
                .followRedirects(HttpClient.Redirect.NORMAL)
                .connectTimeout(Duration.ofSeconds(30))
                .build()) {
            response = client.send(request, HttpResponse.BodyHandlers.ofFile(target));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while downloading " + url, e);
        } catch (IOException e) {
            throw new IOException("cannot download " + url + ": " + e, e);
        }
        if (response.statusCode() != 200) {
            Files.deleteIfExists(target);
            throw new IOException("cannot download " + url + ": HTTP status " + response.statusCode());
        }
    }
}
