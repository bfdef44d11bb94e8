package dev.perceiver4j.model.io;

import dev.perceiver4j.nn.ParameterFold;
import dev.perceiver4j.tensor.Tensor;

/**
 * A cross-attention layer's projected queries of a table that does not depend on the input (the
 * encoder's learned latents, the masked LM's learned output queries): query(layernorm1(table)),
 * computed by the first inference pass and reused by the next ones while the table and the layer's
 * query weights keep their bits ({@link ParameterFold}: any change to them, by training or loading,
 * makes the next pass compute it again). For the language perceiver's decoder this is a
 * 2048 × 768 × 256 product and a layer norm over 2048 × 768 per pass.
 *
 * <pre>
 *   table [N, qDim] ─ layernorm1 ─ query ─► q [N, qk]   (once)  ─► [B, N, qk] per pass
 * </pre>
 */
final class FoldedQueries {
    private final PerceiverLayer layer;
    private final Tensor table;        // [N, qDim]
    private final ParameterFold fold;

    FoldedQueries(PerceiverLayer layer, Tensor table) {
        this.layer = layer;
        this.table = table;
        Tensor[] weights = layer.queryParameters();
        Tensor[] sources = new Tensor[weights.length + 1];
        sources[0] = table;
        System.arraycopy(weights, 0, sources, 1, weights.length);
        this.fold = new ParameterFold(sources);
    }

    /**
     * The layer's cross-attention of the table's queries over kv (as {@link PerceiverLayer#forward} of the table
     * repeated over {@code batch} rows): [B, N, qDim] from the kept projection, the query residual (where the layer
     * has one) reading the table; null where folding does not apply (gradients recorded, or weights outside Java
     * arrays), and the caller runs the layer's usual forward.
     */
    Tensor forward(int batch, Tensor kv, Tensor keyPad, boolean training, long seed, long stream) {
        if (!fold.applies()) return null;
        Tensor q = repeated(fold.get(() -> layer.projectQueries(table)), batch);          // [B, N, qk] of the kept [N, qk]
        Tensor x = layer.queryResidual() ? repeated(table, batch) : null;                 // [B, N, qDim]
        return layer.forwardProjected(q, x, kv, keyPad, training, seed, stream);
    }

    /** t [N, C] for a batch of {@code batch}: [B, N, C], a view of t for one row (read only), a copy for more. */
    private static Tensor repeated(Tensor t, int batch) {
        return batch == 1 ? t.reshape(1, t.dim(0), t.dim(1)) : PerceiverEncoder.broadcast(t, batch);
    }
}
