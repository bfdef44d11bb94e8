package dev.perceiver4j.backend.cpu;

import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.cpu.fast.FastOps;
import dev.perceiver4j.backend.cpu.ref.RefAttention;
import dev.perceiver4j.backend.cpu.ref.RefOps;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Tensor;

/**
 * The oracle as a backend ({@code --backend reference}): every op widens its float inputs to
 * double, runs the scalar reference kernel ({@link RefOps}, {@link RefAttention}, a triple-loop
 * matmul), and rounds the result back to float. Slow by design; used to check the fast backend op
 * by op and, later, to locate parity differences in whole models.
 */
public final class RefBackend extends CpuStorageBackend {

    public RefBackend(CpuPool pool) {
        super(pool, DType.F32, 0);
    }

    @Override
    public String name() {
        return "reference (scalar, double precision)";
    }

    /** The tensor's values widened to double (null stays null). */
    private double[] d(Tensor t) {
        if (t == null) return null;
        if (t.dtype() == DType.BF16) t = widened(t);
        float[] f = t.floats();
        double[] r = new double[t.size()];
        for (int i = 0; i < r.length; i++) r[i] = f[t.offset() + i];
        return r;
    }

    /** Writes {@code v} into {@code t}, rounding to float (and on to bf16 for a BF16 output). */
    private static void put(double[] v, Tensor t) {
        if (t == null) return;
        if (t.dtype() == DType.BF16) {   // rounded to float, then to bf16, as the fast kernels do
            short[] h = t.shorts();
            for (int i = 0; i < v.length; i++) h[t.offset() + i] = FastOps.floatToBf16((float) v[i]);
            return;
        }
        float[] f = t.floats();
        for (int i = 0; i < v.length; i++) f[t.offset() + i] = (float) v[i];
    }

    private static int[] ints(Tensor t) {
        int[] r = new int[t.size()];
        System.arraycopy(t.ints(), t.offset(), r, 0, r.length);
        return r;
    }

    // ---- matrix products ---------------------------------------------------------------------

    @Override
    public void matmul(Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Activation act, Tensor out, Tensor preAct) {
        Dims g = dims(a, transA, b, transB);
        double[] A = d(a), B = d(b), C = new double[out.size()];
        for (int i = 0; i < g.batch; i++) {
            gemm(transA, transB, g.m, g.n, g.k, A, i * g.strideA, B, i * g.strideB, C, i * g.m * g.n, false);
        }
        double[] pre = act == Activation.NONE ? null : new double[C.length];
        RefOps.biasActivation(C, g.batch * g.m, g.n, d(bias), act, pre);
        if (pre != null && preAct.dtype() == DType.BF16) {   // stored rounded: the activation reads the rounded values
            put(pre, preAct);
            RefOps.activation(act, d(preAct), C, C.length);
        }
        put(C, out);
        if (pre != null) put(pre, preAct);
    }

    @Override
    public void matmulBackward(Tensor dOut, Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Activation act, Tensor preAct,
                               Tensor dA, Tensor dB, Tensor dBias) {
        Dims g = dims(a, transA, b, transB);
        double[] dC = new double[dOut.size()];
        double[] db = d(dBias);
        RefOps.biasActivationBackward(d(dOut), d(preAct), g.batch * g.m, g.n, act, dC, db);
        put(db, dBias);
        double[] A = d(a), B = d(b);
        if (dA != null) {
            double[] da = d(dA);
            for (int i = 0; i < g.batch; i++) { // dop(A) = dC · op(B)ᵀ, stored back in A's layout
                double[] t = new double[g.m * g.k];
                gemm(false, !transB, g.m, g.k, g.n, dC, i * g.m * g.n, B, i * g.strideB, t, 0, false);
                for (int r = 0; r < g.m; r++) for (int c = 0; c < g.k; c++) {
                    da[i * g.strideA + (transA ? c * g.m + r : r * g.k + c)] += t[r * g.k + c];
                }
            }
            put(da, dA);
        }
        if (dB != null) {
            double[] dbm = d(dB);
            for (int i = 0; i < g.batch; i++) { // dop(B) = op(A)ᵀ · dC, stored back in B's layout
                double[] t = new double[g.k * g.n];
                gemm(!transA, false, g.k, g.n, g.m, A, i * g.strideA, dC, i * g.m * g.n, t, 0, false);
                for (int r = 0; r < g.k; r++) for (int c = 0; c < g.n; c++) {
                    dbm[i * g.strideB + (transB ? c * g.k + r : r * g.n + c)] += t[r * g.n + c];
                }
            }
            put(dbm, dB);
        }
    }

    private record Dims(int batch, int m, int n, int k, int strideA, int strideB) {}

    private static Dims dims(Tensor a, boolean transA, Tensor b, boolean transB) {
        int m = transA ? a.dim(-1) : a.dim(-2), k = transA ? a.dim(-2) : a.dim(-1);
        int n = transB ? b.dim(-2) : b.dim(-1);
        int batch = a.shape().product(0, a.rank() - 2);
        boolean shared = b.rank() == 2;
        return new Dims(batch, m, n, k, m * k, shared ? 0 : n * k);
    }

    /** C[m,n] (+)= op(A)[m,k] · op(B)[k,n], all row-major with tight leading dimensions. */
    private static void gemm(boolean ta, boolean tb, int m, int n, int k, double[] A, int aOff, double[] B, int bOff,
                             double[] C, int cOff, boolean accumulate) {
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int p = 0; p < k; p++) {
                    double av = ta ? A[aOff + p * m + i] : A[aOff + i * k + p];
                    double bv = tb ? B[bOff + j * k + p] : B[bOff + p * n + j];
                    s += av * bv;
                }
                C[cOff + i * n + j] = accumulate ? C[cOff + i * n + j] + s : s;
            }
        }
    }

    // ---- normalisation and pointwise ---------------------------------------------------------

    @Override
    public void layerNorm(Tensor x, Tensor gamma, Tensor beta, float eps, Tensor out, Tensor mean, Tensor rstd) {
        int d = x.shape().last(), rows = x.shape().rows();
        double[] o = new double[x.size()], mu = new double[rows], rs = new double[rows];
        RefOps.layerNorm(d(x), d(gamma), d(beta), o, mu, rs, rows, d, eps);
        put(o, out);
        put(mu, mean);
        put(rs, rstd);
    }

    @Override
    public void layerNormBackward(Tensor dOut, Tensor x, Tensor gamma, Tensor mean, Tensor rstd, Tensor dX, Tensor dGamma, Tensor dBeta) {
        int d = x.shape().last(), rows = x.shape().rows();
        double[] dx = d(dX), dg = d(dGamma), dbt = d(dBeta);
        RefOps.layerNormBackward(d(dOut), d(x), d(gamma), d(mean), d(rstd), dx, dg, dbt, rows, d);
        put(dx, dX);
        put(dg, dGamma);
        put(dbt, dBeta);
    }

    @Override
    public void activation(Activation act, Tensor x, Tensor out) {
        double[] o = new double[x.size()];
        RefOps.activation(act, d(x), o, o.length);
        put(o, out);
    }

    @Override
    public void activationBackward(Activation act, Tensor x, Tensor dOut, Tensor dX) {
        double[] dx = d(dX);
        RefOps.activationBackward(act, d(x), d(dOut), dx, dx.length);
        put(dx, dX);
    }

    @Override
    public void add(Tensor a, Tensor b, Tensor out) {
        broadcastable(a, b, "add");
        double[] o = new double[a.size()];
        RefOps.add(d(a), d(b), o, o.length, b.size());
        put(o, out);
    }

    @Override
    public void mul(Tensor a, Tensor b, Tensor out) {
        broadcastable(a, b, "mul");
        double[] o = new double[a.size()];
        RefOps.mul(d(a), d(b), o, o.length, b.size());
        put(o, out);
    }

    @Override
    public void scale(Tensor x, float alpha, Tensor out) {
        double[] o = new double[x.size()];
        RefOps.scale(d(x), alpha, o, o.length);
        put(o, out);
    }

    @Override
    public void axpy(float alpha, Tensor x, Tensor y) {
        double[] yy = d(y);
        RefOps.axpy(alpha, d(x), yy, yy.length);
        put(yy, y);
    }

    @Override
    public void fill(Tensor x, float v) {
        double[] o = new double[x.size()];
        RefOps.fill(o, v, o.length);
        put(o, x);
    }

    @Override
    public void l2Norm(Tensor x, Tensor out) {
        put(new double[] {Math.sqrt(RefOps.sumSquares(d(x), x.size()))}, out);
    }

    @Override
    public void sumRows(Tensor x, Tensor out) {
        int n = out.size();
        double[] o = d(out);
        RefOps.sumRows(d(x), x.size() / n, n, o);
        put(o, out);
    }

    @Override
    public void dropout(Tensor x, float p, long seed, long stream, Tensor out) {
        double[] o = new double[x.size()];
        RefOps.dropout(d(x), o, o.length, p, seed, stream, 0L);
        put(o, out);
    }

    @Override
    public void dropoutBackward(Tensor dOut, float p, long seed, long stream, Tensor dX) {
        double[] dx = d(dX);
        RefOps.dropoutBackward(d(dOut), dx, dx.length, p, seed, stream, 0L);
        put(dx, dX);
    }

    @Override
    public void softmax(Tensor x, Tensor out) {
        double[] o = new double[x.size()];
        RefOps.softmax(d(x), o, x.shape().rows(), x.shape().last());
        put(o, out);
    }

    // ---- attention ---------------------------------------------------------------------------

    private static boolean[] pad(Tensor keyPad) {
        if (keyPad == null) return null;
        boolean[] r = new boolean[keyPad.size()];
        for (int i = 0; i < r.length; i++) r[i] = keyPad.bools()[keyPad.offset() + i] != 0;
        return r;
    }

    @Override
    public void attention(AttentionShape s, Tensor q, Tensor k, Tensor v, Tensor keyPad, Tensor out, Tensor lse) {
        double[] o = new double[out.size()], l = new double[lse.size()];
        RefAttention.forward(s, d(q), d(k), d(v), pad(keyPad), o, l);
        put(o, out);
        put(l, lse);
    }

    @Override
    public void attentionBackward(AttentionShape s, Tensor q, Tensor k, Tensor v, Tensor keyPad, Tensor out, Tensor lse,
                                  Tensor dOut, Tensor dQ, Tensor dK, Tensor dV) {
        // Recompute out and lse in double so the oracle's backward is exact to double precision.
        double[] qq = d(q), kk = d(k), vv = d(v);
        double[] o = new double[out.size()], l = new double[lse.size()];
        boolean[] p = pad(keyPad);
        RefAttention.forward(s, qq, kk, vv, p, o, l);
        double[] dq = d(dQ), dk = d(dK), dv = d(dV);
        RefAttention.backward(s, qq, kk, vv, p, o, l, d(dOut), dq, dk, dv);
        put(dq, dQ);
        put(dk, dK);
        put(dv, dV);
    }

    // ---- positions, embeddings, losses -------------------------------------------------------

    @Override
    public void rotary(Tensor x, Tensor positions, Tensor invFreq, int heads, int rot, Tensor out) {
        int rows = x.shape().rows(), headDim = x.shape().last() / heads;
        double[] o = new double[x.size()];
        RefOps.rotary(d(x), o, ints(positions), d(invFreq), rows, heads, headDim, rot);
        put(o, out);
    }

    @Override
    public void rotaryBackward(Tensor dOut, Tensor positions, Tensor invFreq, int heads, int rot, Tensor dX) {
        int rows = dOut.shape().rows(), headDim = dOut.shape().last() / heads;
        double[] dx = d(dX);
        RefOps.rotaryBackward(d(dOut), dx, ints(positions), d(invFreq), rows, heads, headDim, rot);
        put(dx, dX);
    }

    @Override
    public void embedding(Tensor table, Tensor ids, Tensor out) {
        double[] o = new double[out.size()];
        RefOps.embedding(d(table), ints(ids), o, ids.size(), table.dim(0), table.dim(1));
        put(o, out);
    }

    @Override
    public void embeddingBackward(Tensor dOut, Tensor ids, Tensor dTable) {
        double[] dt = d(dTable);
        RefOps.embeddingBackward(d(dOut), ints(ids), dt, ids.size(), dTable.dim(0), dTable.dim(1));
        put(dt, dTable);
    }

    @Override
    public void crossEntropy(Tensor logits, Tensor targets, int ignoreIndex, float zLoss, Tensor lse, Tensor loss) {
        double[] l = new double[lse.size()];
        put(new double[] {RefOps.crossEntropy(d(logits), ints(targets), logits.shape().rows(), logits.shape().last(), ignoreIndex, zLoss, l)}, loss);
        put(l, lse);
    }

    @Override
    public void crossEntropyBackward(Tensor dLoss, Tensor logits, Tensor targets, int ignoreIndex, float zLoss, Tensor lse, Tensor dLogits) {
        int rows = logits.shape().rows(), vocab = logits.shape().last();
        double[] lg = d(logits), l = new double[rows], dl = d(dLogits);
        int[] t = ints(targets);
        RefOps.crossEntropy(lg, t, rows, vocab, ignoreIndex, zLoss, l); // exact lse in double
        RefOps.crossEntropyBackward(dLoss.item(), lg, t, l, rows, vocab, ignoreIndex, zLoss, dl);
        put(dl, dLogits);
    }

    // ---- optimizer ---------------------------------------------------------------------------

    @Override
    public void adamw(Tensor param, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, long step) {
        double[] p = d(param), mm = d(m), vv = d(v);
        RefOps.adamw(p, d(grad), mm, vv, p.length, lr, beta1, beta2, eps, weightDecay, step);
        put(p, param);
        put(mm, m);
        put(vv, v);
    }
}
