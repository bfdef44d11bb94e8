package dev.perceiver4j.backend.cpu.gemm;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

/** Shared randomized comparison of an {@link Sgemm} against {@link NaiveSgemm}. */
final class SgemmChecks {

    /** {m, n, k} triples: degenerate, odd, tail-heavy, and block-boundary-crossing sizes. */
    static final int[][] SHAPES = {
            {1, 1, 1}, {7, 13, 5}, {33, 17, 129}, {100, 1, 300}, {1, 300, 100},
            {255, 257, 63}, {256, 512, 128}, {5, 70, 600}, {200, 33, 1}, {3, 3, 257},
    };

    private static final Sgemm ORACLE = new NaiveSgemm();

    private SgemmChecks() {
    }

    /**
     * Runs every shape x transpose combination x beta in {0, 1, 0.5} through {@code impl} and the
     * oracle, on padded leading dimensions and nonzero offsets, with alpha = 1.5 (alpha = 1 for one
     * pass). Returns the number of products checked.
     */
    static int compareAll(Sgemm impl, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        int checked = 0;
        for (int[] s : SHAPES) {
            for (int combo = 0; combo < 4; combo++) {
                boolean ta = (combo & 1) != 0, tb = (combo & 2) != 0;
                for (float beta : new float[] {0f, 1f, 0.5f}) {
                    float alpha = beta == 1f ? 1f : 1.5f;
                    int pad = rnd.nextInt(4); // 0..3 extra floats per stored row
                    compare(impl, ta, tb, s[0], s[1], s[2], alpha, beta, pad, rnd);
                    checked++;
                }
            }
        }
        return checked;
    }

    /** One product: op(A) m x k, op(B) k x n, leading dimensions padded by {@code pad}, random offsets. */
    static void compare(Sgemm impl, boolean ta, boolean tb, int m, int n, int k, float alpha, float beta,
                        int pad, SplittableRandom rnd) {
        int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
        int aRows = ta ? k : m, bRows = tb ? n : k;
        int aOff = rnd.nextInt(5), bOff = rnd.nextInt(5), cOff = rnd.nextInt(5);
        float[] a = random(aOff + aRows * lda + 3, rnd);
        float[] b = random(bOff + bRows * ldb + 3, rnd);
        float[] c0 = random(cOff + m * ldc + 3, rnd);
        if (beta == 0f) {
            // beta == 0 must overwrite C: NaN / Inf garbage there must not leak into the result.
            for (int i = 0; i < c0.length; i += 3) c0[i] = i % 2 == 0 ? Float.NaN : Float.POSITIVE_INFINITY;
        }
        float[] expected = c0.clone();
        float[] actual = c0.clone();
        ORACLE.sgemm(ta, tb, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, expected, cOff, ldc);
        impl.sgemm(ta, tb, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, actual, cOff, ldc);

        String where = impl.name() + " transA=" + ta + " transB=" + tb + " m=" + m + " n=" + n + " k=" + k
                + " alpha=" + alpha + " beta=" + beta + " pad=" + pad;
        List<String> bad = new ArrayList<>();
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                int ci = cOff + i * ldc + j;
                // Error bound. A float32 dot product of k terms computed in any summation order (blocked,
                // FMA-fused, vector-lane partial sums) has |error| <= ~k*eps*sum|a_ip*b_pj| in the worst
                // case and ~sqrt(k)*eps*sum|..| typically (eps = 2^-24 ~ 6e-8). The oracle sums in double,
                // so its error is negligible. With k <= 600, 1e-5 * sum|terms| (~170 eps) covers the
                // typical case by a wide margin and is tight enough to catch a single wrong or missing
                // term (each term is ~1/k of the sum, far above 1e-5). alpha and beta*C add a few ulps
                // of |result|, covered by the relative term on the magnitudes and the 1e-6 floor.
                double mag = 0;
                for (int p = 0; p < k; p++) {
                    float x = ta ? a[aOff + p * lda + i] : a[aOff + i * lda + p];
                    float y = tb ? b[bOff + j * ldb + p] : b[bOff + p * ldb + j];
                    mag += Math.abs((double) x * y);
                }
                double tol = 1e-5 * (Math.abs(alpha) * mag + Math.abs(beta == 0f ? 0 : beta * c0[ci])) + 1e-6;
                double diff = Math.abs((double) expected[ci] - actual[ci]);
                if (!(diff <= tol) && bad.size() < 5) {
                    bad.add("C[" + i + "," + j + "] expected " + expected[ci] + " got " + actual[ci] + " (tol " + tol + ")");
                }
            }
        }
        if (!bad.isEmpty()) fail(where + ": " + bad);
        // Everything outside the m x n window (padding, prefix, suffix) must be untouched.
        for (int idx = 0; idx < c0.length; idx++) {
            int rel = idx - cOff;
            boolean inside = rel >= 0 && rel / ldc < m && rel % ldc < n;
            if (!inside && !(Float.floatToRawIntBits(actual[idx]) == Float.floatToRawIntBits(c0[idx]))) {
                fail(where + ": wrote outside C at index " + idx);
            }
        }
        assertThat(bad).isEmpty();
    }

    static float[] random(int len, SplittableRandom rnd) {
        float[] x = new float[len];
        for (int i = 0; i < len; i++) x[i] = (float) (rnd.nextDouble() * 2 - 1);
        return x;
    }
}
