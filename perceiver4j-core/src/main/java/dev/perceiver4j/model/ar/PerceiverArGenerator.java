package dev.perceiver4j.model.ar;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Recording;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.util.Arrays;

/**
 * Exact cached generation with a {@link PerceiverAR} for one unpadded sequence.
 *
 * <p>Every call returns the next-token logits of an uncached {@link PerceiverAR#forward} over the
 * current <em>window</em> {@code tokens[windowStart, length)} with prefix length
 * {@code prefixEnd − windowStart} — the same numbers up to float rounding, which the tests check
 * step by step across window and latent slides. What is cached:
 * <ul>
 *   <li><b>Prefix keys/values</b> of the cross-attention (kv_norm → k_proj + rotary, v_proj): computed
 *       once per position and kept while the window stays put.</li>
 *   <li><b>Latent keys/values</b> of the cross-attention (from q_norm) and of every self-attention
 *       layer: while the number of latents grows, each step computes only the new position.</li>
 * </ul>
 * Slides keep the semantics exact:
 * <ul>
 *   <li>When the latents would exceed {@code latents}, the oldest {@code latentStride} latents join
 *       the prefix (their kv_norm keys/values are computed once) and the remaining latents are
 *       recomputed, because every latent attends to all the others. With stride 1 the latents always
 *       cover exactly the last {@code latents} positions (and each step recomputes them); larger
 *       strides trade that for speed (the latent count cycles between latents − stride + 1 and latents).</li>
 *   <li>When the window would exceed {@code max_seq_len}, it drops its oldest {@code windowStride}
 *       positions at once; positions count from the window start, so every cached key is rebuilt.</li>
 * </ul>
 * <p><b>The one-position step</b> (every append that slides nothing) has fixed shapes: it attends over
 * the whole caches with padding masks instead of the filled rows, and writes its new keys/values
 * with {@link Backend#scatterRows} at row indices read from a small device tensor (token, window
 * position, latent row). Its ops therefore never change from one byte to the next, so a backend that
 * records ({@link Backend#record}: CUDA graphs) records them once and replays them for every such
 * byte; the host then only uploads three ints and reads the logits back. On the CPU the step runs with
 * exact shapes over the filled rows, as before.
 *
 * <p>Memory: cross-attention keys/values [max_seq_len, C] ×2 plus [latents, C] ×2 per self-attention
 * layer. {@link #close()} frees the recorded step (the caches go with the generator).
 */
public final class PerceiverArGenerator implements AutoCloseable {

    /** How the one-position step runs (package-private: tests pin it). */
    enum StepMode {
        /** Recorded and replayed where the backend records, else {@link #EXACT}. */
        AUTO,
        /** Exact shapes over the filled cache rows; a fresh sequence of ops per byte. */
        EXACT,
        /** The fixed-shape step (masks, scattered rows), run op by op without recording. */
        FIXED
    }

    /**
     * latents: number of latent positions (1 … max_seq_len; the model's max_latents by default, and
     * it may differ: Perceiver AR's latent count is free at evaluation time); latentStride and
     * windowStride: positions dropped at once when latents or window overflow.
     */
    public record Options(int latents, int latentStride, int windowStride) {
        /** max_latents latents; the latents and the window each slide by 1/8 of their size at a time. */
        public static Options defaults(PerceiverArConfig c) {
            return defaults(c, c.maxLatents());
        }

        /** {@code latents} latents, sliding by 1/8 of that; the window slides by 1/8 of max_seq_len. */
        public static Options defaults(PerceiverArConfig c, int latents) {
            return new Options(latents, Math.max(1, latents / 8), Math.max(1, c.maxSeqLen() / 8));
        }

        void validate(PerceiverArConfig c) {
            if (latents < 1 || latents > c.maxSeqLen()) {
                throw new IllegalArgumentException("latents must be in [1, max_seq_len = " + c.maxSeqLen() + "], got " + latents);
            }
            if (latentStride < 1 || latentStride > latents) {
                throw new IllegalArgumentException("latent stride must be in [1, latents = " + latents + "], got " + latentStride);
            }
            if (windowStride < 1 || windowStride > c.maxSeqLen()) {
                throw new IllegalArgumentException("window stride must be in [1, max_seq_len = " + c.maxSeqLen() + "], got " + windowStride);
            }
        }
    }

    private final PerceiverAR model;
    private final PerceiverArConfig config;
    private final Options options;
    private final Backend be;
    private final int ch;
    private final Tensor crossK, crossV;        // [1, max_seq_len, C]: row t − windowStart
    private final Tensor[] selfK, selfV;        // per layer [1, latents, C]: row t − prefixEnd
    private int[] seq = new int[256];
    private int n, ws, pe;                      // length, window start, prefix end (= first latent)
    private long prefixProjected, latentsComputed;

    // The fixed-shape one-position step (see the class comment).
    private final StepMode mode;
    private Tensor stepState;                   // I32 [4]: token, window position (= cross row) twice, latent row
    private Tensor crossPad, selfPad;           // BOOL [1, max_seq_len], [1, latents]: true = row not filled
    private Tensor filled;                      // BOOL [1, 1] false: written into a pad row as it fills
    private Tensor stepLogits;                  // F32 [V]
    private Tensor[] qkv;                       // [3C, C] per attention (cross, then self layers): q_proj, k_proj, v_proj rows
    private boolean padsCurrent;                // the pads describe the cache rows filled so far
    private Recording recorded;
    private boolean recordTried;
    private long fixedSteps;

    public PerceiverArGenerator(PerceiverAR model, Options options) {
        this(model, options, StepMode.AUTO);
    }

    PerceiverArGenerator(PerceiverAR model, Options options, StepMode mode) {
        this.model = model;
        this.config = model.config();
        this.options = options;
        this.mode = mode;
        options.validate(config);
        this.be = model.params().backend();
        this.ch = config.numChannels();
        this.crossK = be.persistentZeros(Shape.of(1, config.maxSeqLen(), ch), DType.F32);
        this.crossV = be.persistentZeros(Shape.of(1, config.maxSeqLen(), ch), DType.F32);
        this.selfK = new Tensor[model.selfLayers()];
        this.selfV = new Tensor[model.selfLayers()];
        for (int i = 0; i < selfK.length; i++) {
            selfK[i] = be.persistentZeros(Shape.of(1, options.latents(), ch), DType.F32);
            selfV[i] = be.persistentZeros(Shape.of(1, options.latents(), ch), DType.F32);
        }
    }

    /** Starts a new sequence from {@code prompt} (at least one token) → next-token logits [V]. */
    public float[] start(int[] prompt) {
        if (prompt.length == 0) throw new IllegalArgumentException("the prompt needs at least one token (e.g. a newline)");
        for (int i = 0; i < prompt.length; i++) checkToken(prompt[i], i);
        seq = Arrays.copyOf(prompt, Math.max(256, prompt.length * 2));
        n = prompt.length;
        if (qkv != null) fuseProjections();   // the fixed-shape step runs: take the model's current weights
        ws = Math.max(0, n - config.maxSeqLen());
        pe = n - Math.min(options.latents(), n - ws);
        projectPrefix(ws, pe);
        return computeLatents(pe);
    }

    /** Appends {@code token} → logits [V] for the token after it. */
    public float[] append(int token) {
        if (n == 0) throw new IllegalStateException("call start(prompt) first");
        checkToken(token, n);
        if (n == seq.length) seq = Arrays.copyOf(seq, seq.length * 2);
        seq[n++] = token;
        boolean windowSlid = false;
        if (n - ws > config.maxSeqLen()) {
            ws = n - (config.maxSeqLen() - options.windowStride() + 1);
            windowSlid = true;
        }
        pe = Math.max(pe, ws);
        boolean latentsSlid = false;
        if (n - pe > options.latents()) {
            int newPe = n - (options.latents() - options.latentStride() + 1);
            if (!windowSlid) projectPrefix(pe, newPe);
            pe = newPe;
            latentsSlid = true;
        }
        if (windowSlid) {
            projectPrefix(ws, pe);
            return computeLatents(pe);
        }
        if (latentsSlid) return computeLatents(pe);
        if (mode == StepMode.AUTO && !recordTried) {
            recordTried = true;
            allocateStepTensors();
            recorded = Recording.recordOrNull(be, this::fixedStepOps, "generation (the one-position step)");
        }
        return mode == StepMode.FIXED || recorded != null ? fixedStep() : computeLatents(n - 1);
    }

    /** Frees the recorded step, if any (the generator can still be used: it records again). */
    @Override
    public void close() {
        if (recorded != null) recorded.close();
        recorded = null;
        recordTried = false;
    }

    /** One-position steps run with fixed shapes (recorded or not) so far. */
    public long fixedShapeSteps() {
        return fixedSteps;
    }

    /** Whether the one-position step is a recording (a CUDA graph) that is replayed. */
    public boolean stepRecorded() {
        return recorded != null;
    }

    /** Ops (graph nodes) in the recorded step; 0 when it is not recorded. */
    public int recordedOps() {
        return recorded == null ? 0 : recorded.ops();
    }

    /** Tokens so far (prompt and appended). */
    public int[] tokens() {
        return Arrays.copyOf(seq, n);
    }

    public int length() {
        return n;
    }

    /** First token of the current window. */
    public int windowStart() {
        return ws;
    }

    /** First latent position (absolute); the window's prefix length is {@code prefixEnd() − windowStart()}. */
    public int prefixEnd() {
        return pe;
    }

    /** Prefix positions whose keys/values were computed so far (counts recomputation after window slides). */
    public long prefixPositionsProjected() {
        return prefixProjected;
    }

    /** Latent positions run through the whole stack so far. */
    public long latentPositionsComputed() {
        return latentsComputed;
    }

    private void checkToken(int t, int at) {
        if (t < 0 || t >= config.vocabSize()) {
            throw new IllegalArgumentException("token " + t + " at position " + at + " is outside the vocabulary [0, " + config.vocabSize() + ")");
        }
    }

    private Tensor ids(int from, int to) {
        return be.fromInts(Arrays.copyOfRange(seq, from, to), Shape.of(1, to - from));
    }

    /** Window positions of tokens [from, to) as I32 [1, to − from]. */
    private Tensor positions(int from, int to) {
        int[] p = new int[to - from];
        for (int i = 0; i < p.length; i++) p[i] = from + i - ws;
        return be.fromInts(p, Shape.of(1, to - from));
    }

    /** Cross-attention keys/values of prefix tokens [from, to) (kv_norm) into cache rows [from − ws, to − ws). */
    private void projectPrefix(int from, int to) {
        if (to <= from) return;
        padsCurrent = false;
        try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
            Tensor pos = positions(from, to);
            Tensor kvn = model.kvNorm().forward(model.embed(ids(from, to), pos));                    // [1, m, C]
            PerceiverAR.Attention ca = model.crossAttention();
            be.unnarrow(ca.key(kvn, pos.reshape(to - from)), 1, from - ws, crossK, false);
            be.unnarrow(ca.v.forward(kvn), 1, from - ws, crossV, false);
        }
        prefixProjected += to - from;
    }

    /**
     * Runs latents [from, n) through the network, caches holding the keys/values of every position
     * before {@code from} → logits [V] of the last position.
     */
    private float[] computeLatents(int from) {
        int m = n - from;
        padsCurrent = false;
        try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
            Tensor pos2 = positions(from, n);
            Tensor pos = pos2.reshape(m);
            Tensor x = model.embed(ids(from, n), pos2);                                             // [1, m, C]

            // Cross-attention: keys/values of these latents come from q_norm (as in the forward pass).
            PerceiverAR.Attention ca = model.crossAttention();
            Tensor qn = model.qNorm().forward(x);
            be.unnarrow(ca.key(qn, pos), 1, from - ws, crossK, false);
            be.unnarrow(ca.v.forward(qn), 1, from - ws, crossV, false);
            Tensor k = crossK.alias(0, Shape.of(1, n - ws, ch)), v = crossV.alias(0, Shape.of(1, n - ws, ch));
            Tensor h = ca.o.forwardAdd(ca.attend(ca.query(qn, pos), k, v, null, null), x);          // [1, m, C]
            h = model.crossMlp().forwardAdd(h, h);

            for (int i = 0; i < selfK.length; i++) {
                PerceiverAR.Attention sa = model.selfAttention(i);
                Tensor rp = model.selfRotary(i) ? pos : null;
                Tensor hn = model.selfNorm(i).forward(h);
                be.unnarrow(sa.key(hn, rp), 1, from - pe, selfK[i], false);
                be.unnarrow(sa.v.forward(hn), 1, from - pe, selfV[i], false);
                Tensor sk = selfK[i].alias(0, Shape.of(1, n - pe, ch)), sv = selfV[i].alias(0, Shape.of(1, n - pe, ch));
                h = sa.o.forwardAdd(sa.attend(sa.query(hn, rp), sk, sv, null, null), h);
                h = model.selfMlp(i).forwardAdd(h, h);
            }
            latentsComputed += m;
            return model.logits(m == 1 ? h : F.narrow(h, 1, m - 1, 1)).toFloatArray();             // [V]
        }
    }

    /**
     * The one-position step for token n − 1 with fixed shapes: upload (token, window position twice,
     * latent row), then run {@link #fixedStepOps()}, replaying its recording where the backend records.
     * Every cache row before the new one is filled; the pads say which (rebuilt after any other path
     * wrote the caches).
     */
    private float[] fixedStep() {
        allocateStepTensors();
        if (!padsCurrent) {
            be.writeBools(padFrom(config.maxSeqLen(), n - 1 - ws), crossPad);
            be.writeBools(padFrom(options.latents(), n - 1 - pe), selfPad);
            padsCurrent = true;
        }
        be.writeInts(new int[] {seq[n - 1], n - 1 - ws, n - 1 - ws, n - 1 - pe}, stepState);
        if (recorded != null) recorded.replay();
        else fixedStepOps();
        latentsComputed++;
        fixedSteps++;
        return stepLogits.toFloatArray();
    }

    private void allocateStepTensors() {
        if (stepState != null) return;
        fuseProjections();
        stepState = be.persistentZeros(Shape.of(4), DType.I32);
        crossPad = be.persistentZeros(Shape.of(1, config.maxSeqLen()), DType.BOOL);
        selfPad = be.persistentZeros(Shape.of(1, options.latents()), DType.BOOL);
        filled = be.persistentZeros(Shape.of(1, 1), DType.BOOL);
        stepLogits = be.persistentZeros(Shape.of(config.vocabSize()), DType.F32);
    }

    /**
     * Copies each attention's q_proj, k_proj and v_proj weights into one [3C, C] matrix, so the step
     * projects a position with one product (three small products cost three kernel launches). Run
     * at every start(), so the step always uses the model's current weights.
     */
    private void fuseProjections() {
        if (qkv == null) {
            qkv = new Tensor[1 + selfK.length];
            for (int i = 0; i < qkv.length; i++) qkv[i] = be.persistentZeros(Shape.of(3 * ch, ch), DType.F32);
        }
        for (int i = 0; i < qkv.length; i++) {
            PerceiverAR.Attention a = i == 0 ? model.crossAttention() : model.selfAttention(i - 1);
            be.unnarrow(a.q.weight, 0, 0, qkv[i], false);
            be.unnarrow(a.k.weight, 0, ch, qkv[i], false);
            be.unnarrow(a.v.weight, 0, 2 * ch, qkv[i], false);
        }
    }

    /**
     * q_proj, k_proj, v_proj of one position x [1, 1, C] with attention {@code a}'s fused weights, q and
     * k rotated by {@code pos2} (I32 [2]: the position twice, or null: no rotary) in one call (they are
     * adjacent in the row) → q, k, v [1, 1, C].
     */
    private Tensor[] project(Tensor x, int a, Tensor pos2) {
        PerceiverAR.Attention at = a == 0 ? model.crossAttention() : model.selfAttention(a - 1);
        Tensor row = F.matmul(x.reshape(1, ch), false, qkv[a], true, null, Activation.NONE);   // [1, 3C]
        Tensor qk = at.rotate(row.alias(0, Shape.of(2, ch)), pos2);                               // [2, C]
        Shape s = Shape.of(1, 1, ch);
        return new Tensor[] {qk.alias(0, s), qk.alias(ch, s), row.alias(2 * ch, s)};
    }

    /** rows ≥ filledRows are padding. */
    private static boolean[] padFrom(int rows, int filledRows) {
        boolean[] p = new boolean[rows];
        Arrays.fill(p, filledRows, rows, true);
        return p;
    }

    /**
     * The ops of the one-position step. Reads only device tensors (stepState, caches, pads), so the
     * same ops serve every byte: the new position's keys/values go to cache rows read from stepState,
     * and attention runs over whole caches, masking rows not filled yet.
     */
    private void fixedStepOps() {
        try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
            Tensor token = stepState.alias(0, Shape.of(1, 1));
            Tensor pos = stepState.alias(1, Shape.of(1));                                          // window position = cross row
            Tensor pos2 = stepState.alias(1, Shape.of(2));                                         // the same, twice: q and k rows
            Tensor selfRow = stepState.alias(3, Shape.of(1));
            Tensor x = model.embed(token, pos.reshape(1, 1));                                        // [1, 1, C]

            PerceiverAR.Attention ca = model.crossAttention();
            Tensor qn = model.qNorm().forward(x);
            Tensor[] p = project(qn, 0, pos2);                                                       // q, k (rotated), v [1, 1, C]
            be.scatterRows(p[1], pos, crossK.reshape(config.maxSeqLen(), ch));
            be.scatterRows(p[2], pos, crossV.reshape(config.maxSeqLen(), ch));
            be.scatterRows(filled, pos, crossPad.reshape(config.maxSeqLen(), 1));
            Tensor h = ca.o.forwardAdd(ca.attend(p[0], crossK, crossV, crossPad, null), x);
            h = model.crossMlp().forwardAdd(h, h);

            be.scatterRows(filled, selfRow, selfPad.reshape(options.latents(), 1));
            for (int i = 0; i < selfK.length; i++) {
                PerceiverAR.Attention sa = model.selfAttention(i);
                p = project(model.selfNorm(i).forward(h), 1 + i, model.selfRotary(i) ? pos2 : null);
                be.scatterRows(p[1], selfRow, selfK[i].reshape(options.latents(), ch));
                be.scatterRows(p[2], selfRow, selfV[i].reshape(options.latents(), ch));
                h = sa.o.forwardAdd(sa.attend(p[0], selfK[i], selfV[i], selfPad, null), h);
                h = model.selfMlp(i).forwardAdd(h, h);
            }
            be.copy(model.logits(h).reshape(config.vocabSize()), stepLogits);
        }
    }
}
