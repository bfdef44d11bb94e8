package dev.perceiver4j.backend.cpu.gemm;

import dev.perceiver4j.backend.cpu.CpuPool;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.stream.Stream;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;

/**
 * {@code cblas_sgemm} of a native CBLAS (OpenBLAS, BLIS, MKL, Accelerate, reference CBLAS) called
 * through the Foreign Function &amp; Memory API.
 *
 * <p>The downcall is linked with {@link Linker.Option#critical(boolean) critical(true)}, so the
 * Java {@code float[]} arrays are passed as heap segments ({@link MemorySegment#ofArray(float[])})
 * without copying: the GC keeps them in place for the duration of the call.
 *
 * <p>{@link #load(CpuPool)} searches, in order: the system property {@code perceiver4j.cblas} (a
 * path or soname; if set it must load), the environment variable {@code PERCEIVER4J_CBLAS}, the
 * usual sonames of OpenBLAS / reference CBLAS / MKL / BLIS / Accelerate, and finally every
 * {@code libopenblas*.so*} under {@code ${user.home}/.cache/perceiver4j/openblas/} (what
 * {@code scripts/fetch-openblas.sh} unpacks; any {@code libgfortran*.so*} found there is loaded
 * first so that the library's dependency resolves without {@code LD_LIBRARY_PATH}).
 */
@SuppressWarnings("restricted") // FFM downcalls need --enable-native-access; documented in the poms
public final class CblasSgemm implements Sgemm {

    /** System property naming the CBLAS library (path or soname). */
    public static final String PROPERTY = "perceiver4j.cblas";
    /** Environment variable naming the CBLAS library (path or soname). */
    public static final String ENV = "PERCEIVER4J_CBLAS";

    static final int CBLAS_ROW_MAJOR = 101;
    static final int CBLAS_NO_TRANS = 111;
    static final int CBLAS_TRANS = 112;

    private static final List<String> SONAMES = List.of(
            "libopenblas.so.0", "libopenblas.so", "libcblas.so.3", "libblas.so.3",
            "libmkl_rt.so.2", "libmkl_rt.so", "libblis.so.4", "libblis.so",
            "libopenblas.dylib", "/System/Library/Frameworks/Accelerate.framework/Accelerate");

    private static final Linker LINKER = Linker.nativeLinker();

    /** void cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) */
    private static final FunctionDescriptor SGEMM_DESC = FunctionDescriptor.ofVoid(
            JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT,
            JAVA_FLOAT, ADDRESS, JAVA_INT, ADDRESS, JAVA_INT, JAVA_FLOAT, ADDRESS, JAVA_INT);
    /** void xxx_set_num_threads(int) */
    private static final FunctionDescriptor SET_THREADS_DESC = FunctionDescriptor.ofVoid(JAVA_INT);

    /** Thread count last given to the library (a process-wide setting), to skip redundant calls. */
    private static volatile int librarySetThreads = -1;

    private final String library;
    private final CpuPool pool;
    private final MethodHandle cblasSgemm;
    private final MethodHandle setNumThreads; // null when the library has no such entry point

    private CblasSgemm(String library, SymbolLookup lookup, CpuPool pool) {
        this.library = library;
        this.pool = pool;
        MemorySegment sgemm = lookup.find("cblas_sgemm")
                .orElseThrow(() -> new IllegalStateException(library + " has no symbol cblas_sgemm"));
        this.cblasSgemm = LINKER.downcallHandle(sgemm, SGEMM_DESC, Linker.Option.critical(true));
        this.setNumThreads = Stream.of("openblas_set_num_threads", "bli_thread_set_num_threads", "MKL_Set_Num_Threads")
                .map(lookup::find).flatMap(Optional::stream).findFirst()
                .map(s -> LINKER.downcallHandle(s, SET_THREADS_DESC))
                .orElse(null);
        applyThreads();
    }

    /** Finds a CBLAS as described in the class comment; empty when there is none. */
    public static Optional<CblasSgemm> load(CpuPool pool) {
        return load(pool, new ArrayList<>());
    }

    /**
     * Like {@link #load(CpuPool)}, appending one line per candidate tried (and why it failed) to
     * {@code tried}.
     *
     * @throws IllegalStateException if the system property {@value #PROPERTY} is set but names no
     *                               loadable CBLAS
     */
    public static Optional<CblasSgemm> load(CpuPool pool, List<String> tried) {
        return load(pool, tried, true);
    }

    /**
     * As {@link #load(CpuPool, List)}; {@code includeCache = false} skips the OpenBLAS that
     * {@code scripts/fetch-openblas.sh} unpacks for the tests, leaving only a CBLAS the user or the
     * system provides (what {@code --gemm auto} uses).
     */
    public static Optional<CblasSgemm> load(CpuPool pool, List<String> tried, boolean includeCache) {
        Objects.requireNonNull(pool, "pool");
        String prop = System.getProperty(PROPERTY);
        if (prop != null && !prop.isBlank()) {
            Optional<CblasSgemm> r = tryLoad(prop.trim(), List.of(), pool, tried);
            if (r.isEmpty()) {
                throw new IllegalStateException("-D" + PROPERTY + "=" + prop + " names no usable CBLAS: "
                        + tried.getLast());
            }
            return r;
        }
        String env = System.getenv(ENV);
        if (env != null && !env.isBlank()) {
            Optional<CblasSgemm> r = tryLoad(env.trim(), List.of(), pool, tried);
            if (r.isPresent()) return r;
        }
        for (String soname : SONAMES) {
            Optional<CblasSgemm> r = tryLoad(soname, List.of(), pool, tried);
            if (r.isPresent()) return r;
        }
        Path cache = Path.of(System.getProperty("user.home"), ".cache", "perceiver4j", "openblas");
        if (!includeCache) {
            tried.add(cache + ": not searched by --gemm auto (use --gemm cblas)");
        } else if (Files.isDirectory(cache)) {
            List<Path> deps = findFiles(cache, "libgfortran");
            for (Path lib : findFiles(cache, "libopenblas")) {
                Optional<CblasSgemm> r = tryLoad(lib.toString(), deps, pool, tried);
                if (r.isPresent()) return r;
            }
        } else {
            tried.add(cache + "/libopenblas*.so*: directory absent (run scripts/fetch-openblas.sh)");
        }
        return Optional.empty();
    }

    /** Regular files and links under {@code dir} named {@code prefix*.so*}, sorted by path. */
    private static List<Path> findFiles(Path dir, String prefix) {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.filter(p -> {
                String f = p.getFileName().toString();
                return f.startsWith(prefix) && f.contains(".so") && Files.isRegularFile(p);
            }).sorted().toList();
        } catch (IOException e) {
            return List.of();
        }
    }

    private static Optional<CblasSgemm> tryLoad(String nameOrPath, List<Path> deps, CpuPool pool, List<String> tried) {
        try {
            for (Path dep : deps) {
                SymbolLookup.libraryLookup(dep, Arena.global()); // resolves the library's DT_NEEDED entry
            }
            // A name with a '/' is a path; anything else is an soname for the system loader's search.
            SymbolLookup lookup = nameOrPath.contains("/")
                    ? SymbolLookup.libraryLookup(Path.of(nameOrPath), Arena.global())
                    : SymbolLookup.libraryLookup(nameOrPath, Arena.global());
            if (lookup.find("cblas_sgemm").isEmpty()) {
                tried.add(nameOrPath + ": loaded, but has no cblas_sgemm");
                return Optional.empty();
            }
            String shortName = nameOrPath.contains("/") ? Path.of(nameOrPath).getFileName().toString() : nameOrPath;
            return Optional.of(new CblasSgemm(shortName, lookup, pool));
        } catch (IllegalArgumentException | IllegalStateException | UnsatisfiedLinkError e) {
            tried.add(nameOrPath + ": " + e.getMessage());
            return Optional.empty();
        }
    }

    /** The library as found: an soname or a file name. */
    public String library() {
        return library;
    }

    @Override
    public String name() {
        return "cblas(" + library + ", " + pool.threads() + " threads)";
    }

    @Override
    public void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                      float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
                      float beta, float[] c, int cOff, int ldc) {
        NaiveSgemm.checkArgs(transA, transB, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        // Also covers k == 0 and alpha == 0, where BLAS reads neither A nor B.
        if (NaiveSgemm.handleTrivial(m, n, k, alpha, beta, c, cOff, ldc)) return;
        applyThreads();
        // From here m, n, k >= 1, so every leading dimension is >= 1 as CBLAS requires.
        MemorySegment as = MemorySegment.ofArray(a).asSlice(4L * aOff);
        MemorySegment bs = MemorySegment.ofArray(b).asSlice(4L * bOff);
        MemorySegment cs = MemorySegment.ofArray(c).asSlice(4L * cOff);
        try {
            cblasSgemm.invokeExact(CBLAS_ROW_MAJOR, transA ? CBLAS_TRANS : CBLAS_NO_TRANS,
                    transB ? CBLAS_TRANS : CBLAS_NO_TRANS, m, n, k, alpha, as, lda, bs, ldb, beta, cs, ldc);
        } catch (Throwable t) {
            throw new IllegalStateException("cblas_sgemm in " + library + " failed", t);
        }
    }

    /** Gives the library this instance's thread count, if it differs from what it was last given. */
    private void applyThreads() {
        if (setNumThreads == null || librarySetThreads == pool.threads()) return;
        synchronized (CblasSgemm.class) {
            try {
                setNumThreads.invokeExact(pool.threads());
            } catch (Throwable t) {
                throw new IllegalStateException("setting the thread count of " + library + " failed", t);
            }
            librarySetThreads = pool.threads();
        }
    }
}
