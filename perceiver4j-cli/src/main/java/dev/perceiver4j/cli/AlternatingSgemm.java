package dev.perceiver4j.cli;

import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.CblasSgemm;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.backend.cpu.gemm.Sgemm;

import java.util.Locale;

/**
 * Two SGEMMs behind one, switched between passes: {@code bench --compare-gemm} runs one model
 * on one CPU backend and times its passes alternately with each, so that both are measured in
 * the same process and the same minutes (on a shared host, separate runs of one configuration
 * differ by more than the changes being measured).
 */
final class AlternatingSgemm implements Sgemm {
    private final Sgemm[] impls;
    private int current;

    AlternatingSgemm(Sgemm first, Sgemm second) {
        this.impls = new Sgemm[] {first, second};
    }

    /** The comparison SGEMM named by {@code --compare-gemm}, for {@code base} on {@code pool}. */
    static Sgemm named(String name, Sgemm base, CpuPool pool) {
        JavaSgemm.Kernel kernel = base instanceof JavaSgemm j ? j.kernel() : JavaSgemm.Kernel.K8X2;
        return switch (name.trim().toLowerCase(Locale.ROOT)) {
            case "packed" -> new JavaSgemm(pool, kernel, JavaSgemm.Formulation.PACKED);
            case "static" -> new JavaSgemm(pool, kernel, JavaSgemm.Formulation.STATIC);
            case "8x2" -> new JavaSgemm(pool, JavaSgemm.Kernel.K8X2);
            case "6x4" -> new JavaSgemm(pool, JavaSgemm.Kernel.K6X4);
            case "4x2" -> new JavaSgemm(pool, JavaSgemm.Kernel.K4X2);
            case "cblas" -> CblasSgemm.load(pool).orElseThrow(() -> new IllegalArgumentException(
                    "--compare-gemm cblas: no CBLAS found (set -D" + CblasSgemm.PROPERTY + "=/path/to/libopenblas.so)"));
            default -> {
                try { // the same kernel with other packing, e.g. unaligned+scalarpack (as before session 24)
                    yield new JavaSgemm(pool, kernel, JavaSgemm.Formulation.parse(name));
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("--compare-gemm must be packed, static, 8x2, 6x4, 4x2, cblas or a formulation"
                            + " such as unaligned+scalarpack, got " + name + " (" + e.getMessage() + ")");
                }
            }
        };
    }

    /** Routes the following products to the first (0) or second (1) SGEMM. */
    void use(int which) {
        if (which != 0 && which != 1) throw new IllegalArgumentException("which must be 0 or 1, got " + which);
        current = which;
    }

    Sgemm get(int which) {
        return impls[which];
    }

    @Override
    public String name() {
        return impls[0].name() + " / " + impls[1].name();
    }

    @Override
    public void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                      float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
                      float beta, float[] c, int cOff, int ldc) {
        impls[current].sgemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
    }
}
