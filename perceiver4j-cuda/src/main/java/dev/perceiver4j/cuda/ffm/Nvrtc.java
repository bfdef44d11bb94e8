package dev.perceiver4j.cuda.ffm;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.List;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * NVRTC (nvrtc.h, CUDA 12/13): compiles CUDA C source to a cubin at run time. One
 * {@code static final MethodHandle} per entry point; {@code nvrtcResult} != NVRTC_SUCCESS becomes
 * a {@link CudaException} with {@code nvrtcGetErrorString}, and a failed compilation carries the
 * program log. {@code nvrtcProgram} is an opaque pointer.
 */
@SuppressWarnings("restricted") // FFM downcalls need --enable-native-access
public final class Nvrtc {
    private Nvrtc() {}

    private static final Linker LINKER = Linker.nativeLinker();
    private static final NativeLibraries.Loaded LIB = NativeLibraries.nvrtc();

    private static MethodHandle bind(String name, FunctionDescriptor fd) {
        MemorySegment sym = LIB.lookup().find(name)
                .orElseThrow(() -> new CudaException(LIB.from() + " has no symbol " + name));
        return LINKER.downcallHandle(sym, fd);
    }

    // const char *nvrtcGetErrorString(nvrtcResult result)
    private static final MethodHandle nvrtcGetErrorString = bind("nvrtcGetErrorString", FunctionDescriptor.of(ADDRESS, JAVA_INT));
    // nvrtcResult nvrtcVersion(int *major, int *minor)
    private static final MethodHandle nvrtcVersion = bind("nvrtcVersion", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
    // nvrtcResult nvrtcCreateProgram(nvrtcProgram *prog, const char *src, const char *name, int numHeaders,
    //                                const char * const *headers, const char * const *includeNames)
    private static final MethodHandle nvrtcCreateProgram = bind("nvrtcCreateProgram",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS));
    // nvrtcResult nvrtcCompileProgram(nvrtcProgram prog, int numOptions, const char * const *options)
    private static final MethodHandle nvrtcCompileProgram = bind("nvrtcCompileProgram", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS));
    // nvrtcResult nvrtcGetProgramLogSize(nvrtcProgram prog, size_t *logSizeRet)
    private static final MethodHandle nvrtcGetProgramLogSize = bind("nvrtcGetProgramLogSize", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
    // nvrtcResult nvrtcGetProgramLog(nvrtcProgram prog, char *log)
    private static final MethodHandle nvrtcGetProgramLog = bind("nvrtcGetProgramLog", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
    // nvrtcResult nvrtcGetCUBINSize(nvrtcProgram prog, size_t *cubinSizeRet)
    private static final MethodHandle nvrtcGetCUBINSize = bind("nvrtcGetCUBINSize", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
    // nvrtcResult nvrtcGetCUBIN(nvrtcProgram prog, char *cubin)
    private static final MethodHandle nvrtcGetCUBIN = bind("nvrtcGetCUBIN", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
    // nvrtcResult nvrtcDestroyProgram(nvrtcProgram *prog)
    private static final MethodHandle nvrtcDestroyProgram = bind("nvrtcDestroyProgram", FunctionDescriptor.of(JAVA_INT, ADDRESS));

    /** "NVRTC_ERROR_COMPILATION (6)" for an nvrtcResult. */
    public static String errorString(int code) {
        try {
            MemorySegment s = (MemorySegment) nvrtcGetErrorString.invokeExact(code);
            if (s.equals(MemorySegment.NULL)) return "nvrtcResult " + code;
            return s.reinterpret(256).getString(0) + " (" + code + ")";
        } catch (Throwable t) {
            return "nvrtcResult " + code;
        }
    }

    static void check(int status, String call) {
        if (status != 0) throw new CudaException(call + " failed: " + errorString(status), status, null);
    }

    /** {major, minor} of the loaded NVRTC. */
    public static int[] version() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ma = a.allocate(JAVA_INT), mi = a.allocate(JAVA_INT);
            check((int) nvrtcVersion.invokeExact(ma, mi), "nvrtcVersion");
            return new int[] {ma.get(JAVA_INT, 0), mi.get(JAVA_INT, 0)};
        } catch (Throwable t) {
            throw CudaException.downcall("nvrtcVersion", t);
        }
    }

    /**
     * Compiles {@code source} (no headers) with {@code options} (e.g. {@code --gpu-architecture=sm_90})
     * and returns the cubin.
     *
     * @throws CudaException with the program log when compilation fails
     */
    public static byte[] compileToCubin(String source, String name, List<String> options) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment progPtr = a.allocate(ADDRESS);
            check((int) nvrtcCreateProgram.invokeExact(progPtr, a.allocateFrom(source), a.allocateFrom(name), 0,
                    MemorySegment.NULL, MemorySegment.NULL), "nvrtcCreateProgram(" + name + ")");
            MemorySegment prog = progPtr.get(ADDRESS, 0);
            try {
                MemorySegment opts = a.allocate(ADDRESS, Math.max(1, options.size()));
                for (int i = 0; i < options.size(); i++) opts.setAtIndex(ADDRESS, i, a.allocateFrom(options.get(i)));
                int r = (int) nvrtcCompileProgram.invokeExact(prog, options.size(), opts);
                if (r != 0) {
                    String hint = r == 7 ? "\n(NVRTC_ERROR_BUILTIN_OPERATION_FAILURE usually means libnvrtc-builtins.so.* is not on the"
                            + " dynamic loader path: add the directory of " + LIB.from() + " to LD_LIBRARY_PATH)" : "";
                    throw new CudaException("nvrtcCompileProgram(" + name + ", " + String.join(" ", options) + ") failed: "
                            + errorString(r) + hint + "\n" + log(a, prog), r, null);
                }
                MemorySegment size = a.allocate(JAVA_LONG);
                check((int) nvrtcGetCUBINSize.invokeExact(prog, size), "nvrtcGetCUBINSize");
                long n = size.get(JAVA_LONG, 0);
                MemorySegment cubin = a.allocate(n);
                check((int) nvrtcGetCUBIN.invokeExact(prog, cubin), "nvrtcGetCUBIN");
                return cubin.toArray(JAVA_BYTE);
            } finally {
                int ignored = (int) nvrtcDestroyProgram.invokeExact(progPtr);
            }
        } catch (Throwable t) {
            throw CudaException.downcall("nvrtc compile " + name, t);
        }
    }

    private static String log(Arena a, MemorySegment prog) throws Throwable {
        MemorySegment size = a.allocate(JAVA_LONG);
        if ((int) nvrtcGetProgramLogSize.invokeExact(prog, size) != 0) return "(no log)";
        long n = size.get(JAVA_LONG, 0);
        if (n <= 1) return "(empty log)";
        MemorySegment buf = a.allocate(n);
        if ((int) nvrtcGetProgramLog.invokeExact(prog, buf) != 0) return "(no log)";
        return buf.getString(0);
    }
}
