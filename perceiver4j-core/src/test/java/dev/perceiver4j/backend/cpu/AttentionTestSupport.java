package dev.perceiver4j.backend.cpu;

import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.backend.cpu.ref.RefAttention;

import java.util.Random;

/** Random inputs and array helpers shared by the attention tests. */
final class AttentionTestSupport {

    private AttentionTestSupport() {}

    /** Inputs rounded to float (q, k in [-2, 2), v and the output gradient g in [-1, 1)) and the double oracle's outputs and gradients. */
    record Reference(double[] q, double[] k, double[] v, double[] g, double[] out, double[] lse, double[] dq, double[] dk, double[] dv) {}

    /** Random inputs for {@code s} and what {@link RefAttention} makes of them (forward, and backward from g). */
    static Reference reference(AttentionShape s, Random rnd, boolean[] pad) {
        double[] q = roundToFloat(random(rnd, s.qSize(), 2.0)), k = roundToFloat(random(rnd, s.kSize(), 2.0));
        double[] v = roundToFloat(random(rnd, s.vSize(), 1.0)), g = roundToFloat(random(rnd, s.outSize(), 1.0));
        double[] out = new double[s.outSize()], lse = new double[s.lseSize()];
        RefAttention.forward(s, q, k, v, pad, out, lse);
        double[] dq = new double[s.qSize()], dk = new double[s.kSize()], dv = new double[s.vSize()];
        RefAttention.backward(s, q, k, v, pad, out, lse, g, dq, dk, dv);
        return new Reference(q, k, v, g, out, lse, dq, dk, dv);
    }

    /** Uniform values in [-amplitude, amplitude). */
    static double[] random(Random rnd, int n, double amplitude) {
        double[] a = new double[n];
        for (int i = 0; i < n; i++) a[i] = (2 * rnd.nextDouble() - 1) * amplitude;
        return a;
    }

    /**
     * Key padding for {@code batch} rows of {@code nk} keys: row 0 is left-padded by a third of its
     * keys, row 1 (when present) is fully padded, later rows are padded at the left by one key.
     */
    static boolean[] leftPadding(int batch, int nk) {
        boolean[] pad = new boolean[batch * nk];
        for (int b = 0; b < batch; b++) {
            int padded = b == 0 ? nk / 3 : b == 1 ? nk : Math.min(1, nk - 1);
            for (int j = 0; j < padded; j++) pad[b * nk + j] = true;
        }
        return pad;
    }

    static float[] toFloat(double[] a, int offset, int extra) {
        float[] f = new float[offset + a.length + extra];
        for (int i = 0; i < a.length; i++) f[offset + i] = (float) a[i];
        return f;
    }

    /** Rounds through float, so the double oracle sees exactly the inputs the float kernel sees. */
    static double[] roundToFloat(double[] a) {
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = (float) a[i];
        return r;
    }

    static double maxAbs(double[] a) {
        double m = 0;
        for (double x : a) if (Double.isFinite(x)) m = Math.max(m, Math.abs(x));
        return m;
    }

    /** max_i |f[offset + i] - ref[i]|; infinite when the two disagree on a non-finite value. */
    static double maxAbsDiff(float[] f, int offset, double[] ref) {
        double m = 0;
        for (int i = 0; i < ref.length; i++) {
            double x = f[offset + i], y = ref[i];
            if (x == y) continue; // also equal infinities
            double d = Math.abs(x - y);
            if (Double.isNaN(d)) return Double.POSITIVE_INFINITY;
            m = Math.max(m, d);
        }
        return m;
    }
}
