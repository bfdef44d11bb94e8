package dev.perceiver4j.backend;

import dev.perceiver4j.tensor.Tensor;

/**
 * The validated geometry of one {@link Backend#matmul} call, shared by every backend.
 * {@code batch} products of op(A) [m, k] · op(B) [k, n]; A is [.., aRows, aCols] (row stride
 * aCols, batch stride aRows·aCols), B likewise, and a shared 2-D B has batch stride 0. A plain
 * (non-transposed) A against a shared 2-D B is folded into one product over all rows (batch 1).
 */
public record MatmulShape(int batch, int m, int n, int k, int aRows, int aCols, int bRows, int bCols, boolean sharedB) {

    public static MatmulShape of(Tensor a, boolean transA, Tensor b, boolean transB, Tensor out) {
        check(a.rank() >= 2 && b.rank() >= 2, "matmul needs rank >= 2 operands, got " + a.describe() + " and " + b.describe());
        int aRows = a.dim(-2), aCols = a.dim(-1);
        int bRows = b.dim(-2), bCols = b.dim(-1);
        int m = transA ? aCols : aRows, k = transA ? aRows : aCols;
        int kb = transB ? bCols : bRows, n = transB ? bRows : bCols;
        check(k == kb, "matmul: inner dimensions differ: " + a.describe() + (transA ? "ᵀ" : "") + " · " + b.describe() + (transB ? "ᵀ" : ""));
        boolean sharedB = b.rank() == 2;
        int batch = a.shape().product(0, a.rank() - 2);
        if (!sharedB) {
            check(b.shape().product(0, b.rank() - 2) == batch, "matmul: batch dims differ: " + a.describe() + " vs " + b.describe());
        }
        if (sharedB && !transA) {
            m = m * batch;
            batch = 1;
        }
        check(out.size() == (long) batch * m * n, "matmul: out " + out.describe() + " should hold " + batch + "×" + m + "×" + n);
        return new MatmulShape(batch, m, n, k, aRows, aCols, bRows, bCols, sharedB);
    }

    /** Elements between consecutive A matrices of the batch. */
    public int strideA() {
        return aRows * aCols;
    }

    /** Elements between consecutive B matrices of the batch (0 when B is shared). */
    public int strideB() {
        return sharedB ? 0 : bRows * bCols;
    }

    private static void check(boolean ok, String message) {
        if (!ok) throw new IllegalArgumentException(message);
    }
}
