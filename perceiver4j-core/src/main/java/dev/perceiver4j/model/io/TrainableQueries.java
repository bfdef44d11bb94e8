package dev.perceiver4j.model.io;

import dev.perceiver4j.nn.Init;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

/** A learned table of output queries, HF {@code PerceiverTrainablePositionEncoding} ({@code position_embeddings}). */
public final class TrainableQueries implements QueryProvider {
    private final Tensor table; // [P, C]

    public TrainableQueries(Params p, int count, int channels) {
        this.table = p.weight("position_embeddings", Shape.of(count, channels), Init.normal(0.02));
    }

    @Override
    public int channels() {
        return table.dim(1);
    }

    /** The table repeated over the batch: [B, P, C] (gradients sum back into the table). */
    @Override
    public Tensor queries(int batch) {
        return PerceiverEncoder.broadcast(table, batch);
    }

    @Override
    public Tensor constantTable() {
        return table;
    }
}
