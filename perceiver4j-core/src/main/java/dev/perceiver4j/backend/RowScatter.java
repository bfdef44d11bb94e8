package dev.perceiver4j.backend;

import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Tensor;

/** The argument checks of {@link Backend#scatterRows}, shared by every backend. */
public final class RowScatter {
    private RowScatter() {}

    /** Checks dtypes and shapes (not the index values) and returns the row width D. */
    public static int width(Tensor src, Tensor rows, Tensor dst) {
        require(src.dtype() == dst.dtype(), "scatterRows: src " + src.describe() + " and dst " + dst.describe() + " differ in dtype");
        require(rows.dtype() == DType.I32, "scatterRows: rows must be I32, got " + rows.describe());
        require(src.rank() >= 1 && dst.rank() >= 1 && src.shape().last() == dst.shape().last(),
                "scatterRows: src " + src.describe() + " and dst " + dst.describe() + " differ in row width");
        int width = dst.shape().last();
        require(width > 0, "scatterRows: the rows of dst " + dst.describe() + " are empty");
        require(src.size() == (long) rows.size() * width,
                "scatterRows: src " + src.describe() + " should hold one row per index in " + rows.describe());
        return width;
    }

    private static void require(boolean ok, String message) {
        if (!ok) throw new IllegalArgumentException(message);
    }
}
