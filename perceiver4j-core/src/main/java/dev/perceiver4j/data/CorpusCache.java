package dev.perceiver4j.data;

import dev.perceiver4j.io.AtomicFiles;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.charset.CharacterCodingException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.function.Consumer;

/**
 * The on-disk cache of a built-in corpus: {@code cacheRoot/corpora/<name>/} holds the extracted
 * files and a {@code MANIFEST} (format version, corpus, source, archive SHA-256, then one
 * {@code file SIZE NAME} line per file). A cache is complete iff the manifest matches the corpus
 * definition and every listed file has its size; a complete cache is never fetched again.
 *
 * <p>Filling it is atomic: the archive is fetched, verified and extracted inside a temporary
 * {@code corpora/.<name>-fetch-*} folder, the manifest is written last, and the extracted folder
 * is then renamed into place. An interrupted fetch leaves at most a temporary folder (removed on
 * failure when the JVM still runs), never a folder that looks complete.
 */
final class CorpusCache {
    static final String MANIFEST = "MANIFEST";
    private static final String FORMAT = "perceiver4j corpus cache 1";

    private CorpusCache() {}

    static List<Document> load(BuiltinCorpus corpus, Path cacheRoot, Consumer<String> log) throws IOException {
        Path corpora = Files.createDirectories(cacheRoot.resolve("corpora"));
        Path dir = corpora.resolve(corpus.name());
        Optional<List<String>> cached = completeFiles(dir, corpus);
        if (cached.isPresent()) {
            log.accept("using cached " + corpus.name() + " (" + corpus.source() + ") from " + dir);
            return corpus.reader().read(dir, cached.get());
        }
        if (Files.exists(dir)) {
            log.accept("cache " + dir + " is incomplete or from another version; fetching again");
        }
        log.accept("fetching " + corpus.name() + " (" + corpus.source() + ") from " + corpus.origin() + " ...");
        removeStaleTemporaries(corpora, corpus.name());
        Path tmp = Files.createTempDirectory(corpora, "." + corpus.name() + "-fetch-");
        List<String> files;
        try {
            Path work = Files.createDirectories(tmp.resolve("work"));
            Path out = Files.createDirectories(tmp.resolve(corpus.name()));
            Path archive = corpus.fetcher().fetch(work, log);
            Sha256.verify(archive, corpus.sha256());
            files = corpus.extractor().extract(archive, work, out);
            writeManifest(out, corpus, files);
            install(out, dir, corpora, corpus);
        } finally {
            deleteQuietly(tmp);
        }
        Optional<List<String>> installed = completeFiles(dir, corpus);
        if (installed.isEmpty()) {
            throw new IOException("cache " + dir + " is still incomplete after fetching " + corpus.name());
        }
        log.accept("cached " + corpus.name() + " in " + dir + " (" + installed.get().size() + " files)");
        return corpus.reader().read(dir, installed.get());
    }

    /** Renames the finished folder to {@code dir}, moving an incomplete old one aside first. */
    private static void install(Path out, Path dir, Path corpora, BuiltinCorpus corpus) throws IOException {
        if (Files.exists(dir)) {
            Path old = Files.createTempDirectory(corpora, "." + corpus.name() + "-old-");
            Files.move(dir, old.resolve("stale"), StandardCopyOption.ATOMIC_MOVE);
            AtomicFiles.deleteTree(old);
        }
        try {
            Files.move(out, dir, StandardCopyOption.ATOMIC_MOVE);
        } catch (FileAlreadyExistsException | DirectoryNotEmptyException e) {
            // another process installed it meanwhile; use theirs if complete
            if (completeFiles(dir, corpus).isEmpty()) {
                throw new IOException("cannot install the cache " + dir + ": it appeared, incomplete, while fetching", e);
            }
        }
    }

    private static void writeManifest(Path out, BuiltinCorpus corpus, List<String> files) throws IOException {
        StringBuilder text = new StringBuilder();
        text.append(FORMAT).append('\n');
        text.append("corpus ").append(corpus.name()).append('\n');
        text.append("source ").append(corpus.source()).append('\n');
        text.append("sha256 ").append(corpus.sha256()).append('\n');
        for (String file : files) {
            if (file.equals(MANIFEST) || file.contains("/") || file.contains("\n")) {
                throw new IOException("unexpected cache file name '" + file + "' for " + corpus.name());
            }
            text.append("file ").append(Files.size(out.resolve(file))).append(' ').append(file).append('\n');
        }
        Path tmp = out.resolve(MANIFEST + ".tmp");
        Files.writeString(tmp, text, StandardCharsets.UTF_8);
        Files.move(tmp, out.resolve(MANIFEST), StandardCopyOption.ATOMIC_MOVE);
    }

    /** The cached file names when {@code dir} holds a complete cache of {@code corpus}, else empty. */
    static Optional<List<String>> completeFiles(Path dir, BuiltinCorpus corpus) throws IOException {
        Path manifest = dir.resolve(MANIFEST);
        if (!Files.isRegularFile(manifest)) {
            return Optional.empty();
        }
        List<String> lines;
        try {
            lines = Files.readAllLines(manifest, StandardCharsets.UTF_8);
        } catch (CharacterCodingException e) {
            return Optional.empty();
        }
        if (lines.size() < 5
                || !lines.get(0).equals(FORMAT)
                || !lines.get(1).equals("corpus " + corpus.name())
                || !lines.get(2).equals("source " + corpus.source())
                || !lines.get(3).equalsIgnoreCase("sha256 " + corpus.sha256())) {
            return Optional.empty();
        }
        List<String> files = new ArrayList<>();
        for (String line : lines.subList(4, lines.size())) {
            String[] parts = line.split(" ", 3);
            if (parts.length != 3 || !parts[0].equals("file")) {
                return Optional.empty();
            }
            Path file = dir.resolve(parts[2]);
            try {
                if (!Files.isRegularFile(file) || Files.size(file) != Long.parseLong(parts[1])) {
                    return Optional.empty();
                }
            } catch (NumberFormatException e) {
                return Optional.empty();
            }
            files.add(parts[2]);
        }
        return Optional.of(List.copyOf(files));
    }

    /** Removes temporary folders of {@code name} left over by a fetch that was killed more than a day ago. */
    private static void removeStaleTemporaries(Path corpora, String name) {
        Instant dayAgo = Instant.now().minus(Duration.ofDays(1));
        try (DirectoryStream<Path> stale = Files.newDirectoryStream(corpora, "." + name + "-{fetch,old}-*")) {
            for (Path p : stale) {
                if (Files.getLastModifiedTime(p).toInstant().isBefore(dayAgo)) {
                    deleteQuietly(p);
                }
            }
        } catch (IOException e) {
            // best effort: a leftover temporary folder never looks like a complete cache
        }
    }

    private static void deleteQuietly(Path root) {
        try {
            AtomicFiles.deleteTree(root);
        } catch (IOException e) {
            // best effort: what remains is a temporary folder, never a complete-looking cache
        }
    }
}
