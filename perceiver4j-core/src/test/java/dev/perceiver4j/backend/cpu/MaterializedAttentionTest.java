package dev.perceiver4j.backend.cpu;

import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.backend.cpu.fast.FastAttention;
import dev.perceiver4j.backend.cpu.fast.MaterializedAttention;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.List;
import java.util.Random;

import static dev.perceiver4j.backend.cpu.AttentionTestSupport.maxAbs;
import static dev.perceiver4j.backend.cpu.AttentionTestSupport.maxAbsDiff;
import static dev.perceiver4j.backend.cpu.AttentionTestSupport.toFloat;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The forward with written-out scores against the double reference, with FastAttentionTest's
 * tolerances (the same float error budget: each score a float dot product, each output a sum over
 * the keys of probabilities that add up to 1), and the fused backward fed its out and lse.
 */
class MaterializedAttentionTest {

    /** Key padding: none; AttentionTestSupport.leftPadding; every third key and the last (padded keys between real ones). */
    enum Padding { NONE, LEFT, SCATTERED }

    record Case(AttentionShape shape, int threads, int offset, Padding padding) {
        Case(AttentionShape shape, int threads, int offset) {
            this(shape, threads, offset, Padding.NONE);
        }

        boolean[] keyPad() {
            return switch (padding) {
                case NONE -> null;
                case LEFT -> AttentionTestSupport.leftPadding(shape.batch(), shape.nk());
                case SCATTERED -> {
                    boolean[] pad = new boolean[shape.keyPadSize()];
                    for (int i = 0; i < pad.length; i++) pad[i] = i % shape.nk() % 3 == 1 || i % shape.nk() == shape.nk() - 1;
                    yield pad;
                }
            };
        }

        @Override
        public String toString() {
            AttentionShape s = shape;
            return "B" + s.batch() + " H" + s.heads() + " Nq" + s.nq() + " Nk" + s.nk() + " Dqk" + s.dqk() + " Dv" + s.dv()
                    + " t" + threads + " off" + offset + (padding == Padding.NONE ? "" : " padding " + padding);
        }
    }

    static List<Case> cases() {
        return List.of(
                new Case(AttentionShape.of(1, 1, 1, 1, 1, 1), 1, 0),
                new Case(AttentionShape.of(2, 3, 5, 7, 3, 5), 2, 5),
                new Case(AttentionShape.of(1, 2, 17, 33, 16, 24), 3, 10),
                new Case(AttentionShape.of(3, 2, 70, 131, 19, 21), 2, 15),   // odd head dims, tails everywhere
                new Case(AttentionShape.of(1, 1, 100, 50, 8, 8), 3, 1),      // one head split into blocks of rows
                new Case(AttentionShape.of(2, 2, 37, 70, 32, 160), 3, 0),    // the language-perceiver head sizes
                new Case(AttentionShape.of(1, 8, 64, 256, 32, 160), 2, 3),   // latent-like, whole heads per task
                // key padding (AttentionTestSupport.leftPadding): a third of row 0's keys, all of row 1's, one of row 2's
                new Case(AttentionShape.of(3, 2, 70, 131, 19, 21), 2, 4, Padding.LEFT),
                new Case(AttentionShape.of(3, 2, 100, 64, 32, 160), 3, 0, Padding.LEFT),   // rows split into blocks
                new Case(AttentionShape.of(2, 2, 40, 50, 16, 24), 2, 1, Padding.SCATTERED));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void matchesReferenceAndFeedsTheFusedBackward(Case c) {
        AttentionShape s = c.shape();
        assertThat(MaterializedAttention.applies(s)).isTrue();
        boolean[] pad = c.keyPad();
        AttentionTestSupport.Reference ref = AttentionTestSupport.reference(s, new Random(c.toString().hashCode()), pad);

        int o = c.offset();
        float[] fq = toFloat(ref.q(), o, 3), fk = toFloat(ref.k(), o + 1, 2), fv = toFloat(ref.v(), o + 2, 1), fg = toFloat(ref.g(), o, 0);
        float[] out = new float[o + s.outSize() + 4], lse = new float[o + s.lseSize() + 1];
        out[out.length - 1] = 7f;
        try (CpuPool pool = CpuPool.create(c.threads())) {
            MaterializedAttention.forward(MaterializedAttention.Gemms.of(new JavaSgemm(pool)), s,
                    fq, o, fk, o + 1, fv, o + 2, pad, out, o, lse, o);
            assertClose("out", out, o, ref.out(), FastAttentionTest.FWD_TOL);
            assertClose("lse", lse, o, ref.lse(), FastAttentionTest.FWD_TOL);
            assertThat(out[out.length - 1]).as("past out's end untouched").isEqualTo(7f);

            float[] dq = new float[o + s.qSize()], dk = new float[o + s.kSize()], dv = new float[o + s.vSize()];
            FastAttention.backward(pool, s, fq, o, fk, o + 1, fv, o + 2, pad, out, o, lse, o, fg, o, dq, o, dk, o, dv, o);
            assertClose("dq", dq, o, ref.dq(), FastAttentionTest.BWD_TOL);
            assertClose("dk", dk, o, ref.dk(), FastAttentionTest.BWD_TOL);
            assertClose("dv", dv, o, ref.dv(), FastAttentionTest.BWD_TOL);
        }
    }

    @Test
    void takesNoCausalMaskNorDropout() {
        AttentionShape plain = AttentionShape.of(1, 2, 8, 8, 4, 4);
        assertThat(MaterializedAttention.applies(plain)).isTrue();
        assertThat(MaterializedAttention.applies(new AttentionShape(1, 2, 8, 8, 4, 4, 0.5f, true, 0f, 0, 0))).isFalse();
        assertThat(MaterializedAttention.applies(new AttentionShape(1, 2, 8, 8, 4, 4, 0.5f, false, 0.1f, 0, 0))).isFalse();
        assertThat(MaterializedAttention.applies(AttentionShape.of(1, 1, 8, 1 << 16, 4, 4))).isFalse(); // 32 rows would not fit
        AttentionShape causal = new AttentionShape(1, 1, 4, 4, 2, 2, 0.5f, true, 0f, 0, 0);
        try (CpuPool pool = CpuPool.create(1)) {
            MaterializedAttention.Gemms gemms = MaterializedAttention.Gemms.of(new JavaSgemm(pool));
            assertThatThrownBy(() -> MaterializedAttention.forward(gemms, causal, new float[8], 0, new float[8], 0,
                    new float[8], 0, null, new float[8], 0, new float[4], 0)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("no causal mask or dropout");
            assertThatThrownBy(() -> MaterializedAttention.forward(gemms, plain, new float[63], 0, new float[64], 0,
                    new float[64], 0, null, new float[64], 0, new float[16], 0)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageStartingWith("q: required length 64");
            assertThatThrownBy(() -> MaterializedAttention.forward(gemms, plain, new float[64], 0, new float[64], 0,
                    new float[64], 0, new boolean[7], new float[64], 0, new float[16], 0)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageStartingWith("keyPad: required length 8, actual 7");
        }
    }

    @Test
    void tasksAreWholeHeadsWhenThereAreEnoughElseBlocksThatFitL2() {
        assertThat(MaterializedAttention.blockRows(8, 256, 256, 2)).isEqualTo(256);   // latent: 8 heads, 2 threads
        assertThat(MaterializedAttention.blockRows(8, 2048, 256, 2)).isEqualTo(512);  // decoder: 512 KiB of scores
        assertThat(MaterializedAttention.blockRows(8, 256, 2048, 2)).isEqualTo(64);   // encoder
        assertThat(MaterializedAttention.blockRows(8, 256, 256, 16)).isEqualTo(32);   // 16 threads: 64 tasks
        assertThat(MaterializedAttention.blockRows(1, 100, 50, 3)).isEqualTo(32);     // never under 32 rows
        assertThat(MaterializedAttention.blockRows(1, 10, 50, 3)).isEqualTo(10);      // nor over Nq
    }

    private static void assertClose(String name, float[] actual, int offset, double[] expected, double tol) {
        double scale = Math.max(1, maxAbs(expected));
        assertThat(maxAbsDiff(actual, offset, expected) / scale).as("%s: max |materialized - ref| / max(1, max|ref|)", name)
                .isLessThanOrEqualTo(tol);
    }
}
