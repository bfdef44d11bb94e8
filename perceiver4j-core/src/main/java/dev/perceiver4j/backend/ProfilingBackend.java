package dev.perceiver4j.backend;

import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Wraps a backend and times every op, keyed by op and shape ({@code -Dperceiver4j.profile=true},
 * or {@code bench --profile}). Tensors it creates name it as their backend, so every op of a
 * model run goes through it; each op is followed by {@link Backend#synchronize()}, so GPU times are
 * the op's own (the waits make the whole run slower: use it to find where time goes, and the plain
 * bench for totals).
 *
 * <p>Not thread-safe: one model run at a time.
 */
public final class ProfilingBackend implements Backend {

    /** Accumulated time of one op key. */
    private static final class Entry {
        long calls, nanos;
        double flops; // multiply-adds × 2, where known
    }

    private final Backend inner;
    private final Map<String, Entry> entries = new LinkedHashMap<>();

    public ProfilingBackend(Backend inner) {
        this.inner = inner;
    }

    /** The wrapped backend. */
    public Backend inner() {
        return inner;
    }

    /** Forgets everything timed so far (call after warm-up). */
    public void reset() {
        entries.clear();
    }

    /**
     * The ops by total time, largest first: calls, milliseconds per pass, share, and GFLOP/s for
     * matrix products and attention. {@code passes} divides the totals (timed passes since reset).
     */
    public String report(int passes) {
        List<Map.Entry<String, Entry>> rows = new ArrayList<>(entries.entrySet());
        rows.sort((a, b) -> Long.compare(b.getValue().nanos, a.getValue().nanos));
        long total = rows.stream().mapToLong(e -> e.getValue().nanos).sum();
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "%-72s %8s %10s %6s %9s%n", "op", "calls", "ms/pass", "share", "GFLOP/s"));
        for (Map.Entry<String, Entry> e : rows) {
            Entry v = e.getValue();
            String rate = v.flops > 0 ? String.format(Locale.ROOT, "%9.1f", v.flops / v.nanos) : "";
            sb.append(String.format(Locale.ROOT, "%-72s %8d %10.3f %5.1f%% %s%n", e.getKey(), v.calls / passes,
                    v.nanos / 1e6 / passes, 100.0 * v.nanos / Math.max(1, total), rate));
        }
        sb.append(String.format(Locale.ROOT, "%-72s %8s %10.3f%n", "total (ops + synchronisation)", "", total / 1e6 / passes));
        return sb.toString();
    }

    /** FLOPs counted so far by the ops whose key starts with {@code opPrefix} (e.g. "matmul "), since the last reset. */
    public double flops(String opPrefix) {
        return matching(k -> k.startsWith(opPrefix)).mapToDouble(e -> e.flops).sum();
    }

    /** Calls so far of the ops whose key starts with {@code opPrefix}, since the last reset. */
    public long calls(String opPrefix) {
        return callsWhere(k -> k.startsWith(opPrefix));
    }

    /** Calls so far of the ops whose key (as in the report) satisfies {@code key}, since the last reset. */
    public long callsWhere(java.util.function.Predicate<String> key) {
        return matching(key).mapToLong(e -> e.calls).sum();
    }

    private java.util.stream.Stream<Entry> matching(java.util.function.Predicate<String> key) {
        return entries.entrySet().stream().filter(e -> key.test(e.getKey())).map(Map.Entry::getValue);
    }

    private void time(String key, double flops, Runnable op) {
        long t0 = System.nanoTime();
        op.run();
        inner.synchronize();
        record(key, flops, System.nanoTime() - t0);
    }

    private void record(String key, double flops, long nanos) {
        Entry e = entries.computeIfAbsent(key, k -> new Entry());
        e.calls++;
        e.nanos += nanos;
        e.flops += flops;
    }

    /** Re-labels a tensor the inner backend created so that its ops come back through here. */
    private Tensor own(Tensor t) {
        return new Tensor(this, t.shape(), t.dtype(), t.data(), t.offset());
    }

    private static String shape(Tensor t) {
        return t == null ? "-" : t.shape().toString();
    }

    private static String matmulKey(String op, MatmulShape s, boolean transA, boolean transB, Tensor bias, Activation act) {
        return String.format(Locale.ROOT, "%s %s%dx%dx%d%s%s%s%s", op, s.batch() > 1 ? s.batch() + "*" : "", s.m(), s.k(), s.n(),
                transA ? " tA" : "", transB ? " tB" : "", bias != null ? " +bias" : "", act != Activation.NONE ? " " + act : "");
    }

    /** "attention[Backward] [bf16 ]b… h… …[ out bf16]": bf16 when q, k, v arrive as bf16; out bf16 when the output is stored so. */
    private static String attentionKey(String op, AttentionShape s, Tensor q, Tensor keyPad, Tensor out) {
        return String.format(Locale.ROOT, "%s %sb%d h%d q%d k%d dqk%d dv%d%s%s%s%s", op, q.dtype() == DType.BF16 ? "bf16 " : "",
                s.batch(), s.heads(), s.nq(), s.nk(), s.dqk(), s.dv(),
                s.causal() ? " causal" : "", keyPad != null ? " pad" : "", s.dropout() > 0 ? " dropout" : "",
                out.dtype() == DType.BF16 ? " out bf16" : "");
    }

    private static double attentionFlops(AttentionShape s) {
        return 2.0 * s.batch() * s.heads() * s.nq() * (double) s.nk() * (s.dqk() + s.dv()) / (s.causal() ? 2 : 1);
    }

    @Override public String name() { return inner.name() + " [profiled]"; }
    @Override public void synchronize() { inner.synchronize(); }
    @Override public String memoryReport() { return inner.memoryReport(); }
    @Override public DType matmulOperandType() { return inner.matmulOperandType(); }
    @Override public DType matmulOperandType(long rows) { return inner.matmulOperandType(rows); }
    @Override public boolean recomputesActivations() { return inner.recomputesActivations(); }
    @Override public boolean packsSelfAttention() { return inner.packsSelfAttention(); }
    @Override public boolean bf16Gradients() { return inner.bf16Gradients(); }

    @Override public Tensor empty(Shape shape, DType dtype) { return own(inner.empty(shape, dtype)); }
    @Override public Tensor zeros(Shape shape, DType dtype) { return own(inner.zeros(shape, dtype)); }
    @Override public Tensor persistentZeros(Shape shape, DType dtype) { return own(inner.persistentZeros(shape, dtype)); }
    @Override public void release(Object buffer) { inner.release(buffer); }
    @Override public Tensor fromFloats(float[] values, Shape shape) { return own(inner.fromFloats(values, shape)); }
    @Override public Tensor fromInts(int[] values, Shape shape) { return own(inner.fromInts(values, shape)); }
    @Override public Tensor fromBools(boolean[] values, Shape shape) { return own(inner.fromBools(values, shape)); }

    @Override public float[] toFloatArray(Tensor t) {
        long t0 = System.nanoTime();
        float[] r = inner.toFloatArray(t);
        record("toFloatArray " + shape(t), 0, System.nanoTime() - t0);
        return r;
    }

    @Override public void copy(Tensor src, Tensor dst) { time("copy " + shape(src), 0, () -> inner.copy(src, dst)); }
    @Override public void cast(Tensor src, Tensor dst) { time("cast " + src.dtype() + "->" + dst.dtype() + " " + shape(src), 0, () -> inner.cast(src, dst)); }

    @Override
    public void matmul(Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Activation act, Tensor out, Tensor preAct) {
        MatmulShape s = MatmulShape.of(a, transA, b, transB, out);
        time(matmulKey("matmul", s, transA, transB, bias, act), 2.0 * s.batch() * s.m() * s.n() * (double) s.k(),
                () -> inner.matmul(a, transA, b, transB, bias, act, out, preAct));
    }

    @Override
    public void matmulSharedInput(Tensor a, Tensor[] ws, Tensor[] biases, Tensor[] outs) {
        int k = a.shape().last(), rows = a.size() / k;
        StringBuilder key = new StringBuilder(String.format(Locale.ROOT, "matmulShared %dx%dx", rows, k));
        double flops = 0;
        for (int i = 0; i < ws.length; i++) {
            key.append(i == 0 ? "" : "+").append(ws[i].dim(0));
            flops += 2.0 * rows * k * (double) ws[i].dim(0);
        }
        key.append(" tB").append(biases.length > 0 && biases[0] != null ? " +bias" : "");
        time(key.toString(), flops, () -> inner.matmulSharedInput(a, ws, biases, outs));
    }

    @Override
    public void matmulAdd(Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Tensor residual, Tensor out) {
        MatmulShape s = MatmulShape.of(a, transA, b, transB, out);
        time(matmulKey("matmulAdd", s, transA, transB, bias, Activation.NONE), 2.0 * s.batch() * s.m() * s.n() * (double) s.k(),
                () -> inner.matmulAdd(a, transA, b, transB, bias, residual, out));
    }

    @Override
    public void matmulBackward(Tensor dOut, Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Activation act, Tensor preAct,
                               Tensor dA, Tensor dB, Tensor dBias) {
        MatmulShape s = MatmulShape.of(a, transA, b, transB, dOut);
        int products = (dA != null ? 1 : 0) + (dB != null ? 1 : 0);
        time(matmulKey("matmulBackward", s, transA, transB, bias, act) + (dA != null ? " dA" : "") + (dB != null ? " dB" : ""),
                products * 2.0 * s.batch() * s.m() * s.n() * (double) s.k(),
                () -> inner.matmulBackward(dOut, a, transA, b, transB, bias, act, preAct, dA, dB, dBias));
    }

    @Override public void layerNorm(Tensor x, Tensor gamma, Tensor beta, float eps, Tensor out, Tensor mean, Tensor rstd) {
        time("layerNorm " + shape(x), 0, () -> inner.layerNorm(x, gamma, beta, eps, out, mean, rstd));
    }
    @Override public void layerNormBackward(Tensor dOut, Tensor x, Tensor gamma, Tensor mean, Tensor rstd, Tensor dX, Tensor dGamma, Tensor dBeta) {
        time("layerNormBackward " + shape(x), 0, () -> inner.layerNormBackward(dOut, x, gamma, mean, rstd, dX, dGamma, dBeta));
    }
    @Override public void activation(Activation act, Tensor x, Tensor out) { time("activation " + act + " " + shape(x), 0, () -> inner.activation(act, x, out)); }
    @Override public void activationBackward(Activation act, Tensor x, Tensor dOut, Tensor dX) {
        time("activationBackward " + act + " " + shape(x), 0, () -> inner.activationBackward(act, x, dOut, dX));
    }
    @Override public void add(Tensor a, Tensor b, Tensor out) { time("add " + shape(a) + " " + shape(b), 0, () -> inner.add(a, b, out)); }
    @Override public void mul(Tensor a, Tensor b, Tensor out) { time("mul " + shape(a) + " " + shape(b), 0, () -> inner.mul(a, b, out)); }
    @Override public void scale(Tensor x, float alpha, Tensor out) { time("scale " + shape(x), 0, () -> inner.scale(x, alpha, out)); }
    @Override public void axpy(float alpha, Tensor x, Tensor y) { time("axpy " + shape(x), 0, () -> inner.axpy(alpha, x, y)); }
    @Override public void fill(Tensor x, float v) { time("fill " + shape(x), 0, () -> inner.fill(x, v)); }
    @Override public void l2Norm(Tensor x, Tensor out) { time("l2Norm " + shape(x), 0, () -> inner.l2Norm(x, out)); }
    @Override public void clipByNorm(Tensor x, Tensor norm, float maxNorm) { time("clipByNorm " + shape(x), 0, () -> inner.clipByNorm(x, norm, maxNorm)); }
    @Override public void sumRows(Tensor x, Tensor out) { time("sumRows " + shape(x), 0, () -> inner.sumRows(x, out)); }
    @Override public void dropout(Tensor x, float p, long seed, long stream, Tensor out) {
        time("dropout " + shape(x), 0, () -> inner.dropout(x, p, seed, stream, out));
    }
    @Override public void dropoutBackward(Tensor dOut, float p, long seed, long stream, Tensor dX) {
        time("dropoutBackward " + shape(dOut), 0, () -> inner.dropoutBackward(dOut, p, seed, stream, dX));
    }
    @Override public void softmax(Tensor x, Tensor out) { time("softmax " + shape(x), 0, () -> inner.softmax(x, out)); }
    @Override public void narrow(Tensor src, int axis, int start, Tensor dst, boolean accumulate) {
        time("narrow " + shape(src) + "->" + shape(dst), 0, () -> inner.narrow(src, axis, start, dst, accumulate));
    }
    @Override public void unnarrow(Tensor src, int axis, int start, Tensor dst, boolean accumulate) {
        time("unnarrow " + shape(src) + "->" + shape(dst), 0, () -> inner.unnarrow(src, axis, start, dst, accumulate));
    }

    @Override public void writeInts(int[] values, Tensor dst) { time("writeInts " + shape(dst), 0, () -> inner.writeInts(values, dst)); }
    @Override public void writeBools(boolean[] values, Tensor dst) { time("writeBools " + shape(dst), 0, () -> inner.writeBools(values, dst)); }

    @Override public void scatterRows(Tensor src, Tensor rows, Tensor dst) {
        time("scatterRows " + shape(src) + "->" + shape(dst), 0, () -> inner.scatterRows(src, rows, dst));
    }

    @Override public void attention(AttentionShape s, Tensor q, Tensor k, Tensor v, Tensor keyPad, Tensor out, Tensor lse) {
        time(attentionKey("attention", s, q, keyPad, out), attentionFlops(s), () -> inner.attention(s, q, k, v, keyPad, out, lse));
    }
    @Override public void attentionBackward(AttentionShape s, Tensor q, Tensor k, Tensor v, Tensor keyPad, Tensor out, Tensor lse,
                                            Tensor dOut, Tensor dQ, Tensor dK, Tensor dV) {
        time(attentionKey("attentionBackward", s, q, keyPad, out), 2.5 * attentionFlops(s),
                () -> inner.attentionBackward(s, q, k, v, keyPad, out, lse, dOut, dQ, dK, dV));
    }

    @Override public void attentionPacked(AttentionShape s, Tensor qkv, Tensor out, Tensor lse) {
        time(attentionKey("attentionPacked", s, qkv, null, out), attentionFlops(s), () -> inner.attentionPacked(s, qkv, out, lse));
    }
    @Override public void attentionPackedBackward(AttentionShape s, Tensor qkv, Tensor out, Tensor lse, Tensor dOut, Tensor dQkv) {
        time(attentionKey("attentionPackedBackward", s, qkv, null, out), 2.5 * attentionFlops(s),
                () -> inner.attentionPackedBackward(s, qkv, out, lse, dOut, dQkv));
    }
    @Override public void attentionKvPacked(AttentionShape s, Tensor q, Tensor kv, Tensor keyPad, Tensor out, Tensor lse) {
        time(attentionKey("attentionKvPacked", s, q, keyPad, out), attentionFlops(s), () -> inner.attentionKvPacked(s, q, kv, keyPad, out, lse));
    }
    @Override public void attentionKvPackedBackward(AttentionShape s, Tensor q, Tensor kv, Tensor keyPad, Tensor out, Tensor lse, Tensor dOut,
                                                    Tensor dQ, Tensor dKv) {
        time(attentionKey("attentionKvPackedBackward", s, q, keyPad, out), 2.5 * attentionFlops(s),
                () -> inner.attentionKvPackedBackward(s, q, kv, keyPad, out, lse, dOut, dQ, dKv));
    }

    @Override public void rotary(Tensor x, Tensor positions, Tensor invFreq, int heads, int rot, Tensor out) {
        time("rotary " + shape(x), 0, () -> inner.rotary(x, positions, invFreq, heads, rot, out));
    }
    @Override public void rotaryBackward(Tensor dOut, Tensor positions, Tensor invFreq, int heads, int rot, Tensor dX) {
        time("rotaryBackward " + shape(dOut), 0, () -> inner.rotaryBackward(dOut, positions, invFreq, heads, rot, dX));
    }
    @Override public void embedding(Tensor table, Tensor ids, Tensor out) { time("embedding " + shape(out), 0, () -> inner.embedding(table, ids, out)); }
    @Override public void embeddingBackward(Tensor dOut, Tensor ids, Tensor dTable) {
        time("embeddingBackward " + shape(dOut), 0, () -> inner.embeddingBackward(dOut, ids, dTable));
    }
    @Override public void crossEntropy(Tensor logits, Tensor targets, int ignoreIndex, float zLoss, Tensor lse, Tensor loss) {
        time("crossEntropy " + shape(logits), 0, () -> inner.crossEntropy(logits, targets, ignoreIndex, zLoss, lse, loss));
    }
    @Override public void crossEntropyBackward(Tensor dLoss, Tensor logits, Tensor targets, int ignoreIndex, float zLoss, Tensor lse, Tensor dLogits) {
        time("crossEntropyBackward " + shape(logits), 0, () -> inner.crossEntropyBackward(dLoss, logits, targets, ignoreIndex, zLoss, lse, dLogits));
    }
    @Override public void adamw(Tensor param, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, long step) {
        time("adamw " + shape(param), 0, () -> inner.adamw(param, grad, m, v, lr, beta1, beta2, eps, weightDecay, step));
    }
}
