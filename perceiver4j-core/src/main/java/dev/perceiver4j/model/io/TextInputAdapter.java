package dev.perceiver4j.model.io;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.autograd.F;
import dev.perceiver4j.nn.Embedding;
import dev.perceiver4j.nn.Init;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

/**
 * Byte/token input adapter, HF {@code PerceiverTextPreprocessor}: token embedding plus a learned
 * position embedding ({@code embeddings.weight}, {@code position_embeddings.weight}).
 */
public final class TextInputAdapter implements InputAdapter {
    private final Embedding embeddings;      // [V, D]
    private final Tensor positionEmbeddings; // [maxLen, D]
    private final int channels;

    public TextInputAdapter(Params p, int vocab, int channels, int maxLen) {
        this.embeddings = new Embedding(p.sub("embeddings"), vocab, channels, 0.02);
        this.positionEmbeddings = p.sub("position_embeddings").weight("weight", Shape.of(maxLen, channels), Init.normal(0.02));
        this.channels = channels;
    }

    @Override
    public int channels() {
        return channels;
    }

    /** The token embedding table [V, D] (a masked LM ties its output to it). */
    public Tensor embeddingTable() {
        return embeddings.weight;
    }

    /** ids: I32 [B, N] (N ≤ maxLen) → x [B, N, D] = embeddings[ids] + positions[0:N]. */
    @Override
    public Adapted adapt(Tensor ids, Tensor attentionMask) {
        return adaptWithKeyPad(ids, attentionMask == null ? null : padMask(attentionMask));
    }

    @Override
    public Adapted adaptWithKeyPad(Tensor ids, Tensor keyPad) {
        int n = ids.dim(1), maxLen = positionEmbeddings.dim(0);
        if (n > maxLen) throw new IllegalArgumentException("input of " + n + " tokens exceeds the " + maxLen + " learned positions");
        Tensor tokens = embeddings.forward(ids);
        // Inference reads the first n positions in place; with gradients a copy routes theirs back.
        Tensor positions = Autograd.enabled() ? F.narrow(positionEmbeddings, 0, 0, n) : positionEmbeddings.alias(0, Shape.of(n, channels));
        Tensor x = F.add(tokens, positions);
        F.discard(tokens);      // read only by the add: backward needs no values
        F.discard(positions);   // (a no-op for the view of the parameter)
        return new Adapted(x, keyPad);
    }

    /** BOOL [B, N], true where attentionMask is 0 (padding). */
    static Tensor padMask(Tensor attentionMask) {
        float[] m = attentionMask.toFloatArray();
        boolean[] pad = new boolean[m.length];
        for (int i = 0; i < m.length; i++) pad[i] = m[i] == 0f;
        return attentionMask.backend().fromBools(pad, attentionMask.shape()); // any backend
    }
}
