package dev.perceiver4j.cuda.ffm;

import dev.perceiver4j.backend.Backends;
import dev.perceiver4j.cuda.CudaContext;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Runs without a GPU: what happens when the NVIDIA libraries are not there. */
class NativeLibrariesTest {

    @Test
    void aMissingLibraryNamesItselfAndEveryPlaceTried() {
        NativeLibraries.Spec spec = new NativeLibraries.Spec("nothing", "a library that does not exist",
                List.of("libperceiver4j-no-such-lib.so.7", "/nonexistent/dir/libperceiver4j-no-such-lib.so.7"));
        assertThatThrownBy(() -> NativeLibraries.load(spec, spec.candidates()))
                .isInstanceOf(CudaException.class)
                .hasMessageContaining("cannot load a library that does not exist")
                .hasMessageContaining("libperceiver4j-no-such-lib.so.7 (")
                .hasMessageContaining("/nonexistent/dir/libperceiver4j-no-such-lib.so.7 (no such file)")
                .hasMessageContaining("-Dperceiver4j.cuda.nothing=");
    }

    @Test
    void theDefaultCandidatesAreTheSonamesThenTheInstallPaths() {
        assertThat(NativeLibraries.DRIVER.candidates()).startsWith("libcuda.so.1", "/usr/local/nvidia/lib64/libcuda.so.1");
        assertThat(NativeLibraries.NVRTC.candidates()).startsWith("libnvrtc.so.13", "libnvrtc.so.12")
                .contains("/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.13");
        assertThat(NativeLibraries.CUBLASLT.candidates()).startsWith("libcublasLt.so.13", "libcublasLt.so.12");
    }

    @Test
    void withoutADriverCudaFailsClearlyAndAutoFallsBackToTheCpu() {
        boolean driverPresent;
        try {
            NativeLibraries.driver();
            driverPresent = true;
        } catch (CudaException e) {
            driverPresent = false;
        }
        assumeTrue(!driverPresent, "this machine has libcuda; the no-driver path is not testable here");
        assertThatThrownBy(() -> CudaContext.create(0))
                .isInstanceOf(CudaException.class)
                .hasMessageContaining("cannot load the CUDA driver (libcuda)")
                .hasMessageContaining("libcuda.so.1");
        assertThatThrownBy(() -> Backends.create("cuda"))
                .isInstanceOf(CudaException.class)
                .hasMessageContaining("libcuda.so.1");
        assertThat(Backends.create("auto").name()).startsWith("cpu");
    }
}
