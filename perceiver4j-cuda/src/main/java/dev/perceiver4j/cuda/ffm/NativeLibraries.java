package dev.perceiver4j.cuda.ffm;

import java.lang.foreign.Arena;
import java.lang.foreign.SymbolLookup;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Finds the NVIDIA libraries by soname first (the dynamic loader's search path), then at the
 * usual install locations. Each library is loaded at most once per process, on first use, into
 * the global arena (never unloaded). A missing library gives a {@link CudaException} that names
 * the library and every candidate tried, with the loader's reason for each.
 *
 * <p>Overrides: system property {@code perceiver4j.cuda.<lib>} (lib = driver, nvrtc, cublaslt),
 * a path or soname tried before the defaults.
 */
@SuppressWarnings("restricted") // FFM library loading needs --enable-native-access
public final class NativeLibraries {
    private NativeLibraries() {}

    /** One library: a short name for messages and the candidates, in order. */
    public record Spec(String key, String what, List<String> candidates) {}

    public static final Spec DRIVER = new Spec("driver", "the CUDA driver (libcuda)", List.of(
            "libcuda.so.1",
            "/usr/local/nvidia/lib64/libcuda.so.1",
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            "/usr/lib64/libcuda.so.1",
            "/usr/lib/wsl/lib/libcuda.so.1"));

    public static final Spec NVRTC = new Spec("nvrtc", "NVRTC (libnvrtc)", List.of(
            "libnvrtc.so.13", "libnvrtc.so.12",
            "/usr/local/cuda/lib64/libnvrtc.so.13", "/usr/local/cuda/lib64/libnvrtc.so.12",
            "/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.13",
            "/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.12"));

    public static final Spec CUBLASLT = new Spec("cublaslt", "cuBLASLt (libcublasLt)", List.of(
            "libcublasLt.so.13", "libcublasLt.so.12",
            "/usr/local/cuda/lib64/libcublasLt.so.13", "/usr/local/cuda/lib64/libcublasLt.so.12",
            "/usr/local/cuda/targets/x86_64-linux/lib/libcublasLt.so.13",
            "/usr/local/cuda/targets/x86_64-linux/lib/libcublasLt.so.12"));

    /** A loaded library: where it came from and its symbols. */
    public record Loaded(String from, SymbolLookup lookup) {}

    private static Object driver, nvrtc, cublasLt; // Loaded, or the CudaException of the failed attempt

    public static synchronized Loaded driver() {
        if (driver == null) driver = attempt(DRIVER);
        return result(driver);
    }

    public static synchronized Loaded nvrtc() {
        if (nvrtc == null) nvrtc = attempt(NVRTC);
        return result(nvrtc);
    }

    public static synchronized Loaded cublasLt() {
        if (cublasLt == null) cublasLt = attempt(CUBLASLT);
        return result(cublasLt);
    }

    private static Loaded result(Object o) {
        if (o instanceof CudaException e) throw new CudaException(e.getMessage()); // fresh stack trace per caller
        return (Loaded) o;
    }

    private static Object attempt(Spec spec) {
        try {
            return load(spec, candidates(spec));
        } catch (CudaException e) {
            return e;
        }
    }

    /** The candidates for a library: the override property (if set), then the defaults. */
    static List<String> candidates(Spec spec) {
        List<String> c = new ArrayList<>();
        String override = System.getProperty("perceiver4j.cuda." + spec.key());
        if (override != null && !override.isBlank()) c.add(override.trim());
        c.addAll(spec.candidates());
        return c;
    }

    /**
     * Loads the first candidate that the dynamic loader accepts.
     *
     * @throws CudaException naming the library and every candidate with the loader's reason
     */
    public static Loaded load(Spec spec, List<String> candidates) {
        List<String> tried = new ArrayList<>();
        for (String c : candidates) {
            boolean isPath = c.contains("/");
            if (isPath && !Files.exists(Path.of(c))) {
                tried.add(c + " (no such file)");
                continue;
            }
            try {
                SymbolLookup lookup = isPath ? SymbolLookup.libraryLookup(Path.of(c), Arena.global())
                                             : SymbolLookup.libraryLookup(c, Arena.global());
                return new Loaded(c, lookup);
            } catch (IllegalArgumentException | IllegalCallerException e) {
                tried.add(c + " (" + (e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage()) + ")");
            }
        }
        throw new CudaException("cannot load " + spec.what() + " on " + System.getProperty("os.name", "?").toLowerCase(Locale.ROOT)
                + "; tried: " + String.join(", ", tried)
                + ". Install the NVIDIA driver / CUDA toolkit, put the library on LD_LIBRARY_PATH, or name it with -Dperceiver4j.cuda."
                + spec.key() + "=/path/to/lib");
    }
}
