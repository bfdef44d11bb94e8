package dev.perceiver4j.backend.cpu;

import static org.assertj.core.api.Assertions.assertThat;

import dev.perceiver4j.random.Philox;
import org.junit.jupiter.api.Test;

/** Philox4x32-10 known-answer vectors (Random123 kat_vectors) and the dropout keep rate. */
class PhiloxTest {

    private static int[] block(int c0, int c1, int c2, int c3, int k0, int k1) {
        int[] out = new int[4];
        Philox.block(c0, c1, c2, c3, k0, k1, out);
        return out;
    }

    @Test
    void zeroCounterZeroKey() {
        assertThat(block(0, 0, 0, 0, 0, 0)).containsExactly(0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8);
    }

    @Test
    void allOnes() {
        int f = 0xffffffff;
        assertThat(block(f, f, f, f, f, f)).containsExactly(0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd);
    }

    @Test
    void piDigits() {
        assertThat(block(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0))
                .containsExactly(0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1);
    }

    @Test
    void bitsIsLaneOfBlock() {
        long seed = 0x1234_5678_9abc_def0L, stream = 77;
        for (long index = 0; index < 64; index++) {
            long b = index >>> 2;
            int[] o = block((int) b, (int) (b >>> 32), (int) stream, (int) (stream >>> 32), (int) seed, (int) (seed >>> 32));
            assertThat(Philox.bits(seed, stream, index)).isEqualTo(o[(int) (index & 3)]);
        }
    }

    @Test
    void dropoutKeepRateWithinFiveSigma() {
        int n = 1_000_000;
        for (float p : new float[] {0.1f, 0.5f, 0.9f}) {
            int kept = 0;
            for (int i = 0; i < n; i++) if (Philox.keep(42, 3, i, p)) kept++;
            double expected = (1 - p) * (double) n;
            double sigma = Math.sqrt(n * p * (1.0 - p));
            assertThat(Math.abs(kept - expected)).as("p=%s kept=%d", p, kept).isLessThanOrEqualTo(5 * sigma);
        }
    }
}
