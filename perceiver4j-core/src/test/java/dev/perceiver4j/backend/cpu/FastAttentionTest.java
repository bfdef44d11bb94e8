package dev.perceiver4j.backend.cpu;

import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.backend.cpu.fast.FastAttention;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static dev.perceiver4j.backend.cpu.AttentionTestSupport.leftPadding;
import static dev.perceiver4j.backend.cpu.AttentionTestSupport.maxAbs;
import static dev.perceiver4j.backend.cpu.AttentionTestSupport.maxAbsDiff;
import static dev.perceiver4j.backend.cpu.AttentionTestSupport.random;
import static dev.perceiver4j.backend.cpu.AttentionTestSupport.toFloat;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The fused float kernel against the double reference.
 *
 * <p>Tolerance: inputs are rounded to float first, so the reference sees the same numbers and
 * the difference is float arithmetic alone. Each score is a float dot product of at most 64
 * terms (relative error ~ 64 * 2^-24 ~ 4e-6 in the worst case, ~5e-7 typically), exp turns an
 * absolute score error into a relative probability error of the same size, and out/dq/dk/dv are
 * sums of up to ~100 such terms of mixed sign, each rounding once more. With inputs of magnitude
 * ~1 this gives errors around 1e-6 of the array's largest magnitude (observed maximum over all
 * cases: 5.4e-7 forward, 5.9e-7 for dq, the first gradient checked); we allow {@value #FWD_TOL}
 * (forward) and {@value #BWD_TOL} (backward, which chains two more float dot products and sums
 * over both Nq and Nk) of max(1, max |reference|) per array, 20-50x above what was observed and
 * far below what a real bug produces (off-by-one mutations of the causal bound or of the dropout
 * index gave 0.2 or more).
 */
class FastAttentionTest {

    static final double FWD_TOL = 1e-5;
    static final double BWD_TOL = 3e-5;

    private static final CpuPool[] POOLS = new CpuPool[4];

    @BeforeAll
    static void startPools() {
        for (int t = 1; t <= 3; t++) POOLS[t] = CpuPool.create(t);
    }

    @AfterAll
    static void stopPools() {
        for (int t = 1; t <= 3; t++) POOLS[t].close();
    }

    enum Pad { NONE, LEFT }

    record Case(String label, AttentionShape shape, Pad pad, int threads, int offset) {
        @Override
        public String toString() {
            AttentionShape s = shape;
            return label + " B" + s.batch() + " H" + s.heads() + " Nq" + s.nq() + " Nk" + s.nk() + " Dqk" + s.dqk()
                    + " Dv" + s.dv() + (s.causal() ? " causal" : "") + (s.dropout() > 0 ? " p=" + s.dropout() : "")
                    + (pad == Pad.LEFT ? " padded" : "") + " t" + threads + " off" + offset;
        }
    }

    static List<Case> cases() {
        List<Case> cases = new ArrayList<>();
        int[][] dims = { // B, H, Nq, Nk, Dqk, Dv
                {1, 1, 1, 1, 1, 1},
                {2, 3, 5, 7, 3, 5},
                {1, 2, 17, 33, 16, 24},
                {2, 8, 12, 40, 8, 8},
                {1, 4, 64, 64, 32, 32},
                {1, 2, 16, 100, 64, 64},
                {3, 2, 70, 131, 19, 21},   // odd head dims (vector tails), tiles not dividing Nq/Nk
                {2, 1, 33, 65, 17, 33},
                {2, 2, 37, 70, 32, 160},   // the language-perceiver head sizes: Dv spans 10 vectors
        };
        int n = 0;
        for (int[] d : dims) {
            boolean canCausal = d[2] <= d[3];
            for (boolean causal : canCausal ? new boolean[] {false, true} : new boolean[] {false}) {
                for (float p : new float[] {0f, 0.1f, 0.5f}) {
                    for (Pad pad : Pad.values()) {
                        int threads = 1 + n % 3;
                        int offset = (n % 4) * 5; // 0, 5, 10, 15: unaligned starts
                        n++;
                        AttentionShape s = new AttentionShape(d[0], d[1], d[2], d[3], d[4], d[5],
                                (float) (1 / Math.sqrt(d[4])), causal, p, 42L + n, n % 3);
                        cases.add(new Case("case" + n, s, pad, threads, offset));
                    }
                }
            }
        }
        return cases;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void matchesReference(Case c) {
        AttentionShape s = c.shape();
        boolean[] pad = c.pad() == Pad.LEFT ? leftPadding(s.batch(), s.nk()) : null;
        AttentionTestSupport.Reference ref = AttentionTestSupport.reference(s, new Random(c.label().hashCode()), pad);
        double[] refOut = ref.out(), refLse = ref.lse(), rdq = ref.dq(), rdk = ref.dk(), rdv = ref.dv();

        int o = c.offset();
        float[] fq = toFloat(ref.q(), o, 3), fk = toFloat(ref.k(), o + 1, 2), fv = toFloat(ref.v(), o + 2, 1), fg = toFloat(ref.g(), o, 0);
        float[] out = new float[o + s.outSize() + 4];
        float[] lse = new float[o + s.lseSize() + 1];
        CpuPool pool = POOLS[c.threads()];
        FastAttention.forward(pool, s, fq, o, fk, o + 1, fv, o + 2, pad, out, o, lse, o);

        assertClose("out", out, o, refOut, FWD_TOL);
        assertClose("lse", lse, o, refLse, FWD_TOL);

        // Gradients accumulate: start from a known non-zero value and subtract it afterwards.
        float[] dq = filled(o + s.qSize(), 0.25f), dk = filled(o + s.kSize() + 3, -0.5f), dv = filled(o + s.vSize(), 1f);
        FastAttention.backward(pool, s, fq, o, fk, o + 1, fv, o + 2, pad, out, o, lse, o, fg, o,
                dq, o, dk, o + 3, dv, o);
        if (o > 0) assertThat(dq[o - 1]).as("dq before its offset is untouched").isEqualTo(0.25f);
        assertClose("dq", shifted(dq, 0.25f), o, rdq, BWD_TOL);
        assertClose("dk", shifted(dk, -0.5f), o + 3, rdk, BWD_TOL);
        assertClose("dv", shifted(dv, 1f), o, rdv, BWD_TOL);
    }

    @Test
    void fullyMaskedRowsGiveZerosAndNoNaN() {
        // Causal and left padding: the first queries of batch row 0 see only padded keys.
        AttentionShape s = new AttentionShape(2, 2, 6, 6, 4, 5, 0.5f, true, 0.2f, 1, 2);
        Random rnd = new Random(1);
        float[] q = toFloat(random(rnd, s.qSize(), 1), 0, 0), k = toFloat(random(rnd, s.kSize(), 1), 0, 0);
        float[] v = toFloat(random(rnd, s.vSize(), 1), 0, 0), g = toFloat(random(rnd, s.outSize(), 1), 0, 0);
        boolean[] pad = leftPadding(s.batch(), s.nk()); // row 0: keys 0,1 padded; row 1: all padded
        float[] out = filled(s.outSize(), Float.NaN), lse = new float[s.lseSize()];
        FastAttention.forward(POOLS[2], s, q, 0, k, 0, v, 0, pad, out, 0, lse, 0);
        float[] dq = new float[s.qSize()], dk = new float[s.kSize()], dv = new float[s.vSize()];
        FastAttention.backward(POOLS[2], s, q, 0, k, 0, v, 0, pad, out, 0, lse, 0, g, 0, dq, 0, dk, 0, dv, 0);
        for (float x : out) assertThat(x).isNotNaN();
        for (float[] a : new float[][] {dq, dk, dv}) for (float x : a) assertThat(x).isFinite();
        // batch 0, head 0, queries 0 and 1: only padded keys allowed
        assertThat(lse[0]).isEqualTo(Float.NEGATIVE_INFINITY);
        assertThat(lse[1]).isEqualTo(Float.NEGATIVE_INFINITY);
        assertThat(lse[2]).isFinite();
        for (int c = 0; c < s.heads() * s.dv(); c++) assertThat(out[c]).isZero();
        // batch 1 fully padded: zeros and -inf everywhere, no gradient into its q, k, v
        for (int t = s.outSize() / 2; t < s.outSize(); t++) assertThat(out[t]).isZero();
        for (int t = s.lseSize() / 2; t < s.lseSize(); t++) assertThat(lse[t]).isEqualTo(Float.NEGATIVE_INFINITY);
        for (int t = s.qSize() / 2; t < s.qSize(); t++) assertThat(dq[t]).isZero();
        for (int t = s.kSize() / 2; t < s.kSize(); t++) assertThat(dk[t]).isZero();
    }

    /**
     * 1, 2 and 3 threads agree: the (b, h)-parallel schedule and, with B*H < threads, the split
     * dk/dv + dq backward schedule. Not compared bitwise: a Vector API lane reduction or EXP may
     * round differently in interpreted and JIT-compiled code, so repeated calls can differ in the
     * last bit; 1e-6 relative is far below any scheduling mistake (a lost or doubled contribution).
     */
    @ParameterizedTest
    @MethodSource("threadShapes")
    void resultsAgreeAcrossThreadCounts(AttentionShape s) {
        Random rnd = new Random(2);
        float[] q = toFloat(random(rnd, s.qSize(), 1), 0, 0), k = toFloat(random(rnd, s.kSize(), 1), 0, 0);
        float[] v = toFloat(random(rnd, s.vSize(), 1), 0, 0), g = toFloat(random(rnd, s.outSize(), 1), 0, 0);
        float[][] first = null;
        for (int t = 1; t <= 3; t++) {
            float[] out = new float[s.outSize()], lse = new float[s.lseSize()];
            FastAttention.forward(POOLS[t], s, q, 0, k, 0, v, 0, null, out, 0, lse, 0);
            float[] dq = new float[s.qSize()], dk = new float[s.kSize()], dv = new float[s.vSize()];
            FastAttention.backward(POOLS[t], s, q, 0, k, 0, v, 0, null, out, 0, lse, 0, g, 0, dq, 0, dk, 0, dv, 0);
            float[][] all = {out, lse, dq, dk, dv};
            if (first == null) first = all;
            else for (int a = 0; a < all.length; a++) assertAgree(all[a], first[a], "array " + a + ", " + t + " threads");
        }
    }

    static List<AttentionShape> threadShapes() {
        return List.of(
                new AttentionShape(2, 3, 50, 90, 16, 20, 0.25f, true, 0.3f, 9, 1),  // 6 pairs >= threads
                new AttentionShape(1, 1, 70, 131, 16, 20, 0.25f, true, 0.3f, 9, 1), // 1 pair: split schedule
                new AttentionShape(1, 2, 45, 200, 8, 40, 0.3f, false, 0f, 0, 0));   // 2 pairs, 3 threads split
    }

    @Test
    void argumentChecksNameTheArray() {
        AttentionShape s = AttentionShape.of(1, 2, 3, 4, 5, 6);
        float[] q = new float[s.qSize()], k = new float[s.kSize()], v = new float[s.vSize()];
        float[] out = new float[s.outSize()], lse = new float[s.lseSize()];
        assertThatThrownBy(() -> FastAttention.forward(POOLS[1], s, q, 1, k, 0, v, 0, null, out, 0, lse, 0))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("q: required length " + (s.qSize() + 1))
                .hasMessageContaining("actual " + s.qSize());
        assertThatThrownBy(() -> FastAttention.forward(POOLS[1], s, q, 0, k, 0, new float[5], 0, null, out, 0, lse, 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageStartingWith("v:");
        assertThatThrownBy(() -> FastAttention.forward(POOLS[1], s, q, 0, k, 0, v, 0, null, out, 0, new float[2], 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageStartingWith("lse:");
        assertThatThrownBy(() -> FastAttention.forward(POOLS[1], s, q, 0, k, 0, v, 0, new boolean[3], out, 0, lse, 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageStartingWith("keyPad:");
        assertThatThrownBy(() -> FastAttention.backward(POOLS[1], s, q, 0, k, 0, v, 0, null, out, 0, lse, 0,
                out, 0, q, 0, new float[1], 0, v, 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageStartingWith("dk:");
    }

    // ------------------------------------------------------------------------------------------

    private static void assertAgree(float[] actual, float[] expected, String what) {
        double scale = 1, diff = 0;
        for (int i = 0; i < expected.length; i++) {
            if (Float.isFinite(expected[i])) scale = Math.max(scale, Math.abs(expected[i]));
            if (actual[i] != expected[i]) diff = Math.max(diff, Math.abs((double) actual[i] - expected[i])); // NaN fails
        }
        assertThat(diff / scale).as(what).isLessThanOrEqualTo(1e-6);
    }

    private static float[] filled(int n, float x) {
        float[] a = new float[n];
        Arrays.fill(a, x);
        return a;
    }

    private static float[] shifted(float[] a, float minus) {
        float[] r = new float[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i] - minus;
        return r;
    }

    private static void assertClose(String name, float[] actual, int offset, double[] expected, double tol) {
        double scale = Math.max(1, maxAbs(expected));
        double diff = maxAbsDiff(actual, offset, expected);
        assertThat(diff / scale).as("%s: max |fast - ref| / max(1, max|ref|) (max|ref| = %s)", name, scale)
                .isLessThanOrEqualTo(tol);
    }
}
