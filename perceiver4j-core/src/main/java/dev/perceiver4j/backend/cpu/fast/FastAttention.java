package dev.perceiver4j.backend.cpu.fast;

import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.Erf;
import dev.perceiver4j.random.Philox;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.util.Arrays;

/**
 * Fused multi-head scaled-dot-product attention on float arrays (flash-attention style), forward
 * and backward. Semantics and layout are those of {@link AttentionShape}; the double-precision
 * oracle is {@code RefAttention}.
 *
 * <h2>Forward: one task = (b, h, query block of up to {@value #BLOCK_Q} rows)</h2>
 * <pre>
 *                 key tile 0 (BLOCK_K keys)   key tile 1          ...
 *               +--------------------------+------------------+
 *  query block  | S = scale Q K^T   [r x t] |                  |   S/P: the only score storage,
 *  (BLOCK_Q     | m' = max(m, rowmax S)     |  same, with the  |   a BLOCK_Q x BLOCK_K scratch
 *   rows)       | P  = exp(S - m') (x drop) |  running m, l,   |   tile reused for every tile
 *               | l  = l e^(m-m') + rowsum P|  acc carried     |
 *               | acc = acc e^(m-m') + P V  |  over            |   acc: [BLOCK_Q, Dv] scratch
 *               +--------------------------+------------------+
 *  end of row:  out_i = acc_i / l_i,  lse_i = m_i + log l_i   (l_i == 0: out_i = 0, lse_i = -inf)
 * </pre>
 * Padded keys are dropped from a tile before any arithmetic (the tile's columns are the live
 * keys); under the causal mask the key tiles past the block's last query bound are never visited.
 * Non-padded inputs are assumed finite (a causally masked key still meets a 0 weight in P V).
 *
 * <h2>Backward: one task = (b, h), so the dk/dv rows of a head are owned by one thread</h2>
 * (With fewer (b, h) pairs than threads: a dk/dv pass over (b, h, key tile) tasks, then a dq pass
 * over (b, h, query block) tasks; see {@link #backward}.)
 * <pre>
 *  D_i = dOut_i . out_i                                  for all i of the head
 *  for key tile T (live keys):                           dk_T, dv_T, k_T, v_T stay in cache
 *    for query block G of up to {@value #BLOCK_Q} rows that may see T:
 *      P  = exp(scale Q_G K_T^T - lse_G)     [G x T]     recomputed from lse, no max pass
 *      dP = (dOut_G V_T^T) o M               [G x T]     M: dropout multipliers (0 or 1/(1-p))
 *      dS = scale P o (dP - D_G)             [G x T]
 *      dv_T += (P o M)^T dOut_G;  dk_T += dS^T Q_G;  dq_G += dS K_T
 * </pre>
 * The three updates are one register-blocked kernel ({@link #accumulate}) with different strides.
 * All gradients are accumulated ({@code +=}) into the caller's arrays.
 *
 * <p>Score tiles (q.k, dOut.v) read the key (value) tile transposed and run a 4-row x 2-vector FMA
 * kernel with keys across lanes, so no dot needs a horizontal sum ({@link #dotTilePacked}). The
 * forward transposes each head's keys once per call when a head has several query blocks (tiles
 * with padded keys still gather their live keys); the backward transposes a key tile and its
 * values once for all the query blocks that meet it. P V and the gradient updates are a
 * register-blocked FMA kernel (4 output rows x 4 vectors); exp is {@code Erf.expShifted} over a tile row.
 */
public final class FastAttention {

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int LANES = F.length();

    /** Query rows per forward task. */
    static final int BLOCK_Q = 32;
    /** Keys per tile; a multiple of the vector length so a tile row needs no tail loop. */
    static final int BLOCK_K = Math.max(64, LANES);

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);
    /** Most floats of the forward's transposed keys (16 MiB), a buffer each calling thread keeps. */
    static final int MAX_KEYS_T = 1 << 22;
    /** The forward's transposed keys ({@code Call.transposeKeys}), one buffer per calling thread. */
    private static final ThreadLocal<float[]> KEYS_T = ThreadLocal.withInitial(() -> new float[0]);

    private FastAttention() {}

    /**
     * Writes out [B, Nq, H*Dv] (from outOff) and lse [B, H, Nq] (from lseOff).
     * keyPad is null or has length B*Nk; true marks a padding key.
     */
    public static void forward(CpuPool pool, AttentionShape s,
                               float[] q, int qOff, float[] k, int kOff, float[] v, int vOff,
                               boolean[] keyPad, float[] out, int outOff, float[] lse, int lseOff) {
        Call c = new Call(s, q, qOff, k, kOff, v, vOff, keyPad, out, outOff, lse, lseOff);
        int qBlocks = ceilDiv(s.nq(), BLOCK_Q);
        int tasks = s.batch() * s.heads() * qBlocks;
        // With several query blocks per head, every block would transpose the same key tiles:
        // transpose each head's keys once instead, unless that buffer (kept for the next call)
        // would pass MAX_KEYS_T floats; then each block packs its tiles as it goes.
        float[] kt = qBlocks > 1 && c.keysTransposedSize() <= MAX_KEYS_T ? c.transposeKeys(pool) : null;
        pool.parallelFor(tasks, 1, (from, to) -> {
            Scratch sc = SCRATCH.get().ensure(s);
            for (int t = from; t < to; t++) {
                int bh = t / qBlocks;
                // Interleave cheap and expensive causal blocks so contiguous chunks balance.
                int qb = zigzag(t % qBlocks, qBlocks);
                int i0 = qb * BLOCK_Q;
                c.forwardBlock(sc, kt, bh / s.heads(), bh % s.heads(), i0, Math.min(s.nq(), i0 + BLOCK_Q));
            }
        });
    }

    /**
     * Adds into dq [B, Nq, H*Dqk], dk [B, Nk, H*Dqk] and dv [B, Nk, H*Dv] the gradients of a loss
     * whose gradient w.r.t. out is dOut, given the out and lse that {@link #forward} produced for the
     * same inputs.
     *
     * <p>Parallel over (batch, head) pairs when there are at least as many as threads (one pass, no
     * recomputation). With fewer pairs than threads it splits instead: a dk/dv pass parallel over
     * (b, h, key tile) and a dq pass parallel over (b, h, query block), which recomputes P and dP
     * once more but keeps every thread busy. Both schedules do the same arithmetic per element in
     * the same order.
     */
    public static void backward(CpuPool pool, AttentionShape s,
                                float[] q, int qOff, float[] k, int kOff, float[] v, int vOff,
                                boolean[] keyPad, float[] out, int outOff, float[] lse, int lseOff,
                                float[] dOut, int dOutOff, float[] dq, int dqOff,
                                float[] dk, int dkOff, float[] dv, int dvOff) {
        Call c = new Call(s, q, qOff, k, kOff, v, vOff, keyPad, out, outOff, lse, lseOff);
        Grads g = new Grads(s, dOut, dOutOff, dq, dqOff, dk, dkOff, dv, dvOff, new float[s.lseSize()]);
        if (s.batch() * s.heads() >= pool.threads()) backwardPerHead(pool, s, c, g);
        else backwardSplit(pool, s, c, g);
    }

    /** One pass per (b, h) pair: each task owns the dq, dk and dv rows of its head. */
    private static void backwardPerHead(CpuPool pool, AttentionShape s, Call c, Grads g) {
        pool.parallelFor(s.batch() * s.heads(), 1, (from, to) -> {
            Scratch sc = SCRATCH.get().ensure(s);
            for (int bh = from; bh < to; bh++) c.backwardHead(sc, g, bh / s.heads(), bh % s.heads());
        });
    }

    /** D for all heads, then dk/dv over (b, h, key tile) tasks, then dq over (b, h, query block) tasks. */
    private static void backwardSplit(CpuPool pool, AttentionShape s, Call c, Grads g) {
        int heads = s.batch() * s.heads();
        pool.parallelFor(heads, 1, (from, to) -> {
            for (int bh = from; bh < to; bh++) c.rowDots(g, bh / s.heads(), bh % s.heads());
        });
        int kTiles = ceilDiv(s.nk(), BLOCK_K);
        pool.parallelFor(heads * kTiles, 1, (from, to) -> {
            Scratch sc = SCRATCH.get().ensure(s);
            for (int t = from; t < to; t++) {
                int bh = t / kTiles, j0 = zigzag(t % kTiles, kTiles) * BLOCK_K;
                c.backwardKeyTile(sc, g, bh / s.heads(), bh % s.heads(), j0, false);
            }
        });
        int qBlocks = ceilDiv(s.nq(), BLOCK_Q);
        pool.parallelFor(heads * qBlocks, 1, (from, to) -> {
            Scratch sc = SCRATCH.get().ensure(s);
            for (int t = from; t < to; t++) {
                int bh = t / qBlocks, i0 = zigzag(t % qBlocks, qBlocks) * BLOCK_Q;
                c.backwardQueryBlock(sc, g, bh / s.heads(), bh % s.heads(), i0, Math.min(BLOCK_Q, s.nq() - i0));
            }
        });
    }

    // ------------------------------------------------------------------------------------------
    // One call's arrays, offsets and strides, with the per-task kernels.
    // ------------------------------------------------------------------------------------------

    private static final class Call {
        final AttentionShape s;
        final float[] q, k, v, out, lse;
        final int qOff, kOff, vOff, outOff, lseOff;
        final boolean[] keyPad;
        final int qkStride, vStride;      // row strides: H*Dqk and H*Dv
        final float keepScale;           // 1/(1-p_drop)

        Call(AttentionShape s, float[] q, int qOff, float[] k, int kOff, float[] v, int vOff,
             boolean[] keyPad, float[] out, int outOff, float[] lse, int lseOff) {
            requireArguments(s, q, qOff, k, kOff, v, vOff, keyPad, out, outOff, lse, lseOff);
            this.s = s;
            this.q = q;
            this.k = k;
            this.v = v;
            this.out = out;
            this.lse = lse;
            this.qOff = qOff;
            this.kOff = kOff;
            this.vOff = vOff;
            this.outOff = outOff;
            this.lseOff = lseOff;
            this.keyPad = keyPad;
            this.qkStride = s.heads() * s.dqk();
            this.vStride = s.heads() * s.dv();
            this.keepScale = (float) (1.0 / (1.0 - s.dropout()));
        }

        int qRow(int b, int h, int i) {
            return qOff + (b * s.nq() + i) * qkStride + h * s.dqk();
        }

        int kRow(int b, int h, int j) {
            return kOff + (b * s.nk() + j) * qkStride + h * s.dqk();
        }

        int vRow(int b, int h, int j) {
            return vOff + (b * s.nk() + j) * vStride + h * s.dv();
        }

        /** Offset of row i of head h in an [B, Nq, H*Dv] array, relative to its start. */
        int outRow(int b, int h, int i) {
            return (b * s.nq() + i) * vStride + h * s.dv();
        }

        int lseIndex(int b, int h, int i) {
            return lseOff + (b * s.heads() + h) * s.nq() + i;
        }

        // ---------------------------------------------------------------- forward

        /**
         * Start of the key tile at j0 (a multiple of BLOCK_K) of head (b, h) in {@link
         * #transposeKeys}'s array: component c of key j0 + t at + c*BLOCK_K + t.
         */
        int keysTransposed(int b, int h, int j0) {
            int tiles = ceilDiv(s.nk(), BLOCK_K);
            return ((b * s.heads() + h) * tiles + j0 / BLOCK_K) * s.dqk() * BLOCK_K;
        }

        /**
         * Every key tile of every head transposed as {@link #packTransposed} lays out one tile
         * ([B, H, Nk / BLOCK_K, Dqk, BLOCK_K], a last partial tile zero-padded), so that a tile is
         * one contiguous block. In a buffer of the calling thread, reused across calls.
         */
        /** Floats of {@link #transposeKeys}'s array. */
        long keysTransposedSize() {
            return (long) s.batch() * s.heads() * ceilDiv(s.nk(), BLOCK_K) * s.dqk() * BLOCK_K;
        }

        float[] transposeKeys(CpuPool pool) {
            int nk = s.nk(), dqk = s.dqk();
            int size = (int) keysTransposedSize();
            float[] kt = KEYS_T.get();
            if (kt.length < size) {
                kt = new float[size];
                KEYS_T.set(kt);
            }
            final float[] dst = kt;
            pool.parallelFor(s.batch() * s.heads(), 1, (from, to) -> {
                for (int bh = from; bh < to; bh++) {
                    int b = bh / s.heads(), h = bh % s.heads();
                    for (int j0 = 0; j0 < nk; j0 += BLOCK_K) {
                        int n = Math.min(BLOCK_K, nk - j0), base = keysTransposed(b, h, j0);
                        for (int t = 0; t < n; t++) {
                            int src = kRow(b, h, j0 + t);
                            for (int c = 0; c < dqk; c++) dst[base + c * BLOCK_K + t] = k[src + c];
                        }
                        if (n < BLOCK_K) {
                            for (int c = 0; c < dqk; c++) Arrays.fill(dst, base + c * BLOCK_K + n, base + (c + 1) * BLOCK_K, 0f);
                        }
                    }
                }
            });
            return dst;
        }

        /**
         * Forward over query rows [i0, i1) of head (b, h). {@code kt}: the keys of {@link
         * #transposeKeys}, read in place by tiles without padded keys; null: every tile is packed.
         */
        void forwardBlock(Scratch sc, float[] kt, int b, int h, int i0, int i1) {
            int rows = i1 - i0, dv = s.dv();
            Arrays.fill(sc.rowMax, 0, rows, Float.NEGATIVE_INFINITY);
            Arrays.fill(sc.rowSum, 0, rows, 0f);
            Arrays.fill(sc.acc, 0, rows * dv, 0f);
            for (int r = 0; r < rows; r++) {
                sc.aRows[r] = qRow(b, h, i0 + r);
                sc.accRows[r] = r * dv;
            }
            int keyEnd = s.keyLimit(i1 - 1); // causal: later key tiles are masked for every row here
            for (int j0 = 0; j0 < keyEnd; j0 += BLOCK_K) {
                int n = Math.min(BLOCK_K, keyEnd - j0);
                int live = liveKeys(sc, b, h, j0, n);
                if (live == 0) continue;
                if (kt != null && live == n) {
                    dotTilePacked(q, sc.aRows, rows, live, s.dqk(), s.scale(), sc.tile, kt, keysTransposed(b, h, j0), BLOCK_K);
                } else {
                    dotTile(q, sc.aRows, rows, k, sc.kIdx, live, s.dqk(), s.scale(), sc.tile, sc.packed);
                }
                for (int r = 0; r < rows; r++) {
                    softmaxUpdate(sc, b, h, i0 + r, r, j0, n, live);
                }
                accumulate(sc.tile, BLOCK_K, 1, rows, sc.accRows, sc.acc, live, sc.vIdx, v, dv); // acc += P V
            }
            for (int r = 0; r < rows; r++) finishRow(sc, b, h, i0 + r, r);
        }

        /**
         * Online-softmax step of row r (query i) over the tile's live keys: masks the causal tail,
         * turns scores into p~ = exp(s - m') (times the dropout multiplier), updates m, l and
         * rescales the row's accumulator.
         */
        private void softmaxUpdate(Scratch sc, int b, int h, int i, int r, int j0, int n, int live) {
            float[] tile = sc.tile;
            int row = r * BLOCK_K;
            maskRow(sc, tile, row, i, j0, live);
            float tileMax = maxOf(tile, row, BLOCK_K);
            if (tileMax == Float.NEGATIVE_INFINITY) { // nothing allowed in this tile for this row
                Arrays.fill(tile, row, row + BLOCK_K, 0f);
                return;
            }
            float mOld = sc.rowMax[r];
            float mNew = Math.max(mOld, tileMax);
            float tileSum = Erf.expShifted(tile, row, BLOCK_K, mNew, tile, row); // BLOCK_K: whole vectors
            float corr = mOld == mNew ? 1f : (float) Math.exp(mOld - mNew); // mOld = -inf gives 0
            sc.rowSum[r] = sc.rowSum[r] * corr + tileSum;
            sc.rowMax[r] = mNew;
            if (corr != 1f) scaleInPlace(sc.acc, r * s.dv(), s.dv(), corr);
            if (s.dropout() > 0f) applyDropout(sc, b, h, i, j0, n, live, tile, row);
        }

        private void finishRow(Scratch sc, int b, int h, int i, int r) {
            int o = outOff + outRow(b, h, i);
            float l = sc.rowSum[r];
            if (l == 0f) { // no allowed key
                Arrays.fill(out, o, o + s.dv(), 0f);
                lse[lseIndex(b, h, i)] = Float.NEGATIVE_INFINITY;
                return;
            }
            float inv = 1f / l;
            float[] acc = sc.acc;
            int a = r * s.dv(), dv = s.dv(), c = 0;
            for (int bound = F.loopBound(dv); c < bound; c += LANES) {
                FloatVector.fromArray(F, acc, a + c).mul(inv).intoArray(out, o + c);
            }
            for (; c < dv; c++) out[o + c] = acc[a + c] * inv;
            lse[lseIndex(b, h, i)] = sc.rowMax[r] + (float) Math.log(l);
        }

        // ---------------------------------------------------------------- tile helpers

        /**
         * Collects the non-padded keys among [j0, j0+n) into sc.keys (tile-relative), with their
         * k and v row starts in sc.kIdx / sc.vIdx. Returns how many.
         */
        int liveKeys(Scratch sc, int b, int h, int j0, int n) {
            int live = 0;
            int pad = b * s.nk() + j0;
            for (int t = 0; t < n; t++) {
                if (keyPad != null && keyPad[pad + t]) continue;
                sc.keys[live] = t;
                sc.kIdx[live] = kRow(b, h, j0 + t);
                sc.vIdx[live] = vRow(b, h, j0 + t);
                live++;
            }
            return live;
        }

        /** Sets tile[row + t] = -inf for live keys beyond query i's causal bound and for t >= live. */
        void maskRow(Scratch sc, float[] tile, int row, int i, int j0, int live) {
            int allowed = live;
            int limit = s.keyLimit(i) - j0; // tile-relative exclusive bound
            while (allowed > 0 && sc.keys[allowed - 1] >= limit) allowed--;
            Arrays.fill(tile, row + allowed, row + BLOCK_K, Float.NEGATIVE_INFINITY);
        }

        /** tile[row + t] *= dropout multiplier of (b, h, i, j0 + keys[t]); sc.mult keeps them. */
        void applyDropout(Scratch sc, int b, int h, int i, int j0, int n, int live, float[] tile, int row) {
            dropoutMultipliers(s, s.dropoutIndex(b, h, i, j0), n, keepScale, sc.block, sc.mult);
            for (int t = 0; t < live; t++) tile[row + t] *= sc.mult[sc.keys[t]];
        }

        // ---------------------------------------------------------------- backward

        /** D_i = dOut_i . out_i for the query rows of head (b, h), into g.rowDot. */
        void rowDots(Grads g, int b, int h) {
            for (int i = 0; i < s.nq(); i++) {
                int o = outRow(b, h, i);
                g.rowDot()[(b * s.heads() + h) * s.nq() + i] = dot(g.dOut(), g.dOutOff() + o, out, outOff + o, s.dv());
            }
        }

        /** Backward of head (b, h) in one pass: every key tile against the query rows that see it. */
        void backwardHead(Scratch sc, Grads g, int b, int h) {
            rowDots(g, b, h);
            for (int j0 = 0; j0 < s.nk(); j0 += BLOCK_K) backwardKeyTile(sc, g, b, h, j0, true);
        }

        /**
         * Key tile [j0, j0+BLOCK_K) of head (b, h) against all query rows that may see it: dk/dv of
         * the tile, and dq of those rows when {@code withDq}.
         */
        void backwardKeyTile(Scratch sc, Grads g, int b, int h, int j0, boolean withDq) {
            int n = Math.min(BLOCK_K, s.nk() - j0);
            int live = liveKeys(sc, b, h, j0, n);
            if (live == 0) return;
            int iStart = s.causal() ? Math.max(0, j0 - s.causalShift()) : 0; // rows whose bound reaches j0
            packKeyTile(sc, live); // once for all the query blocks that meet the tile
            for (int i0 = iStart; i0 < s.nq(); i0 += BLOCK_Q) {
                backwardBlock(sc, g, b, h, i0, Math.min(BLOCK_Q, s.nq() - i0), j0, n, live, true, withDq);
            }
        }

        /** dq of query rows [i0, i0+rows) of head (b, h), from every key tile they may see. */
        void backwardQueryBlock(Scratch sc, Grads g, int b, int h, int i0, int rows) {
            int keyEnd = s.keyLimit(i0 + rows - 1);
            for (int j0 = 0; j0 < keyEnd; j0 += BLOCK_K) {
                int n = Math.min(BLOCK_K, s.nk() - j0);
                int live = liveKeys(sc, b, h, j0, n);
                if (live == 0) continue;
                packKeyTile(sc, live);
                backwardBlock(sc, g, b, h, i0, rows, j0, n, live, false, true);
            }
        }

        /** The live keys and values of {@link #liveKeys}' tile, transposed into sc.packed / sc.packed2. */
        private void packKeyTile(Scratch sc, int live) {
            packTransposed(k, sc.kIdx, live, s.dqk(), sc.packed);
            packTransposed(v, sc.vIdx, live, s.dv(), sc.packed2);
        }

        /**
         * Gradient contributions of query rows [i0, i0+rows) with the tile's live keys, whose keys /
         * values the caller has transposed into sc.packed / sc.packed2 ({@link #packKeyTile}).
         */
        private void backwardBlock(Scratch sc, Grads g, int b, int h, int i0, int rows, int j0, int n, int live,
                                   boolean withKv, boolean withDq) {
            float[] p = sc.tile, ds = sc.tile2;
            for (int r = 0; r < rows; r++) {
                sc.aRows[r] = qRow(b, h, i0 + r);
                sc.gRows[r] = g.dOutOff() + outRow(b, h, i0 + r);
                sc.dqRows[r] = g.dqOff() + (sc.aRows[r] - qOff);
            }
            for (int t = 0; t < live; t++) {
                sc.dkRows[t] = g.dkOff() + (sc.kIdx[t] - kOff);
                sc.dvRows[t] = g.dvOff() + (sc.vIdx[t] - vOff);
            }
            dotTilePacked(q, sc.aRows, rows, live, s.dqk(), s.scale(), p, sc.packed, 0, BLOCK_K);     // scores
            dotTilePacked(g.dOut(), sc.gRows, rows, live, s.dv(), 1f, ds, sc.packed2, 0, BLOCK_K);   // dOut_i . v_j
            for (int r = 0; r < rows; r++) probabilityGradRow(sc, g, b, h, i0 + r, r, j0, n, live);
            if (withKv) {
                accumulate(p, 1, BLOCK_K, live, sc.dvRows, g.dv(), rows, sc.gRows, g.dOut(), s.dv()); // dv += P'^T dOut
                accumulate(ds, 1, BLOCK_K, live, sc.dkRows, g.dk(), rows, sc.aRows, q, s.dqk());     // dk += dS^T Q
            }
            if (withDq) {
                accumulate(ds, BLOCK_K, 1, rows, sc.dqRows, g.dq(), live, sc.kIdx, k, s.dqk());      // dq += dS K
            }
        }

        /**
         * Row r (query i) of the backward tiles: turns the scores in sc.tile into the dropped
         * probabilities p_ij m_ij and dOut_i.v_j in sc.tile2 into ds_ij = scale p_ij (m_ij dp_ij - D_i).
         */
        private void probabilityGradRow(Scratch sc, Grads g, int b, int h, int i, int r, int j0, int n, int live) {
            float[] p = sc.tile, ds = sc.tile2;
            int row = r * BLOCK_K;
            float rowLse = lse[lseIndex(b, h, i)];
            if (rowLse == Float.NEGATIVE_INFINITY) { // row attends nothing: no gradient
                Arrays.fill(p, row, row + live, 0f);
                Arrays.fill(ds, row, row + live, 0f);
                return;
            }
            maskRow(sc, p, row, i, j0, live);
            Erf.expShifted(p, row, BLOCK_K, rowLse, p, row); // p_ij, 0 where masked
            boolean drop = s.dropout() > 0f;
            if (drop) dropoutMultipliers(s, s.dropoutIndex(b, h, i, j0), n, keepScale, sc.block, sc.mult);
            float dI = g.rowDot()[(b * s.heads() + h) * s.nq() + i], scale = s.scale();
            for (int t = 0; t < live; t++) {
                float pj = p[row + t];
                float m = drop ? sc.mult[sc.keys[t]] : 1f;
                ds[row + t] = scale * pj * (m * ds[row + t] - dI);
                p[row + t] = pj * m; // from here on: the dropped probability
            }
        }
    }

    /**
     * Gradient arrays of a backward call (dOut is read, dq/dk/dv accumulated into) and the per-call
     * rowDot [B, H, Nq] holding D_i = dOut_i . out_i.
     */
    private record Grads(float[] dOut, int dOutOff, float[] dq, int dqOff, float[] dk, int dkOff,
                         float[] dv, int dvOff, float[] rowDot) {
        Grads(AttentionShape s, float[] dOut, int dOutOff, float[] dq, int dqOff, float[] dk, int dkOff,
              float[] dv, int dvOff, float[] rowDot) {
            this(dOut, dOutOff, dq, dqOff, dk, dkOff, dv, dvOff, rowDot);
            requireRange("dOut", dOut, dOutOff, s.outSize());
            requireRange("dq", dq, dqOff, s.qSize());
            requireRange("dk", dk, dkOff, s.kSize());
            requireRange("dv", dv, dvOff, s.vSize());
        }
    }

    /** Per-thread scratch, grown to the largest shape seen and reused across calls. */
    private static final class Scratch {
        final float[] tile = new float[BLOCK_Q * BLOCK_K];  // scores, then probabilities [rows, BLOCK_K]
        final float[] tile2 = new float[BLOCK_Q * BLOCK_K];  // backward: dP, then dS [rows, BLOCK_K]
        final float[] mult = new float[BLOCK_K];            // dropout multipliers of one tile row
        final int[] keys = new int[BLOCK_K];                // live (non-padded) keys, tile-relative
        final int[] kIdx = new int[BLOCK_K];                // ... their k row starts
        final int[] vIdx = new int[BLOCK_K];                // ... their v row starts
        final int[] aRows = new int[BLOCK_Q];               // q row starts of the query block
        final int[] accRows = new int[BLOCK_Q];             // forward: acc row starts (r * dv)
        final int[] gRows = new int[BLOCK_Q];               // backward: dOut row starts of the block
        final int[] dqRows = new int[BLOCK_Q];              // backward: dq row starts of the block
        final int[] dkRows = new int[BLOCK_K];              // backward: dk row starts of the live keys
        final int[] dvRows = new int[BLOCK_K];              // backward: dv row starts of the live keys
        final int[] block = new int[4];                     // one Philox block
        final float[] rowMax = new float[BLOCK_Q];
        final float[] rowSum = new float[BLOCK_Q];
        float[] acc = new float[0];                         // [BLOCK_Q, dv] output accumulators
        float[] packed = new float[0];                      // [dqk, BLOCK_K] a key tile, transposed
        float[] packed2 = new float[0];                     // backward: [dv, BLOCK_K] its value tile, transposed

        Scratch ensure(AttentionShape s) {
            if (acc.length < BLOCK_Q * s.dv()) acc = new float[BLOCK_Q * s.dv()];
            if (packed.length < s.dqk() * BLOCK_K) packed = new float[s.dqk() * BLOCK_K];
            if (packed2.length < s.dv() * BLOCK_K) packed2 = new float[s.dv() * BLOCK_K];
            return this;
        }
    }

    // ------------------------------------------------------------------------------------------
    // Vector kernels.
    // ------------------------------------------------------------------------------------------

    /**
     * dst[r*BLOCK_K + t] = scale * a[aRows[r], +len) . b[bRows[t], +len) for r < rows, t < cols
     * (columns from cols up to the next multiple of 2 vectors are written as zeros).
     *
     * <p>The b rows are first packed transposed into {@code bt} ([len, BLOCK_K], keys across
     * lanes), so each dot is a lane of a vector accumulator: per depth step, 4 broadcast a values
     * times 2 bt vectors make 8 FMAs, and no horizontal sums are needed. Each score is the
     * sequential FMA chain over c = 0..len-1, the same wherever its row and key sit in a tile.
     */
    static void dotTile(float[] a, int[] aRows, int rows, float[] b, int[] bRows, int cols, int len,
                        float scale, float[] dst, float[] bt) {
        packTransposed(b, bRows, cols, len, bt);
        dotTilePacked(a, aRows, rows, cols, len, scale, dst, bt, 0, BLOCK_K);
    }

    /**
     * bt[c*BLOCK_K + t] = b[bRows[t] + c] for t < cols, c < len: a key (or value) tile transposed,
     * keys across lanes, zero-padded up to the next multiple of 2 vectors.
     */
    static void packTransposed(float[] b, int[] bRows, int cols, int len, float[] bt) {
        int width = Math.min(BLOCK_K, (cols + 2 * LANES - 1) / (2 * LANES) * (2 * LANES));
        for (int t = 0; t < cols; t++) {
            int bo = bRows[t];
            for (int c = 0; c < len; c++) bt[c * BLOCK_K + t] = b[bo + c];
        }
        for (int c = 0; c < len; c++) Arrays.fill(bt, c * BLOCK_K + cols, c * BLOCK_K + width, 0f);
    }

    /**
     * The arithmetic of {@link #dotTile} on a tile already transposed: key t's component c at
     * bt[btOff + c*btStride + t]. Columns from cols up to the next multiple of 2 vectors score
     * whatever the tile holds there (zeros in a packed tile; in the forward's transposed keys, the
     * keys past a causal bound that cut the tile short): callers mask every score past the live keys.
     */
    static void dotTilePacked(float[] a, int[] aRows, int rows, int cols, int len, float scale, float[] dst,
                              float[] bt, int btOff, int btStride) {
        int width = Math.min(BLOCK_K, (cols + 2 * LANES - 1) / (2 * LANES) * (2 * LANES));
        FloatVector sv = FloatVector.broadcast(F, scale);
        int r = 0;
        for (; r + 3 < rows; r += 4) {
            int a0 = aRows[r], a1 = aRows[r + 1], a2 = aRows[r + 2], a3 = aRows[r + 3];
            for (int t = 0; t < width; t += 2 * LANES) {
                FloatVector s00 = FloatVector.zero(F), s01 = s00, s10 = s00, s11 = s00;
                FloatVector s20 = s00, s21 = s00, s30 = s00, s31 = s00;
                for (int c = 0, bi = btOff + t; c < len; c++, bi += btStride) {
                    FloatVector y0 = FloatVector.fromArray(F, bt, bi), y1 = FloatVector.fromArray(F, bt, bi + LANES);
                    FloatVector x = FloatVector.broadcast(F, a[a0 + c]);
                    s00 = x.fma(y0, s00);
                    s01 = x.fma(y1, s01);
                    x = FloatVector.broadcast(F, a[a1 + c]);
                    s10 = x.fma(y0, s10);
                    s11 = x.fma(y1, s11);
                    x = FloatVector.broadcast(F, a[a2 + c]);
                    s20 = x.fma(y0, s20);
                    s21 = x.fma(y1, s21);
                    x = FloatVector.broadcast(F, a[a3 + c]);
                    s30 = x.fma(y0, s30);
                    s31 = x.fma(y1, s31);
                }
                int d = r * BLOCK_K + t;
                s00.mul(sv).intoArray(dst, d);
                s01.mul(sv).intoArray(dst, d + LANES);
                s10.mul(sv).intoArray(dst, d + BLOCK_K);
                s11.mul(sv).intoArray(dst, d + BLOCK_K + LANES);
                s20.mul(sv).intoArray(dst, d + 2 * BLOCK_K);
                s21.mul(sv).intoArray(dst, d + 2 * BLOCK_K + LANES);
                s30.mul(sv).intoArray(dst, d + 3 * BLOCK_K);
                s31.mul(sv).intoArray(dst, d + 3 * BLOCK_K + LANES);
            }
        }
        for (; r < rows; r++) {
            int a0 = aRows[r];
            for (int t = 0; t < width; t += 2 * LANES) {
                FloatVector s00 = FloatVector.zero(F), s01 = s00;
                for (int c = 0, bi = btOff + t; c < len; c++, bi += btStride) {
                    FloatVector x = FloatVector.broadcast(F, a[a0 + c]);
                    s00 = x.fma(FloatVector.fromArray(F, bt, bi), s00);
                    s01 = x.fma(FloatVector.fromArray(F, bt, bi + LANES), s01);
                }
                s00.mul(sv).intoArray(dst, r * BLOCK_K + t);
                s01.mul(sv).intoArray(dst, r * BLOCK_K + t + LANES);
            }
        }
    }

    /** a[ao, ao+n) . b[bo, bo+n). */
    static float dot(float[] a, int ao, float[] b, int bo, int n) {
        FloatVector acc = FloatVector.zero(F);
        int c = 0;
        for (int bound = F.loopBound(n); c < bound; c += LANES) {
            acc = FloatVector.fromArray(F, a, ao + c).fma(FloatVector.fromArray(F, b, bo + c), acc);
        }
        for (int h = LANES / 2; h >= 1; h /= 2) acc = acc.add(acc.slice(h, acc));   // Lanes' fold, written out
        float sum = acc.lane(0);
        for (; c < n; c++) sum += a[ao + c] * b[bo + c];
        return sum;
    }

    /**
     * The small GEMM behind P V and the three gradient updates:
     * <pre>
     *   out[outRows[o] + c] += sum_{s < nIn} w[o*wOut + s*wIn] * in[inRows[s] + c]
     *   for o < nOut, c < len
     * </pre>
     * Register-blocked 4 output rows x 4 vectors: each input vector load feeds 4 FMAs and the 16
     * accumulators stay in registers over all nIn inputs. Tails of 2 vectors (Dv = 160 or 96,
     * Dqk = 32) take a 4 x 2 block, a last single vector 4 x 1. Every output element sums its
     * inputs in the same order whichever block computes it, so the results do not depend on the
     * blocking. With (wOut, wIn) = (BLOCK_K, 1) the
     * weights are read row-wise (P V, dS K), with (1, BLOCK_K) transposed (P^T dOut, dS^T Q).
     */
    static void accumulate(float[] w, int wOut, int wIn, int nOut, int[] outRows, float[] out,
                           int nIn, int[] inRows, float[] in, int len) {
        int vecEnd = F.loopBound(len);
        int o = 0;
        for (; o + 3 < nOut; o += 4) {
            int c = 0;
            for (; c + 4 * LANES <= vecEnd; c += 4 * LANES) acc4x4(w, wOut, wIn, o, outRows, out, nIn, inRows, in, c);
            for (; c + 2 * LANES <= vecEnd; c += 2 * LANES) acc4x2(w, wOut, wIn, o, outRows, out, nIn, inRows, in, c);
            for (; c < vecEnd; c += LANES) acc4x1(w, wOut, wIn, o, outRows, out, nIn, inRows, in, c);
            if (c < len) accScalar(w, wOut, wIn, o, o + 4, outRows, out, nIn, inRows, in, c, len);
        }
        for (; o < nOut; o++) {
            int c = 0;
            for (; c < vecEnd; c += LANES) acc1x1(w, wOut, wIn, o, outRows, out, nIn, inRows, in, c);
            if (c < len) accScalar(w, wOut, wIn, o, o + 1, outRows, out, nIn, inRows, in, c, len);
        }
    }

    private static void acc4x4(float[] w, int wOut, int wIn, int o, int[] outRows, float[] out,
                               int nIn, int[] inRows, float[] in, int c) {
        int y0 = outRows[o] + c, y1 = outRows[o + 1] + c, y2 = outRows[o + 2] + c, y3 = outRows[o + 3] + c;
        int w0 = o * wOut, w1 = w0 + wOut, w2 = w1 + wOut, w3 = w2 + wOut;
        int l1 = LANES, l2 = 2 * LANES, l3 = 3 * LANES;
        FloatVector x00 = FloatVector.fromArray(F, out, y0), x01 = FloatVector.fromArray(F, out, y0 + l1);
        FloatVector x02 = FloatVector.fromArray(F, out, y0 + l2), x03 = FloatVector.fromArray(F, out, y0 + l3);
        FloatVector x10 = FloatVector.fromArray(F, out, y1), x11 = FloatVector.fromArray(F, out, y1 + l1);
        FloatVector x12 = FloatVector.fromArray(F, out, y1 + l2), x13 = FloatVector.fromArray(F, out, y1 + l3);
        FloatVector x20 = FloatVector.fromArray(F, out, y2), x21 = FloatVector.fromArray(F, out, y2 + l1);
        FloatVector x22 = FloatVector.fromArray(F, out, y2 + l2), x23 = FloatVector.fromArray(F, out, y2 + l3);
        FloatVector x30 = FloatVector.fromArray(F, out, y3), x31 = FloatVector.fromArray(F, out, y3 + l1);
        FloatVector x32 = FloatVector.fromArray(F, out, y3 + l2), x33 = FloatVector.fromArray(F, out, y3 + l3);
        for (int s = 0, ws = 0; s < nIn; s++, ws += wIn) {
            int io = inRows[s] + c;
            FloatVector v0 = FloatVector.fromArray(F, in, io), v1 = FloatVector.fromArray(F, in, io + l1);
            FloatVector v2 = FloatVector.fromArray(F, in, io + l2), v3 = FloatVector.fromArray(F, in, io + l3);
            FloatVector a = FloatVector.broadcast(F, w[w0 + ws]);
            x00 = v0.fma(a, x00);
            x01 = v1.fma(a, x01);
            x02 = v2.fma(a, x02);
            x03 = v3.fma(a, x03);
            a = FloatVector.broadcast(F, w[w1 + ws]);
            x10 = v0.fma(a, x10);
            x11 = v1.fma(a, x11);
            x12 = v2.fma(a, x12);
            x13 = v3.fma(a, x13);
            a = FloatVector.broadcast(F, w[w2 + ws]);
            x20 = v0.fma(a, x20);
            x21 = v1.fma(a, x21);
            x22 = v2.fma(a, x22);
            x23 = v3.fma(a, x23);
            a = FloatVector.broadcast(F, w[w3 + ws]);
            x30 = v0.fma(a, x30);
            x31 = v1.fma(a, x31);
            x32 = v2.fma(a, x32);
            x33 = v3.fma(a, x33);
        }
        x00.intoArray(out, y0);
        x01.intoArray(out, y0 + l1);
        x02.intoArray(out, y0 + l2);
        x03.intoArray(out, y0 + l3);
        x10.intoArray(out, y1);
        x11.intoArray(out, y1 + l1);
        x12.intoArray(out, y1 + l2);
        x13.intoArray(out, y1 + l3);
        x20.intoArray(out, y2);
        x21.intoArray(out, y2 + l1);
        x22.intoArray(out, y2 + l2);
        x23.intoArray(out, y2 + l3);
        x30.intoArray(out, y3);
        x31.intoArray(out, y3 + l1);
        x32.intoArray(out, y3 + l2);
        x33.intoArray(out, y3 + l3);
    }

    private static void acc4x2(float[] w, int wOut, int wIn, int o, int[] outRows, float[] out,
                               int nIn, int[] inRows, float[] in, int c) {
        int y0 = outRows[o] + c, y1 = outRows[o + 1] + c, y2 = outRows[o + 2] + c, y3 = outRows[o + 3] + c;
        int w0 = o * wOut, w1 = w0 + wOut, w2 = w1 + wOut, w3 = w2 + wOut;
        int l1 = LANES;
        FloatVector x00 = FloatVector.fromArray(F, out, y0), x01 = FloatVector.fromArray(F, out, y0 + l1);
        FloatVector x10 = FloatVector.fromArray(F, out, y1), x11 = FloatVector.fromArray(F, out, y1 + l1);
        FloatVector x20 = FloatVector.fromArray(F, out, y2), x21 = FloatVector.fromArray(F, out, y2 + l1);
        FloatVector x30 = FloatVector.fromArray(F, out, y3), x31 = FloatVector.fromArray(F, out, y3 + l1);
        for (int s = 0, ws = 0; s < nIn; s++, ws += wIn) {
            int io = inRows[s] + c;
            FloatVector v0 = FloatVector.fromArray(F, in, io), v1 = FloatVector.fromArray(F, in, io + l1);
            FloatVector a = FloatVector.broadcast(F, w[w0 + ws]);
            x00 = v0.fma(a, x00);
            x01 = v1.fma(a, x01);
            a = FloatVector.broadcast(F, w[w1 + ws]);
            x10 = v0.fma(a, x10);
            x11 = v1.fma(a, x11);
            a = FloatVector.broadcast(F, w[w2 + ws]);
            x20 = v0.fma(a, x20);
            x21 = v1.fma(a, x21);
            a = FloatVector.broadcast(F, w[w3 + ws]);
            x30 = v0.fma(a, x30);
            x31 = v1.fma(a, x31);
        }
        x00.intoArray(out, y0);
        x01.intoArray(out, y0 + l1);
        x10.intoArray(out, y1);
        x11.intoArray(out, y1 + l1);
        x20.intoArray(out, y2);
        x21.intoArray(out, y2 + l1);
        x30.intoArray(out, y3);
        x31.intoArray(out, y3 + l1);
    }

    private static void acc4x1(float[] w, int wOut, int wIn, int o, int[] outRows, float[] out,
                               int nIn, int[] inRows, float[] in, int c) {
        int y0 = outRows[o] + c, y1 = outRows[o + 1] + c, y2 = outRows[o + 2] + c, y3 = outRows[o + 3] + c;
        int w0 = o * wOut, w1 = w0 + wOut, w2 = w1 + wOut, w3 = w2 + wOut;
        FloatVector x0 = FloatVector.fromArray(F, out, y0), x1 = FloatVector.fromArray(F, out, y1);
        FloatVector x2 = FloatVector.fromArray(F, out, y2), x3 = FloatVector.fromArray(F, out, y3);
        for (int s = 0, ws = 0; s < nIn; s++, ws += wIn) {
            FloatVector v0 = FloatVector.fromArray(F, in, inRows[s] + c);
            x0 = v0.fma(FloatVector.broadcast(F, w[w0 + ws]), x0);
            x1 = v0.fma(FloatVector.broadcast(F, w[w1 + ws]), x1);
            x2 = v0.fma(FloatVector.broadcast(F, w[w2 + ws]), x2);
            x3 = v0.fma(FloatVector.broadcast(F, w[w3 + ws]), x3);
        }
        x0.intoArray(out, y0);
        x1.intoArray(out, y1);
        x2.intoArray(out, y2);
        x3.intoArray(out, y3);
    }

    private static void acc1x1(float[] w, int wOut, int wIn, int o, int[] outRows, float[] out,
                               int nIn, int[] inRows, float[] in, int c) {
        int y0 = outRows[o] + c, w0 = o * wOut;
        FloatVector x0 = FloatVector.fromArray(F, out, y0);
        for (int s = 0, ws = 0; s < nIn; s++, ws += wIn) {
            x0 = FloatVector.fromArray(F, in, inRows[s] + c).fma(FloatVector.broadcast(F, w[w0 + ws]), x0);
        }
        x0.intoArray(out, y0);
    }

    /** Scalar columns [c0, len) of outputs [o0, o1) (the tail past the last full vector). */
    private static void accScalar(float[] w, int wOut, int wIn, int o0, int o1, int[] outRows, float[] out,
                                  int nIn, int[] inRows, float[] in, int c0, int len) {
        for (int o = o0; o < o1; o++) {
            int y = outRows[o];
            for (int s = 0; s < nIn; s++) {
                float a = w[o * wOut + s * wIn];
                int x = inRows[s];
                for (int c = c0; c < len; c++) out[y + c] += a * in[x + c];
            }
        }
    }

    static void scaleInPlace(float[] y, int yo, int n, float factor) {
        int c = 0;
        for (int bound = F.loopBound(n); c < bound; c += LANES) {
            FloatVector.fromArray(F, y, yo + c).mul(factor).intoArray(y, yo + c);
        }
        for (; c < n; c++) y[yo + c] *= factor;
    }

    /** Max of x[o, o+n); n is a multiple of the vector length. */
    static float maxOf(float[] x, int o, int n) {
        FloatVector m = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        for (int c = 0; c < n; c += LANES) m = m.max(FloatVector.fromArray(F, x, o + c));
        return m.reduceLanes(VectorOperators.MAX);
    }

    /**
     * mult[t] = keep(index0 + t) ? keepScale : 0 for t in [0, n), with one Philox block per four
     * consecutive indices; identical to {@link Philox#keep} element by element.
     */
    static void dropoutMultipliers(AttentionShape s, long index0, int n, float keepScale, int[] block,
                                   float[] mult) {
        long seed = s.seed(), stream = s.stream();
        float pDrop = s.dropout();
        long index = index0;
        int t = 0;
        while (t < n) {
            long blk = index >>> 2;
            Philox.block((int) blk, (int) (blk >>> 32), (int) stream, (int) (stream >>> 32),
                    (int) seed, (int) (seed >>> 32), block);
            for (int lane = (int) (index & 3); lane < 4 && t < n; lane++, t++, index++) {
                mult[t] = Philox.toUniform(block[lane]) >= pDrop ? keepScale : 0f;
            }
        }
    }

    // ------------------------------------------------------------------------------------------

    /** The checks of a forward's arguments (shared with {@link MaterializedAttention}): every array long enough from its offset, keyPad null or [B*Nk]. */
    static void requireArguments(AttentionShape s, float[] q, int qOff, float[] k, int kOff, float[] v, int vOff,
                                 boolean[] keyPad, float[] out, int outOff, float[] lse, int lseOff) {
        if (s == null) throw new IllegalArgumentException("shape is null");
        requireRange("q", q, qOff, s.qSize());
        requireRange("k", k, kOff, s.kSize());
        requireRange("v", v, vOff, s.vSize());
        if (keyPad != null && keyPad.length != s.keyPadSize()) {
            throw new IllegalArgumentException("keyPad: required length " + s.keyPadSize()
                    + ", actual " + keyPad.length);
        }
        requireRange("out", out, outOff, s.outSize());
        requireRange("lse", lse, lseOff, s.lseSize());
    }

    static void requireRange(String name, float[] a, int off, int size) {
        if (a == null) throw new IllegalArgumentException(name + " is null");
        if (off < 0) throw new IllegalArgumentException(name + ": negative offset " + off);
        long required = (long) off + size;
        if (required > a.length) {
            throw new IllegalArgumentException(name + ": required length " + required + " (offset " + off
                    + " + " + size + " elements), actual " + a.length);
        }
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    /** 0, n-1, 1, n-2, ... : pairs cheap (early) causal query blocks with expensive (late) ones. */
    private static int zigzag(int t, int n) {
        return (t & 1) == 0 ? t >> 1 : n - 1 - (t >> 1);
    }
}
