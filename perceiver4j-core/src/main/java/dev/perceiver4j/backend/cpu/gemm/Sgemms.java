package dev.perceiver4j.backend.cpu.gemm;

import dev.perceiver4j.backend.cpu.CpuPool;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Optional;

/**
 * Chooses the {@link Sgemm} implementation. The system property {@value #PROPERTY} decides:
 * <ul>
 *   <li>{@code auto} (default): a system CBLAS (or one named by {@code -Dperceiver4j.cblas} / {@code PERCEIVER4J_CBLAS})
 *       if {@link CblasSgemm#load} finds one, else {@link JavaSgemm};</li>
 *   <li>{@code cblas}: as auto, plus the OpenBLAS that {@code scripts/fetch-openblas.sh} caches for the tests;
 *       an {@link IllegalStateException} listing what was tried when there is none;</li>
 *   <li>{@code java}: {@link JavaSgemm};</li>
 *   <li>{@code naive}: {@link NaiveSgemm} (for debugging only).</li>
 * </ul>
 * The choice is logged once (per distinct choice) at INFO, e.g. {@code SGEMM: cblas(libopenblas.so.0, 2 threads)}.
 */
public final class Sgemms {

    /** System property selecting the implementation. */
    public static final String PROPERTY = "perceiver4j.gemm";

    private static final System.Logger LOG = System.getLogger(Sgemms.class.getName());
    private static volatile String lastLogged;

    private Sgemms() {
    }

    /** The implementation chosen by {@value #PROPERTY} for {@code pool}. */
    public static Sgemm select(CpuPool pool) {
        String mode = System.getProperty(PROPERTY, "auto").trim().toLowerCase(Locale.ROOT);
        Sgemm chosen = switch (mode) {
            case "auto", "" -> {
                // A CBLAS of the system or named by the user; not the test suite's cached OpenBLAS,
                // whose generic kernels measured slower than JavaSgemm in training (docs/benchmarks.md).
                Optional<CblasSgemm> cblas = CblasSgemm.load(pool, new ArrayList<>(), false);
                yield cblas.isPresent() ? cblas.get() : new JavaSgemm(pool);
            }
            case "java" -> new JavaSgemm(pool);
            case "naive" -> new NaiveSgemm();
            case "cblas" -> {
                List<String> tried = new ArrayList<>();
                yield CblasSgemm.load(pool, tried).orElseThrow(() -> new IllegalStateException(
                        "-D" + PROPERTY + "=cblas but no CBLAS with cblas_sgemm was found (set -D"
                                + CblasSgemm.PROPERTY + "=/path/to/libopenblas.so or run scripts/fetch-openblas.sh)."
                                + " Tried:\n  " + String.join("\n  ", tried)));
            }
            default -> throw new IllegalArgumentException("-D" + PROPERTY + "=" + System.getProperty(PROPERTY)
                    + " is not one of auto, java, cblas, naive");
        };
        String name = chosen.name();
        if (!name.equals(lastLogged)) {
            lastLogged = name;
            LOG.log(System.Logger.Level.INFO, "SGEMM: " + name);
        }
        return chosen;
    }
}
