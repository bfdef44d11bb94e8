package dev.perceiver4j.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.function.Function;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/** Corpus.split: by document, deterministic, never an empty part with two or more documents. */
class SplitTest {
    private static Corpus corpus(int n, long seed) {
        Random random = new Random(seed);
        List<Document> docs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            byte[] bytes = new byte[1 + random.nextInt(200)];
            random.nextBytes(bytes);
            docs.add(new Document(String.format("doc-%03d.txt", i), bytes));
        }
        return Corpus.of("test", docs);
    }

    /** The part's documents concatenated in name order. */
    private static byte[] concat(Corpus c, List<String> names) {
        Map<String, Document> byName = c.documents().stream().collect(Collectors.toMap(Document::name, Function.identity()));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (String name : names) {
            out.writeBytes(byName.get(name).bytes());
        }
        return out.toByteArray();
    }

    @Test
    void everyDocumentIsInExactlyOnePartAndTheStreamsHoldExactlyTheirBytes() {
        Corpus c = corpus(200, 7);
        Split s = c.split(0.1, 42);
        Set<String> all = new HashSet<>(s.trainDocuments());
        assertThat(s.validationDocuments()).doesNotContainAnyElementsOf(s.trainDocuments());
        all.addAll(s.validationDocuments());
        assertThat(all).hasSize(200).containsExactlyInAnyOrderElementsOf(c.documents().stream().map(Document::name).toList());
        assertThat(s.trainDocuments()).isSorted();
        assertThat(s.validationDocuments()).isSorted();
        assertThat(s.train()).isEqualTo(concat(c, s.trainDocuments()));
        assertThat(s.validation()).isEqualTo(concat(c, s.validationDocuments()));
        assertThat((long) s.train().length + s.validation().length).isEqualTo(c.totalBytes());
        // about 10% held out
        assertThat(s.validationDocuments().size()).isBetween(8, 35);
        assertThat(s.description()).contains("seed 42").contains("validation " + s.validationDocuments().size() + " documents");
    }

    @Test
    void isDeterministicAndDependsOnTheSeed() {
        Corpus c = corpus(100, 3);
        Split a = c.split(0.2, 1), b = corpus(100, 3).split(0.2, 1), other = c.split(0.2, 2);
        assertThat(a.validationDocuments()).isEqualTo(b.validationDocuments());
        assertThat(a.train()).isEqualTo(b.train());
        assertThat(a.validation()).isEqualTo(b.validation());
        assertThat(other.validationDocuments()).isNotEqualTo(a.validationDocuments());
        // membership depends only on (seed, name): adding documents does not move the others
        Corpus more = corpus(150, 3);
        List<String> moreValidation = more.split(0.2, 1).validationDocuments();
        assertThat(moreValidation.stream().filter(n -> n.compareTo("doc-100") < 0).toList())
                .isEqualTo(a.validationDocuments());
    }

    @Test
    void neverLeavesAPartEmptyWithTwoOrMoreDocuments() {
        for (int n = 2; n <= 6; n++) {
            for (long seed = 0; seed < 20; seed++) {
                Corpus c = corpus(n, seed);
                for (double f : new double[] {1e-9, 0.01, 0.5, 0.99, 1 - 1e-9}) {
                    Split s = c.split(f, seed);
                    assertThat(s.trainDocuments()).as("n=%d f=%s seed=%d", n, f, seed).isNotEmpty();
                    assertThat(s.validationDocuments()).as("n=%d f=%s seed=%d", n, f, seed).isNotEmpty();
                    assertThat(s.trainDocuments().size() + s.validationDocuments().size()).isEqualTo(n);
                    assertThat(s.train()).isEqualTo(concat(c, s.trainDocuments()));
                    assertThat(s.validation()).isEqualTo(concat(c, s.validationDocuments()));
                }
            }
        }
        // the forced choice is deterministic too
        assertThat(corpus(5, 1).split(1e-9, 9).validationDocuments()).isEqualTo(corpus(5, 1).split(1e-9, 9).validationDocuments());
    }

    @Test
    void aSingleDocumentIsSplitByBytes() {
        byte[] text = "0123456789".repeat(10).getBytes(StandardCharsets.US_ASCII);
        Corpus c = Corpus.of("one", List.of(new Document("book.txt", text)));
        Split s = c.split(0.05, 1);
        assertThat(s.validation()).hasSize(5).isEqualTo("56789".getBytes(StandardCharsets.US_ASCII));
        assertThat(s.train()).hasSize(95).isEqualTo(java.util.Arrays.copyOf(text, 95));
        assertThat(s.trainDocuments()).containsExactly("book.txt");
        assertThat(s.validationDocuments()).containsExactly("book.txt");
        assertThat(s.description()).contains("single document book.txt").contains("split by bytes");
        // ceil, at least one byte, and train keeps at least one byte
        assertThat(c.split(0.001, 1).validation()).hasSize(1);
        assertThat(c.split(0.011, 1).validation()).hasSize(2);
        assertThat(c.split(0.9999, 1).validation()).hasSize(99);
        Split tiny = Corpus.of("tiny", List.of(new Document("t", new byte[] {7}))).split(0.5, 1);
        assertThat(tiny.validation()).containsExactly(7);
        assertThat(tiny.train()).isEmpty();
    }

    @Test
    void emptyDocumentsAreDroppedAndNamesSorted() {
        Corpus c = Corpus.of("x", List.of(new Document("b", new byte[] {1}), new Document("a", new byte[0]),
                new Document("c", new byte[] {2, 3})));
        assertThat(c.documents()).extracting(Document::name).containsExactly("b", "c");
        assertThat(c.totalBytes()).isEqualTo(3);
        assertThat(c.description()).isEqualTo("x: 2 documents, 3 bytes");
    }

    @Test
    void rejectsFractionsOutsideTheOpenUnitInterval() {
        Corpus c = corpus(3, 1);
        for (double f : new double[] {0, 1, -0.1, 1.5, Double.NaN}) {
            assertThatThrownBy(() -> c.split(f, 1))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("(0, 1)");
        }
    }

    @Test
    void unitHashIsStableAndSpread() {
        // pinned values: the split of a corpus must not change between versions
        assertThat(Corpus.unitHash(0, "austen-emma.txt")).isEqualTo(0.6323813672287946);
        assertThat(Corpus.unitHash(1234, "gcide-07")).isEqualTo(0.8254355235475642);
        double sum = 0;
        for (int i = 0; i < 10_000; i++) {
            double u = Corpus.unitHash(5, "doc" + i);
            assertThat(u).isGreaterThanOrEqualTo(0).isLessThan(1);
            sum += u;
        }
        assertThat(sum / 10_000).isBetween(0.48, 0.52);
    }
}
