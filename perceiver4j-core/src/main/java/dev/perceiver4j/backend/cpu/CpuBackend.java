package dev.perceiver4j.backend.cpu;

import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.MatmulShape;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.fast.FastAttention;
import dev.perceiver4j.backend.cpu.fast.FastOps;
import dev.perceiver4j.backend.cpu.fast.MaterializedAttention;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.backend.cpu.gemm.Sgemm;
import dev.perceiver4j.backend.cpu.gemm.Sgemms;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.util.Arrays;

/**
 * The CPU backend: Java arrays as storage, Vector API kernels ({@link FastOps},
 * {@link FastAttention}) split over a {@link CpuPool}, matrix products through an {@link Sgemm}
 * (the system CBLAS via FFM when one is found, else the pure-Java packed SGEMM).
 */
public final class CpuBackend extends CpuStorageBackend {
    private final Sgemm gemm;
    /**
     * The SGEMMs of {@link MaterializedAttention}, which its tasks call from several threads at once:
     * the pure-Java SGEMM (this backend's own when it is one), made on first use.
     */
    private MaterializedAttention.Gemms attentionGemms;

    public CpuBackend(CpuPool pool, Sgemm gemm) {
        this(pool, gemm, DType.F32);
    }

    /**
     * With {@code matmulOperands} BF16, F's products hand this backend bf16 copies of activations
     * as on the GPU's bf16 mode ({@link Backend#matmulOperandType}): the CPU widens them back
     * (exactly), so the same autograd path runs here with F32 arithmetic.
     */
    public CpuBackend(CpuPool pool, Sgemm gemm, DType matmulOperands) {
        this(pool, gemm, matmulOperands, 0);
    }

    /**
     * {@link #CpuBackend(CpuPool, Sgemm, DType)} whose products of at most {@code f32Rows} rows take
     * F32 operands ({@link Backend#matmulOperandType(long)}), as CUDA's skinny products do: tests of
     * the mixed path (bf16 and F32 activations in one model) on the CPU.
     */
    public CpuBackend(CpuPool pool, Sgemm gemm, DType matmulOperands, long f32Rows) {
        super(pool, matmulOperands, f32Rows);
        this.gemm = gemm;
    }

    /** The shared pool and the automatically chosen SGEMM. */
    public static CpuBackend create() {
        CpuPool pool = CpuPool.common();
        return new CpuBackend(pool, Sgemms.select(pool));
    }

    public Sgemm gemm() {
        return gemm;
    }

    @Override
    public String name() {
        return "cpu (" + pool.threads() + " threads, sgemm " + gemm.name() + ")";
    }

    // ---- matrix products ---------------------------------------------------------------------

    /** Dimensions of one matmul call: batch entries, M, N, K and the per-batch strides. */
    @Override
    public void matmul(Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Activation act, Tensor dst, Tensor preAct) {
        a = widened(a);
        b = widened(b);
        Tensor out = f32Target(dst);
        MatmulShape d = MatmulShape.of(a, transA, b, transB, out);
        float[] A = a.floats(), B = b.floats(), C = out.floats();
        for (int i = 0; i < d.batch(); i++) {
            gemm.sgemm(transA, transB, d.m(), d.n(), d.k(), 1f,
                    A, a.offset() + i * d.strideA(), d.aCols(),
                    B, b.offset() + i * d.strideB(), d.bCols(),
                    0f, C, out.offset() + i * d.m() * d.n(), d.n());
        }
        if (bias != null || act != Activation.NONE) {
            check(act == Activation.NONE || preAct != null, "matmul with activation " + act + " needs a preAct buffer");
            biasSize(bias, d.n(), "matmul");
            // a bf16 pre-activation (as the GPU's bf16 mode stores it): the bias added, rounded, and the activation of the rounded values
            boolean pre16 = preAct != null && preAct.dtype() == DType.BF16;
            FastOps.biasActivation(pool, C, out.offset(), d.batch() * d.m(), d.n(),
                    bias == null ? null : bias.floats(), bias == null ? 0 : bias.offset(), pre16 ? Activation.NONE : act,
                    preAct == null || pre16 ? null : preAct.floats(), preAct == null || pre16 ? 0 : preAct.offset());
            if (pre16) {
                cast(out, preAct);
                cast(preAct, out);
                FastOps.activation(pool, act, C, out.offset(), C, out.offset(), out.size());
            }
        }
        roundInto(out, dst);
    }

    /**
     * With F32 out, residual and bias: the product, then the bias and the residual added in one pass
     * over out ({@link FastOps#biasResidual}) instead of one pass each; the same bits as the default.
     */
    @Override
    public void matmulAdd(Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Tensor residual, Tensor out) {
        if (out.dtype() != DType.F32 || residual.dtype() != DType.F32 || (bias != null && bias.dtype() != DType.F32)) {
            super.matmulAdd(a, transA, b, transB, bias, residual, out);
            return;
        }
        sameSize(residual, out, "matmulAdd residual");
        check(residual.floats() != out.floats() || residual.offset() + residual.size() <= out.offset()
                || out.offset() + out.size() <= residual.offset(), "matmulAdd: residual and out must not overlap");
        int n = out.shape().last();
        biasSize(bias, n, "matmulAdd");
        matmul(a, transA, b, transB, null, Activation.NONE, out, null);
        FastOps.biasResidual(pool, out.floats(), out.offset(), (int) (out.size() / n), n, bias == null ? null : bias.floats(),
                bias == null ? 0 : bias.offset(), residual.floats(), residual.offset());
    }

    /**
     * With the pure-Java SGEMM and F32 tensors, {@link JavaSgemm#sgemmSharedA}: a packed once, the
     * products' tiles claimed in one loop; then each bias. Otherwise the products one by one.
     */
    @Override
    public void matmulSharedInput(Tensor a, Tensor[] ws, Tensor[] biases, Tensor[] outs) {
        int count = ws.length;
        check(biases.length == count && outs.length == count, "matmulSharedInput: " + count + " weights need as many biases and outputs, got "
                + biases.length + " and " + outs.length);
        JavaSgemm java = gemm instanceof JavaSgemm j && a.dtype() == DType.F32 ? j : null;
        for (int i = 0; i < count; i++) if (ws[i].dtype() != DType.F32 || outs[i].dtype() != DType.F32) java = null;
        if (java == null) {
            super.matmulSharedInput(a, ws, biases, outs);
            return;
        }
        int k = a.shape().last(), rows = a.size() / k;
        float[][] b = new float[count][], c = new float[count][];
        int[] bOff = new int[count], n = new int[count], cOff = new int[count];
        for (int i = 0; i < count; i++) {
            Tensor w = ws[i];
            check(w.rank() == 2 && w.dim(1) == k, "matmulSharedInput: weight " + w.describe() + " should be [N, " + k + "] for input " + a.describe());
            n[i] = w.dim(0);
            check(outs[i].size() == (long) rows * n[i], "matmulSharedInput: output " + outs[i].describe() + " should hold " + rows + " x " + n[i]);
            biasSize(biases[i], n[i], "matmulSharedInput");
            b[i] = w.floats();
            bOff[i] = w.offset();
            c[i] = outs[i].floats();
            cOff[i] = outs[i].offset();
        }
        java.sgemmSharedA(rows, k, a.floats(), a.offset(), k, b, bOff, n, c, cOff);
        for (int i = 0; i < count; i++) {
            if (biases[i] != null) {
                FastOps.biasActivation(pool, c[i], cOff[i], rows, n[i], biases[i].floats(), biases[i].offset(), Activation.NONE, null, 0);
            }
        }
    }

    @Override
    public void matmulBackward(Tensor dOut, Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Activation act, Tensor preAct,
                               Tensor dA, Tensor dB, Tensor dBias) {
        a = widened(a);
        b = widened(b);
        preAct = widened(preAct);
        MatmulShape d = MatmulShape.of(a, transA, b, transB, dOut);
        int rows = d.batch() * d.m();
        // dC = dOut · act'(preAct); dBias += Σ_rows dC
        Tensor dC = dOut;
        if (act != Activation.NONE) {
            dC = empty(dOut.shape(), DType.F32);
            FastOps.biasActivationBackward(pool, dOut.floats(), dOut.offset(), preAct.floats(), preAct.offset(), rows, d.n(), act,
                    dC.floats(), dC.offset(), dBias == null ? null : dBias.floats(), dBias == null ? 0 : dBias.offset());
        } else if (dBias != null) {
            FastOps.sumRows(pool, dOut.floats(), dOut.offset(), rows, d.n(), dBias.floats(), dBias.offset());
        }
        float[] G = dC.floats(), A = a.floats(), B = b.floats();
        for (int i = 0; i < d.batch(); i++) {
            int gOff = dC.offset() + i * d.m() * d.n();
            int aOff = a.offset() + i * d.strideA();
            int bOff = b.offset() + i * d.strideB();
            if (dA != null) {
                float[] DA = dA.floats();
                int daOff = dA.offset() + i * d.strideA();
                if (!transA) { // dA[M,K] += dC[M,N] · op(B)ᵀ
                    gemm.sgemm(false, !transB, d.m(), d.k(), d.n(), 1f, G, gOff, d.n(), B, bOff, d.bCols(), 1f, DA, daOff, d.k());
                } else {       // dA[K,M] += op(B)[K,N] · dCᵀ
                    gemm.sgemm(transB, true, d.k(), d.m(), d.n(), 1f, B, bOff, d.bCols(), G, gOff, d.n(), 1f, DA, daOff, d.m());
                }
            }
            if (dB != null) {
                float[] DB = dB.floats();
                int dbOff = dB.offset() + i * d.strideB();
                if (!transB) { // dB[K,N] += op(A)ᵀ · dC
                    gemm.sgemm(!transA, false, d.k(), d.n(), d.m(), 1f, A, aOff, d.aCols(), G, gOff, d.n(), 1f, DB, dbOff, d.n());
                } else {       // dB[N,K] += dCᵀ · op(A)
                    gemm.sgemm(true, transA, d.n(), d.k(), d.m(), 1f, G, gOff, d.n(), A, aOff, d.aCols(), 1f, DB, dbOff, d.k());
                }
            }
        }
        if (dC != dOut) Scope.release(dC.data()); // the temporary goes back to the step's pool now (a no-op outside scopes)
    }

    // ---- normalisation and pointwise ---------------------------------------------------------

    @Override
    public void layerNorm(Tensor x, Tensor gamma, Tensor beta, float eps, Tensor out, Tensor mean, Tensor rstd) {
        int d = x.shape().last(), rows = x.shape().rows();
        check(gamma.size() == d && beta.size() == d, "layerNorm: gamma/beta must have " + d + " elements, got " + gamma.describe() + ", " + beta.describe());
        Tensor o = f32Target(out);
        FastOps.layerNorm(pool, x.floats(), x.offset(), gamma.floats(), gamma.offset(), beta.floats(), beta.offset(),
                o.floats(), o.offset(), mean.floats(), mean.offset(), rstd.floats(), rstd.offset(), rows, d, eps);
        roundInto(o, out);
    }

    @Override
    public void layerNormBackward(Tensor dOut, Tensor x, Tensor gamma, Tensor mean, Tensor rstd, Tensor dX, Tensor dGamma, Tensor dBeta) {
        int d = x.shape().last(), rows = x.shape().rows();
        FastOps.layerNormBackward(pool, dOut.floats(), dOut.offset(), x.floats(), x.offset(), gamma.floats(), gamma.offset(),
                mean.floats(), mean.offset(), rstd.floats(), rstd.offset(), dX.floats(), dX.offset(),
                dGamma.floats(), dGamma.offset(), dBeta.floats(), dBeta.offset(), rows, d);
    }

    @Override
    public void activation(Activation act, Tensor x, Tensor out) {
        sameSize(x, out, "activation");
        x = widened(x);
        Tensor o = f32Target(out);
        FastOps.activation(pool, act, x.floats(), x.offset(), o.floats(), o.offset(), x.size());
        roundInto(o, out);
    }

    @Override
    public void activationBackward(Activation act, Tensor x, Tensor dOut, Tensor dX) {
        x = widened(x);
        FastOps.activationBackward(pool, act, x.floats(), x.offset(), dOut.floats(), dOut.offset(), dX.floats(), dX.offset(), x.size());
    }

    @Override
    public void add(Tensor a, Tensor b, Tensor out) {
        broadcastable(a, b, "add");
        FastOps.add(pool, a.floats(), a.offset(), b.floats(), b.offset(), out.floats(), out.offset(), a.size(), b.size());
    }

    @Override
    public void mul(Tensor a, Tensor b, Tensor out) {
        broadcastable(a, b, "mul");
        FastOps.mul(pool, a.floats(), a.offset(), b.floats(), b.offset(), out.floats(), out.offset(), a.size(), b.size());
    }

    @Override
    public void scale(Tensor x, float alpha, Tensor out) {
        sameSize(x, out, "scale");
        FastOps.scale(pool, x.floats(), x.offset(), alpha, out.floats(), out.offset(), x.size());
    }

    @Override
    public void axpy(float alpha, Tensor x, Tensor y) {
        sameSize(x, y, "axpy");
        FastOps.axpy(pool, alpha, x.floats(), x.offset(), y.floats(), y.offset(), x.size());
    }

    @Override
    public void fill(Tensor x, float v) {
        FastOps.fill(pool, x.floats(), x.offset(), v, x.size());
    }

    @Override
    public void l2Norm(Tensor x, Tensor out) {
        out.floats()[out.offset()] = (float) Math.sqrt(FastOps.sumSquares(pool, x.floats(), x.offset(), x.size()));
    }

    @Override
    public void sumRows(Tensor x, Tensor out) {
        int n = out.size();
        check(n > 0 && x.size() % n == 0, "sumRows: " + x.describe() + " is not a whole number of rows of " + n);
        FastOps.sumRows(pool, x.floats(), x.offset(), x.size() / n, n, out.floats(), out.offset());
    }

    @Override
    public void dropout(Tensor x, float p, long seed, long stream, Tensor out) {
        sameSize(x, out, "dropout");
        FastOps.dropout(pool, x.floats(), x.offset(), out.floats(), out.offset(), x.size(), p, seed, stream, 0L);
    }

    @Override
    public void dropoutBackward(Tensor dOut, float p, long seed, long stream, Tensor dX) {
        sameSize(dOut, dX, "dropoutBackward");
        FastOps.dropoutBackward(pool, dOut.floats(), dOut.offset(), dX.floats(), dX.offset(), dOut.size(), p, seed, stream, 0L);
    }

    @Override
    public void softmax(Tensor x, Tensor out) {
        sameSize(x, out, "softmax");
        FastOps.softmax(pool, x.floats(), x.offset(), out.floats(), out.offset(), x.shape().rows(), x.shape().last());
    }

    // ---- attention ---------------------------------------------------------------------------

    @Override
    public void attention(AttentionShape s, Tensor q, Tensor k, Tensor v, Tensor keyPad, Tensor out, Tensor lse) {
        q = widened(q);
        k = widened(k);
        v = widened(v);
        Tensor o = f32Target(out);
        boolean[] pad = padMask(keyPad, s);
        if (MaterializedAttention.applies(s)) {
            if (attentionGemms == null) attentionGemms = MaterializedAttention.Gemms.of(gemm instanceof JavaSgemm j ? j : new JavaSgemm(pool));
            MaterializedAttention.forward(attentionGemms, s, q.floats(), q.offset(), k.floats(), k.offset(), v.floats(),
                    v.offset(), pad, o.floats(), o.offset(), lse.floats(), lse.offset());
        } else {
            FastAttention.forward(pool, s, q.floats(), q.offset(), k.floats(), k.offset(), v.floats(), v.offset(),
                    pad, o.floats(), o.offset(), lse.floats(), lse.offset());
        }
        roundInto(o, out);
    }

    @Override
    public void attentionBackward(AttentionShape s, Tensor q, Tensor k, Tensor v, Tensor keyPad, Tensor out, Tensor lse,
                                  Tensor dOut, Tensor dQ, Tensor dK, Tensor dV) {
        q = widened(q);
        k = widened(k);
        v = widened(v);
        out = widened(out);
        FastAttention.backward(pool, s, q.floats(), q.offset(), k.floats(), k.offset(), v.floats(), v.offset(),
                padMask(keyPad, s), out.floats(), out.offset(), lse.floats(), lse.offset(),
                dOut.floats(), dOut.offset(), dQ.floats(), dQ.offset(), dK.floats(), dK.offset(), dV.floats(), dV.offset());
    }

    /** The key padding as booleans, or null when no key is padded (the same attention, without the per-key tests). */
    private static boolean[] padMask(Tensor keyPad, AttentionShape s) {
        if (keyPad == null) return null;
        check(keyPad.size() == s.batch() * s.nk(), "attention: keyPad " + keyPad.describe() + " should be [" + s.batch() + ", " + s.nk() + "]");
        byte[] m = keyPad.bools();
        boolean[] r = new boolean[keyPad.size()];
        boolean any = false;
        for (int i = 0; i < r.length; i++) any |= r[i] = m[keyPad.offset() + i] != 0;
        return any ? r : null;
    }

    // ---- positions, embeddings, losses -------------------------------------------------------

    @Override
    public void rotary(Tensor x, Tensor positions, Tensor invFreq, int heads, int rot, Tensor out) {
        int rows = x.shape().rows(), headDim = x.shape().last() / heads;
        check(positions.size() == rows, "rotary: positions " + positions.describe() + " should have one entry per row (" + rows + ")");
        check(invFreq.size() == rot / 2, "rotary: invFreq " + invFreq.describe() + " should have rot/2 = " + rot / 2 + " entries");
        FastOps.rotary(pool, x.floats(), x.offset(), out.floats(), out.offset(), positions.ints(), positions.offset(),
                invFreq.floats(), invFreq.offset(), rows, heads, headDim, rot);
    }

    @Override
    public void rotaryBackward(Tensor dOut, Tensor positions, Tensor invFreq, int heads, int rot, Tensor dX) {
        int rows = dOut.shape().rows(), headDim = dOut.shape().last() / heads;
        FastOps.rotaryBackward(pool, dOut.floats(), dOut.offset(), dX.floats(), dX.offset(), positions.ints(), positions.offset(),
                invFreq.floats(), invFreq.offset(), rows, heads, headDim, rot);
    }

    @Override
    public void embedding(Tensor table, Tensor ids, Tensor out) {
        int vocab = table.dim(0), d = table.dim(1);
        FastOps.embedding(pool, table.floats(), table.offset(), ids.ints(), ids.offset(), out.floats(), out.offset(), ids.size(), vocab, d);
    }

    @Override
    public void embeddingBackward(Tensor dOut, Tensor ids, Tensor dTable) {
        int vocab = dTable.dim(0), d = dTable.dim(1);
        FastOps.embeddingBackward(pool, dOut.floats(), dOut.offset(), ids.ints(), ids.offset(), dTable.floats(), dTable.offset(), ids.size(), vocab, d);
    }

    @Override
    public void crossEntropy(Tensor logits, Tensor targets, int ignoreIndex, float zLoss, Tensor lse, Tensor loss) {
        int rows = logits.shape().rows(), vocab = logits.shape().last();
        check(targets.size() == rows, "crossEntropy: targets " + targets.describe() + " should have " + rows + " entries");
        loss.floats()[loss.offset()] = (float) FastOps.crossEntropy(pool, logits.floats(), logits.offset(), targets.ints(), targets.offset(), rows,
                vocab, ignoreIndex, zLoss, lse.floats(), lse.offset());
    }

    @Override
    public void crossEntropyBackward(Tensor dLoss, Tensor logits, Tensor targets, int ignoreIndex, float zLoss, Tensor lse, Tensor dLogits) {
        int rows = logits.shape().rows(), vocab = logits.shape().last();
        FastOps.crossEntropyBackward(pool, dLoss.item(), logits.floats(), logits.offset(), targets.ints(), targets.offset(), lse.floats(), lse.offset(),
                rows, vocab, ignoreIndex, zLoss, dLogits.floats(), dLogits.offset());
    }

    // ---- optimizer ---------------------------------------------------------------------------

    @Override
    public void adamw(Tensor param, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, long step) {
        sameSize(param, grad, "adamw");
        FastOps.adamw(pool, param.floats(), param.offset(), grad.floats(), grad.offset(), m.floats(), m.offset(), v.floats(), v.offset(),
                param.size(), lr, beta1, beta2, eps, weightDecay, step);
    }

}
