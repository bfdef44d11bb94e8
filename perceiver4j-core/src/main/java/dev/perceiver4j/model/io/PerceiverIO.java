package dev.perceiver4j.model.io;

import dev.perceiver4j.tensor.Tensor;

/**
 * The generic Perceiver IO: any input adapter, the latent encoder, and a cross-attention decoder
 * from any query provider. Task heads (e.g. {@link PerceiverForMaskedLM}'s tied output) sit on top.
 *
 * <pre>
 *   inputs ─adapter─► x [B, M, C], keyPad ─encoder─► z [B, L, dLatents]
 *   queries(B) [B, P, Cq] ─decoder cross-attention over z─► [B, P, Cq]
 * </pre>
 */
public final class PerceiverIO {
    private final InputAdapter adapter;
    private final PerceiverEncoder encoder;
    private final QueryProvider queries;
    private final PerceiverLayer decoder;

    public PerceiverIO(InputAdapter adapter, PerceiverEncoder encoder, QueryProvider queries, PerceiverLayer decoder) {
        this.adapter = adapter;
        this.encoder = encoder;
        this.queries = queries;
        this.decoder = decoder;
    }

    public InputAdapter adapter() {
        return adapter;
    }

    /** inputs and attentionMask as the adapter takes them → decoder output [B, P, Cq]. */
    public Tensor forward(Tensor inputs, Tensor attentionMask, boolean training, long seed) {
        return forward(adapter.adapt(inputs, attentionMask), inputs, training, seed);
    }

    /** As {@link #forward}, the padding given as the encoder's key-padding mask (BOOL [B, M], true = padding, or null). */
    public Tensor forwardWithKeyPad(Tensor inputs, Tensor keyPad, boolean training, long seed) {
        return forward(adapter.adaptWithKeyPad(inputs, keyPad), inputs, training, seed);
    }

    private Tensor forward(InputAdapter.Adapted in, Tensor inputs, boolean training, long seed) {
        Tensor z = encoder.forward(in.x(), in.keyPad(), training, seed);                  // [B, L, dLatents]
        Tensor q = queries.queries(inputs.dim(0));                                        // [B, P, Cq]
        return decoder.forward(q, z, null, training, seed, 1L << 32);                     // the decoder ignores input padding
    }
}
