package dev.perceiver4j.backend.cpu.gemm;

import dev.perceiver4j.backend.cpu.CpuPool;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.util.Arrays;
import java.util.Objects;

/**
 * Pure-Java SGEMM on the Vector API, organised like GotoBLAS/BLIS.
 *
 * <h2>Blocking scheme</h2>
 * With VL = lanes of {@link #SPECIES} (16 floats on AVX-512, 8 on AVX2):
 * <pre>
 *   for jc in [0, n) step NC          NC = 3072 columns at most (a multiple of NR; fewer when
 *                                     k x NC would pass MAX_STRIP floats)
 *     pack B[0:k, jc:jc+NC] as K panels of KC rows, each in slivers of NR columns: sliver s =
 *                                     KC x NR, row-major (every B row/column read in one run)
 *     for pc in [0, k) step KC        KC = 256 at most (k is cut into equal panels)
 *       for ic in [0, m) step MC      MC = 256 rows at most (equal blocks, multiples of MR)
 *         pack A[ic:ic+MC, pc:pc+KC] into slivers of MR rows: sliver = KC x MR, k-major
 *                                     (256 x 256 x 4 B: stays in L2)
 *         for jr in [0, NC) step NR   one B sliver (KC x NR x 4 B) stays in L1
 *           for ir in [0, MC) step MR
 *             micro-kernel: C[ir:ir+MR, jr:jr+NR] (+)= A sliver . B sliver
 * </pre>
 * The micro-kernel keeps an MR x NR = 8 x (2 x VL) tile of C in 16 vector accumulators; per
 * k step it loads 2 vectors of the B sliver, broadcasts 8 scalars of the A sliver and issues
 * 16 independent FMAs. The packed slivers are zero-padded to full MR / NR, so tails in m and n
 * cost nothing in the kernel: a partial tile is computed into a small buffer and only its valid
 * part is merged into C. Tails in k are just a shorter KC. Packing handles all four transpose
 * combinations and any lda / ldb, so the kernel only ever sees unit-stride panels.
 *
 * <h2>Threads</h2>
 * The output is split into at most {@code pool.threads()} contiguous strips along its larger
 * dimension (columns in multiples of NR, or rows in multiples of MR); each thread runs the whole
 * blocked algorithm on its strip with its own packing buffers (one {@link Workspace} per thread,
 * reused across calls). Splitting the larger dimension keeps the duplicated packing (each thread
 * packs all of the operand that is not split) small. Products under ~2 MFLOP run on the caller only.
 */
public final class JavaSgemm implements Sgemm {

    static final VectorSpecies<Float> SPECIES = FloatVector.SPECIES_PREFERRED;
    private static final int VL = SPECIES.length();

    /** Rows of the register tile. */
    static final int MR = 8;
    /** Columns of the register tile: 2 vectors. */
    static final int NR = 2 * VL;
    /** Depth of one packed panel. */
    static final int KC = 256;
    /** Rows of one packed A block (multiple of MR). */
    static final int MC = 256;
    /** Columns of one packed B panel (multiple of NR). */
    static final int NC = Math.max(NR, 3072 / NR * NR);

    /** Most floats of one packed B strip (k x strip width): 8 MiB per thread. */
    private static final int MAX_STRIP = 1 << 21;

    /** Below this many flops (2mnk) the product runs on the calling thread alone. */
    private static final long PARALLEL_MIN_FLOPS = 1L << 21;

    /** Per-thread packing buffers, grown on demand and reused across calls. */
    private static final class Workspace {
        float[] packA = new float[0];
        float[] packB = new float[0];
        final float[] tile = new float[MR * NR];

        float[] packA(int size) {
            if (packA.length < size) packA = new float[size];
            return packA;
        }

        float[] packB(int size) {
            if (packB.length < size) packB = new float[size];
            return packB;
        }
    }

    private static final ThreadLocal<Workspace> WORKSPACE = ThreadLocal.withInitial(Workspace::new);

    private final CpuPool pool;

    public JavaSgemm(CpuPool pool) {
        this.pool = Objects.requireNonNull(pool, "pool");
    }

    @Override
    public String name() {
        return "java-vector(" + pool.threads() + " threads, " + SPECIES.vectorBitSize() + "-bit)";
    }

    @Override
    public void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                      float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
                      float beta, float[] c, int cOff, int ldc) {
        NaiveSgemm.checkArgs(transA, transB, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        if (NaiveSgemm.handleTrivial(m, n, k, alpha, beta, c, cOff, ldc)) return;

        long flops = 2L * m * n * k;
        if (pool.threads() == 1 || flops < PARALLEL_MIN_FLOPS) {
            gemmBlock(transA, transB, 0, m, 0, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
        } else if (n >= m) {
            // Column strips of whole NR slivers; each thread packs all of A (m x k) and its part of B.
            pool.parallelFor(ceilDiv(n, NR), 1, (u0, u1) -> gemmBlock(transA, transB, 0, m,
                    u0 * NR, Math.min(n, u1 * NR), k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc));
        } else {
            // Row strips of whole MR slivers; each thread packs all of B (k x n) and its part of A.
            pool.parallelFor(ceilDiv(m, MR), 1, (u0, u1) -> gemmBlock(transA, transB,
                    u0 * MR, Math.min(m, u1 * MR), 0, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc));
        }
    }

    /** The blocked algorithm for the strip C[i0:i1, j0:j1] (global indices), on the current thread. */
    private static void gemmBlock(boolean transA, boolean transB, int i0, int i1, int j0, int j1, int k,
                                  float alpha, float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
                                  float beta, float[] c, int cOff, int ldc) {
        Workspace ws = WORKSPACE.get();
        // Balanced blocks: e.g. m = 256 gives two M blocks of 128 rather than 192 + 64, and k = 300
        // two K panels of 152 + 148 rather than 256 + 44 (short panels waste the kernel's setup).
        int kcStep = ceilDiv(k, ceilDiv(k, KC));
        int mcStep = roundUp(ceilDiv(i1 - i0, ceilDiv(i1 - i0, MC)), MR);
        // The whole K extent of a column strip is packed at once (each B row or column is read in
        // one long run, which the hardware prefetchers follow from DRAM); strips narrow for deep k.
        int ncStep = Math.min(NC, Math.max(NR, MAX_STRIP / k / NR * NR));
        for (int jc = j0; jc < j1; jc += ncStep) {
            int nc = Math.min(ncStep, j1 - jc), ncPad = roundUp(nc, NR);
            float[] bp = ws.packB(k * ncPad);
            packB(transB, b, bOff, ldb, k, kcStep, jc, nc, bp);
            for (int pc = 0; pc < k; pc += kcStep) {
                int kc = Math.min(kcStep, k - pc);
                float betaNow = pc == 0 ? beta : 1f; // later K panels accumulate onto the first
                int panel = pc * ncPad;      // K panel pc of the packed strip
                for (int ic = i0; ic < i1; ic += mcStep) {
                    int mc = Math.min(mcStep, i1 - ic);
                    float[] ap = ws.packA(roundUp(mc, MR) * kc);
                    // A stored [m,k] needs no packing: its MR rows are read in place (8 sequential
                    // streams); only a partial last sliver is packed, zero-padded, at ap[0].
                    int direct = transA ? 0 : mc / MR * MR;
                    if (direct < mc) packA(transA, a, aOff, lda, ic + direct, mc - direct, pc, kc, ap);
                    macroKernel(mc, nc, kc, alpha, betaNow, ap, bp, panel, c, cOff + ic * ldc + jc, ldc, ws.tile,
                            direct, a, aOff + ic * lda + pc, lda);
                }
            }
        }
    }

    /**
     * C[0:mc, 0:nc] at cBase (+)= A block [mc x kc] . packed B panel [kc x nc]. The first
     * {@code direct} rows of A are read in place from {@code a} (row i at aDirect + i*lda); the
     * rest come packed from {@code ap}.
     */
    private static void macroKernel(int mc, int nc, int kc, float alpha, float beta, float[] ap, float[] bp, int panel,
                                    float[] c, int cBase, int ldc, float[] tile,
                                    int direct, float[] a, int aDirect, int lda) {
        for (int jr = 0; jr < nc; jr += NR) {
            int nr = Math.min(NR, nc - jr);
            int bBase = panel + jr * kc; // sliver jr / NR starts at (jr / NR) * kc * NR
            for (int ir = 0; ir < mc; ir += MR) {
                int mr = Math.min(MR, mc - ir);
                int ci = cBase + ir * ldc + jr;
                if (ir < direct) {
                    microKernelDirect(kc, a, aDirect + ir * lda, lda, bp, bBase, tile);
                } else {
                    microKernel(kc, ap, (ir - direct) * kc, bp, bBase, tile);
                }
                if (mr == MR && nr == NR) {
                    mergeFullTile(tile, c, ci, ldc, alpha, beta);
                } else {
                    // Tail tile: the padded lanes hold zero products; merge only the valid mr x nr part.
                    for (int r = 0; r < mr; r++) {
                        int row = ci + r * ldc;
                        for (int j = 0; j < nr; j++) {
                            float old = beta == 0f ? 0f : beta * c[row + j];
                            c[row + j] = alpha * tile[r * NR + j] + old;
                        }
                    }
                }
            }
        }
    }

    /**
     * The register-blocked kernel: tile[MR x NR] = A sliver . B sliver, where A is an MR-row sliver
     * (kc x MR, k-major) and B an NR-column sliver (kc x NR, row-major). The 16 accumulators are
     * written to the small L1-resident tile buffer rather than to C, which keeps this method small
     * enough for C2 to hold every accumulator in a register (no vector boxing).
     */
    private static void microKernel(int kc, float[] ap, int aBase, float[] bp, int bBase, float[] tile) {
        FloatVector zero = FloatVector.zero(SPECIES);
        FloatVector c00 = zero, c01 = zero;
        FloatVector c10 = zero, c11 = zero;
        FloatVector c20 = zero, c21 = zero;
        FloatVector c30 = zero, c31 = zero;
        FloatVector c40 = zero, c41 = zero;
        FloatVector c50 = zero, c51 = zero;
        FloatVector c60 = zero, c61 = zero;
        FloatVector c70 = zero, c71 = zero;
        for (int p = 0; p < kc; p++) {
            int ai = aBase + p * MR;
            int bi = bBase + p * NR;
            FloatVector b0 = FloatVector.fromArray(SPECIES, bp, bi);
            FloatVector b1 = FloatVector.fromArray(SPECIES, bp, bi + 1 * VL);
            FloatVector a;
            a = FloatVector.broadcast(SPECIES, ap[ai + 0]);
            c00 = a.fma(b0, c00); c01 = a.fma(b1, c01);
            a = FloatVector.broadcast(SPECIES, ap[ai + 1]);
            c10 = a.fma(b0, c10); c11 = a.fma(b1, c11);
            a = FloatVector.broadcast(SPECIES, ap[ai + 2]);
            c20 = a.fma(b0, c20); c21 = a.fma(b1, c21);
            a = FloatVector.broadcast(SPECIES, ap[ai + 3]);
            c30 = a.fma(b0, c30); c31 = a.fma(b1, c31);
            a = FloatVector.broadcast(SPECIES, ap[ai + 4]);
            c40 = a.fma(b0, c40); c41 = a.fma(b1, c41);
            a = FloatVector.broadcast(SPECIES, ap[ai + 5]);
            c50 = a.fma(b0, c50); c51 = a.fma(b1, c51);
            a = FloatVector.broadcast(SPECIES, ap[ai + 6]);
            c60 = a.fma(b0, c60); c61 = a.fma(b1, c61);
            a = FloatVector.broadcast(SPECIES, ap[ai + 7]);
            c70 = a.fma(b0, c70); c71 = a.fma(b1, c71);
        }
        c00.intoArray(tile, 0 * NR + 0 * VL);
        c01.intoArray(tile, 0 * NR + 1 * VL);
        c10.intoArray(tile, 1 * NR + 0 * VL);
        c11.intoArray(tile, 1 * NR + 1 * VL);
        c20.intoArray(tile, 2 * NR + 0 * VL);
        c21.intoArray(tile, 2 * NR + 1 * VL);
        c30.intoArray(tile, 3 * NR + 0 * VL);
        c31.intoArray(tile, 3 * NR + 1 * VL);
        c40.intoArray(tile, 4 * NR + 0 * VL);
        c41.intoArray(tile, 4 * NR + 1 * VL);
        c50.intoArray(tile, 5 * NR + 0 * VL);
        c51.intoArray(tile, 5 * NR + 1 * VL);
        c60.intoArray(tile, 6 * NR + 0 * VL);
        c61.intoArray(tile, 6 * NR + 1 * VL);
        c70.intoArray(tile, 7 * NR + 0 * VL);
        c71.intoArray(tile, 7 * NR + 1 * VL);
    }

    /**
     * {@link #microKernel} with the A sliver read in place: MR rows of a row-major A starting at
     * {@code aRow}, row stride {@code lda}, columns 0..kc-1 of the current K panel.
     */
    private static void microKernelDirect(int kc, float[] a, int aRow, int lda, float[] bp, int bBase, float[] tile) {
        int r0 = aRow, r1 = r0 + lda, r2 = r1 + lda, r3 = r2 + lda, r4 = r3 + lda, r5 = r4 + lda, r6 = r5 + lda, r7 = r6 + lda;
        FloatVector zero = FloatVector.zero(SPECIES);
        FloatVector c00 = zero, c01 = zero;
        FloatVector c10 = zero, c11 = zero;
        FloatVector c20 = zero, c21 = zero;
        FloatVector c30 = zero, c31 = zero;
        FloatVector c40 = zero, c41 = zero;
        FloatVector c50 = zero, c51 = zero;
        FloatVector c60 = zero, c61 = zero;
        FloatVector c70 = zero, c71 = zero;
        for (int p = 0; p < kc; p++) {
            int bi = bBase + p * NR;
            FloatVector b0 = FloatVector.fromArray(SPECIES, bp, bi);
            FloatVector b1 = FloatVector.fromArray(SPECIES, bp, bi + 1 * VL);
            FloatVector v;
            v = FloatVector.broadcast(SPECIES, a[r0 + p]);
            c00 = v.fma(b0, c00); c01 = v.fma(b1, c01);
            v = FloatVector.broadcast(SPECIES, a[r1 + p]);
            c10 = v.fma(b0, c10); c11 = v.fma(b1, c11);
            v = FloatVector.broadcast(SPECIES, a[r2 + p]);
            c20 = v.fma(b0, c20); c21 = v.fma(b1, c21);
            v = FloatVector.broadcast(SPECIES, a[r3 + p]);
            c30 = v.fma(b0, c30); c31 = v.fma(b1, c31);
            v = FloatVector.broadcast(SPECIES, a[r4 + p]);
            c40 = v.fma(b0, c40); c41 = v.fma(b1, c41);
            v = FloatVector.broadcast(SPECIES, a[r5 + p]);
            c50 = v.fma(b0, c50); c51 = v.fma(b1, c51);
            v = FloatVector.broadcast(SPECIES, a[r6 + p]);
            c60 = v.fma(b0, c60); c61 = v.fma(b1, c61);
            v = FloatVector.broadcast(SPECIES, a[r7 + p]);
            c70 = v.fma(b0, c70); c71 = v.fma(b1, c71);
        }
        // Stores written out, not in a helper: passing 16 vectors to a method defeats C2's inlining
        // and boxes them (measured: 5x slower), so this block repeats microKernel's.
        c00.intoArray(tile, 0 * NR + 0 * VL);
        c01.intoArray(tile, 0 * NR + 1 * VL);
        c10.intoArray(tile, 1 * NR + 0 * VL);
        c11.intoArray(tile, 1 * NR + 1 * VL);
        c20.intoArray(tile, 2 * NR + 0 * VL);
        c21.intoArray(tile, 2 * NR + 1 * VL);
        c30.intoArray(tile, 3 * NR + 0 * VL);
        c31.intoArray(tile, 3 * NR + 1 * VL);
        c40.intoArray(tile, 4 * NR + 0 * VL);
        c41.intoArray(tile, 4 * NR + 1 * VL);
        c50.intoArray(tile, 5 * NR + 0 * VL);
        c51.intoArray(tile, 5 * NR + 1 * VL);
        c60.intoArray(tile, 6 * NR + 0 * VL);
        c61.intoArray(tile, 6 * NR + 1 * VL);
        c70.intoArray(tile, 7 * NR + 0 * VL);
        c71.intoArray(tile, 7 * NR + 1 * VL);
    }

    /** C[ci.., MR x NR, row stride ldc] = alpha * tile + beta * C (C is not read when beta == 0). */
    private static void mergeFullTile(float[] tile, float[] c, int ci, int ldc, float alpha, float beta) {
        FloatVector alphaV = FloatVector.broadcast(SPECIES, alpha);
        FloatVector betaV = FloatVector.broadcast(SPECIES, beta);
        for (int r = 0; r < MR; r++) {
            for (int j = 0; j < NR; j += VL) {
                int idx = ci + r * ldc + j;
                FloatVector v = FloatVector.fromArray(SPECIES, tile, r * NR + j).mul(alphaV);
                if (beta != 0f) v = FloatVector.fromArray(SPECIES, c, idx).fma(betaV, v);
                v.intoArray(c, idx);
            }
        }
    }

    /**
     * Packs A[ic:ic+mc, pc:pc+kc] (op(A) coordinates) into MR-row slivers: sliver s holds rows
     * ic + s*MR ... as kc groups of MR floats (k-major), zero-padded to MR rows.
     */
    private static void packA(boolean transA, float[] a, int aOff, int lda, int ic, int mc, int pc, int kc,
                              float[] ap) {
        for (int ir = 0; ir < mc; ir += MR) {
            int mr = Math.min(MR, mc - ir);
            int base = ir * kc;
            if (!transA) {
                // A stored [m,k]: op(A)(i,p) = a[aOff + i*lda + p]; each row is contiguous in p.
                for (int r = 0; r < mr; r++) {
                    int src = aOff + (ic + ir + r) * lda + pc;
                    for (int p = 0; p < kc; p++) ap[base + p * MR + r] = a[src + p];
                }
            } else {
                // A stored [k,m]: op(A)(i,p) = a[aOff + p*lda + i]; MR rows are contiguous per p.
                for (int p = 0; p < kc; p++) {
                    int src = aOff + (pc + p) * lda + ic + ir;
                    for (int r = 0; r < mr; r++) ap[base + p * MR + r] = a[src + r];
                }
            }
            for (int r = mr; r < MR; r++) {
                for (int p = 0; p < kc; p++) ap[base + p * MR + r] = 0f;
            }
        }
    }

    /**
     * Packs B[0:k, jc:jc+nc] (op(B) coordinates) as consecutive K panels of kcStep rows (the last
     * may be shorter): panel pc starts at pc * roundUp(nc, NR) and holds NR-column slivers,
     * sliver s = kc rows of NR floats at s * kc * NR within the panel, zero-padded to NR columns.
     * Each source row (or, for B stored [n,k], each source column) is read in one run.
     */
    private static void packB(boolean transB, float[] b, int bOff, int ldb, int k, int kcStep, int jc, int nc, float[] bp) {
        int ncPad = roundUp(nc, NR);
        if (transB) {
            // B stored [n,k] (nn.Linear weight layout): op(B)(p,j) = b[bOff + j*ldb + p].
            for (int jr = 0; jr < nc; jr += NR) {
                int nr = Math.min(NR, nc - jr);
                for (int j = 0; j < NR; j++) {
                    int src = bOff + (jc + jr + j) * ldb;
                    for (int pc = 0; pc < k; pc += kcStep) {
                        int kc = Math.min(kcStep, k - pc), base = pc * ncPad + jr * kc + j;
                        if (j < nr) {
                            for (int p = 0; p < kc; p++) bp[base + p * NR] = b[src + pc + p];
                        } else {
                            for (int p = 0; p < kc; p++) bp[base + p * NR] = 0f;
                        }
                    }
                }
            }
        } else {
            // B stored [k,n]: op(B)(p,j) = b[bOff + p*ldb + j]; a row of the strip is contiguous.
            for (int pc = 0; pc < k; pc += kcStep) {
                int kc = Math.min(kcStep, k - pc);
                for (int p = 0; p < kc; p++) {
                    int row = bOff + (pc + p) * ldb + jc;
                    for (int jr = 0; jr < nc; jr += NR) {
                        int nr = Math.min(NR, nc - jr), dst = pc * ncPad + jr * kc + p * NR;
                        System.arraycopy(b, row + jr, bp, dst, nr);
                        if (nr < NR) Arrays.fill(bp, dst + nr, dst + NR, 0f);
                    }
                }
            }
        }
    }

    private static int ceilDiv(int x, int y) {
        return (x + y - 1) / y;
    }

    private static int roundUp(int x, int multiple) {
        return ceilDiv(x, multiple) * multiple;
    }
}
