package dev.perceiver4j.backend.cpu.gemm;

import dev.perceiver4j.backend.cpu.CpuPool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class SgemmsTest {

    private String oldGemm;
    private String oldCblas;
    private CpuPool pool;

    @BeforeEach
    void setUp() {
        oldGemm = System.getProperty(Sgemms.PROPERTY);
        oldCblas = System.getProperty(CblasSgemm.PROPERTY);
        pool = CpuPool.create(2);
    }

    @AfterEach
    void tearDown() {
        restore(Sgemms.PROPERTY, oldGemm);
        restore(CblasSgemm.PROPERTY, oldCblas);
        pool.close();
    }

    private static void restore(String key, String value) {
        if (value == null) System.clearProperty(key);
        else System.setProperty(key, value);
    }

    @Test
    void javaOverride() {
        System.setProperty(Sgemms.PROPERTY, "java");
        assertThat(Sgemms.select(pool)).isInstanceOf(JavaSgemm.class);
    }

    @Test
    void naiveOverride() {
        System.setProperty(Sgemms.PROPERTY, "naive");
        assertThat(Sgemms.select(pool)).isInstanceOf(NaiveSgemm.class);
    }

    @Test
    void autoPicksSomething() {
        System.clearProperty(Sgemms.PROPERTY);
        Sgemm g = Sgemms.select(pool);
        // auto takes a system CBLAS or one the user names, not the test suite's cached OpenBLAS.
        boolean cblasAvailable = CblasSgemm.load(pool, new ArrayList<>(), false).isPresent();
        assertThat(g).isInstanceOf(cblasAvailable ? CblasSgemm.class : JavaSgemm.class);
    }

    @Test
    void badValueIsAClearError() {
        System.setProperty(Sgemms.PROPERTY, "fortran");
        assertThatThrownBy(() -> Sgemms.select(pool))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("perceiver4j.gemm=fortran")
                .hasMessageContaining("auto, java, cblas, naive");
    }

    @Test
    void cblasRequestedButMissingListsWhatWasTried() {
        System.setProperty(Sgemms.PROPERTY, "cblas");
        System.setProperty(CblasSgemm.PROPERTY, "/nonexistent/libcblas-missing.so");
        assertThatThrownBy(() -> Sgemms.select(pool))
                .isInstanceOf(IllegalStateException.class)
                .hasMessageContaining("/nonexistent/libcblas-missing.so");
    }
}
