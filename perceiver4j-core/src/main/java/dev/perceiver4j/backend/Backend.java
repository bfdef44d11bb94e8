package dev.perceiver4j.backend;

import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

/**
 * The small set of fused kernels every model is built from; one implementation per device.
 *
 * <p>Conventions: tensors are row-major and contiguous; outputs are passed in (allocated by the
 * caller, usually from the step {@link dev.perceiver4j.tensor.Scope}); every {@code *Backward}
 * ACCUMULATES into its gradient outputs ({@code dX += ...}), so gradient accumulation and tensors
 * used twice need no extra work, and callers zero gradient buffers explicitly. Forward and
 * backward of an op take the same arguments in the same order, gradients named {@code dX}.
 */
public interface Backend {

    /** Short name for logs, e.g. "cpu (java-vector sgemm, 2 threads)". */
    String name();

    /** Waits until every queued op has finished (asynchronous backends); a no-op on the CPU. */
    default void synchronize() {}

    /**
     * Records the ops {@code body} queues on this backend into a {@link Recording} that can run
     * them again, or returns {@code null} when this backend does not record (the CPU: callers then
     * just run {@code body} each time). The body runs once while recording; on the GPU its ops
     * only queue and execute at the first {@link Recording#replay()}. It must not read values back
     * (toFloatArray, item, synchronize) or upload host data (fromFloats,
     * fromInts, fromBools); tensors it creates are the recording's, and only tensors made before
     * may carry results out.
     */
    default Recording record(Runnable body) {
        return null;
    }

    /**
     * Lines on device memory (reserved, in use, peak) and device-side choices (the CUDA backend's
     * matrix-product tuning) for backends that manage their own; "" on the CPU.
     */
    default String memoryReport() {
        return "";
    }

    // ---- memory ------------------------------------------------------------------------------

    /** Uninitialised tensor; tracked by the current Scope, if one is open. */
    Tensor empty(Shape shape, DType dtype);

    /** Zero-filled tensor; tracked by the current Scope, if one is open. */
    Tensor zeros(Shape shape, DType dtype);

    /** Zero-filled tensor that no Scope will release (parameters, gradients, optimizer state). */
    Tensor persistentZeros(Shape shape, DType dtype);

    /**
     * The dtype {@code F.matmul} hands this backend as the activation operand of a product: F32,
     * or BF16 on a backend that multiplies in bf16 anyway (CUDA in its bf16 mode). F then rounds
     * each activation to bf16 once, shares that copy among every product reading it, and keeps
     * it (half the bytes) for backward. Every backend's matmul accepts either dtype for a and b.
     */
    default DType matmulOperandType() {
        return DType.F32;
    }

    /**
     * {@link #matmulOperandType()} for a product whose result has {@code rows} rows (per batch entry):
     * a backend may take F32 where it would not multiply such a product in bf16 (CUDA's skinny
     * products, one decoding position, run in TF32: a bf16 copy there costs a rounding and a widening
     * kernel and gains nothing). The activations a product reads (layer-norm outputs, MLP hidden
     * states, attention outputs) are stored in this type.
     */
    default DType matmulOperandType(long rows) {
        return matmulOperandType();
    }

    /**
     * Whether {@code F.discard} should give away recomputable activations (layer-norm outputs, MLP
     * hidden states) for backward to rebuild, trading an elementwise pass for their memory: true on
     * the CPU, where memory is the scarcer resource; a GPU that keeps them is faster, still within
     * the memory PyTorch needs (docs/benchmarks.md). {@code -Dperceiver4j.recompute=true|false}
     * overrides every backend's choice.
     */
    default boolean recomputesActivations() {
        return true;
    }

    /** Hands a buffer back to this backend's pool (called by Scope.close). */
    void release(Object buffer);

    /** A tensor on this backend holding a copy of {@code values}. */
    Tensor fromFloats(float[] values, Shape shape);

    /** A tensor on this backend holding a copy of {@code values} (I32). */
    Tensor fromInts(int[] values, Shape shape);

    /** A BOOL tensor on this backend holding {@code values} (true = 1, false = 0). */
    Tensor fromBools(boolean[] values, Shape shape);

    /** dst = values, into an existing I32 tensor of as many elements (no allocation: per-step inputs of a recorded step). */
    void writeInts(int[] values, Tensor dst);

    /** dst = values (true = 1), into an existing BOOL tensor of as many elements. */
    void writeBools(boolean[] values, Tensor dst);

    /** Copy of the contents as floats (any dtype). */
    float[] toFloatArray(Tensor t);

    /** dst = src (same shape, any matching dtype). */
    void copy(Tensor src, Tensor dst);

    /** dst = src converted to dst's dtype (F32↔BF16 round-to-nearest-even, I64→I32 checked, …). */
    void cast(Tensor src, Tensor dst);

    // ---- matrix products ---------------------------------------------------------------------

    /**
     * out = act(op(a) · op(b) + bias). a: [..., M, K] ([..., K, M] if transA); b: [..., K, N]
     * ([..., N, K] if transB) or 2-D (shared by every batch entry); bias: [N] or null; out:
     * [..., M, N]; preAct: [..., M, N] receives op(a)·op(b) + bias when act != NONE (needed by backward),
     * may be null when act == NONE.
     */
    void matmul(Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Activation act, Tensor out, Tensor preAct);

    /**
     * outs[i] = a · ws[i]ᵀ + biases[i] for every i: products of one activation a [..., K] with several
     * nn.Linear weights ws[i] [N_i, K] (the q, k and v projections of self-attention); biases[i] [N_i]
     * or null; outs[i] [..., N_i]. No activation, nothing kept for backward (callers use it without
     * autograd). This default runs the products one by one; a backend may share work between them
     * (the CPU packs a once).
     */
    default void matmulSharedInput(Tensor a, Tensor[] ws, Tensor[] biases, Tensor[] outs) {
        for (int i = 0; i < ws.length; i++) matmul(a, false, ws[i], true, biases[i], Activation.NONE, outs[i], null);
    }

    /**
     * out = residual + op(a) · op(b) + bias (no activation; shapes as {@link #matmul}, residual and out
     * distinct, of out's shape): a product added to a residual stream. This default runs the product,
     * then the add; a backend may fuse them (CUDA: cuBLASLt reads the residual as its C operand).
     */
    default void matmulAdd(Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Tensor residual, Tensor out) {
        matmul(a, transA, b, transB, bias, Activation.NONE, out, null);
        add(out, residual, out);
    }

    /** Gradients of {@link #matmul}; dA, dB, dBias may be null when not wanted. */
    void matmulBackward(Tensor dOut, Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Activation act, Tensor preAct,
                        Tensor dA, Tensor dB, Tensor dBias);

    // ---- normalisation and pointwise ---------------------------------------------------------

    /** Layer norm over the last dim D. x, out: [R, D]; gamma, beta: [D]; mean, rstd: [R] (saved for backward). */
    void layerNorm(Tensor x, Tensor gamma, Tensor beta, float eps, Tensor out, Tensor mean, Tensor rstd);

    void layerNormBackward(Tensor dOut, Tensor x, Tensor gamma, Tensor mean, Tensor rstd, Tensor dX, Tensor dGamma, Tensor dBeta);

    /** out = act(x), any shape (out may be x). */
    void activation(Activation act, Tensor x, Tensor out);

    void activationBackward(Activation act, Tensor x, Tensor dOut, Tensor dX);

    /** out = a + b, b broadcast over leading dims (b.numel divides a.numel). */
    void add(Tensor a, Tensor b, Tensor out);

    /** out = a ∘ b, b broadcast over leading dims. */
    void mul(Tensor a, Tensor b, Tensor out);

    /** out = alpha · x. */
    void scale(Tensor x, float alpha, Tensor out);

    /** y += alpha · x (same numel). */
    void axpy(float alpha, Tensor x, Tensor y);

    /** Sets every element to v. */
    void fill(Tensor x, float v);

    /**
     * out[0] = sqrt(Σ x²), summed in double precision (gradient-norm clipping). out: F32 [1]; the
     * value stays where the backend keeps it (a GPU does not wait: read it with {@code item()}).
     */
    void l2Norm(Tensor x, Tensor out);

    /**
     * x *= maxNorm / (norm[0] + 1e-6) when norm[0] > maxNorm, else x stays (a NaN norm too).
     * norm: F32 [1], as {@link #l2Norm} writes it; read where it lives, without a host round trip.
     */
    default void clipByNorm(Tensor x, Tensor norm, float maxNorm) {
        float n = norm.item();   // on the CPU a plain read; a GPU backend overrides this to stay on the device
        if (n > maxNorm) scale(x, (float) (maxNorm / (n + 1e-6)), x);
    }

    /** out[j] += Σ_r x[r, j] over the rows of x viewed as [R, N] (N = out.numel). */
    void sumRows(Tensor x, Tensor out);

    /** out = x with random elements zeroed (prob p) and the rest scaled by 1/(1-p); mask from Philox(seed, stream). */
    void dropout(Tensor x, float p, long seed, long stream, Tensor out);

    void dropoutBackward(Tensor dOut, float p, long seed, long stream, Tensor dX);

    /** Softmax over the last dim. */
    void softmax(Tensor x, Tensor out);

    // ---- copies along an axis ----------------------------------------------------------------

    /** dst = src.narrow(axis, start, dst.dim(axis)) (or += when accumulate). */
    void narrow(Tensor src, int axis, int start, Tensor dst, boolean accumulate);

    /** dst.narrow(axis, start, src.dim(axis)) = src (or += when accumulate). */
    void unnarrow(Tensor src, int axis, int start, Tensor dst, boolean accumulate);

    /**
     * dst[rows[i], :] = src[i, :] for every i, the row index read from a tensor (so a recorded
     * step can write where a value it reads says). src: [m, D] (leading dims flattened), rows: I32 [m],
     * dst: [R, D], src and dst of one dtype (any). A row index outside [0, R) is an
     * IllegalArgumentException (on asynchronous backends at the next synchronisation).
     */
    void scatterRows(Tensor src, Tensor rows, Tensor dst);

    // ---- attention ---------------------------------------------------------------------------

    /**
     * Scaled dot-product attention, heads as column groups. q: [B, Nq, H·Dqk], k: [B, Nk, H·Dqk],
     * v: [B, Nk, H·Dv], keyPad: BOOL [B, Nk] (true = padding, masked) or null, out: [B, Nq, H·Dv],
     * lse: F32 [B, H, Nq] (log-sum-exp per query, saved for backward). Causal masks are right
     * aligned (query i sees key j iff j ≤ i + Nk − Nq); dropout acts on the probabilities. q, k and v
     * may be F32 or BF16 (the projections of a bf16-product backend write them as BF16, see
     * {@link #matmulOperandType}); so may out (rounded from the fp32 result; an output only products
     * read), which backward then reads as stored; gradients are F32.
     */
    void attention(AttentionShape s, Tensor q, Tensor k, Tensor v, Tensor keyPad, Tensor out, Tensor lse);

    void attentionBackward(AttentionShape s, Tensor q, Tensor k, Tensor v, Tensor keyPad, Tensor out, Tensor lse,
                           Tensor dOut, Tensor dQ, Tensor dK, Tensor dV);

    /**
     * Whether {@code F} should give a self-attention's q, k and v as one product into one packed
     * tensor for {@link #attentionPacked} (where the three weights lie back to back: a packed
     * parameter slab): one large product instead of two narrow ones and a wide one, forward and
     * backward. False unless a backend gains from it (CUDA in its bf16 mode);
     * {@code -Dperceiver4j.packSelfAttention=true|false} overrides every backend.
     */
    default boolean packsSelfAttention() {
        return false;
    }

    /**
     * Whether this backend's backward ops take BF16 gradients of BF16 activations ({@code F.bf16Gradient}):
     * {@link #matmulBackward} writing dA as BF16 (its only contribution), {@link #matmulBackward} with an
     * activation, {@link #layerNormBackward} and the attention backwards reading a BF16 dOut. False unless
     * a backend implements them (CUDA in its bf16 mode).
     */
    default boolean bf16Gradients() {
        return false;
    }

    /**
     * {@link #attention} (no key padding: self-attention, Nq = Nk) with q, k and v as column ranges of
     * one tensor qkv [B, N, 2·H·Dqk + H·Dv]: q in columns [0, H·Dqk), k in [H·Dqk, 2·H·Dqk), v after
     * them. This default copies the three out and calls {@link #attention}; a backend whose kernels
     * take row strides reads them in place.
     */
    default void attentionPacked(AttentionShape s, Tensor qkv, Tensor out, Tensor lse) {
        Tensor[] p = unpackQkv(s, qkv);
        attention(s, p[0], p[1], p[2], null, out, lse);
    }

    /** Backward of {@link #attentionPacked}: dQkv (F32, qkv's shape) gets dQ, dK and dV added in their column ranges. */
    default void attentionPackedBackward(AttentionShape s, Tensor qkv, Tensor out, Tensor lse, Tensor dOut, Tensor dQkv) {
        Tensor[] p = unpackQkv(s, qkv);
        Tensor[] d = new Tensor[3];
        for (int i = 0; i < 3; i++) d[i] = zeros(p[i].shape(), DType.F32);
        attentionBackward(s, p[0], p[1], p[2], null, out, lse, dOut, d[0], d[1], d[2]);
        int qk = s.heads() * s.dqk();
        for (int i = 0; i < 3; i++) unnarrow(d[i], 2, i * qk, dQkv, true);
    }

    /**
     * {@link #attention} with k and v as column ranges of one tensor kv [B, Nk, H·Dqk + H·Dv] (k in columns
     * [0, H·Dqk), v after them), as one product of the two projections of a cross-attention's input writes
     * them. This default copies the two out and calls {@link #attention}; a backend whose kernels take
     * row strides reads them in place.
     */
    default void attentionKvPacked(AttentionShape s, Tensor q, Tensor kv, Tensor keyPad, Tensor out, Tensor lse) {
        Tensor[] p = unpackKv(s, kv);
        attention(s, q, p[0], p[1], keyPad, out, lse);
    }

    /** Backward of {@link #attentionKvPacked}: dQ (q's shape) and dKv (F32, kv's shape) get dQ and dK, dV added. */
    default void attentionKvPackedBackward(AttentionShape s, Tensor q, Tensor kv, Tensor keyPad, Tensor out, Tensor lse, Tensor dOut,
                                           Tensor dQ, Tensor dKv) {
        Tensor[] p = unpackKv(s, kv);
        Tensor dK = zeros(p[0].shape(), DType.F32), dV = zeros(p[1].shape(), DType.F32);
        attentionBackward(s, q, p[0], p[1], keyPad, out, lse, dOut, dQ, dK, dV);
        unnarrow(dK, 2, 0, dKv, true);
        unnarrow(dV, 2, s.heads() * s.dqk(), dKv, true);
    }

    /** k and v copied out of a packed kv [B, Nk, H·Dqk + H·Dv] (see {@link #attentionKvPacked}). */
    private Tensor[] unpackKv(AttentionShape s, Tensor kv) {
        int qk = s.heads() * s.dqk(), v = s.heads() * s.dv();
        if (kv.rank() != 3 || kv.dim(0) != s.batch() || kv.dim(1) != s.nk() || kv.dim(2) != qk + v) {
            throw new IllegalArgumentException("attentionKvPacked: kv " + kv.describe() + " is not [" + s.batch() + ", " + s.nk() + ", "
                    + (qk + v) + "] for " + s.heads() + " heads of Dqk " + s.dqk() + " / Dv " + s.dv());
        }
        return columnRanges(kv, qk, v);
    }

    /** t [B, N, Σ widths] cut into copies of its consecutive column ranges of these widths. */
    private Tensor[] columnRanges(Tensor t, int... widths) {
        Tensor[] parts = new Tensor[widths.length];
        for (int i = 0, start = 0; i < widths.length; start += widths[i], i++) {
            parts[i] = empty(Shape.of(t.dim(0), t.dim(1), widths[i]), t.dtype());
            narrow(t, 2, start, parts[i], false);
        }
        return parts;
    }

    /** q, k and v copied out of a packed qkv [B, N, 2·H·Dqk + H·Dv] (see {@link #attentionPacked}). */
    private Tensor[] unpackQkv(AttentionShape s, Tensor qkv) {
        int qk = s.heads() * s.dqk(), v = s.heads() * s.dv();
        if (qkv.rank() != 3 || qkv.dim(0) != s.batch() || qkv.dim(1) != s.nq() || s.nq() != s.nk() || qkv.dim(2) != 2 * qk + v) {
            throw new IllegalArgumentException("attentionPacked: qkv " + qkv.describe() + " is not [" + s.batch() + ", " + s.nq() + ", "
                    + (2 * qk + v) + "] for " + s.heads() + " heads of Dqk " + s.dqk() + " / Dv " + s.dv() + " (self-attention)");
        }
        return columnRanges(qkv, qk, qk, v);
    }

    // ---- positions, embeddings, losses -------------------------------------------------------

    /**
     * Rotary position embedding on the first {@code rot} channels of each head, interleaved pairs.
     * x, out: [R, heads·headDim] (out may be x); positions: I32 [R]; invFreq: F32 [rot/2].
     */
    void rotary(Tensor x, Tensor positions, Tensor invFreq, int heads, int rot, Tensor out);

    void rotaryBackward(Tensor dOut, Tensor positions, Tensor invFreq, int heads, int rot, Tensor dX);

    /** out[i, :] = table[ids[i], :]. table: [V, D]; ids: I32 [n]; out: [n, D]. */
    void embedding(Tensor table, Tensor ids, Tensor out);

    void embeddingBackward(Tensor dOut, Tensor ids, Tensor dTable);

    /**
     * Mean softmax cross-entropy over rows whose target is not {@code ignoreIndex}, plus
     * zLoss·mean(lse²) (0 when every row is ignored). logits: [R, V]; targets: I32 [R]; lse: F32 [R]
     * (written); loss: F32 [1] (written; a GPU does not wait for it).
     */
    void crossEntropy(Tensor logits, Tensor targets, int ignoreIndex, float zLoss, Tensor lse, Tensor loss);

    /** dLogits += dLoss[0] · ∂loss/∂logits. dLoss: F32 [1], read where it lives. */
    void crossEntropyBackward(Tensor dLoss, Tensor logits, Tensor targets, int ignoreIndex, float zLoss, Tensor lse, Tensor dLogits);

    // ---- optimizer ---------------------------------------------------------------------------

    /** One AdamW step (decoupled weight decay, bias-corrected moments) over same-shaped tensors. */
    void adamw(Tensor param, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, long step);
}
