package dev.perceiver4j.model.ar;

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
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

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
 * </pre>
 * Rotary: interleaved pairs over the first {@code rot} channels of each head, rot = head dim / 2
 * with absolute position embeddings, the whole head without; inverse frequencies are the
 * {@code input_adapter.frq_pos_encoding.inv_freq} buffer (base 10000). Attention scale 1/√(head dim).
 *
 * <p>A query whose every visible key is padding (a padded latent) gets, as in the reference's
 * {@code masked_fill(-max) + softmax}, a uniform average of all values; its output is meaningless
 * but feeds the (unpadded) self-attention of later latents, so it is reproduced exactly.
 *
 * <p>The forward pass is deterministic (no dropout; the reference's training-time prefix dropout is
 * not implemented) and uncached: each call recomputes the whole sequence.
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
        this.crossAttention = new Attention(cam.sub("attention"), ch, c.numHeads(), true);
        this.crossMlp = new Mlp(ca.sub(1).sub("module"), ch, c.crossAttentionWideningFactor());

        Params sa = params.sub("self_attention");
        for (int i = 0; i < c.numSelfAttentionLayers(); i++) {
            Params att = sa.sub(i).sub(0).sub("module");
            selfNorms.add(new LayerNorm(att.sub("norm"), ch, LN_EPS));
            selfAttention.add(new Attention(att.sub("attention"), ch, c.numHeads(), false));
            selfMlps.add(new Mlp(sa.sub(i).sub(1).sub("module"), ch, c.selfAttentionWideningFactor()));
        }
        this.outNorm = c.outputNorm() ? new LayerNorm(params.sub("out_norm"), ch, LN_EPS) : null;
        this.outputBias = c.outputBias() ? params.sub("output_adapter").weight("bias", Shape.of(c.vocabSize()), Init.zeros()) : null;
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
     * ids: I32 [B, N] (N ≤ max_seq_len); padMask: I32/F32 [B, N] with 1 for (left) padding and 0 for
     * real tokens, or null; 0 ≤ prefixLen &lt; N → logits [B, N − prefixLen, V] of the latent positions
     * (the prediction of the token after each).
     */
    public Tensor forward(Tensor ids, Tensor padMask, int prefixLen) {
        if (ids.rank() != 2) throw new IllegalArgumentException("ids must be [B, N], got " + ids.shape());
        int b = ids.dim(0), n = ids.dim(1), ch = config.numChannels(), heads = config.numHeads();
        if (n > config.maxSeqLen()) throw new IllegalArgumentException("sequence of " + n + " tokens exceeds max_seq_len " + config.maxSeqLen());
        if (prefixLen < 0 || prefixLen >= n) throw new IllegalArgumentException("prefixLen " + prefixLen + " out of valid range [0.." + n + ")");
        if (padMask != null && !padMask.shape().equals(ids.shape())) {
            throw new IllegalArgumentException("padMask " + padMask.shape() + " must match ids " + ids.shape());
        }
        Backend be = ids.backend();
        int lat = n - prefixLen;

        // Host-side bookkeeping: padding, positions (from the first real token, clamped at 0).
        boolean[] pad = new boolean[b * n];
        if (padMask != null) {
            float[] m = padMask.toFloatArray();
            for (int i = 0; i < m.length; i++) pad[i] = m[i] != 0f;
        }
        int[] pos = new int[b * n], posLatent = new int[b * lat];
        for (int r = 0; r < b; r++) {
            int shift = 0;
            for (int t = 0; t < n; t++) if (pad[r * n + t]) shift++;
            for (int t = 0; t < n; t++) pos[r * n + t] = Math.max(0, t - shift);
            System.arraycopy(pos, r * n + prefixLen, posLatent, r * lat, lat);
        }
        Tensor posAll = be.fromInts(pos, Shape.of(b * n));
        Tensor posLat = be.fromInts(posLatent, Shape.of(b * lat));

        // Input adapter.
        Tensor x = txtEmbedding.forward(ids);                                                   // [B, N, C]
        if (posEmbedding != null) x = F.add(x, posEmbedding.forward(be.fromInts(pos, Shape.of(b, n))));
        Tensor latents = prefixLen == 0 ? x : F.narrow(x, 1, prefixLen, lat);                 // [B, L, C]

        // Cross-attention: latents attend to concat(kv_norm(prefix), q_norm(latents)).
        Tensor qn = qNorm.forward(latents);
        Tensor kv = prefixLen == 0 ? qn : F.concat(1, kvNorm.forward(F.narrow(x, 1, 0, prefixLen)), qn);   // [B, N, C]
        Tensor keyPad = null;
        float[] noVisibleKey = null;   // per latent row: 1 where every visible key is padding
        if (padMask != null) {
            keyPad = be.empty(Shape.of(b, n), DType.BOOL);
            byte[] bits = keyPad.bools();
            for (int i = 0; i < b * n; i++) bits[keyPad.offset() + i] = (byte) (pad[i] ? 1 : 0);
            for (int r = 0; r < b; r++) {
                boolean seen = false;   // a real key at or before absolute position prefixLen + i
                for (int t = 0; t < n; t++) {
                    seen |= !pad[r * n + t];
                    if (t >= prefixLen && !seen) {
                        if (noVisibleKey == null) noVisibleKey = new float[b * lat * ch];
                        java.util.Arrays.fill(noVisibleKey, (r * lat + t - prefixLen) * ch, (r * lat + t - prefixLen + 1) * ch, 1f);
                    }
                }
            }
        }
        Tensor h = F.add(crossAttention.forward(qn, kv, posLat, posAll, keyPad, noVisibleKey, heads, rot, invFreq), latents);
        h = F.add(h, crossMlp.forward(h));

        // Causal self-attention over the latents (no key padding, as in the reference).
        for (int i = 0; i < selfAttention.size(); i++) {
            boolean rotary = config.numSelfAttentionRotaryLayers() == -1 || i < config.numSelfAttentionRotaryLayers();
            Tensor hn = selfNorms.get(i).forward(h);
            h = F.add(h, selfAttention.get(i).forward(hn, hn, rotary ? posLat : null, rotary ? posLat : null, null, null, heads, rot, invFreq));
            h = F.add(h, selfMlps.get(i).forward(h));
        }

        if (outNorm != null) h = outNorm.forward(h);
        Tensor logits = F.matmul(h.reshape(b * lat, ch), false, txtEmbedding.weight, true, outputBias, Activation.NONE);
        return logits.reshape(b, lat, config.vocabSize());                                   // [B, L, V]
    }

    /** Greedy (argmax) continuation of one unpadded prompt: {@code steps} tokens, the prefix held at {@code prefixLen} positions. */
    public int[] generateGreedy(int[] prompt, int steps, int prefixLen) {
        Backend be = params.backend();
        int[] seq = java.util.Arrays.copyOf(prompt, prompt.length + steps);
        for (int s = 0; s < steps; s++) {
            int n = prompt.length + s;
            try (dev.perceiver4j.tensor.Scope scope = dev.perceiver4j.tensor.Scope.open()) {
                Tensor logits = forward(be.fromInts(java.util.Arrays.copyOf(seq, n), Shape.of(1, n)), null, prefixLen);
                int lat = n - prefixLen, v = config.vocabSize();
                float[] all = logits.toFloatArray();
                int best = 0;
                for (int j = 1; j < v; j++) if (all[(lat - 1) * v + j] > all[(lat - 1) * v + best]) best = j;
                seq[n] = best;
            }
        }
        return java.util.Arrays.copyOfRange(seq, prompt.length, seq.length);
    }

    /** q/k/v/o projections of one attention module (reference names); only o_proj may carry a bias. */
    private static final class Attention {
        final Linear q, k, v, o;

        Attention(Params p, int ch, int heads, boolean outBias) {
            this.q = new Linear(p.sub("q_proj"), ch, ch, false);
            this.k = new Linear(p.sub("k_proj"), ch, ch, false);
            this.v = new Linear(p.sub("v_proj"), ch, ch, false);
            this.o = new Linear(p.sub("o_proj"), ch, ch, outBias);
        }

        /**
         * xq: [B, Nq, C] (normed), xkv: [B, Nk, C] (normed); qPos I32 [B·Nq] / kPos I32 [B·Nk] or null
         * (no rotary); keyPad BOOL [B, Nk] or null; noVisibleKey: host floats [B·Nq·C], 1 on rows whose
         * visible keys are all padding, or null. Causal, right-aligned → [B, Nq, C].
         */
        Tensor forward(Tensor xq, Tensor xkv, Tensor qPos, Tensor kPos, Tensor keyPad, float[] noVisibleKey,
                       int heads, int rot, Tensor invFreq) {
            Tensor qq = q.forward(xq), kk = k.forward(xkv), vv = v.forward(xkv);
            if (qPos != null) qq = F.rotary(qq, qPos, invFreq, heads, rot);
            if (kPos != null) kk = F.rotary(kk, kPos, invFreq, heads, rot);
            Tensor ctx = F.attention(qq, kk, vv, keyPad, heads, true, 0f, 0L, 0L);        // fully masked rows → 0
            if (noVisibleKey != null) {
                // Reference: all scores −max → uniform softmax over every key → the mean of v.
                Backend be = xq.backend();
                Tensor mean = F.attention(be.zeros(qq.shape(), DType.F32), be.zeros(kk.shape(), DType.F32), vv, null, heads, false, 0f, 0L, 0L);
                ctx = F.add(ctx, F.mul(mean, be.fromFloats(noVisibleKey, ctx.shape())));
            }
            return o.forward(ctx);
        }
    }

    /** LayerNorm → Linear (widening) → exact GELU → Linear, no bias; names module.0, .1, .3. */
    private static final class Mlp {
        final LayerNorm norm;
        final Linear up, down;

        Mlp(Params p, int ch, int widening) {
            this.norm = new LayerNorm(p.sub(0), ch, LN_EPS);
            this.up = new Linear(p.sub(1), ch, widening * ch, false, Activation.GELU);
            this.down = new Linear(p.sub(3), widening * ch, ch, false);
        }

        Tensor forward(Tensor x) {
            return down.forward(up.forward(norm.forward(x)));
        }
    }
}
