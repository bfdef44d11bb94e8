package dev.perceiver4j.backend;

import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Tensor;

/**
 * The validated geometry of {@link Backend#narrow} / {@link Backend#unnarrow}: a part [.., len, ..]
 * that is the slab [start, start + len) of a full tensor along one axis. Viewed as blocks,
 * {@code outer} runs of {@code partRun} contiguous elements, at {@code fullRun} strides in the full
 * tensor, starting {@code startOffset} elements into each run.
 */
public record AxisSlab(int outer, int fullRun, int partRun, int startOffset) {

    /** The geometry of one narrow (accumulate: dst += instead of =, which needs F32) between full and part; checks both. */
    public static AxisSlab of(Tensor full, Tensor part, int axis, int start, boolean accumulate) {
        int ax = full.shape().axis(axis);
        check(full.rank() == part.rank(), "narrow: rank differs " + full.describe() + " vs " + part.describe());
        for (int i = 0; i < full.rank(); i++) {
            check(i == ax || full.dim(i) == part.dim(i), "narrow: shapes differ off axis " + ax + ": " + full.describe() + " vs " + part.describe());
        }
        check(full.dtype() == part.dtype() && (full.dtype() == DType.F32 || full.dtype() == DType.BF16),
                "narrow: F32 or BF16 (both the same) only, got " + full.describe() + " and " + part.describe());
        check(!accumulate || full.dtype() == DType.F32, "narrow: accumulating into BF16 " + full.describe() + " is not supported");
        int len = part.dim(ax);
        check(start >= 0 && start + len <= full.dim(ax), "narrow: [" + start + ", " + (start + len) + ") outside axis " + ax + " of " + full.describe());
        int outer = full.shape().product(0, ax), inner = full.shape().product(ax + 1, full.rank());
        return new AxisSlab(outer, full.dim(ax) * inner, len * inner, start * inner);
    }

    private static void check(boolean ok, String message) {
        if (!ok) throw new IllegalArgumentException(message);
    }
}
