package dev.perceiver4j.bench;

import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.fast.FastAttention;
import dev.perceiver4j.backend.cpu.fast.MaterializedAttention;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.Random;
import java.util.concurrent.TimeUnit;

/**
 * Fused attention ({@link FastAttention}) against a naive float implementation that materialises
 * the score matrix, at Perceiver shapes. FLOP convention for reports: forward
 * 2*Nq*Nk*(Dqk+Dv) per (batch, head), backward 2.5x that, forward+backward 3.5x.
 *
 * <pre>java --add-modules jdk.incubator.vector -jar perceiver4j-bench/target/perceiver4j-bench.jar AttentionBench</pre>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class AttentionBench {

    /**
     * encoder: language-perceiver input cross-attention; encoder-padded: the same with the last 512
     * of its 2,048 keys padded (a 1,536-byte input in a padded batch); latent: latent self-attention;
     * decoder: output cross-attention; ar: Perceiver AR causal cross-attention (latents = last 512).
     */
    @Param({"encoder", "latent", "decoder", "ar"})
    public String shape;

    @Param({"1", "2"})
    public int threads;

    private AttentionShape s;
    private CpuPool pool;
    private MaterializedAttention.Gemms gemms;
    private float[] q, k, v, out, lse, dOut, dq, dk, dv;
    private boolean[] pad;   // key padding: null but for encoder-padded

    static AttentionShape shapeOf(String name) {
        return switch (name) {
            case "encoder", "encoder-padded" -> heads(256, 2048, 32, 160, false);
            case "latent" -> heads(256, 256, 32, 160, false);
            case "decoder" -> heads(2048, 256, 32, 96, false);
            case "ar" -> heads(512, 4096, 64, 64, true);
            default -> throw new IllegalArgumentException("unknown shape " + name);
        };
    }

    private static AttentionShape heads(int nq, int nk, int dqk, int dv, boolean causal) {
        return new AttentionShape(1, 8, nq, nk, dqk, dv, (float) (1 / Math.sqrt(dqk)), causal, 0f, 0L, 0L);
    }

    @Setup(Level.Trial)
    public void setUp() {
        s = shapeOf(shape);
        if (shape.equals("encoder-padded")) {
            pad = new boolean[s.keyPadSize()];
            java.util.Arrays.fill(pad, s.nk() - 512, s.nk(), true);
        }
        pool = CpuPool.create(threads);
        gemms = MaterializedAttention.Gemms.of(new JavaSgemm(pool));
        Random rnd = new Random(1);
        q = random(rnd, s.qSize());
        k = random(rnd, s.kSize());
        v = random(rnd, s.vSize());
        dOut = random(rnd, s.outSize());
        out = new float[s.outSize()];
        lse = new float[s.lseSize()];
        dq = new float[s.qSize()];
        dk = new float[s.kSize()];
        dv = new float[s.vSize()];
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        pool.close();
    }

    @Benchmark
    public float fastForward() {
        FastAttention.forward(pool, s, q, 0, k, 0, v, 0, pad, out, 0, lse, 0);
        return out[0];
    }

    /**
     * The forward the CPU backend takes without a causal mask or dropout ({@link MaterializedAttention}:
     * scores written out, products through the pure-Java SGEMM). The causal "ar" shape is not one
     * of those: it fails there.
     */
    @Benchmark
    public float materializedForward() {
        if (!MaterializedAttention.applies(s)) throw new IllegalStateException("materialized attention does not take " + shape);
        MaterializedAttention.forward(gemms, s, q, 0, k, 0, v, 0, pad, out, 0, lse, 0);
        return out[0];
    }

    /** Gradients accumulate across invocations (as in gradient accumulation); nothing is zeroed. */
    @Benchmark
    public float fastForwardBackward() {
        FastAttention.forward(pool, s, q, 0, k, 0, v, 0, null, out, 0, lse, 0);
        FastAttention.backward(pool, s, q, 0, k, 0, v, 0, null, out, 0, lse, 0, dOut, 0, dq, 0, dk, 0, dv, 0);
        return dq[0];
    }

    @Benchmark
    public float naiveForward() {
        pool.parallelFor(s.batch() * s.heads(), 1, (from, to) -> {
            for (int bh = from; bh < to; bh++) NaiveAttention.forwardHead(s, bh, q, k, v, out);
        });
        return out[0];
    }

    @Benchmark
    public float naiveForwardBackward() {
        pool.parallelFor(s.batch() * s.heads(), 1, (from, to) -> {
            for (int bh = from; bh < to; bh++) {
                float[] p = NaiveAttention.forwardHead(s, bh, q, k, v, out);
                NaiveAttention.backwardHead(s, bh, p, q, k, v, dOut, dq, dk, dv);
            }
        });
        return dq[0];
    }

    private static float[] random(Random rnd, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = 2 * rnd.nextFloat() - 1;
        return a;
    }

    /**
     * The textbook baseline: per (batch, head) it builds the full Nq x Nk probability matrix in
     * float (allocated per call), then multiplies by V; backward reuses that matrix. Plain loops,
     * causal mask supported, no padding or dropout.
     */
    static final class NaiveAttention {
        private NaiveAttention() {}

        /** Writes out for head bh = b*H + h; returns the probabilities P [Nq, Nk]. */
        static float[] forwardHead(AttentionShape s, int bh, float[] q, float[] k, float[] v, float[] out) {
            int b = bh / s.heads(), h = bh % s.heads(), nq = s.nq(), nk = s.nk();
            int qs = s.heads() * s.dqk(), vs = s.heads() * s.dv();
            float[] p = new float[nq * nk];
            for (int i = 0; i < nq; i++) {
                int qi = (b * nq + i) * qs + h * s.dqk();
                int limit = s.keyLimit(i);
                float max = Float.NEGATIVE_INFINITY;
                for (int j = 0; j < nk; j++) {
                    float score = Float.NEGATIVE_INFINITY;
                    if (j < limit) {
                        int kj = (b * nk + j) * qs + h * s.dqk();
                        float dot = 0;
                        for (int c = 0; c < s.dqk(); c++) dot += q[qi + c] * k[kj + c];
                        score = dot * s.scale();
                    }
                    p[i * nk + j] = score;
                    max = Math.max(max, score);
                }
                float sum = 0;
                for (int j = 0; j < nk; j++) {
                    float e = (float) Math.exp(p[i * nk + j] - max);
                    p[i * nk + j] = e;
                    sum += e;
                }
                for (int j = 0; j < nk; j++) p[i * nk + j] /= sum;
                int oi = (b * nq + i) * vs + h * s.dv();
                for (int c = 0; c < s.dv(); c++) out[oi + c] = 0;
                for (int j = 0; j < nk; j++) {
                    float pij = p[i * nk + j];
                    int vj = (b * nk + j) * vs + h * s.dv();
                    for (int c = 0; c < s.dv(); c++) out[oi + c] += pij * v[vj + c];
                }
            }
            return p;
        }

        /** Adds the gradients of head bh, from its probability matrix p. */
        static void backwardHead(AttentionShape s, int bh, float[] p, float[] q, float[] k, float[] v,
                                 float[] dOut, float[] dq, float[] dk, float[] dv) {
            int b = bh / s.heads(), h = bh % s.heads(), nq = s.nq(), nk = s.nk();
            int qs = s.heads() * s.dqk(), vs = s.heads() * s.dv();
            float[] ds = new float[nq * nk];
            for (int i = 0; i < nq; i++) {
                int oi = (b * nq + i) * vs + h * s.dv();
                float rowDot = 0;
                for (int j = 0; j < nk; j++) {
                    int vj = (b * nk + j) * vs + h * s.dv();
                    float dp = 0;
                    for (int c = 0; c < s.dv(); c++) dp += dOut[oi + c] * v[vj + c];
                    ds[i * nk + j] = dp;
                    rowDot += p[i * nk + j] * dp;
                }
                for (int j = 0; j < nk; j++) ds[i * nk + j] = p[i * nk + j] * (ds[i * nk + j] - rowDot) * s.scale();
            }
            for (int i = 0; i < nq; i++) {
                int oi = (b * nq + i) * vs + h * s.dv();
                int qi = (b * nq + i) * qs + h * s.dqk();
                for (int j = 0; j < nk; j++) {
                    float pij = p[i * nk + j], dsij = ds[i * nk + j];
                    int vj = (b * nk + j) * vs + h * s.dv();
                    int kj = (b * nk + j) * qs + h * s.dqk();
                    for (int c = 0; c < s.dv(); c++) dv[vj + c] += pij * dOut[oi + c];
                    for (int c = 0; c < s.dqk(); c++) {
                        dq[qi + c] += dsij * k[kj + c];
                        dk[kj + c] += dsij * q[qi + c];
                    }
                }
            }
        }
    }
}
