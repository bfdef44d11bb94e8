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
    private final FoldedQueries decoderQueries;   // null when the queries depend on the input

    public PerceiverIO(InputAdapter adapter, PerceiverEncoder encoder, QueryProvider queries, PerceiverLayer decoder) {
        this.adapter = adapter;
        this.encoder = encoder;
        this.queries = queries;
        this.decoder = decoder;
        Tensor table = queries.constantTable();
        this.decoderQueries = table == null ? null : new FoldedQueries(decoder, table);
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
        int b = inputs.dim(0);
        // The decoder ignores input padding. Input-independent queries: their projection is kept between inference passes.
        Tensor h = decoderQueries == null ? null : decoderQueries.forward(b, z, null, training, seed, 1L << 32);   // [B, P, Cq] or null
        return h != null ? h : decoder.forward(queries.queries(b), z, null, training, seed, 1L << 32);
    }
}
