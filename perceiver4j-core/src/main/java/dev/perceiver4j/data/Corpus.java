package dev.perceiver4j.data;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.PathMatcher;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.TreeMap;
import java.util.function.Consumer;
import java.util.stream.Stream;

/**
 * A set of text documents for byte-level language modelling: a built-in corpus ({@code gutenberg},
 * {@code sotu}, {@code gcide}; see {@link BuiltinCorpora}) or the user's own files, folders and globs.
 */
public final class Corpus {
    private final String name;
    private final List<Document> documents;

    Corpus(String name, List<Document> documents) {
        this.name = name;
        List<Document> docs = new ArrayList<>();
        for (Document d : documents) if (d.bytes().length > 0) docs.add(d);
        docs.sort(Comparator.comparing(Document::name));
        this.documents = List.copyOf(docs);
    }

    /** {@code $XDG_CACHE_HOME/perceiver4j}, or {@code ~/.cache/perceiver4j}. */
    public static Path defaultCacheDir() {
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path base = xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache");
        return base.resolve("perceiver4j");
    }

    /**
     * spec: a built-in name, or a comma-separated list of files, folders (every regular, non-hidden
     * file below, recursively) and globs (java.nio syntax, relative to the working folder, e.g.
     * {@code texts/*.txt} or {@code notes/**.md}). {@code log} receives one-line progress messages.
     */
    public static Corpus load(String spec, Path cacheDir, Consumer<String> log) throws IOException {
        if (spec == null || spec.isBlank()) throw new IllegalArgumentException("empty corpus: name a built-in corpus (gutenberg, sotu, gcide) or files");
        BuiltinCorpora.Source builtin = BuiltinCorpora.named(spec.strip());
        if (builtin != null) return fromSource(builtin, cacheDir, log);
        TreeMap<String, Path> files = new TreeMap<>();
        for (String part : spec.split(",")) {
            String p = part.strip();
            if (p.isEmpty()) continue;
            List<Path> found = expand(p);
            if (found.isEmpty()) {
                throw new IOException("corpus '" + p + "': no such file or folder, and no file matches it as a glob (built-in corpora: gutenberg, sotu, gcide)");
            }
            for (Path f : found) files.put(f.toString(), f);
        }
        List<Document> docs = new ArrayList<>();
        for (Path f : files.values()) {
            try {
                docs.add(new Document(f.toString(), Files.readAllBytes(f)));
            } catch (IOException e) {
                throw new IOException("corpus file " + f + " cannot be read: " + e.getMessage(), e);
            }
        }
        Corpus c = new Corpus(spec, docs);
        if (c.documents.isEmpty()) throw new IOException("corpus '" + spec + "' has no non-empty documents");
        return c;
    }

    static Corpus fromSource(BuiltinCorpora.Source source, Path cacheDir, Consumer<String> log) throws IOException {
        Path dir = BuiltinCorpora.ensure(source, cacheDir, log);
        List<Document> docs = new ArrayList<>();
        try (Stream<Path> s = Files.list(dir)) {
            for (Path f : s.filter(Files::isRegularFile).filter(f -> !f.getFileName().toString().startsWith(".")).sorted().toList()) {
                docs.add(new Document(f.getFileName().toString(), Files.readAllBytes(f)));
            }
        }
        return new Corpus(source.name(), docs);
    }

    private static List<Path> expand(String p) throws IOException {
        Path path = Path.of(p);
        if (Files.isRegularFile(path)) return List.of(path);
        if (Files.isDirectory(path)) return walk(path, f -> true);
        if (!p.contains("*") && !p.contains("?") && !p.contains("[") && !p.contains("{")) return List.of();
        // Glob: walk from the longest literal folder prefix and match the whole relative path.
        String[] segs = p.split("/");
        Path root = p.startsWith("/") ? Path.of("/") : Path.of("");
        int i = 0;
        for (; i < segs.length - 1; i++) {
            if (segs[i].matches(".*[*?\\[{].*")) break;
            if (!segs[i].isEmpty()) root = root.resolve(segs[i]);
        }
        Path base = root.toString().isEmpty() ? Path.of(".") : root;
        if (!Files.isDirectory(base)) return List.of();
        PathMatcher m = FileSystems.getDefault().getPathMatcher("glob:" + p);
        Path start = root;
        return walk(base, f -> m.matches(start.toString().isEmpty() ? Path.of(".").relativize(f) : f));
    }

    private static List<Path> walk(Path dir, java.util.function.Predicate<Path> keep) throws IOException {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.filter(Files::isRegularFile).filter(f -> !isHidden(dir.relativize(f))).filter(keep).sorted().toList();
        }
    }

    private static boolean isHidden(Path rel) {
        for (Path seg : rel) if (seg.toString().startsWith(".")) return true;
        return false;
    }

    public List<Document> documents() {
        return documents;
    }

    public long totalBytes() {
        long n = 0;
        for (Document d : documents) n += d.bytes().length;
        return n;
    }

    /** E.g. "gutenberg: 18 documents, 11.8 MB". */
    public String description() {
        return String.format(Locale.ROOT, "%s: %d document%s, %.1f MB", name, documents.size(), documents.size() == 1 ? "" : "s", totalBytes() / 1e6);
    }

    /**
     * Splits by document: a document is held out for validation iff a hash of (seed, name) falls
     * below {@code validationFraction}; with two or more documents each part gets at least one (the
     * lowest-hashed document goes to validation, the highest to training, if needed). A single
     * document is split by position instead: its last ⌈fraction·length⌉ bytes are the validation part.
     */
    public Split split(double validationFraction, long seed) {
        if (!(validationFraction > 0 && validationFraction < 1)) {
            throw new IllegalArgumentException("validation fraction must be in (0, 1), got " + validationFraction);
        }
        if (documents.size() == 1) {
            Document d = documents.getFirst();
            int cut = d.bytes().length - (int) Math.ceil(validationFraction * d.bytes().length);
            return new Split(java.util.Arrays.copyOf(d.bytes(), cut), java.util.Arrays.copyOfRange(d.bytes(), cut, d.bytes().length),
                    List.of(d.name()), List.of(d.name()),
                    String.format(Locale.ROOT, "one document: first %d bytes for training, last %d for validation", cut, d.bytes().length - cut));
        }
        int n = documents.size();
        double[] u = new double[n];
        for (int i = 0; i < n; i++) u[i] = unit(seed, documents.get(i).name());
        boolean[] valid = new boolean[n];
        int nValid = 0;
        for (int i = 0; i < n; i++) if (valid[i] = u[i] < validationFraction) nValid++;
        if (nValid == 0) valid[argExtreme(u, true)] = true;
        if (nValid == n) valid[argExtreme(u, false)] = false;
        ByteArrayOutputStream train = new ByteArrayOutputStream(), val = new ByteArrayOutputStream();
        List<String> trainDocs = new ArrayList<>(), valDocs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Document d = documents.get(i);
            (valid[i] ? val : train).writeBytes(d.bytes());
            (valid[i] ? valDocs : trainDocs).add(d.name());
        }
        String desc = String.format(Locale.ROOT, "split by document: %d for training (%.1f MB), %d for validation (%.1f MB: %s)",
                trainDocs.size(), train.size() / 1e6, valDocs.size(), val.size() / 1e6, String.join(", ", valDocs));
        return new Split(train.toByteArray(), val.toByteArray(), List.copyOf(trainDocs), List.copyOf(valDocs), desc);
    }

    private static int argExtreme(double[] u, boolean min) {
        int best = 0;
        for (int i = 1; i < u.length; i++) if (min ? u[i] < u[best] : u[i] > u[best]) best = i;
        return best;
    }

    /** A uniform number in [0, 1) from (seed, name), stable across runs and JVMs. */
    private static double unit(long seed, String name) {
        long h = seed ^ 0x51AB1E5EEDL;
        for (byte b : name.getBytes(java.nio.charset.StandardCharsets.UTF_8)) {
            h = (h ^ (b & 0xFF)) * 0x100000001B3L;
        }
        h ^= h >>> 33;
        h *= 0xff51afd7ed558ccdL;
        h ^= h >>> 33;
        return (h >>> 11) * 0x1.0p-53;
    }
}
