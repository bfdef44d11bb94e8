package dev.perceiver4j.autograd;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.util.Arrays;

/**
 * Differentiable ops: each runs its backend kernel and, when gradients are needed, records its
 * backward (the backend's matching {@code *Backward}, accumulating into input gradients) on the
 * tape. Forward and backward of an op sit side by side here.
 *
 * <p>Shape letters: B batch, N sequence, D channels, V vocabulary, R rows (all leading dims).
 */
public final class F {
    private F() {}

    /** {@code -Dperceiver4j.recompute=true|false}: whether {@link #discard} gives away recomputable activations; unset, each backend decides. */
    private static final String RECOMPUTE = System.getProperty("perceiver4j.recompute", "").trim();

    private static boolean grad(Tensor t) {
        return t != null && t.requiresGrad();
    }

    // ---- matrix products ---------------------------------------------------------------------

    /** y = act(x · wᵀ + b). x: [..., Din]; w: [Dout, Din]; b: [Dout] or null → y: [..., Dout]. */
    public static Tensor linear(Tensor x, Tensor w, Tensor b, Activation act) {
        return matmul(x, false, w, true, b, act, DType.F32);
    }

    /** {@link #linear} with its output stored as {@code outType} (F32, or BF16 for an output only products read). */
    public static Tensor linear(Tensor x, Tensor w, Tensor b, Activation act, DType outType) {
        return matmul(x, false, w, true, b, act, outType);
    }

    /**
     * out = act(op(a) · op(b) + bias); see {@link Backend#matmul}. On a backend that multiplies
     * in bf16 ({@link Backend#matmulOperandType}) the activation a is replaced by its bf16 copy
     * ({@link #productOperand}); b (a weight) is the backend's to round.
     */
    public static Tensor matmul(Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Activation act) {
        return matmul(a, transA, b, transB, bias, act, DType.F32);
    }

    /**
     * {@link #matmul} with the output stored as {@code outType}: BF16 for an activation that only
     * products read (an MLP's hidden state on a bf16-product backend), written so by the epilogue
     * instead of copied later. The pre-activation kept for backward is stored the same way (as
     * PyTorch's bf16 autocast keeps it): the activation and its derivative read the rounded values.
     */
    public static Tensor matmul(Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Activation act, DType outType) {
        Backend be = a.backend();
        int[] dims = a.shape().dims();
        int m = transA ? dims[dims.length - 1] : dims[dims.length - 2];
        a = productOperand(a, b.rank() == 2 && !transA ? a.shape().rows() : m);   // the rows of one product (a shared weight: all of a's rows)
        int n = transB ? b.dim(-2) : b.dim(-1);
        dims[dims.length - 2] = m;
        dims[dims.length - 1] = n;
        Shape outShape = Shape.of(dims);
        Tensor out = be.empty(outShape, outType);
        Tensor pre = act == Activation.NONE ? null : be.empty(outShape, outType);
        be.matmul(a, transA, b, transB, bias, act, out, pre);
        if (Autograd.needsGrad(a, b, bias)) {
            Tensor x = a;
            Autograd.record("matmul", out, dOut -> be.matmulBackward(dOut, x.materialize(), transA, b.materialize(), transB, bias, act, pre,
                    grad(x) ? x.gradOrZeros() : null, grad(b) ? b.gradOrZeros() : null, grad(bias) ? bias.gradOrZeros() : null));
            if (pre != null) out.recomputeWith(() -> be.activation(act, pre, out));   // the same act() as the epilogue
        }
        return out;
    }

    /**
     * {@code F.linear(x, ws[i], bs[i], NONE, outType)} for every i: several nn.Linear layers applied to
     * one input (the q, k and v projections of self-attention). Without gradients to record this is
     * one backend call ({@link Backend#matmulSharedInput}: the CPU packs x once and runs the products
     * as one); with them, the products one by one, each recorded as {@link #linear} records it.
     */
    public static Tensor[] linears(Tensor x, Tensor[] ws, Tensor[] bs, DType outType) {
        if (ws.length != bs.length) throw new IllegalArgumentException("linears: " + ws.length + " weights but " + bs.length + " biases");
        Tensor[] outs = new Tensor[ws.length];
        boolean grads = Autograd.needsGrad(x);
        for (int i = 0; i < ws.length; i++) grads |= Autograd.needsGrad(ws[i], bs[i]);
        if (grads) {
            for (int i = 0; i < ws.length; i++) outs[i] = linear(x, ws[i], bs[i], Activation.NONE, outType);
            return outs;
        }
        Backend be = x.backend();
        Tensor a = productOperand(x, x.shape().rows());
        for (int i = 0; i < ws.length; i++) {
            int[] dims = a.shape().dims();
            dims[dims.length - 1] = ws[i].dim(0);
            outs[i] = be.empty(Shape.of(dims), outType);
        }
        be.matmulSharedInput(a, ws, bs, outs);
        return outs;
    }

    /**
     * residual + x · wᵀ + b, as {@code F.add(residual, F.linear(x, w, b, NONE))} in one backend call
     * ({@link Backend#matmulAdd}: fused on the GPU). x: [..., Din]; w: [Dout, Din]; residual: [..., Dout].
     * Backward: the product's gradients from dOut, then dOut goes to the residual (handed over
     * when the residual has no gradient yet).
     */
    public static Tensor linearAdd(Tensor x, Tensor w, Tensor b, Tensor residual) {
        Backend be = x.backend();
        Tensor a = productOperand(x, x.shape().rows());
        if (residual.dim(-1) != w.dim(0) || residual.size() / residual.dim(-1) != a.size() / a.dim(-1)) {
            throw new IllegalArgumentException("linearAdd: residual " + residual.describe() + " does not match " + a.describe() + " · " + w.describe() + "ᵀ");
        }
        Tensor out = be.empty(residual.shape(), DType.F32);
        be.matmulAdd(a, false, w, true, b, residual, out);
        if (Autograd.needsGrad(a, w, b, residual)) {
            Autograd.record("linearAdd", out, dOut -> {
                if (grad(a) || grad(w) || grad(b)) {
                    be.matmulBackward(dOut, a.materialize(), false, w.materialize(), true, b, Activation.NONE, null,
                            grad(a) ? a.gradOrZeros() : null, grad(w) ? w.gradOrZeros() : null, grad(b) ? b.gradOrZeros() : null);
                }
                // after the product read dOut: the residual stream takes its buffer
                if (grad(residual) && !Autograd.handOverGrad(out, residual)) be.axpy(1f, dOut, residual.gradOrZeros());
            });
        }
        return out;
    }

    /**
     * The activation operand of a product with {@code rows} result rows: {@code a} itself, or, when the
     * backend multiplies such a product in bf16 ({@link Backend#matmulOperandType(long)}) and a is an
     * F32 activation of an open scope, a bf16 copy of a (of its base, for a view) made once and
     * shared by every product reading a (q, k and v read the same normed input). The copy
     * is what those products keep for backward; its gradient (F32) is handed to a. It can be
     * rebuilt from a, so {@link #discard} of a discards the copy too. Other tensors (parameters,
     * tensors outside any scope) are rounded by the backend per product.
     */
    static Tensor productOperand(Tensor a, long rows) {
        Backend be = a.backend();
        if (be.matmulOperandType(rows) != DType.BF16 || a.dtype() != DType.F32 || Scope.current() == null || !a.inStepScope()) return a;
        Tensor r = a.root();
        Tensor copy = r.productCopy();
        // a copy made while gradients were off carries none: a product that needs them makes its own
        if (copy == null || (Autograd.needsGrad(r) && !copy.requiresGrad())) {
            Tensor c = be.empty(r.shape(), DType.BF16);
            be.cast(r.materialize(), c);
            if (Autograd.needsGrad(r)) {
                Autograd.record("toBf16", c, dOut -> {
                    if (!Autograd.handOverGrad(c, r)) be.axpy(1f, dOut, r.gradOrZeros());
                });
                c.recomputeWith(() -> be.cast(r.materialize(), c));
            }
            r.cacheProductCopy(c);
            copy = c;
        }
        copy.materialize();
        return a == r ? copy : copy.reshape(a.shape().dims());
    }

    // ---- normalisation and pointwise ---------------------------------------------------------

    /** Layer norm over the last dim. x: [..., D]; gamma, beta: [D]. */
    public static Tensor layerNorm(Tensor x, Tensor gamma, Tensor beta, float eps) {
        return layerNorm(x, gamma, beta, eps, DType.F32);
    }

    /**
     * {@link #layerNorm} with the output stored as {@code outType}: BF16 for a normed input that
     * only products read, on a bf16-product backend (the kernel writes the copy F.matmul would make).
     */
    public static Tensor layerNorm(Tensor x, Tensor gamma, Tensor beta, float eps, DType outType) {
        Backend be = x.backend();
        Tensor out = be.empty(x.shape(), outType);
        Shape rows = Shape.of(x.shape().rows());
        Tensor mean = be.empty(rows, DType.F32), rstd = be.empty(rows, DType.F32);
        be.layerNorm(x, gamma, beta, eps, out, mean, rstd);
        if (Autograd.needsGrad(x, gamma, beta)) {
            Autograd.record("layerNorm", out, dOut -> {
                // The kernel computes all three gradients together; unwanted ones go to scratch.
                Tensor dX = grad(x) ? x.gradOrZeros() : be.zeros(x.shape(), DType.F32);
                Tensor dG = grad(gamma) ? gamma.gradOrZeros() : be.zeros(gamma.shape(), DType.F32);
                Tensor dB = grad(beta) ? beta.gradOrZeros() : be.zeros(beta.shape(), DType.F32);
                be.layerNormBackward(dOut, x.materialize(), gamma, mean, rstd, dX, dG, dB);
            });
            // Backward keeps x, mean and rstd, so the output can be rebuilt instead of kept (F.discard);
            // the kernel is deterministic per row, so mean and rstd are rewritten with the same values.
            out.recomputeWith(() -> be.layerNorm(x.materialize(), gamma, beta, eps, out, mean, rstd));
        }
        return out;
    }

    /** act(x), elementwise. */
    public static Tensor activation(Activation act, Tensor x) {
        Backend be = x.backend();
        Tensor out = be.empty(x.shape(), DType.F32);
        be.activation(act, x, out);
        if (Autograd.needsGrad(x)) {
            Autograd.record("activation", out, dOut -> be.activationBackward(act, x.materialize(), dOut, x.gradOrZeros()));
        }
        return out;
    }

    public static Tensor gelu(Tensor x) {
        return activation(Activation.GELU, x);
    }

    /** a + b, b broadcast over a's leading dims (b's shape is a suffix of a's). */
    public static Tensor add(Tensor a, Tensor b) {
        Backend be = a.backend();
        Tensor out = be.empty(a.shape(), DType.F32);
        be.add(a, b, out);
        if (Autograd.needsGrad(a, b)) {
            Autograd.record("add", out, dOut -> {
                if (grad(b)) accumulateBroadcast(be, dOut, b);
                // a's gradient is often still unallocated here (a residual stream): it takes dOut's buffer.
                if (grad(a) && !Autograd.handOverGrad(out, a)) be.axpy(1f, dOut, a.gradOrZeros());
            });
        }
        return out;
    }

    /**
     * b.grad += Σ over the broadcast copies of g (g has a's shape, b a suffix of it): a column sum,
     * or a plain axpy when b is not broadcast (the residual adds; the same numbers, one kernel).
     */
    private static void accumulateBroadcast(Backend be, Tensor g, Tensor b) {
        if (g.size() == b.size()) be.axpy(1f, g, b.gradOrZeros());
        else be.sumRows(g, b.gradOrZeros());
    }

    /** a ∘ b, b broadcast over a's leading dims. */
    public static Tensor mul(Tensor a, Tensor b) {
        Backend be = a.backend();
        Tensor out = be.empty(a.shape(), DType.F32);
        be.mul(a, b, out);
        if (Autograd.needsGrad(a, b)) {
            Autograd.record("mul", out, dOut -> {
                if (grad(a)) {               // dA += dOut ∘ b
                    Tensor t = be.empty(a.shape(), DType.F32);
                    be.mul(dOut, b.materialize(), t);
                    be.axpy(1f, t, a.gradOrZeros());
                }
                if (grad(b)) {               // dB += Σ_broadcast dOut ∘ a
                    Tensor t = be.empty(a.shape(), DType.F32);
                    be.mul(dOut, a.materialize(), t);
                    accumulateBroadcast(be, t, b);
                }
            });
        }
        return out;
    }

    /**
     * Declares that {@code t}, a BF16 activation that exactly one op reads (a product's operand: a normed
     * input, an attention output, an MLP's hidden state), keeps its gradient as BF16 ({@link Tensor#bf16Gradient}),
     * as PyTorch's bf16 autocast does: that product writes it rounded and the op that made t reads it so,
     * half the bytes of an F32 gradient each way. Only on a backend that takes such gradients
     * ({@link Backend#bf16Gradients}: CUDA's bf16 mode); no effect on F32 tensors or without gradients;
     * {@code -Dperceiver4j.bf16Gradients=false} switches it off (read at each call, so a check can compare
     * both ways in one process).
     */
    public static void bf16Gradient(Tensor t) {
        if (Autograd.enabled() && t.backend().bf16Gradients()
                && !"false".equalsIgnoreCase(System.getProperty("perceiver4j.bf16Gradients", "").trim())) t.bf16Gradient();
    }

    /**
     * Declares that the forward pass will not read {@code t}'s values again and hands its buffer back
     * to the step scope's pool now, instead of when the step ends. Two kinds of activation qualify:
     * <ul>
     *   <li>one no recorded backward reads: its consumers were all {@link #add} or {@link #dropout}
     *       (their backward passes need no values);</li>
     *   <li>one that can be recomputed ({@link Tensor#recomputable()}: the outputs of
     *       {@link #layerNorm} and of {@link #matmul} with an activation, while gradients are
     *       recorded). The first backward that reads it rebuilds it from what its producer keeps
     *       anyway (x, mean, rstd; the pre-activation), and the buffer goes back once the producer's
     *       own backward has run. This trades a cheap elementwise pass for a full activation.</li>
     * </ul>
     * Its gradient still flows. Any other discarded tensor fails loudly when read. A no-op for
     * tensors no scope owns (parameters) and for views, and for recomputable tensors on a backend
     * that keeps them ({@link Backend#recomputesActivations}: the GPU; {@code -Dperceiver4j.recompute}
     * overrides: more memory, no recomputation).
     */
    public static void discard(Tensor t) {
        if (t.root() != t || t.data() == null) return;
        Tensor copy = t.productCopy();
        if (copy != null) discard(copy);                    // rebuilt from t when a backward reads it
        if (t.recomputable() && !recompute(t.backend())) return;
        if (Scope.release(t.data())) t.discardStorage();   // releases only scope buffers
    }

    /** Whether recomputable activations are given away on {@code be}: the property when set, else the backend's choice. */
    private static boolean recompute(Backend be) {
        return RECOMPUTE.isEmpty() ? be.recomputesActivations() : !"false".equalsIgnoreCase(RECOMPUTE);
    }

    /** alpha · x. */
    public static Tensor scale(Tensor x, float alpha) {
        Backend be = x.backend();
        Tensor out = be.empty(x.shape(), DType.F32);
        be.scale(x, alpha, out);
        if (Autograd.needsGrad(x)) {
            Autograd.record("scale", out, dOut -> be.axpy(alpha, dOut, x.gradOrZeros()));
        }
        return out;
    }

    /** Inverted dropout with a Philox mask (seed, stream); identity when p == 0. */
    public static Tensor dropout(Tensor x, float p, long seed, long stream) {
        if (p == 0f) return x;
        Backend be = x.backend();
        Tensor out = be.empty(x.shape(), DType.F32);
        be.dropout(x, p, seed, stream, out);
        if (Autograd.needsGrad(x)) {
            Autograd.record("dropout", out, dOut -> be.dropoutBackward(dOut, p, seed, stream, x.gradOrZeros()));
        }
        return out;
    }

    // ---- copies along an axis ----------------------------------------------------------------

    /** x.narrow(axis, start, len) materialised. */
    public static Tensor narrow(Tensor x, int axis, int start, int len) {
        Backend be = x.backend();
        Tensor out = be.empty(x.shape().with(axis, len), x.dtype());
        be.narrow(x, axis, start, out, false);
        if (Autograd.needsGrad(x)) {
            Autograd.record("narrow", out, dOut -> be.unnarrow(dOut, axis, start, x.gradOrZeros(), true));
        }
        return out;
    }

    /** Concatenation along {@code axis}. */
    public static Tensor concat(int axis, Tensor... parts) {
        Backend be = parts[0].backend();
        int ax = parts[0].shape().axis(axis);
        int total = 0;
        for (Tensor p : parts) total += p.dim(ax);
        Tensor out = be.empty(parts[0].shape().with(ax, total), parts[0].dtype());
        int[] starts = new int[parts.length];
        int s = 0;
        for (int i = 0; i < parts.length; i++) {
            starts[i] = s;
            be.unnarrow(parts[i], ax, s, out, false);
            s += parts[i].dim(ax);
        }
        if (Autograd.needsGrad(parts)) {
            Autograd.record("concat", out, dOut -> {
                for (int i = 0; i < parts.length; i++) {
                    if (grad(parts[i])) be.narrow(dOut, ax, starts[i], parts[i].gradOrZeros(), true);
                }
            });
        }
        return out;
    }

    // ---- attention ---------------------------------------------------------------------------

    /**
     * Multi-head scaled dot-product attention. q: [B, Nq, H·Dqk], k: [B, Nk, H·Dqk],
     * v: [B, Nk, H·Dv], keyPad: BOOL [B, Nk] (true = padding) or null → [B, Nq, H·Dv].
     * Scale 1/√Dqk; right-aligned causal mask when {@code causal}; dropout on probabilities.
     */
    public static Tensor attention(Tensor q, Tensor k, Tensor v, Tensor keyPad, int heads, boolean causal,
                                   float dropout, long seed, long stream) {
        return attention(q, k, v, keyPad, heads, causal, dropout, seed, stream, DType.F32);
    }

    /**
     * {@link #attention} with the output stored as {@code outType}: F32, or the backend's product
     * operand type ({@code Backend.matmulOperandType}) for an output that only matrix products read
     * (the output projection), so no cast follows and backward reads the same stored values.
     */
    public static Tensor attention(Tensor q, Tensor k, Tensor v, Tensor keyPad, int heads, boolean causal,
                                   float dropout, long seed, long stream, DType outType) {
        Backend be = q.backend();
        checkOutType("attention", outType);
        if (q.rank() != 3 || k.rank() != 3 || v.rank() != 3) {
            throw new IllegalArgumentException("attention expects [B, N, H·D] tensors, got q " + q.shape() + " k " + k.shape() + " v " + v.shape());
        }
        int b = q.dim(0), nq = q.dim(1), nk = k.dim(1);
        checkHeads("attention", q.dim(2), v.dim(2), heads);
        int dqk = q.dim(2) / heads, dv = v.dim(2) / heads;
        if (k.dim(0) != b || v.dim(0) != b || v.dim(1) != nk || k.dim(2) != q.dim(2)) {
            throw new IllegalArgumentException("attention: mismatched q " + q.shape() + " k " + k.shape() + " v " + v.shape());
        }
        AttentionShape s = new AttentionShape(b, heads, nq, nk, dqk, dv, (float) (1.0 / Math.sqrt(dqk)), causal, dropout, seed, stream);
        Tensor out = be.empty(Shape.of(b, nq, heads * dv), outType);
        Tensor lse = be.empty(Shape.of(b, heads, nq), DType.F32);
        be.attention(s, q, k, v, keyPad, out, lse);
        if (Autograd.needsGrad(q, k, v)) {
            Autograd.record("attention", out, dOut -> {
                Tensor dQ = grad(q) ? q.gradOrZeros() : be.zeros(q.shape(), DType.F32);
                Tensor dK = grad(k) ? k.gradOrZeros() : be.zeros(k.shape(), DType.F32);
                Tensor dV = grad(v) ? v.gradOrZeros() : be.zeros(v.shape(), DType.F32);
                be.attentionBackward(s, q.materialize(), k.materialize(), v.materialize(), keyPad, out, lse, dOut, dQ, dK, dV);
            });
        }
        return out;
    }

    private static void checkOutType(String op, DType outType) {
        if (outType != DType.F32 && outType != DType.BF16) throw new IllegalArgumentException(op + ": outType " + outType + " must be F32 or BF16");
    }

    private static void checkHeads(String op, int qkChannels, int vChannels, int heads) {
        if (qkChannels % heads != 0 || vChannels % heads != 0) {
            throw new IllegalArgumentException(op + ": channels " + qkChannels + "/" + vChannels + " not divisible by " + heads + " heads");
        }
    }

    /**
     * Whether a self-attention on {@code be} should take its q, k and v as one product
     * ({@link Backend#packsSelfAttention}); {@code -Dperceiver4j.packSelfAttention=true|false} overrides
     * every backend (read at each call, so a test can compare both ways in one process).
     */
    public static boolean packsSelfAttention(Backend be) {
        String p = System.getProperty("perceiver4j.packSelfAttention", "").trim();
        return p.isEmpty() ? be.packsSelfAttention() : !"false".equalsIgnoreCase(p);
    }

    /**
     * {@link #attention} without key padding over q, k and v packed as column ranges of one tensor, as
     * one product of the three projections writes them: qkv [B, N, 2·qkChannels + vChannels] holds q in
     * columns [0, qkChannels), k in [qkChannels, 2·qkChannels), v after them (self-attention: Nq = Nk =
     * N). Backward adds dQ, dK and dV into qkv's gradient in the same columns ({@link Backend#attentionPacked}).
     */
    public static Tensor attentionPacked(Tensor qkv, int qkChannels, int vChannels, int heads, boolean causal, float dropout, long seed,
                                         long stream, DType outType) {
        Backend be = qkv.backend();
        checkOutType("attentionPacked", outType);
        if (qkv.rank() != 3 || qkv.dim(2) != 2 * qkChannels + vChannels) {
            throw new IllegalArgumentException("attentionPacked expects qkv [B, N, " + (2 * qkChannels + vChannels) + "] (2 × " + qkChannels
                    + " + " + vChannels + " channels), got " + qkv.shape());
        }
        checkHeads("attentionPacked", qkChannels, vChannels, heads);
        int b = qkv.dim(0), n = qkv.dim(1), dqk = qkChannels / heads, dv = vChannels / heads;
        AttentionShape s = new AttentionShape(b, heads, n, n, dqk, dv, (float) (1.0 / Math.sqrt(dqk)), causal, dropout, seed, stream);
        Tensor out = be.empty(Shape.of(b, n, vChannels), outType);
        Tensor lse = be.empty(Shape.of(b, heads, n), DType.F32);
        be.attentionPacked(s, qkv, out, lse);
        if (Autograd.needsGrad(qkv)) {
            Autograd.record("attentionPacked", out, dOut -> be.attentionPackedBackward(s, qkv.materialize(), out, lse, dOut, qkv.gradOrZeros()));
        }
        return out;
    }

    /**
     * {@link #attention} over k and v packed as column ranges of one tensor, as one product of a
     * cross-attention input's two projections writes them: kv [B, Nk, qkChannels + vChannels] holds k in
     * columns [0, qkChannels), v after them; q [B, Nq, qkChannels] separate; not causal. Backward adds dK
     * and dV into kv's gradient in the same columns ({@link Backend#attentionKvPacked}).
     */
    public static Tensor attentionKvPacked(Tensor q, Tensor kv, int qkChannels, int vChannels, Tensor keyPad, int heads, float dropout,
                                           long seed, long stream, DType outType) {
        Backend be = q.backend();
        checkOutType("attentionKvPacked", outType);
        if (q.rank() != 3 || kv.rank() != 3 || q.dim(2) != qkChannels || kv.dim(2) != qkChannels + vChannels || kv.dim(0) != q.dim(0)) {
            throw new IllegalArgumentException("attentionKvPacked expects q [B, Nq, " + qkChannels + "] and kv [B, Nk, " + (qkChannels + vChannels)
                    + "], got q " + q.shape() + " kv " + kv.shape());
        }
        checkHeads("attentionKvPacked", qkChannels, vChannels, heads);
        int b = q.dim(0), nq = q.dim(1), nk = kv.dim(1), dqk = qkChannels / heads, dv = vChannels / heads;
        AttentionShape s = new AttentionShape(b, heads, nq, nk, dqk, dv, (float) (1.0 / Math.sqrt(dqk)), false, dropout, seed, stream);
        Tensor out = be.empty(Shape.of(b, nq, vChannels), outType);
        Tensor lse = be.empty(Shape.of(b, heads, nq), DType.F32);
        be.attentionKvPacked(s, q, kv, keyPad, out, lse);
        if (Autograd.needsGrad(q, kv)) {
            Autograd.record("attentionKvPacked", out, dOut -> {
                Tensor dQ = grad(q) ? q.gradOrZeros() : be.zeros(q.shape(), DType.F32);
                Tensor dKv = grad(kv) ? kv.gradOrZeros() : be.zeros(kv.shape(), DType.F32);
                be.attentionKvPackedBackward(s, q.materialize(), kv.materialize(), keyPad, out, lse, dOut, dQ, dKv);
            });
        }
        return out;
    }

    // ---- positions, embeddings, losses -------------------------------------------------------

    /** Rotary embedding on the first {@code rot} channels of each head. x: [..., H·Dh]; positions: I32 [rows]. */
    public static Tensor rotary(Tensor x, Tensor positions, Tensor invFreq, int heads, int rot) {
        Backend be = x.backend();
        Tensor out = be.empty(x.shape(), DType.F32);
        be.rotary(x, positions, invFreq, heads, rot, out);
        if (Autograd.needsGrad(x)) {
            Autograd.record("rotary", out, dOut -> be.rotaryBackward(dOut, positions, invFreq, heads, rot, x.gradOrZeros()));
        }
        return out;
    }

    /** table[ids]. table: [V, D]; ids: I32 [...] → [..., D]. */
    public static Tensor embedding(Tensor table, Tensor ids) {
        Backend be = table.backend();
        int[] dims = Arrays.copyOf(ids.shape().dims(), ids.rank() + 1);
        dims[ids.rank()] = table.dim(1);
        Tensor out = be.empty(Shape.of(dims), DType.F32);
        be.embedding(table, ids, out);
        if (Autograd.needsGrad(table)) {
            Autograd.record("embedding", out, dOut -> be.embeddingBackward(dOut, ids, table.gradOrZeros()));
        }
        return out;
    }

    /**
     * Mean softmax cross-entropy (plus zLoss·mean(lse²)) of logits [..., V] against I32 targets
     * [...]; rows whose target is {@code ignoreIndex} count for nothing. Returns a scalar [1].
     */
    public static Tensor crossEntropy(Tensor logits, Tensor targets, int ignoreIndex, float zLoss) {
        Backend be = logits.backend();
        Tensor lse = be.empty(Shape.of(logits.shape().rows()), DType.F32);
        Tensor out = be.empty(Shape.of(1), DType.F32);
        be.crossEntropy(logits, targets, ignoreIndex, zLoss, lse, out);   // stays on the device: read it with item()
        if (Autograd.needsGrad(logits)) {
            Autograd.record("crossEntropy", out, dOut -> be.crossEntropyBackward(dOut, logits, targets, ignoreIndex, zLoss, lse,
                    logits.gradOrZeros()));
        }
        return out;
    }
}
