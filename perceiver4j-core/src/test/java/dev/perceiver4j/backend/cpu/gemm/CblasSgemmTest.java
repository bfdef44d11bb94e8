package dev.perceiver4j.backend.cpu.gemm;

import dev.perceiver4j.backend.cpu.CpuPool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Tests {@link CblasSgemm} against the oracle. Skipped (visibly) when no CBLAS is found, unless
 * {@code PERCEIVER4J_REQUIRE_CBLAS=1}, which turns a missing CBLAS into a failure (for CI machines
 * that ran {@code scripts/fetch-openblas.sh}).
 */
class CblasSgemmTest {

    private static CblasSgemm loadOrSkip(CpuPool pool) {
        List<String> tried = new ArrayList<>();
        Optional<CblasSgemm> cblas = CblasSgemm.load(pool, tried);
        if (cblas.isEmpty()) {
            String msg = "no CBLAS found (run scripts/fetch-openblas.sh or set -Dperceiver4j.cblas); tried: " + tried;
            if ("1".equals(System.getenv("PERCEIVER4J_REQUIRE_CBLAS"))) fail("PERCEIVER4J_REQUIRE_CBLAS=1 but " + msg);
            assumeTrue(false, msg);
        }
        return cblas.get();
    }

    @ParameterizedTest(name = "{0} threads")
    @ValueSource(ints = {1, 2})
    void matchesNaiveOnAllLayouts(int threads) {
        try (CpuPool pool = CpuPool.create(threads)) {
            CblasSgemm g = loadOrSkip(pool);
            int checked = SgemmChecks.compareAll(g, 99 + threads);
            assertThat(checked).isEqualTo(SgemmChecks.SHAPES.length * 4 * 3);
            assertThat(g.name()).startsWith("cblas(").endsWith(", " + threads + " threads)");
        }
    }

    @Test
    void largeProductAndArgumentChecks() {
        try (CpuPool pool = CpuPool.create(2)) {
            CblasSgemm g = loadOrSkip(pool);
            SgemmChecks.compare(g, false, true, 300, 520, 400, 1f, 0f, 1, new SplittableRandom(5));
            float[] x = new float[100];
            // Bounds are checked in Java before native code could read past an array.
            assertThatThrownBy(() -> g.sgemm(false, false, 10, 10, 10, 1f, x, 1, 10, x, 0, 10, 0f, x, 0, 10))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("A needs 101 floats");
        }
    }

    @Test
    void unloadablePropertyIsAnError() {
        String old = System.getProperty(CblasSgemm.PROPERTY);
        System.setProperty(CblasSgemm.PROPERTY, "/nonexistent/libnothing.so");
        try (CpuPool pool = CpuPool.create(1)) {
            assertThatThrownBy(() -> CblasSgemm.load(pool))
                    .isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("/nonexistent/libnothing.so");
        } finally {
            if (old == null) System.clearProperty(CblasSgemm.PROPERTY);
            else System.setProperty(CblasSgemm.PROPERTY, old);
        }
    }
}
