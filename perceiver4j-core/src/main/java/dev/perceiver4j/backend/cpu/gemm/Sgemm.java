package dev.perceiver4j.backend.cpu.gemm;

/**
 * Single-precision general matrix multiply on row-major {@code float[]} storage.
 *
 * <p>Implementations: {@link JavaSgemm} (pure Java, Vector API), {@link CblasSgemm} (system CBLAS
 * through the FFM API) and {@link NaiveSgemm} (scalar reference). {@link Sgemms#select} picks one.
 */
public interface Sgemm {
    /** Short name for logs, e.g. "java-vector(2 threads)" or "cblas(libopenblas.so.0, 2 threads)". */
    String name();

    /** Row-major C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, op = transpose when the flag is set.
     *  A is stored [m,k] (lda >= k) or, transposed, [k,m] (lda >= m); likewise B [k,n] or [n,k]. beta == 0 means C is overwritten (no NaN from old C). */
    void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
               float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
               float beta, float[] c, int cOff, int ldc);
}
