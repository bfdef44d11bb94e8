package dev.perceiver4j.backend.cpu.gemm;

import java.util.Objects;

/**
 * The scalar reference SGEMM: a plain triple loop that accumulates each dot product in
 * {@code double}. Slow, obviously correct; the oracle the fast implementations are tested against.
 */
public final class NaiveSgemm implements Sgemm {

    @Override
    public String name() {
        return "naive";
    }

    @Override
    public void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                      float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
                      float beta, float[] c, int cOff, int ldc) {
        checkArgs(transA, transB, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        if (handleTrivial(m, n, k, alpha, beta, c, cOff, ldc)) return;
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double sum = 0.0;
                for (int p = 0; p < k; p++) {
                    float aip = transA ? a[aOff + p * lda + i] : a[aOff + i * lda + p];
                    float bpj = transB ? b[bOff + j * ldb + p] : b[bOff + p * ldb + j];
                    sum += (double) aip * bpj;
                }
                int ci = cOff + i * ldc + j;
                double old = beta == 0f ? 0.0 : (double) beta * c[ci];
                c[ci] = (float) (alpha * sum + old);
            }
        }
    }

    /**
     * Validates the arguments shared by every {@link Sgemm}: non-negative sizes, leading dimensions
     * no smaller than the stored row length, non-negative offsets, and arrays long enough for the
     * last element each operand touches. Operands with a zero-sized dimension are not read, so their
     * array is only checked for null.
     *
     * @throws IllegalArgumentException naming the offending dimension, leading dimension or array
     */
    static void checkArgs(boolean transA, boolean transB, int m, int n, int k,
                          float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
                          float[] c, int cOff, int ldc) {
        if (m < 0) throw new IllegalArgumentException("sgemm: m must be >= 0, got " + m);
        if (n < 0) throw new IllegalArgumentException("sgemm: n must be >= 0, got " + n);
        if (k < 0) throw new IllegalArgumentException("sgemm: k must be >= 0, got " + k);
        Objects.requireNonNull(a, "sgemm: a");
        Objects.requireNonNull(b, "sgemm: b");
        Objects.requireNonNull(c, "sgemm: c");
        // A is stored [m,k] or, transposed, [k,m]; B is stored [k,n] or, transposed, [n,k]; C is [m,n].
        checkOperand("A", transA ? k : m, transA ? m : k, transA ? "m" : "k", a, aOff, lda, "lda");
        checkOperand("B", transB ? n : k, transB ? k : n, transB ? "k" : "n", b, bOff, ldb, "ldb");
        checkOperand("C", m, n, "n", c, cOff, ldc, "ldc");
    }

    private static void checkOperand(String what, int rows, int cols, String colsName,
                                     float[] arr, int off, int ld, String ldName) {
        if (off < 0) throw new IllegalArgumentException("sgemm: offset of " + what + " must be >= 0, got " + off);
        if (ld < cols) {
            throw new IllegalArgumentException("sgemm: " + ldName + " (" + ld + ") must be >= " + colsName
                    + " (" + cols + "), the row length of stored " + what);
        }
        if (rows == 0 || cols == 0) return;
        long last = (long) off + (long) (rows - 1) * ld + cols; // one past the last element touched
        if (last > arr.length) {
            throw new IllegalArgumentException("sgemm: " + what + " needs " + last + " floats (offset " + off
                    + ", " + rows + " rows, " + ldName + " " + ld + ", row length " + cols
                    + ") but its array has " + arr.length);
        }
    }

    /**
     * Handles the degenerate cases every implementation shares. Returns true when nothing more is to
     * be done: {@code m == 0 || n == 0} (nothing to write), or {@code k == 0 || alpha == 0}, where
     * C is just scaled by beta (beta == 0 writes zeros, so NaNs in the old C do not survive).
     */
    static boolean handleTrivial(int m, int n, int k, float alpha, float beta, float[] c, int cOff, int ldc) {
        if (m == 0 || n == 0) return true;
        if (k != 0 && alpha != 0f) return false;
        for (int i = 0; i < m; i++) {
            int row = cOff + i * ldc;
            for (int j = 0; j < n; j++) c[row + j] = beta == 0f ? 0f : beta * c[row + j];
        }
        return true;
    }
}
