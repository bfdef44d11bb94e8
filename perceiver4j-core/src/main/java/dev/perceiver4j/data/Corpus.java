package dev.perceiver4j.data;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.function.Consumer;

/**
 * A text corpus for byte-level language modelling: a list of {@link Document}s sorted by name
 * (empty ones dropped), loaded from a built-in data set or from local files.
 *
 * <pre>
 *   Corpus c = Corpus.load("gutenberg", Corpus.defaultCacheDir(), System.err::println);
 *   Corpus c = Corpus.load("texts/*.txt,notes,README.md", cacheDir, log);
 *   Split s = c.split(0.05, 1234L);     // by document: s.train(), s.validation()
 * </pre>
 */
public final class Corpus {
    /** Largest corpus held in memory: every split stream must fit one Java array. */
    static final long MAX_TOTAL_BYTES = Integer.MAX_VALUE - 64;

    private final String label;
    private final List<Document> documents;
    private final long totalBytes;

    private Corpus(String label, List<Document> documents) {
        this.label = label;
        this.documents = documents;
        long total = 0;
        for (Document d : documents) {
            total += d.bytes().length;
        }
        this.totalBytes = total;
    }

    /**
     * Loads a corpus. {@code spec} is a built-in name ({@code gutenberg}, {@code sotu},
     * {@code gcide}) or a comma-separated list (commas inside glob braces do not separate) whose elements are built-in names, files, folders
     * (every regular file below, recursively, hidden files and folders skipped) or globs in
     * {@link java.nio.file.FileSystem#getPathMatcher java.nio glob} syntax relative to the working
     * directory ({@code texts/*.txt}, {@code data/**.md}). A built-in name wins over a file of the
     * same name (write {@code ./gutenberg} for the file). Built-in data sets are fetched on first
     * use, verified and cached under {@code cacheDir/corpora/<name>/}; {@code log} receives
     * one-line progress messages.
     *
     * @throws IOException naming the spec element when nothing matches, a file cannot be read, a
     *     fetch fails or two documents have the same name
     */
    public static Corpus load(String spec, Path cacheDir, Consumer<String> log) throws IOException {
        return load(spec, cacheDir, log, Path.of("").toAbsolutePath());
    }

    /** {@link #load(String, Path, Consumer)} with relative paths and globs resolved against {@code workingDir}. */
    static Corpus load(String spec, Path cacheDir, Consumer<String> log, Path workingDir) throws IOException {
        if (spec == null || spec.isBlank()) {
            throw new IOException("empty corpus spec: give a built-in name (gutenberg, sotu, gcide) or files, folders, globs");
        }
        List<Document> all = new ArrayList<>();
        Map<String, String> origin = new HashMap<>();
        Map<String, Document> byName = new HashMap<>();
        for (String raw : elements(spec)) {
            String element = raw.strip();
            if (element.isEmpty()) {
                continue;
            }
            Optional<BuiltinCorpus> builtin = BuiltinCorpus.named(element);
            List<Document> docs = builtin.isPresent()
                    ? builtin.get().load(cacheDir, log)
                    : CorpusFiles.read(element, workingDir);
            for (Document d : docs) {
                Document previous = byName.putIfAbsent(d.name(), d);
                if (previous == null) {
                    origin.put(d.name(), element);
                    all.add(d);
                } else if (!Arrays.equals(previous.bytes(), d.bytes())) {
                    throw new IOException("corpus spec '" + spec + "': two different documents named '" + d.name()
                            + "' (from '" + origin.get(d.name()) + "' and '" + element + "')");
                } // else: the same file matched by two elements, kept once
            }
        }
        if (origin.isEmpty()) {
            throw new IOException("corpus spec '" + spec + "' names no files");
        }
        Corpus corpus = of(spec.strip(), all);
        if (corpus.documents.isEmpty()) {
            throw new IOException("corpus spec '" + spec + "': all " + all.size() + " documents are empty");
        }
        if (corpus.totalBytes > MAX_TOTAL_BYTES) {
            throw new IOException("corpus spec '" + spec + "': " + corpus.totalBytes
                    + " bytes is more than the in-memory limit of " + MAX_TOTAL_BYTES + " bytes");
        }
        return corpus;
    }

    /** The comma-separated elements of a spec; commas inside glob braces ({@code {a,b}.txt}) do not separate. */
    static List<String> elements(String spec) {
        List<String> out = new ArrayList<>();
        int depth = 0, start = 0;
        for (int i = 0; i < spec.length(); i++) {
            char c = spec.charAt(i);
            if (c == '{') {
                depth++;
            } else if (c == '}' && depth > 0) {
                depth--;
            } else if (c == ',' && depth == 0) {
                out.add(spec.substring(start, i));
                start = i + 1;
            }
        }
        out.add(spec.substring(start));
        return out;
    }

    /** A corpus of the given documents (sorted by name here, empty ones dropped); for tests and built-ins. */
    static Corpus of(String label, List<Document> documents) {
        List<Document> kept = new ArrayList<>();
        for (Document d : documents) {
            if (d.bytes().length > 0) {
                kept.add(d);
            }
        }
        kept.sort(Comparator.comparing(Document::name));
        return new Corpus(label, List.copyOf(kept));
    }

    /** {@code $XDG_CACHE_HOME/perceiver4j} when that variable is an absolute path, else {@code ~/.cache/perceiver4j}. */
    public static Path defaultCacheDir() {
        String xdg = System.getenv("XDG_CACHE_HOME");
        if (xdg != null && !xdg.isBlank() && Path.of(xdg).isAbsolute()) {
            return Path.of(xdg, "perceiver4j");
        }
        return Path.of(System.getProperty("user.home"), ".cache", "perceiver4j");
    }

    /** The documents, sorted by name, none empty. */
    public List<Document> documents() {
        return documents;
    }

    /** Sum of the documents' sizes in bytes. */
    public long totalBytes() {
        return totalBytes;
    }

    /** For example {@code "gutenberg: 18 documents, 11.8 MB"}. */
    public String description() {
        return label + ": " + count(documents.size(), "document") + ", " + formatBytes(totalBytes);
    }

    @Override
    public String toString() {
        return "Corpus[" + description() + "]";
    }

    /**
     * Splits by document. A document goes to validation iff a hash of (seed, its name), read as a
     * number in [0, 1), is below {@code validationFraction}. With two or more documents neither part
     * is empty: if the hash leaves one empty, the document with the lowest hash goes to validation
     * (or the one with the highest to train). A single document is split by bytes instead: its last
     * {@code max(1, ceil(fraction × length))} bytes (at most length − 1 when length ≥ 2) become
     * validation, and the description says so; the caller checks that both parts are long enough.
     * Deterministic in (documents, fraction, seed).
     *
     * @throws IllegalArgumentException if {@code validationFraction} is not in (0, 1)
     */
    public Split split(double validationFraction, long seed) {
        if (!(validationFraction > 0 && validationFraction < 1)) {
            throw new IllegalArgumentException("validation fraction must be in (0, 1), got " + validationFraction);
        }
        String how = String.format(Locale.ROOT, "fraction %s, seed %d", validationFraction, seed);
        if (documents.size() == 1) {
            Document d = documents.getFirst();
            int len = d.bytes().length;
            long held = Math.max(1L, (long) Math.ceil(validationFraction * len));
            if (len >= 2) {
                held = Math.min(held, len - 1L);
            }
            held = Math.min(held, len);
            int cut = (int) (len - held);
            byte[] train = Arrays.copyOfRange(d.bytes(), 0, cut);
            byte[] validation = Arrays.copyOfRange(d.bytes(), cut, len);
            String description = "single document " + d.name() + " split by bytes (" + how + "): train its first "
                    + formatBytes(train.length) + ", validation its last " + formatBytes(validation.length);
            return new Split(train, validation, List.of(d.name()), List.of(d.name()), description);
        }
        double[] u = new double[documents.size()];
        boolean[] toValidation = new boolean[documents.size()];
        int validationCount = 0;
        for (int i = 0; i < u.length; i++) {
            u[i] = unitHash(seed, documents.get(i).name());
            toValidation[i] = u[i] < validationFraction;
            validationCount += toValidation[i] ? 1 : 0;
        }
        if (validationCount == 0) {
            toValidation[extreme(u, toValidation, false, true)] = true;
        } else if (validationCount == u.length) {
            toValidation[extreme(u, toValidation, true, false)] = false;
        }
        List<Document> trainDocs = new ArrayList<>();
        List<Document> validationDocs = new ArrayList<>();
        for (int i = 0; i < u.length; i++) {
            (toValidation[i] ? validationDocs : trainDocs).add(documents.get(i));
        }
        byte[] train = concat(trainDocs);
        byte[] validation = concat(validationDocs);
        List<String> trainNames = trainDocs.stream().map(Document::name).toList();
        List<String> validationNames = validationDocs.stream().map(Document::name).toList();
        String description = "split by document (" + how + "): train " + count(trainDocs.size(), "document") + ", "
                + formatBytes(train.length) + "; validation " + count(validationDocs.size(), "document") + ", "
                + formatBytes(validation.length)
                + (validationNames.size() <= 4 ? " " + validationNames : "");
        return new Split(train, validation, trainNames, validationNames, description);
    }

    /** Index of the lowest (highest when {@code max}) hash among documents whose flag equals {@code inPart}. */
    private static int extreme(double[] u, boolean[] flags, boolean inPart, boolean lowest) {
        int best = -1;
        for (int i = 0; i < u.length; i++) {
            if (flags[i] != inPart) {
                continue;
            }
            if (best < 0 || (lowest ? u[i] < u[best] : u[i] > u[best])) {
                best = i;
            }
        }
        return best;
    }

    /** A hash of (seed, name) as a double in [0, 1): FNV-1a over the UTF-8 bytes, seeded, then a 64-bit finaliser. */
    static double unitHash(long seed, String name) {
        long h = 0xCBF29CE484222325L ^ mix64(seed);
        for (byte b : name.getBytes(StandardCharsets.UTF_8)) {
            h = (h ^ (b & 0xFF)) * 0x100000001B3L;
        }
        h = mix64(h + 0x9E3779B97F4A7C15L);
        return (h >>> 11) * 0x1.0p-53;
    }

    /** The SplitMix64 / MurmurHash3 64-bit finaliser. */
    static long mix64(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    private static byte[] concat(List<Document> docs) {
        long total = 0;
        for (Document d : docs) {
            total += d.bytes().length;
        }
        if (total > MAX_TOTAL_BYTES) {
            throw new IllegalStateException("a split part of " + total + " bytes does not fit one array");
        }
        byte[] out = new byte[(int) total];
        int at = 0;
        for (Document d : docs) {
            System.arraycopy(d.bytes(), 0, out, at, d.bytes().length);
            at += d.bytes().length;
        }
        return out;
    }

    private static String count(int n, String noun) {
        return n + " " + noun + (n == 1 ? "" : "s");
    }

    /** Decimal units with one decimal: {@code 512 bytes}, {@code 1.5 kB}, {@code 11.8 MB}, {@code 2.1 GB}. */
    static String formatBytes(long n) {
        if (n < 1000) {
            return n + (n == 1 ? " byte" : " bytes");
        }
        if (n < 999_950) {
            return String.format(Locale.ROOT, "%.1f kB", n / 1e3);
        }
        if (n < 999_950_000) {
            return String.format(Locale.ROOT, "%.1f MB", n / 1e6);
        }
        return String.format(Locale.ROOT, "%.1f GB", n / 1e9);
    }
}
