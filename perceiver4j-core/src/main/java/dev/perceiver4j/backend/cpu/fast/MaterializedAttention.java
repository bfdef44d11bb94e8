package dev.perceiver4j.backend.cpu.fast;

import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;

import java.util.Arrays;

/**
 * Attention forward with each block's scores written out, for attention without a causal mask or
 * dropout (the Perceiver IO latent self-attention, and cross-attention, padded keys or not): per task
 * (b, h, block of query rows)
 * <pre>
 *   S   = scale Q_blk K_h^T       [rows, Nk]   SGEMM (transB), into this thread's scratch
 *   S   = softmax(S) by rows                   lse_i = max_i + log Σ_j exp(S_ij − max_i)
 *   out = S V_h                   [rows, Dv]   SGEMM, straight into out [B, Nq, H*Dv]
 * </pre>
 * With key padding the products take only the keys from the batch row's first real key to its last
 * (right or left padding then costs nothing), and padded keys between those get S = −inf (exp gives
 * 0). A batch row whose keys are all padded gets out = 0 and lse = −inf, as {@link FastAttention}'s.
 * The two products are most of the arithmetic and the SGEMM's register tiles do them far faster
 * than the fused kernel's tiles ({@link FastAttention}, which keeps the score tile to BLOCK_K keys
 * and rescales its accumulator per tile): on gpu-host's Xeon the fused forward of the
 * language-perceiver's latent attention ran at about 26 GFLOP/s per thread (docs/benchmarks.md,
 * session 20). The scores cost {@code rows x Nk} floats per thread (at most {@value #MAX_SCORES}).
 * The output and lse are those of {@link FastAttention#forward} up to rounding, so its backward
 * (which recomputes P from lse) serves both.
 */
public final class MaterializedAttention {

    /** Most floats of one task's score block (4 MiB), a buffer each thread keeps. */
    static final int MAX_SCORES = 1 << 20;
    /** Score floats per task aimed at (512 KiB: the block stays in L2 between softmax and P V) when rows are split anyway. */
    static final int L2_SCORES = 1 << 17;
    /** Fewest query rows per task (fewer: the products' tiles run mostly empty). */
    static final int MIN_ROWS = 32;
    /** Tasks per thread aimed at when a head's rows are split (a shorter tail when threads run unevenly). */
    private static final int TASKS_PER_THREAD = 4;

    private static final ThreadLocal<float[]> SCORES = ThreadLocal.withInitial(() -> new float[0]);

    /**
     * The two SGEMMs of {@link #forward}: {@code products} for P . V, and {@code scores} for
     * scale Q . K^T, the same kernel without the transposed formulation (k = Dqk is too short for
     * the transposed one's merges). Made once per caller by {@link #of}.
     */
    public record Gemms(JavaSgemm products, JavaSgemm scores) {
        public Gemms {
            if (products.pool() != scores.pool()) throw new IllegalArgumentException("both SGEMMs of materialized attention need the same pool");
        }

        /** The pair for {@code gemm}: itself for P . V, its kernel in the packed formulation for the scores. */
        public static Gemms of(JavaSgemm gemm) {
            return new Gemms(gemm, new JavaSgemm(gemm.pool(), gemm.kernel(), JavaSgemm.Formulation.PACKED));
        }
    }

    private MaterializedAttention() {}

    /** Whether {@link #forward} takes this call: no causal mask, no dropout, and MIN_ROWS rows of scores fit the scratch (any key padding). */
    public static boolean applies(AttentionShape s) {
        return !s.causal() && s.dropout() == 0f && (long) s.nk() * MIN_ROWS <= MAX_SCORES;
    }

    /**
     * Writes out [B, Nq, H*Dv] (from outOff) and lse [B, H, Nq] (from lseOff), as {@link
     * FastAttention#forward} does for the calls that {@link #applies} to; keyPad is null or [B*Nk],
     * true marking a padded key. The tasks run on the pool of {@code gemms}, and each task's products
     * on its own thread (a nested call runs inline).
     */
    public static void forward(Gemms gemms, AttentionShape s,
                               float[] q, int qOff, float[] k, int kOff, float[] v, int vOff, boolean[] keyPad,
                               float[] out, int outOff, float[] lse, int lseOff) {
        if (!applies(s)) throw new IllegalArgumentException("materialized attention takes no causal mask or dropout, and Nk <= "
                + MAX_SCORES / MIN_ROWS + ": " + s);
        FastAttention.requireArguments(s, q, qOff, k, kOff, v, vOff, keyPad, out, outOff, lse, lseOff);
        CpuPool pool = gemms.products().pool();
        int heads = s.batch() * s.heads(), nq = s.nq(), nk = s.nk();
        int rows = blockRows(heads, nq, nk, pool.threads());
        int blocks = (nq + rows - 1) / rows;
        int qkStride = s.heads() * s.dqk(), vStride = s.heads() * s.dv();
        KeyRange[] ranges = KeyRange.of(keyPad, s.batch(), nk);
        pool.parallelForClaimed(heads * blocks, 1, (from, to) -> {
            float[] scores = scores(rows * nk);
            for (int t = from; t < to; t++) {
                int bh = t / blocks, b = bh / s.heads(), h = bh % s.heads();
                int i0 = t % blocks * rows, n = Math.min(rows, nq - i0);
                int lseAt = lseOff + bh * nq + i0, outAt = outOff + (b * nq + i0) * vStride + h * s.dv();
                KeyRange keys = ranges == null ? null : ranges[b];
                int j0 = keys == null ? 0 : keys.from(), m = keys == null ? nk : keys.to() - keys.from();   // keys [j0, j0 + m)
                if (m == 0) {   // no key to attend: out 0, lse −inf
                    for (int r = 0; r < n; r++) {
                        Arrays.fill(out, outAt + r * vStride, outAt + r * vStride + s.dv(), 0f);
                        lse[lseAt + r] = Float.NEGATIVE_INFINITY;
                    }
                    continue;
                }
                // S [n, m] = scale Q[b, i0:i0+n, h] . K[b, j0:j0+m, h]^T
                gemms.scores().sgemm(false, true, n, m, s.dqk(), s.scale(),
                        q, qOff + (b * nq + i0) * qkStride + h * s.dqk(), qkStride,
                        k, kOff + (b * nk + j0) * qkStride + h * s.dqk(), qkStride, 0f, scores, 0, m);
                for (int r = 0; r < n; r++) {
                    if (keys != null) for (int j : keys.inner()) scores[r * m + j - j0] = Float.NEGATIVE_INFINITY;   // exp gives 0
                    lse[lseAt + r] = FastOps.softmaxRow(scores, r * m, scores, r * m, m);
                }
                // out[b, i0:i0+n, h] = P . V[b, j0:j0+m, h]
                gemms.products().sgemm(false, false, n, s.dv(), m, 1f, scores, 0, m,
                        v, vOff + (b * nk + j0) * vStride + h * s.dv(), vStride, 0f, out, outAt, vStride);
            }
        });
    }

    /**
     * Query rows per task: a whole head when there are enough heads for {@value #TASKS_PER_THREAD}
     * tasks per thread, else heads split into blocks of at least {@value #MIN_ROWS} rows (and at most
     * what the scratch holds).
     */
    public static int blockRows(int heads, int nq, int nk, int threads) {
        int perHead = Math.max(1, (threads * TASKS_PER_THREAD + heads - 1) / heads);
        int rows = Math.min((nq + perHead - 1) / perHead, L2_SCORES / nk);
        return Math.min(Math.min(Math.max(MIN_ROWS, rows), nq), MAX_SCORES / nk);
    }

    /**
     * The keys a batch row attends: those from its first real key to its last, [from, to) (empty when
     * every key is padded), and the padded keys between them (inner).
     */
    private record KeyRange(int from, int to, int[] inner) {
        /** Per batch row, or null when no key is padded. */
        static KeyRange[] of(boolean[] keyPad, int batch, int nk) {
            if (keyPad == null) return null;
            KeyRange[] r = new KeyRange[batch];
            boolean any = false;
            for (int b = 0; b < batch; b++) {
                int base = b * nk, from = 0, to = nk;
                while (from < nk && keyPad[base + from]) from++;
                while (to > from && keyPad[base + to - 1]) to--;
                int count = 0;
                for (int j = from; j < to; j++) if (keyPad[base + j]) count++;
                int[] inner = new int[count];
                for (int j = from, c = 0; j < to; j++) if (keyPad[base + j]) inner[c++] = j;
                r[b] = new KeyRange(from, to, inner);
                any |= from > 0 || to < nk || count > 0;
            }
            return any ? r : null;
        }
    }

    private static float[] scores(int size) {
        float[] a = SCORES.get();
        if (a.length < size) {
            a = new float[size];
            SCORES.set(a);
        }
        return a;
    }
}
