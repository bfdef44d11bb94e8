package dev.perceiver4j.model.io;

import dev.perceiver4j.tensor.Tensor;

/**
 * Produces the decoder's output queries, one per output element (HF: the decoder's position
 * encoding). {@link TrainableQueries} is a learned table; other tasks may derive queries from the
 * inputs.
 */
public interface QueryProvider {
    /** Channels of each query. */
    int channels();

    /** The queries for a batch of {@code batch}: [B, P, channels]. */
    Tensor queries(int batch);

    /**
     * The table [P, channels] that {@link #queries} repeats for every batch row when the queries do not
     * depend on the input (a learned table), else null. The decoder then projects it once for many
     * inference passes instead of once per pass ({@link FoldedQueries}).
     */
    default Tensor constantTable() {
        return null;
    }
}
