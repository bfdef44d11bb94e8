package dev.perceiver4j.model.ar;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.io.Checkpoints;
import dev.perceiver4j.io.TensorSource;
import dev.perceiver4j.nn.Embedding;
import dev.perceiver4j.nn.Init;
import dev.perceiver4j.nn.LayerNorm;
import dev.perceiver4j.nn.Linear;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.nn.Weights;
import dev.perceiver4j.random.Philox;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.IntStream;

/**
 * Perceiver AR causal language model, krasserm/perceiver-io 0.11.1 {@code CausalSequenceModel},
 * with that project's parameter names (its state dict loads as is, also under the
 * {@code backend_model.} prefix its Hugging Face wrapper adds).
 *
 * <pre>
 *   ids [B, N], padMask [B, N] (1 = padding, LEFT padding only), prefixLen P (0 ≤ P &lt; N), L = N − P latents
 *   pos[b, t] = max(0, t − #pads(b))                              positions count from the first real token
 *   x = input_adapter.txt_embedding(ids) + input_adapter.pos_embedding(pos)   [B, N, C]  (pos only if abs_pos_emb)
 *   latents = x[:, P:], prefix = x[:, :P]
 *   cross_attention.0 (residual):  qn = q_norm(latents), kv = concat(kv_norm(prefix), qn)     [B, N, C]
 *       q = rot(q_proj(qn), pos[P:]), k = rot(k_proj(kv), pos), v = v_proj(kv)  (no bias)
 *       h = latents + o_proj(attention(q, k, v; causal right-aligned, key padding))   (o_proj has a bias)
 *   cross_attention.1 (residual):  h = h + module.3(gelu(module.1(module.0(h))))        (LN → 4C → C, no bias)
 *   self_attention.i, i &lt; num_self_attention_layers (causal over the latents, NO key padding):
 *       .0: h = h + o_proj(attention(rot?(q_proj(norm(h))), rot?(k_proj(norm(h))), v_proj(norm(h))))
 *           (rotary only while i &lt; num_self_attention_rotary_layers, or always when that is −1)
 *       .1: h = h + MLP(h)
 *   logits = [out_norm](h) · txt_embeddingᵀ + output_adapter.bias                       [B, L, V]
 *            (untied option: output_adapter.linear.weight instead of txt_embedding)
 * </pre>
 * Rotary: interleaved pairs over the first {@code rot} channels of each head, rot = head dim / 2
 * with absolute position embeddings, the whole head without; inverse frequencies are the
 * {@code input_adapter.frq_pos_encoding.inv_freq} buffer (base 10000). Attention scale 1/√(head dim).
 *
 * <p>A query whose every visible key is padding (a padded latent) gets, as in the reference's
 * {@code masked_fill(-max) + softmax}, a uniform average of all values; its output is meaningless
 * but feeds the (unpadded) self-attention of later latents, so it is reproduced exactly.
 *
 * <p>{@link #forward} is the deterministic inference pass; {@link #forwardTraining} adds prefix
 * dropout (krasserm's subset rule or the paper's Bernoulli masking), attention-probability and
 * residual dropout. Both recompute the whole window; {@link PerceiverArGenerator} is the cached,
 * exact generation path built from the same blocks.
 */
public final class PerceiverAR {
    /** PyTorch nn.LayerNorm's default eps, used by every norm of the reference. */
    public static final float LN_EPS = 1e-5f;
    /** The Hugging Face wrapper's attribute holding the CausalSequenceModel. */
    public static final String HF_PREFIX = "backend_model.";

    private final PerceiverArConfig config;
    private final Params params;
    private final Embedding txtEmbedding;        // input_adapter.txt_embedding.weight [V, C] (tied output)
    private final Embedding posEmbedding;        // input_adapter.pos_embedding.weight [maxSeqLen, C] or null
    private final Tensor invFreq;                // input_adapter.frq_pos_encoding.inv_freq [rot/2] (buffer)
    private final LayerNorm qNorm, kvNorm;       // cross_attention.0.module.{q_norm, kv_norm}
    private final Attention crossAttention;      // cross_attention.0.module.attention
    private final Mlp crossMlp;                  // cross_attention.1.module
    private final List<Attention> selfAttention = new ArrayList<>();   // self_attention.i.0.module.attention
    private final List<LayerNorm> selfNorms = new ArrayList<>();       // self_attention.i.0.module.norm
    private final List<Mlp> selfMlps = new ArrayList<>();             // self_attention.i.1.module
    private final LayerNorm outNorm;             // out_norm (output_norm) or null
    private final Tensor head;                   // output_adapter.linear.weight [V, C] (untied) or null
    private final Tensor outputBias;             // output_adapter.bias [V] or null
    private final int rot;

    public PerceiverAR(Backend backend, PerceiverArConfig c, long seed) {
        this.config = c;
        this.params = Params.root(backend, seed);
        int ch = c.numChannels();
        this.rot = c.rotatedChannelsPerHead();
        Params in = params.sub("input_adapter");
        this.txtEmbedding = new Embedding(in.sub("txt_embedding"), c.vocabSize(), ch, c.initScale());
        this.posEmbedding = c.absPosEmb() ? new Embedding(in.sub("pos_embedding"), c.maxSeqLen(), ch, c.initScale()) : null;
        float[] freq = new float[rot / 2];
        for (int i = 0; i < freq.length; i++) freq[i] = (float) (1.0 / Math.pow(10000.0, (2.0 * i) / rot));
        Tensor f = backend.persistentZeros(Shape.of(rot / 2), DType.F32);
        backend.copy(backend.fromFloats(freq, Shape.of(rot / 2)), f);
        this.invFreq = in.sub("frq_pos_encoding").buffer("inv_freq", f);

        Params ca = params.sub("cross_attention");
        Params cam = ca.sub(0).sub("module");
        this.qNorm = new LayerNorm(cam.sub("q_norm"), ch, LN_EPS);
        this.kvNorm = new LayerNorm(cam.sub("kv_norm"), ch, LN_EPS);
        this.crossAttention = new Attention(cam.sub("attention"), ch, c.numHeads(), true, rot, invFreq);
        this.crossMlp = new Mlp(ca.sub(1).sub("module"), ch, c.crossAttentionWideningFactor(), c.mlpActivation());

        Params sa = params.sub("self_attention");
        for (int i = 0; i < c.numSelfAttentionLayers(); i++) {
            Params att = sa.sub(i).sub(0).sub("module");
            selfNorms.add(new LayerNorm(att.sub("norm"), ch, LN_EPS));
            selfAttention.add(new Attention(att.sub("attention"), ch, c.numHeads(), false, rot, invFreq));
            selfMlps.add(new Mlp(sa.sub(i).sub(1).sub("module"), ch, c.selfAttentionWideningFactor(), c.mlpActivation()));
        }
        this.outNorm = c.outputNorm() ? new LayerNorm(params.sub("out_norm"), ch, LN_EPS) : null;
        Params out = params.sub("output_adapter");
        // Untied head (paper): output_adapter.linear.weight [V, C], zero-initialised.
        this.head = c.tiedOutput() ? null : out.sub("linear").weight("weight", Shape.of(c.vocabSize(), ch), Init.zeros());
        this.outputBias = c.outputBias() ? out.weight("bias", Shape.of(c.vocabSize()), Init.zeros()) : null;
    }

    /**
     * Loads a model directory ({@code config.json} + {@code model.safetensors} / {@code pytorch_model.bin})
     * or a weights file next to its config.json; checkpoint names may carry the {@code backend_model.} prefix.
     */
    public static PerceiverAR load(Backend backend, Path modelDirOrFile) throws IOException {
        Path dir = Weights.modelDir(modelDirOrFile);
        PerceiverArConfig c;
        try {
            c = PerceiverArConfig.fromJson(Checkpoints.readConfig(dir));
        } catch (IllegalArgumentException e) {
            throw new IOException(dir.resolve("config.json") + ": " + e.getMessage(), e);
        }
        PerceiverAR m = new PerceiverAR(backend, c, 0L);
        try (TensorSource src = Checkpoints.open(modelDirOrFile)) {
            Weights.load(m.params, src, PerceiverAR::checkpointName);
        }
        return m;
    }

    /** Checkpoint name → model name: strips the Hugging Face wrapper's {@code backend_model.} prefix. */
    static String checkpointName(String name) {
        return name.startsWith(HF_PREFIX) ? name.substring(HF_PREFIX.length()) : name;
    }

    /** Writes {@code config.json} and {@code model.safetensors} (reference names, no prefix) into {@code dir}. */
    public void save(Path dir) throws IOException {
        Weights.saveModelDir(params, config.toJson(), dir);
    }

    public PerceiverArConfig config() {
        return config;
    }

    /** Every parameter and buffer, under the reference's names. */
    public Params params() {
        return params;
    }

    /**
     * Inference forward. ids: I32 [B, N] (N ≤ max_seq_len); padMask: I32/F32 [B, N] with 1 for (left)
     * padding and 0 for real tokens, or null; 0 ≤ prefixLen &lt; N → logits [B, N − prefixLen, V] of
     * the latent positions (the prediction of the token after each). No dropout.
     */
    public Tensor forward(Tensor ids, Tensor padMask, int prefixLen) {
        if (ids.rank() != 2) throw new IllegalArgumentException("ids must be [B, N], got " + ids.shape());
        int b = ids.dim(0), n = ids.dim(1);
        checkLengths(n, prefixLen);
        if (padMask != null && !padMask.shape().equals(ids.shape())) {
            throw new IllegalArgumentException("padMask " + padMask.shape() + " must match ids " + ids.shape());
        }
        int lat = n - prefixLen, ch = config.numChannels();
        // Host-side bookkeeping: padding, positions (from the first real token, clamped at 0).
        boolean[] pad = new boolean[b * n];
        if (padMask != null) {
            float[] m = padMask.toFloatArray();
            for (int i = 0; i < m.length; i++) pad[i] = m[i] != 0f;
        }
        int[] pos = new int[b * n];
        for (int r = 0; r < b; r++) {
            int shift = 0;
            for (int t = 0; t < n; t++) if (pad[r * n + t]) shift++;
            for (int t = 0; t < n; t++) pos[r * n + t] = Math.max(0, t - shift);
        }
        float[] noVisibleKey = null;   // per latent row: 1 where every visible key is padding
        if (padMask != null) {
            for (int r = 0; r < b; r++) {
                boolean seen = false;   // a real key at or before absolute position prefixLen + i
                for (int t = 0; t < n; t++) {
                    seen |= !pad[r * n + t];
                    if (t >= prefixLen && !seen) {
                        if (noVisibleKey == null) noVisibleKey = new float[b * lat * ch];
                        Arrays.fill(noVisibleKey, (r * lat + t - prefixLen) * ch, (r * lat + t - prefixLen + 1) * ch, 1f);
                    }
                }
            }
        }
        Backend be = params.backend();
        Tensor idsI32 = ids.dtype() == DType.I32 ? ids : be.fromInts(hostInts(ids), Shape.of(b, n));
        return run(idsI32, be.fromInts(pos, Shape.of(b, n)), be.fromInts(latentPositions(pos, b, n, prefixLen), Shape.of(b * lat)),
                padMask == null ? null : be.fromBools(pad, Shape.of(b, n)), noVisibleKey, prefixLen, null);
    }

    /**
     * Training forward with the configuration's dropouts. ids: [B·N] host tokens (no padding),
     * prefix length P, latents L = N − P. Prefix dropout ({@code cross_attention_dropout} p):
     * <ul>
     *   <li>SUBSET: each row keeps exactly P − ⌊P·p⌋ prefix positions, drawn uniformly without
     *       replacement from (seed, row) and kept in order with their original positions; the dropped
     *       positions are not embedded or projected at all (the compute saving of Perceiver AR);</li>
     *   <li>BERNOULLI: every input position is masked out of the cross-attention independently with
     *       probability p (a latent whose visible keys are all masked gets a zero attention output).</li>
     * </ul>
     * Attention-probability and residual dropouts use Philox streams derived from {@code seed}.
     * Returns logits [B, L, V]. The same as {@code forwardTraining(TrainingTensors.upload(be,
     * trainingInputs(ids, b, prefixLen, seed)), seed)}.
     */
    public Tensor forwardTraining(int[] ids, int b, int prefixLen, long seed) {
        return forwardTraining(TrainingTensors.upload(params.backend(), trainingInputs(ids, b, prefixLen, seed)), seed);
    }

    /**
     * What a training pass reads, drawn on the host: the tokens and positions the network sees after
     * prefix dropout ([B, M] each, M = kept prefix + latents for SUBSET, N otherwise), the latents'
     * positions [B·L], the keys BERNOULLI prefix dropout masks ([B, M], or null) and the prefix length
     * within M. A pure function of (ids, seed): a recorded step writes it into persistent tensors
     * ({@link TrainingTensors#write}) and replays. Without SUBSET prefix dropout it holds the caller's
     * ids array itself (not a copy).
     */
    public record TrainingInputs(int batch, int length, int prefixLen, int[] ids, int[] positions, int[] latentPositions, boolean[] keyPad) {
        public TrainingInputs {
            int n = batch * length;
            if (batch < 1 || prefixLen < 0 || prefixLen >= length) {
                throw new IllegalArgumentException("training inputs: batch " + batch + ", length " + length + ", prefix " + prefixLen);
            }
            if (ids.length != n || positions.length != n || latentPositions.length != batch * (length - prefixLen) || (keyPad != null && keyPad.length != n)) {
                throw new IllegalArgumentException("training inputs: arrays do not match " + batch + " rows of " + length + " positions (prefix " + prefixLen + ")");
            }
        }
    }

    /**
     * The device tensors of {@link TrainingInputs}: ids and positions I32 [B, M], latent positions I32
     * [B·L], keyPad BOOL [B, M] or null.
     */
    public record TrainingTensors(Tensor ids, Tensor positions, Tensor latentPositions, Tensor keyPad, int prefixLen) {
        /** Step-scoped tensors holding {@code in}. */
        public static TrainingTensors upload(Backend be, TrainingInputs in) {
            Shape rows = Shape.of(in.batch(), in.length());
            return new TrainingTensors(be.fromInts(in.ids(), rows), be.fromInts(in.positions(), rows),
                    be.fromInts(in.latentPositions(), Shape.of(in.latentPositions().length)),
                    in.keyPad() == null ? null : be.fromBools(in.keyPad(), rows), in.prefixLen());
        }

        /** Persistent (zeroed) tensors shaped like {@code like}, for {@link #write} before each replay of a recorded step. */
        public static TrainingTensors persistent(Backend be, TrainingInputs like) {
            Shape rows = Shape.of(like.batch(), like.length());
            return new TrainingTensors(be.persistentZeros(rows, DType.I32), be.persistentZeros(rows, DType.I32),
                    be.persistentZeros(Shape.of(like.latentPositions().length), DType.I32),
                    like.keyPad() == null ? null : be.persistentZeros(rows, DType.BOOL), like.prefixLen());
        }

        /** Writes {@code in} in place (no allocation); its shape must be the one these tensors were made for. */
        public void write(Backend be, TrainingInputs in) {
            if (!ids.shape().equals(Shape.of(in.batch(), in.length())) || in.prefixLen() != prefixLen || (in.keyPad() == null) != (keyPad == null)) {
                throw new IllegalArgumentException("training inputs of " + in.batch() + " × " + in.length() + " (prefix " + in.prefixLen()
                        + ") do not fit tensors made for " + ids.shape() + " (prefix " + prefixLen + ")");
            }
            be.writeInts(in.ids(), ids);
            be.writeInts(in.positions(), positions);
            be.writeInts(in.latentPositions(), latentPositions);
            if (keyPad != null) be.writeBools(in.keyPad(), keyPad);
        }
    }

    /** The host part of {@link #forwardTraining(int[], int, int, long)}: prefix dropout drawn from (seed, row). */
    public TrainingInputs trainingInputs(int[] ids, int b, int prefixLen, long seed) {
        if (b < 1 || ids.length % b != 0) throw new IllegalArgumentException(ids.length + " ids do not make " + b + " rows");
        int n = ids.length / b;
        checkLengths(n, prefixLen);
        int lat = n - prefixLen;
        float p = config.crossAttentionDropout();
        if (p > 0 && prefixLen > 0 && config.crossAttentionDropoutMode() == PerceiverArConfig.PrefixDropoutMode.SUBSET) {
            int keep = keptPrefix(prefixLen, p);
            int m = keep + lat;
            int[] kIds = new int[b * m], kPos = new int[b * m];
            // Rows in parallel (each writes its own range): drawn on the host before the first kernel of
            // the step, this would otherwise leave a GPU idle for milliseconds (24 rows of 3,584: about 2 ms).
            IntStream.range(0, b).parallel().forEach(r -> {
                int[] kept = keptPrefixPositions(prefixLen, keep, seed, r);
                for (int j = 0; j < keep; j++) {
                    kIds[r * m + j] = ids[r * n + kept[j]];
                    kPos[r * m + j] = kept[j];
                }
                for (int i = 0; i < lat; i++) {
                    kIds[r * m + keep + i] = ids[r * n + prefixLen + i];
                    kPos[r * m + keep + i] = prefixLen + i;
                }
            });
            return new TrainingInputs(b, m, keep, kIds, kPos, latentPositions(kPos, b, m, keep), null);
        }
        int[] pos = new int[b * n];
        for (int i = 0; i < pos.length; i++) pos[i] = i % n;
        boolean[] masked = null;
        if (p > 0 && config.crossAttentionDropoutMode() == PerceiverArConfig.PrefixDropoutMode.BERNOULLI) {
            masked = new boolean[b * n];
            for (int i = 0; i < masked.length; i++) masked[i] = Philox.uniform(seed, BERNOULLI_STREAM, i) < p;
        }
        return new TrainingInputs(b, n, prefixLen, ids, pos, latentPositions(pos, b, n, prefixLen), masked);
    }

    /**
     * Training forward over device inputs ({@link TrainingTensors}, written from {@link #trainingInputs}
     * with the same {@code seed}), whose attention-probability and residual dropouts draw from
     * {@code seed}. Reads nothing back to the host, so a backend can record it. → logits [B, L, V].
     */
    public Tensor forwardTraining(TrainingTensors in, long seed) {
        checkLengths(in.ids().dim(1), in.prefixLen());
        return run(in.ids(), in.positions(), in.latentPositions(), in.keyPad(), null, in.prefixLen(),
                new Dropouts(config.postAttentionDropout(), config.residualDropout(), seed));
    }

    /** Each row's positions from {@code prefixLen} on (the latents'), rows of {@code n}. */
    private static int[] latentPositions(int[] pos, int b, int n, int prefixLen) {
        int lat = n - prefixLen;
        int[] r = new int[b * lat];
        for (int row = 0; row < b; row++) System.arraycopy(pos, row * n + prefixLen, r, row * lat, lat);
        return r;
    }

    /** Prefix positions SUBSET prefix dropout keeps out of P: P − ⌊P·p⌋ (krasserm's rule). */
    public static int keptPrefix(int prefixLen, float p) {
        return prefixLen - (int) Math.floor(prefixLen * (double) p);
    }

    /** Philox streams of the training pass's random choices (dropout sites use small stream numbers). */
    private static final long PREFIX_STREAM = 0x5052_4546_0000_0000L, BERNOULLI_STREAM = 0x4245_524E_0000_0000L;

    /**
     * The sorted prefix positions row {@code row} keeps: a uniform {@code keep}-subset of [0, P)
     * drawn from Philox(seed, row), so it is the same on every JVM (a resumed run must redraw it).
     */
    public static int[] keptPrefixPositions(int prefixLen, int keep, long seed, int row) {
        // Partial Fisher–Yates: the first `keep` entries of a shuffled [0, P), then sorted. Swap i uses
        // Philox output i of (seed, stream); one Philox block holds outputs 4m … 4m + 3, so it is drawn
        // once per four swaps (the same values as Philox.bits(seed, stream, i), a quarter of the work).
        long stream = PREFIX_STREAM + row;
        int[] idx = new int[prefixLen];
        for (int i = 0; i < prefixLen; i++) idx[i] = i;
        int[] block = new int[4];
        for (int i = 0; i < keep; i++) {
            if ((i & 3) == 0) Philox.blockOf(seed, stream, i, block);
            long bits = block[i & 3] & 0xFFFFFFFFL;
            int j = i + (int) ((bits * (prefixLen - i)) >>> 32);     // multiply-shift: uniform up to 2⁻³² bias
            int t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
        // In order without sorting: mark the chosen positions, then read the marks from 0 up.
        boolean[] chosen = new boolean[prefixLen];
        for (int i = 0; i < keep; i++) chosen[idx[i]] = true;
        int[] kept = new int[keep];
        for (int pos = 0, k = 0; pos < prefixLen; pos++) if (chosen[pos]) kept[k++] = pos;
        return kept;
    }

    private void checkLengths(int n, int prefixLen) {
        if (n > config.maxSeqLen()) throw new IllegalArgumentException("sequence of " + n + " tokens exceeds max_seq_len " + config.maxSeqLen());
        if (prefixLen < 0 || prefixLen >= n) throw new IllegalArgumentException("prefixLen " + prefixLen + " out of valid range [0.." + n + ")");
    }

    /** Training-time dropouts of one pass; streams are numbered per dropout site. */
    private record Dropouts(float attention, float residual, long seed) {}

    /**
     * The whole network over device inputs. ids, pos: I32 [B, N]; posLat: I32 [B·L], the latents'
     * positions; keyPad: BOOL [B, N] masked cross-attention keys or null; noVisibleKey: see
     * {@link Attention#forward}; the first P of each row's N positions are the prefix → logits [B, N − P, V].
     */
    private Tensor run(Tensor ids, Tensor pos, Tensor posLat, Tensor pad, float[] noVisibleKey, int prefixLen, Dropouts d) {
        int b = ids.dim(0), n = ids.dim(1), lat = n - prefixLen;
        Tensor posAll = pos.reshape(b * n);
        int[] site = {0};   // dropout stream counter

        // Input adapter.
        Tensor x = embed(ids, pos);                                                                // [B, N, C]
        Tensor latents = prefixLen == 0 ? x : F.narrow(x, 1, prefixLen, lat);                      // [B, L, C]

        // Cross-attention: latents attend to concat(kv_norm(prefix), q_norm(latents)). Both normed parts
        // are read by products only, in the operand type of the key/value products (B·N rows).
        DType kvType = x.backend().matmulOperandType((long) b * n);
        Tensor qn = qNorm.forward(latents, kvType);                                                // [B, L, C]
        Tensor kv = qn;                                                                             // [B, N, C]
        if (prefixLen > 0) {
            Tensor prefixNormed = kvNorm.forward(F.narrow(x, 1, 0, prefixLen), kvType);
            kv = F.concat(1, prefixNormed, qn);
            F.discard(prefixNormed);                        // only the concat read it
        }
        // Without residual dropout each residual add rides on the branch's last product (Linear.forwardAdd).
        boolean fused = d == null || d.residual() == 0;
        Tensor h = fused ? crossAttention.forward(qn, kv, posLat, posAll, pad, noVisibleKey, attn(d, site), latents)
                : F.add(residual(crossAttention.forward(qn, kv, posLat, posAll, pad, noVisibleKey, attn(d, site), null), d, site), latents);
        F.discard(qn);                                      // rebuilt in backward from layer norm's saved statistics
        h = fused ? crossMlp.forwardAdd(h, h) : addResidual(h, crossMlp.forward(h), d, site);

        // Causal self-attention over the latents (no key padding, as in the reference).
        for (int i = 0; i < selfAttention.size(); i++) {
            Tensor rp = selfRotary(i) ? posLat : null;
            Tensor hn = selfNorms.get(i).forwardToProducts(h);
            Attention sa = selfAttention.get(i);
            h = fused ? sa.forward(hn, hn, rp, rp, null, null, attn(d, site), h)
                    : addResidual(h, sa.forward(hn, hn, rp, rp, null, null, attn(d, site), null), d, site);
            F.discard(hn);                                  // rebuilt in backward from layer norm's saved statistics
            h = fused ? selfMlps.get(i).forwardAdd(h, h) : addResidual(h, selfMlps.get(i).forward(h), d, site);
        }
        return logits(h);                                                                           // [B, L, V]
    }

    /** Dropout on attention probabilities: rate, Philox seed and stream. */
    record AttnDropout(float p, long seed, long stream) {}

    private static AttnDropout attn(Dropouts d, int[] site) {
        return d == null || d.attention() == 0 ? null : new AttnDropout(d.attention(), d.seed(), site[0]++);
    }

    private static Tensor residual(Tensor branch, Dropouts d, int[] site) {
        return d == null || d.residual() == 0 ? branch : F.dropout(branch, d.residual(), d.seed(), 1000 + site[0]++);
    }

    /**
     * h + residual(branch) → the new h; the branch output (and its dropped-out copy) go back to the
     * step's pool at once: only dropout and the add read them, and their backward needs no values.
     */
    private static Tensor addResidual(Tensor h, Tensor branch, Dropouts d, int[] site) {
        Tensor r = residual(branch, d, site);
        Tensor out = F.add(h, r);
        F.discard(r);
        if (r != branch) F.discard(branch);
        return out;
    }

    private static int[] hostInts(Tensor t) {
        float[] f = t.toFloatArray();
        int[] r = new int[f.length];
        for (int i = 0; i < f.length; i++) r[i] = (int) f[i];
        return r;
    }

    // ---- building blocks shared with the cached generator ------------------------------------

    /** txt_embedding(ids) [+ pos_embedding(pos)]. ids, pos: I32 [B, N] → [B, N, C]. */
    Tensor embed(Tensor ids, Tensor pos) {
        Tensor x = txtEmbedding.forward(ids);
        return posEmbedding == null ? x : F.add(x, posEmbedding.forward(pos));
    }

    /** Whether self-attention layer i applies rotary embeddings. */
    boolean selfRotary(int i) {
        return config.numSelfAttentionRotaryLayers() == -1 || i < config.numSelfAttentionRotaryLayers();
    }

    /** [out_norm] then the tied (h · txt_embeddingᵀ + bias) or untied head. h: [B, L, C] → [B, L, V]. */
    Tensor logits(Tensor h) {
        int b = h.dim(0), lat = h.dim(1), ch = config.numChannels();
        if (outNorm != null) h = outNorm.forward(h);
        Tensor w = head != null ? head : txtEmbedding.weight;
        Tensor logits = F.matmul(h.reshape(b * lat, ch), false, w, true, outputBias, Activation.NONE);
        return logits.reshape(b, lat, config.vocabSize());
    }

    LayerNorm qNorm() { return qNorm; }
    LayerNorm kvNorm() { return kvNorm; }
    Attention crossAttention() { return crossAttention; }
    Mlp crossMlp() { return crossMlp; }
    int selfLayers() { return selfAttention.size(); }
    LayerNorm selfNorm(int i) { return selfNorms.get(i); }
    Attention selfAttention(int i) { return selfAttention.get(i); }
    Mlp selfMlp(int i) { return selfMlps.get(i); }

    /** Greedy (argmax) continuation of one unpadded prompt: {@code steps} tokens, the prefix held at {@code prefixLen} positions (uncached). */
    public int[] generateGreedy(int[] prompt, int steps, int prefixLen) {
        Backend be = params.backend();
        int[] seq = Arrays.copyOf(prompt, prompt.length + steps);
        try (var ng = Autograd.noGrad()) {
            for (int s = 0; s < steps; s++) {
                int n = prompt.length + s;
                try (Scope scope = Scope.open()) {
                    Tensor logits = forward(be.fromInts(Arrays.copyOf(seq, n), Shape.of(1, n)), null, prefixLen);
                    int lat = n - prefixLen, v = config.vocabSize();
                    float[] all = logits.toFloatArray();
                    int best = 0;
                    for (int j = 1; j < v; j++) if (all[(lat - 1) * v + j] > all[(lat - 1) * v + best]) best = j;
                    seq[n] = best;
                }
            }
        }
        return Arrays.copyOfRange(seq, prompt.length, seq.length);
    }

    /** q/k/v/o projections of one attention module (reference names); only o_proj may carry a bias. */
    static final class Attention {
        final Linear q, k, v, o;
        private final int heads, rot;
        private final Tensor invFreq;

        Attention(Params p, int ch, int heads, boolean outBias, int rot, Tensor invFreq) {
            this.q = new Linear(p.sub("q_proj"), ch, ch, false);
            this.k = new Linear(p.sub("k_proj"), ch, ch, false);
            this.v = new Linear(p.sub("v_proj"), ch, ch, false);
            this.o = new Linear(p.sub("o_proj"), ch, ch, outBias);
            this.heads = heads;
            this.rot = rot;
            this.invFreq = invFreq;
        }

        /** q_proj(xq), rotated by pos (I32 [B·Nq]) unless pos is null. */
        Tensor query(Tensor xq, Tensor pos) {
            return rotate(q.forward(xq), pos);
        }

        /** k_proj(xkv), rotated by pos (I32 [B·Nk]) unless pos is null. */
        Tensor key(Tensor xkv, Tensor pos) {
            return rotate(k.forward(xkv), pos);
        }

        /** Projected queries or keys x [.., C] rotated by pos (I32, one per row), or x itself when pos is null. */
        Tensor rotate(Tensor x, Tensor pos) {
            return pos == null ? x : F.rotary(x, pos, invFreq, heads, rot);
        }

        /** Causal right-aligned attention of projected q [B, Nq, C] over k, v [B, Nk, C] (before o_proj). */
        Tensor attend(Tensor qq, Tensor kk, Tensor vv, Tensor keyPad, AttnDropout dropout) {
            return attend(qq, kk, vv, keyPad, dropout, DType.F32);
        }

        /** {@link #attend} with the output stored as {@code outType} (the products' operand type when only o_proj reads it). */
        Tensor attend(Tensor qq, Tensor kk, Tensor vv, Tensor keyPad, AttnDropout dropout, DType outType) {
            return dropout == null ? F.attention(qq, kk, vv, keyPad, heads, true, 0f, 0L, 0L, outType)
                    : F.attention(qq, kk, vv, keyPad, heads, true, dropout.p(), dropout.seed(), dropout.stream(), outType);
        }

        /**
         * xq: [B, Nq, C] (normed), xkv: [B, Nk, C] (normed); qPos I32 [B·Nq] / kPos I32 [B·Nk] or null
         * (no rotary); keyPad BOOL [B, Nk] or null; noVisibleKey: host floats [B·Nq·C], 1 on rows whose
         * visible keys are all padding, or null; dropout on the probabilities or null; residual [B, Nq, C]
         * added to the output projection, or null. Causal, right-aligned → [B, Nq, C].
         */
        Tensor forward(Tensor xq, Tensor xkv, Tensor qPos, Tensor kPos, Tensor keyPad, float[] noVisibleKey, AttnDropout dropout,
                       Tensor residual) {
            // Read only by the attention kernels: written in the products' operand type (bf16 in the bf16
            // mode, so the kernels need no cast of their own, forward or backward), unless rotary follows.
            Tensor qq = qPos == null ? q.forwardToProducts(xq) : query(xq, qPos);
            Tensor kk = kPos == null ? k.forwardToProducts(xkv) : key(xkv, kPos);
            Tensor vv = v.forwardToProducts(xkv);
            // Only o_proj reads ctx (bf16 in the bf16 mode), unless rows without a visible key get the mean of v added.
            Tensor ctx = attend(qq, kk, vv, keyPad, dropout, noVisibleKey == null ? xq.backend().matmulOperandType(qq.shape().rows()) : DType.F32);   // fully masked rows → 0
            if (noVisibleKey != null) {
                // Reference: all scores −max → uniform softmax over every key → the mean of v.
                Backend be = xq.backend();
                Tensor mean = F.attention(be.zeros(qq.shape(), DType.F32), be.zeros(kk.shape(), DType.F32), vv, null, heads, false, 0f, 0L, 0L);
                ctx = F.add(ctx, F.mul(mean, be.fromFloats(noVisibleKey, ctx.shape())));
            }
            return residual == null ? o.forward(ctx) : o.forwardAdd(ctx, residual);
        }
    }

    /** LayerNorm → Linear (widening) → GELU or squared ReLU → Linear, no bias; names module.0, .1, .3. */
    static final class Mlp {
        final LayerNorm norm;
        final Linear up, down;

        Mlp(Params p, int ch, int widening, Activation act) {
            this.norm = new LayerNorm(p.sub(0), ch, LN_EPS);
            this.up = new Linear(p.sub(1), ch, widening * ch, false, act);
            this.down = new Linear(p.sub(3), widening * ch, ch, false);
        }

        /**
         * x: [B, N, C] → [B, N, C]. The normed input and the widened hidden state go back to the
         * step's pool once read; backward rebuilds them (see F.discard).
         */
        Tensor forward(Tensor x) {
            return forward(x, null);
        }

        /** residual + forward(x), the add fused into the last product. */
        Tensor forwardAdd(Tensor x, Tensor residual) {
            return forward(x, residual);
        }

        private Tensor forward(Tensor x, Tensor residual) {
            Tensor xn = norm.forwardToProducts(x);      // products only read these two
            Tensor h = up.forwardToProducts(xn);        // [B, N, widening·C], activation applied
            F.discard(xn);
            Tensor y = residual == null ? down.forward(h) : down.forwardAdd(h, residual);
            F.discard(h);
            return y;
        }
    }
}
