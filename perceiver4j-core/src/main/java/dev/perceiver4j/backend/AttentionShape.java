package dev.perceiver4j.backend;

/**
 * Shape and options of one multi-head scaled-dot-product attention call.
 *
 * <p>Layout (no head transposes: rows are tokens, heads are contiguous column groups):
 * <pre>
 *   q   [batch, nq, heads*dqk]   element (b,i,h,c) at (b*nq + i)*heads*dqk + h*dqk + c
 *   k   [batch, nk, heads*dqk]
 *   v   [batch, nk, heads*dv]
 *   out [batch, nq, heads*dv]
 *   lse [batch, heads, nq]       log-sum-exp of the scaled scores of each query row
 * </pre>
 *
 * <p>{@code causal} is right-aligned: query {@code i} may attend key {@code j} only if
 * {@code j <= i + (nk - nq)}, so it needs {@code nq <= nk}. {@code dropout} is the probability of
 * dropping an attention probability; the mask is drawn from Philox at
 * {@code (seed, stream, ((b*heads + h)*nq + i)*nk + j)}.
 *
 * <p>The size helpers throw {@link ArithmeticException} when a count does not fit in an {@code int}.
 */
public record AttentionShape(int batch, int heads, int nq, int nk, int dqk, int dv, float scale,
                             boolean causal, float dropout, long seed, long stream) {

    public AttentionShape {
        requirePositive("batch", batch);
        requirePositive("heads", heads);
        requirePositive("nq", nq);
        requirePositive("nk", nk);
        requirePositive("dqk", dqk);
        requirePositive("dv", dv);
        if (!Float.isFinite(scale)) {
            throw new IllegalArgumentException("scale must be finite, got " + scale);
        }
        if (!(dropout >= 0f && dropout < 1f)) {
            throw new IllegalArgumentException("dropout must be in [0, 1), got " + dropout);
        }
        if (causal && nq > nk) {
            throw new IllegalArgumentException(
                    "causal attention needs nq <= nk (right-aligned mask), got nq=" + nq + ", nk=" + nk);
        }
    }

    /** No dropout, no causal mask, scale 1/sqrt(dqk). */
    public static AttentionShape of(int batch, int heads, int nq, int nk, int dqk, int dv) {
        return new AttentionShape(batch, heads, nq, nk, dqk, dv, (float) (1.0 / Math.sqrt(dqk)),
                false, 0f, 0L, 0L);
    }

    private static void requirePositive(String name, int value) {
        if (value <= 0) throw new IllegalArgumentException(name + " must be positive, got " + value);
    }

    /** Elements of q: batch*nq*heads*dqk. */
    public int qSize() {
        return Math.multiplyExact(Math.multiplyExact(batch, nq), Math.multiplyExact(heads, dqk));
    }

    /** Elements of k: batch*nk*heads*dqk. */
    public int kSize() {
        return Math.multiplyExact(Math.multiplyExact(batch, nk), Math.multiplyExact(heads, dqk));
    }

    /** Elements of v: batch*nk*heads*dv. */
    public int vSize() {
        return Math.multiplyExact(Math.multiplyExact(batch, nk), Math.multiplyExact(heads, dv));
    }

    /** Elements of out: batch*nq*heads*dv. */
    public int outSize() {
        return Math.multiplyExact(Math.multiplyExact(batch, nq), Math.multiplyExact(heads, dv));
    }

    /** Elements of lse: batch*heads*nq. */
    public int lseSize() {
        return Math.multiplyExact(Math.multiplyExact(batch, heads), nq);
    }

    /** Elements of keyPad (when given): batch*nk. */
    public int keyPadSize() {
        return Math.multiplyExact(batch, nk);
    }

    /** Offset between query i's allowed-key bound and i under the causal mask: nk - nq. */
    public int causalShift() {
        return nk - nq;
    }

    /**
     * Exclusive end of the keys that query {@code i} may attend by position alone
     * ({@code nk} when not causal; at most {@code i + nk - nq + 1} when causal).
     */
    public int keyLimit(int i) {
        return causal ? Math.min(nk, i + causalShift() + 1) : nk;
    }

    /** Flat index of the dropout decision for (b, h, i, j). */
    public long dropoutIndex(int b, int h, int i, int j) {
        return ((long) ((b * heads + h) * nq + i)) * nk + j;
    }

    /** Forward FLOPs by the convention 2*nq*nk*(dqk+dv) per (batch, head) pair (mask not subtracted). */
    public double forwardFlops() {
        return 2.0 * batch * heads * nq * nk * (double) (dqk + dv);
    }
}
