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
     * The layer's queries of the table for a batch of {@code batch}: [B, N, qk], the values the layer's own
     * projection would give; null where folding does not apply (gradients recorded, or weights outside
     * Java arrays: the caller then runs the layer's usual forward).
     */
    Tensor projected(int batch) {
        if (!fold.applies()) return null;
        int n = table.dim(0);
        Tensor q = fold.get(() -> layer.projectQueries(table));                          // [N, qk], kept
        return batch == 1 ? q.reshape(1, n, q.dim(1)) : PerceiverEncoder.broadcast(q, batch);
    }

    /** The table itself for a batch of {@code batch} (the query residual's operand): [B, N, qDim], a view for one row. */
    Tensor table(int batch) {
        return batch == 1 ? table.reshape(1, table.dim(0), table.dim(1)) : PerceiverEncoder.broadcast(table, batch);
    }
}
