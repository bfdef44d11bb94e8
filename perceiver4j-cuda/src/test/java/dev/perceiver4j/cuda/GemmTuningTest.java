package dev.perceiver4j.cuda;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The matrix-product tuning's choice rule and its file: choices survive a restart, damage costs only a new timing. */
class GemmTuningTest {
    private static final double NAN = Double.NaN;

    @Test
    void theFastestWinsOnlyByMoreThanTheNoiseMargin() {
        assertEquals(2, GemmTuning.pick(new double[] {1.0, 0.9, 0.5, 0.8}));
        assertEquals(0, GemmTuning.pick(new double[] {1.0, 0.98, 1.2}), "2 % faster is within the margin: the heuristic's first stays");
        assertEquals(1, GemmTuning.pick(new double[] {1.0, 0.96}));
        assertEquals(0, GemmTuning.pick(new double[] {0.5, 0.9}));
    }

    @Test
    void candidatesThatCouldNotRunAreNoChoice() {
        assertEquals(1, GemmTuning.pick(new double[] {NAN, 0.9, NAN}), "the first failed: the fastest that ran");
        assertEquals(0, GemmTuning.pick(new double[] {NAN, NAN}), "none ran: the heuristic's first");
        assertEquals(0, GemmTuning.pick(new double[] {1.0, NAN}));
    }

    @Test
    void onlyProductsWorthATimingAreTimed() {
        assertTrue(GemmTuning.worthTiming(2L * 4096 * 1280 * 1280), "a masked-LM latent product");
        assertTrue(GemmTuning.worthTiming(GemmTuning.MIN_TUNED_FLOPS));
        assertFalse(GemmTuning.worthTiming(GemmTuning.MIN_TUNED_FLOPS - 1));
        assertFalse(GemmTuning.worthTiming(2L * 1 * 2048 * 512), "a one-row product of cached generation");
    }

    @Test
    void theCandidateCountComesFromItsPropertyAndBadValuesAreNamed() {
        assertEquals(GemmTuning.DEFAULT_CANDIDATES, GemmTuning.candidates(null));
        assertEquals(32, GemmTuning.candidates(" 32 "));
        assertEquals(1, GemmTuning.candidates("1"));
        for (String bad : new String[] {"0", "65", "-3", "eight", ""}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> GemmTuning.candidates(bad));
            assertTrue(e.getMessage().contains("perceiver4j.cuda.gemm.candidates=" + bad), e.getMessage());
        }
    }

    @Test
    void choicesAreReadBackByTheNextProcess(@TempDir Path dir) {
        Path f = dir.resolve("sub").resolve("gemm-test.tsv");
        GemmTuning t = GemmTuning.in(f);
        assertEquals(-1, t.choice("bf16 Key[m=1]"));
        t.remember("bf16 Key[m=1]", 3, 12.5);
        t.remember("bf16 Key[m=2]", 0, 1.0);
        assertEquals(3, t.choice("bf16 Key[m=1]"));
        GemmTuning again = GemmTuning.in(f);
        assertEquals(3, again.choice("bf16 Key[m=1]"));
        assertEquals(0, again.choice("bf16 Key[m=2]"));
        assertEquals(-1, again.choice("bf16 Key[m=3]"));
        assertTrue(t.summary().contains("2 product shapes timed") && t.summary().contains("1 run another algorithm"), t.summary());
    }

    @Test
    void damagedLinesAreSkippedAndTheRestIsKept(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("gemm.tsv");
        Files.writeString(f, "2\tgood key\nnot a line\nx\tbad index\n-1\tnegative\n99\tout of range\n\tno index\n1\tother key\n",
                StandardCharsets.UTF_8);
        GemmTuning t = GemmTuning.in(f);
        assertEquals(2, t.choice("good key"));
        assertEquals(1, t.choice("other key"));
        assertEquals(-1, t.choice("bad index"));
        assertEquals(-1, t.choice("negative"));
        assertEquals(-1, t.choice("out of range"));
    }

    @Test
    void anOversizedFileIsNotRead(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("gemm.tsv");
        Files.writeString(f, "1\tkey\n" + "#".repeat(2 << 20), StandardCharsets.UTF_8);
        assertEquals(-1, GemmTuning.in(f).choice("key"));
    }

    @Test
    void withoutAFileChoicesStayInMemory() {
        GemmTuning t = GemmTuning.in(null);
        t.remember("k", 1, 0.5);
        assertEquals(1, t.choice("k"));
        assertTrue(t.summary().contains("not kept on disk"), t.summary());
    }
}
