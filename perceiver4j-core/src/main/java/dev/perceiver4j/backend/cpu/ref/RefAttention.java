package dev.perceiver4j.backend.cpu.ref;

import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.random.Philox;

/**
 * Scalar double-precision scaled-dot-product attention: the oracle the fast kernels are tested
 * against. It materialises the full score matrix of each (batch, head) pair and favours
 * obviousness over speed. Layout and semantics are those of {@link AttentionShape}; all arrays
 * start at offset 0 and have exactly the sizes the shape gives.
 */
public final class RefAttention {

    private RefAttention() {}

    /** Writes out [B, Nq, H*Dv] and lse [B, H, Nq]. */
    public static void forward(AttentionShape s, double[] q, double[] k, double[] v, boolean[] keyPad,
                               double[] out, double[] lse) {
        checkSizes(s, q, k, v, keyPad);
        requireLength("out", out, s.outSize());
        requireLength("lse", lse, s.lseSize());
        for (int b = 0; b < s.batch(); b++) {
            for (int h = 0; h < s.heads(); h++) {
                Head hd = new Head(s, b, h, q, k, keyPad);
                for (int i = 0; i < s.nq(); i++) {
                    lse[(b * s.heads() + h) * s.nq() + i] = hd.lse[i];
                    for (int c = 0; c < s.dv(); c++) {
                        double acc = 0;
                        for (int j = 0; j < s.nk(); j++) acc += hd.pDropped(i, j) * v[hd.vIndex(j, c)];
                        out[hd.outIndex(i, c)] = acc;
                    }
                }
            }
        }
    }

    /**
     * Adds the gradients of a loss with gradient {@code dOut} w.r.t. out into dq, dk, dv.
     * {@code out} and {@code lse} are accepted for symmetry with the fast kernel but recomputed here.
     */
    public static void backward(AttentionShape s, double[] q, double[] k, double[] v, boolean[] keyPad,
                                double[] out, double[] lse, double[] dOut,
                                double[] dq, double[] dk, double[] dv) {
        checkSizes(s, q, k, v, keyPad);
        requireLength("dOut", dOut, s.outSize());
        requireLength("dq", dq, s.qSize());
        requireLength("dk", dk, s.kSize());
        requireLength("dv", dv, s.vSize());
        int nq = s.nq(), nk = s.nk();
        for (int b = 0; b < s.batch(); b++) {
            for (int h = 0; h < s.heads(); h++) {
                Head hd = new Head(s, b, h, q, k, keyPad);
                // dP'[i][j] = dOut_i . v_j   (gradient w.r.t. the dropped probabilities)
                // dP[i][j]  = dP'[i][j] * m_ij (gradient w.r.t. the softmax output)
                double[][] dp = new double[nq][nk];
                for (int i = 0; i < nq; i++) {
                    for (int j = 0; j < nk; j++) {
                        double dot = 0;
                        for (int c = 0; c < s.dv(); c++) dot += dOut[hd.outIndex(i, c)] * v[hd.vIndex(j, c)];
                        dp[i][j] = dot * hd.dropMultiplier(i, j);
                    }
                }
                // dv_j += sum_i P'_ij dOut_i
                for (int j = 0; j < nk; j++) {
                    for (int c = 0; c < s.dv(); c++) {
                        double acc = 0;
                        for (int i = 0; i < nq; i++) acc += hd.pDropped(i, j) * dOut[hd.outIndex(i, c)];
                        dv[hd.vIndex(j, c)] += acc;
                    }
                }
                // softmax backward: dS_ij = P_ij (dP_ij - sum_l P_il dP_il); scores carry the scale.
                double[][] ds = new double[nq][nk];
                for (int i = 0; i < nq; i++) {
                    double rowDot = 0;
                    for (int j = 0; j < nk; j++) rowDot += hd.p[i][j] * dp[i][j];
                    for (int j = 0; j < nk; j++) ds[i][j] = hd.p[i][j] * (dp[i][j] - rowDot) * s.scale();
                }
                for (int i = 0; i < nq; i++) {
                    for (int c = 0; c < s.dqk(); c++) {
                        double acc = 0;
                        for (int j = 0; j < nk; j++) acc += ds[i][j] * k[hd.kIndex(j, c)];
                        dq[hd.qIndex(i, c)] += acc;
                    }
                }
                for (int j = 0; j < nk; j++) {
                    for (int c = 0; c < s.dqk(); c++) {
                        double acc = 0;
                        for (int i = 0; i < nq; i++) acc += ds[i][j] * q[hd.qIndex(i, c)];
                        dk[hd.kIndex(j, c)] += acc;
                    }
                }
            }
        }
    }

    /** True where query i of batch row b may attend key j (causal bound and key padding). */
    public static boolean allowed(AttentionShape s, boolean[] keyPad, int b, int i, int j) {
        if (s.causal() && j > i + (s.nk() - s.nq())) return false;
        return keyPad == null || !keyPad[b * s.nk() + j];
    }

    /** Probabilities and dropout multipliers of one (batch, head) pair, materialised. */
    private static final class Head {
        final AttentionShape s;
        final int b, h;
        final double[][] p;      // softmax probabilities [nq][nk], 0 where masked
        final double[][] mult;   // dropout multipliers [nq][nk]: 0 or 1/(1-p_drop); all 1 without dropout
        final double[] lse;      // [nq], -inf for a row with no allowed key

        Head(AttentionShape s, int b, int h, double[] q, double[] k, boolean[] keyPad) {
            this.s = s;
            this.b = b;
            this.h = h;
            int nq = s.nq(), nk = s.nk();
            p = new double[nq][nk];
            mult = new double[nq][nk];
            lse = new double[nq];
            double keepScale = 1.0 / (1.0 - s.dropout());
            for (int i = 0; i < nq; i++) {
                double[] scores = new double[nk];
                double max = Double.NEGATIVE_INFINITY;
                for (int j = 0; j < nk; j++) {
                    if (!allowed(s, keyPad, b, i, j)) {
                        scores[j] = Double.NEGATIVE_INFINITY;
                        continue;
                    }
                    double dot = 0;
                    for (int c = 0; c < s.dqk(); c++) dot += q[qIndex(i, c)] * k[kIndex(j, c)];
                    scores[j] = s.scale() * dot;
                    max = Math.max(max, scores[j]);
                }
                if (max == Double.NEGATIVE_INFINITY) {
                    lse[i] = Double.NEGATIVE_INFINITY; // no allowed key: p row stays 0
                    continue;
                }
                double sum = 0;
                for (int j = 0; j < nk; j++) sum += Math.exp(scores[j] - max);
                lse[i] = max + Math.log(sum);
                for (int j = 0; j < nk; j++) {
                    p[i][j] = Math.exp(scores[j] - lse[i]);
                    mult[i][j] = s.dropout() == 0f ? 1.0
                            : Philox.keep(s.seed(), s.stream(), s.dropoutIndex(b, h, i, j), s.dropout()) ? keepScale : 0.0;
                }
            }
        }

        double pDropped(int i, int j) {
            return p[i][j] * mult[i][j];
        }

        double dropMultiplier(int i, int j) {
            return mult[i][j];
        }

        int qIndex(int i, int c) {
            return (b * s.nq() + i) * s.heads() * s.dqk() + h * s.dqk() + c;
        }

        int kIndex(int j, int c) {
            return (b * s.nk() + j) * s.heads() * s.dqk() + h * s.dqk() + c;
        }

        int vIndex(int j, int c) {
            return (b * s.nk() + j) * s.heads() * s.dv() + h * s.dv() + c;
        }

        int outIndex(int i, int c) {
            return (b * s.nq() + i) * s.heads() * s.dv() + h * s.dv() + c;
        }
    }

    private static void checkSizes(AttentionShape s, double[] q, double[] k, double[] v, boolean[] keyPad) {
        requireLength("q", q, s.qSize());
        requireLength("k", k, s.kSize());
        requireLength("v", v, s.vSize());
        if (keyPad != null && keyPad.length != s.keyPadSize()) {
            throw new IllegalArgumentException(
                    "keyPad: required length " + s.keyPadSize() + ", actual " + keyPad.length);
        }
    }

    private static void requireLength(String name, double[] a, int required) {
        if (a == null) throw new IllegalArgumentException(name + " is null");
        if (a.length != required) {
            throw new IllegalArgumentException(name + ": required length " + required + ", actual " + a.length);
        }
    }
}
