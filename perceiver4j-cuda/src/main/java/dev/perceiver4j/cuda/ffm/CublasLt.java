package dev.perceiver4j.cuda.ffm;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.function.Supplier;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * cuBLASLt (cublasLt.h, CUDA 12/13): matrix products with epilogues. One
 * {@code static final MethodHandle} per entry point; a {@code cublasStatus_t} other than
 * CUBLAS_STATUS_SUCCESS becomes a {@link CudaException} with the status name.
 *
 * <p>Handles ({@code cublasLtHandle_t}, {@code cublasLtMatmulDesc_t}, {@code cublasLtMatrixLayout_t},
 * {@code cublasLtMatmulPreference_t}) and device pointers ({@code void*}) are ADDRESS; enums are int;
 * {@code uint64_t}/{@code int64_t}/{@code size_t} are JAVA_LONG.
 */
@SuppressWarnings("restricted") // FFM downcalls need --enable-native-access
public final class CublasLt {
    private CublasLt() {}

    private static final Linker LINKER = Linker.nativeLinker();
    private static final NativeLibraries.Loaded LIB = NativeLibraries.cublasLt();

    private static MethodHandle bind(String name, FunctionDescriptor fd) {
        MemorySegment sym = LIB.lookup().find(name)
                .orElseThrow(() -> new CudaException(LIB.from() + " has no symbol " + name));
        return LINKER.downcallHandle(sym, fd);
    }

    // ---- enum values (cublas_api.h, cublasLt.h, library_types.h) --------------------------------

    /** cudaDataType_t */
    public static final int CUDA_R_32F = 0, CUDA_R_16BF = 14;
    /** cublasComputeType_t: exact fp32 FMA, and fp32 with TF32 tensor cores allowed. */
    public static final int CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_PEDANTIC = 69, CUBLAS_COMPUTE_32F_FAST_TF32 = 77;
    /** cublasOperation_t */
    public static final int CUBLAS_OP_N = 0, CUBLAS_OP_T = 1;
    /** cublasLtMatmulDescAttributes_t */
    public static final int MATMUL_DESC_TRANSA = 3, MATMUL_DESC_TRANSB = 4, MATMUL_DESC_EPILOGUE = 7, MATMUL_DESC_BIAS_POINTER = 8,
            MATMUL_DESC_BIAS_BATCH_STRIDE = 10, MATMUL_DESC_EPILOGUE_AUX_POINTER = 11, MATMUL_DESC_EPILOGUE_AUX_LD = 12,
            MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE = 13, MATMUL_DESC_BIAS_DATA_TYPE = 26;
    /**
     * cublasLtEpilogue_t. Note: cuBLASLt's GELU epilogues compute the tanh approximation of GELU,
     * not the exact erf form the project uses, so CudaBackend does not use them (see CudaBackend).
     */
    public static final int EPILOGUE_DEFAULT = 1, EPILOGUE_RELU = 2, EPILOGUE_BIAS = 4, EPILOGUE_GELU = 32, EPILOGUE_GELU_AUX = 160,
            EPILOGUE_GELU_BIAS = 36, EPILOGUE_GELU_AUX_BIAS = 164, EPILOGUE_DGELU = 192, EPILOGUE_DGELU_BGRAD = 208,
            EPILOGUE_BGRADA = 256, EPILOGUE_BGRADB = 512;
    /** cublasLtMatrixLayoutAttribute_t */
    public static final int MATRIX_LAYOUT_ORDER = 1, MATRIX_LAYOUT_BATCH_COUNT = 5, MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6;
    /** cublasLtMatmulPreferenceAttributes_t (MAX_WORKSPACE_BYTES: uint64; MIN_ALIGNMENT_*: uint32) */
    public static final int PREF_MAX_WORKSPACE_BYTES = 1, PREF_MIN_ALIGNMENT_A_BYTES = 5, PREF_MIN_ALIGNMENT_B_BYTES = 6,
            PREF_MIN_ALIGNMENT_C_BYTES = 7, PREF_MIN_ALIGNMENT_D_BYTES = 8;

    /**
     * cublasLtMatmulHeuristicResult_t: { cublasLtMatmulAlgo_t algo (uint64_t data[8], 64 bytes);
     * size_t workspaceSize (@64); cublasStatus_t state (@72); float wavesCount (@76); int reserved[4] (@80) } = 96 bytes.
     */
    public static final long HEURISTIC_RESULT_BYTES = 96, HEURISTIC_ALGO_BYTES = 64, HEURISTIC_WORKSPACE_OFFSET = 64,
            HEURISTIC_STATE_OFFSET = 72;

    // ---- entry points -----------------------------------------------------------------------

    // cublasStatus_t cublasLtCreate(cublasLtHandle_t *lightHandle)
    private static final MethodHandle cublasLtCreate = bind("cublasLtCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    // cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *matmulDesc, cublasComputeType_t computeType, cudaDataType_t scaleType)
    private static final MethodHandle cublasLtMatmulDescCreate = bind("cublasLtMatmulDescCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
    // cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t, cublasLtMatmulDescAttributes_t attr, const void *buf, size_t sizeInBytes)
    private static final MethodHandle cublasLtMatmulDescSetAttribute = bind("cublasLtMatmulDescSetAttribute",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, JAVA_LONG));
    // cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc)
    private static final MethodHandle cublasLtMatmulDescDestroy = bind("cublasLtMatmulDescDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    // cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *matLayout, cudaDataType type, uint64_t rows, uint64_t cols, int64_t ld)
    private static final MethodHandle cublasLtMatrixLayoutCreate = bind("cublasLtMatrixLayoutCreate",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
    // cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t, cublasLtMatrixLayoutAttribute_t attr, const void *buf, size_t sizeInBytes)
    private static final MethodHandle cublasLtMatrixLayoutSetAttribute = bind("cublasLtMatrixLayoutSetAttribute",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, JAVA_LONG));
    // cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout)
    private static final MethodHandle cublasLtMatrixLayoutDestroy = bind("cublasLtMatrixLayoutDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    // cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref)
    private static final MethodHandle cublasLtMatmulPreferenceCreate = bind("cublasLtMatmulPreferenceCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    // cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t attr, const void *buf, size_t sizeInBytes)
    private static final MethodHandle cublasLtMatmulPreferenceSetAttribute = bind("cublasLtMatmulPreferenceSetAttribute",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, JAVA_LONG));
    // cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref)
    private static final MethodHandle cublasLtMatmulPreferenceDestroy = bind("cublasLtMatmulPreferenceDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    // size_t cublasLtGetVersion(void)
    private static final MethodHandle cublasLtGetVersion = bind("cublasLtGetVersion", FunctionDescriptor.of(JAVA_LONG));
    // cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t Adesc, Bdesc, Cdesc, Ddesc,
    //     cublasLtMatmulPreference_t, int requestedAlgoCount, cublasLtMatmulHeuristicResult_t heuristicResultsArray[], int *returnAlgoCount)
    private static final MethodHandle cublasLtMatmulAlgoGetHeuristic = bind("cublasLtMatmulAlgoGetHeuristic",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS));
    // cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t computeDesc, const void *alpha, const void *A, cublasLtMatrixLayout_t Adesc,
    //     const void *B, Bdesc, const void *beta, const void *C, Cdesc, void *D, Ddesc, const cublasLtMatmulAlgo_t *algo,
    //     void *workspace, size_t workspaceSizeInBytes, cudaStream_t stream)
    private static final MethodHandle cublasLtMatmul = bind("cublasLtMatmul", FunctionDescriptor.of(JAVA_INT,
            ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS,
            ADDRESS, JAVA_LONG, ADDRESS));

    /** The cublasStatus_t name (cublas_api.h). */
    public static String statusName(int s) {
        String n = switch (s) {
            case 0 -> "CUBLAS_STATUS_SUCCESS";
            case 1 -> "CUBLAS_STATUS_NOT_INITIALIZED";
            case 3 -> "CUBLAS_STATUS_ALLOC_FAILED";
            case 7 -> "CUBLAS_STATUS_INVALID_VALUE";
            case 8 -> "CUBLAS_STATUS_ARCH_MISMATCH";
            case 11 -> "CUBLAS_STATUS_MAPPING_ERROR";
            case 13 -> "CUBLAS_STATUS_EXECUTION_FAILED";
            case 14 -> "CUBLAS_STATUS_INTERNAL_ERROR";
            case 15 -> "CUBLAS_STATUS_NOT_SUPPORTED";
            case 16 -> "CUBLAS_STATUS_LICENSE_ERROR";
            default -> "cublasStatus_t";
        };
        return n + " (" + s + ")";
    }

    static void check(int status, String call) {
        if (status != 0) throw new CudaException(call + " failed: " + statusName(status), status, null);
    }

    private static MemorySegment created(String call, Arena a, CreateCall c) {
        try {
            MemorySegment out = a.allocate(ADDRESS);
            check(c.call(out), call);
            return out.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw CudaException.downcall(call, t);
        }
    }

    @FunctionalInterface
    private interface CreateCall {
        int call(MemorySegment out) throws Throwable;
    }

    public static MemorySegment create() {
        try (Arena a = Arena.ofConfined()) {
            return created("cublasLtCreate", a, out -> (int) cublasLtCreate.invokeExact(out));
        }
    }

    public static MemorySegment matmulDescCreate(int computeType, int scaleType) {
        try (Arena a = Arena.ofConfined()) {
            return created("cublasLtMatmulDescCreate", a, out -> (int) cublasLtMatmulDescCreate.invokeExact(out, computeType, scaleType));
        }
    }

    /** Sets an int (enum) attribute of a matmul descriptor. */
    public static void matmulDescSetInt(MemorySegment desc, int attribute, int value) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(JAVA_INT);
            buf.set(JAVA_INT, 0, value);
            check((int) cublasLtMatmulDescSetAttribute.invokeExact(desc, attribute, buf, 4L), "cublasLtMatmulDescSetAttribute(" + attribute + ")");
        } catch (Throwable t) {
            throw CudaException.downcall("cublasLtMatmulDescSetAttribute", t);
        }
    }

    /** Sets a 64-bit attribute (a pointer such as BIAS_POINTER, or an int64 such as a stride). */
    public static void matmulDescSetLong(MemorySegment desc, int attribute, long value) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(JAVA_LONG);
            buf.set(JAVA_LONG, 0, value);
            check((int) cublasLtMatmulDescSetAttribute.invokeExact(desc, attribute, buf, 8L), "cublasLtMatmulDescSetAttribute(" + attribute + ")");
        } catch (Throwable t) {
            throw CudaException.downcall("cublasLtMatmulDescSetAttribute", t);
        }
    }

    public static void matmulDescDestroy(MemorySegment desc) {
        try {
            check((int) cublasLtMatmulDescDestroy.invokeExact(desc), "cublasLtMatmulDescDestroy");
        } catch (Throwable t) {
            throw CudaException.downcall("cublasLtMatmulDescDestroy", t);
        }
    }

    /** A column-major layout (the default order) of {@code rows × cols} with leading dimension {@code ld}. */
    public static MemorySegment matrixLayoutCreate(int type, long rows, long cols, long ld) {
        try (Arena a = Arena.ofConfined()) {
            return created("cublasLtMatrixLayoutCreate(" + rows + "x" + cols + ", ld " + ld + ")", a,
                    out -> (int) cublasLtMatrixLayoutCreate.invokeExact(out, type, rows, cols, ld));
        }
    }

    /** BATCH_COUNT is int32; STRIDED_BATCH_OFFSET is int64 (elements). */
    public static void matrixLayoutSetBatch(MemorySegment layout, int batchCount, long strideElements) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment i = a.allocate(JAVA_INT);
            i.set(JAVA_INT, 0, batchCount);
            check((int) cublasLtMatrixLayoutSetAttribute.invokeExact(layout, MATRIX_LAYOUT_BATCH_COUNT, i, 4L), "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)");
            MemorySegment l = a.allocate(JAVA_LONG);
            l.set(JAVA_LONG, 0, strideElements);
            check((int) cublasLtMatrixLayoutSetAttribute.invokeExact(layout, MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, l, 8L),
                    "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)");
        } catch (Throwable t) {
            throw CudaException.downcall("cublasLtMatrixLayoutSetAttribute", t);
        }
    }

    public static void matrixLayoutDestroy(MemorySegment layout) {
        try {
            check((int) cublasLtMatrixLayoutDestroy.invokeExact(layout), "cublasLtMatrixLayoutDestroy");
        } catch (Throwable t) {
            throw CudaException.downcall("cublasLtMatrixLayoutDestroy", t);
        }
    }

    /** A preference with the workspace limit and the operands' guaranteed alignments (bytes). */
    public static MemorySegment preferenceCreate(long maxWorkspaceBytes, int alignA, int alignB, int alignC, int alignD) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment pref = created("cublasLtMatmulPreferenceCreate", a, out -> (int) cublasLtMatmulPreferenceCreate.invokeExact(out));
            MemorySegment l = a.allocate(JAVA_LONG);
            l.set(JAVA_LONG, 0, maxWorkspaceBytes);
            check((int) cublasLtMatmulPreferenceSetAttribute.invokeExact(pref, PREF_MAX_WORKSPACE_BYTES, l, 8L),
                    "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
            int[] attrs = {PREF_MIN_ALIGNMENT_A_BYTES, PREF_MIN_ALIGNMENT_B_BYTES, PREF_MIN_ALIGNMENT_C_BYTES, PREF_MIN_ALIGNMENT_D_BYTES};
            int[] values = {alignA, alignB, alignC, alignD};
            MemorySegment i = a.allocate(JAVA_INT);
            for (int k = 0; k < 4; k++) {
                i.set(JAVA_INT, 0, values[k]);
                check((int) cublasLtMatmulPreferenceSetAttribute.invokeExact(pref, attrs[k], i, 4L),
                        "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT " + attrs[k] + ")");
            }
            return pref;
        } catch (Throwable t) {
            throw CudaException.downcall("cublasLtMatmulPreference", t);
        }
    }

    public static void preferenceDestroy(MemorySegment pref) {
        try {
            check((int) cublasLtMatmulPreferenceDestroy.invokeExact(pref), "cublasLtMatmulPreferenceDestroy");
        } catch (Throwable t) {
            throw CudaException.downcall("cublasLtMatmulPreferenceDestroy", t);
        }
    }

    /**
     * Asks for up to {@code requested} algorithms, best first by cuBLASLt's estimate; writes that many
     * cublasLtMatmulHeuristicResult_t into {@code results} ({@link #HEURISTIC_RESULT_BYTES} each,
     * caller-owned) and returns how many it wrote (0 when cuBLASLt has none). Each result's state
     * ({@link #HEURISTIC_STATE_OFFSET}) is 0 when the algorithm can run.
     */
    public static int algoGetHeuristics(MemorySegment handle, MemorySegment desc, MemorySegment aDesc, MemorySegment bDesc,
                                        MemorySegment cDesc, MemorySegment dDesc, MemorySegment pref, int requested, MemorySegment results) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment count = a.allocate(JAVA_INT);
            int r = (int) cublasLtMatmulAlgoGetHeuristic.invokeExact(handle, desc, aDesc, bDesc, cDesc, dDesc, pref, requested, results, count);
            if (r == 15) return 0; // CUBLAS_STATUS_NOT_SUPPORTED: no algorithm for this problem
            check(r, "cublasLtMatmulAlgoGetHeuristic");
            return count.get(JAVA_INT, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cublasLtMatmulAlgoGetHeuristic", t);
        }
    }

    /** The library's version number (CUBLASLT_VERSION: major·10000 + minor·100 + patch). */
    public static long version() {
        try {
            return (long) cublasLtGetVersion.invokeExact();
        } catch (Throwable t) {
            throw CudaException.downcall("cublasLtGetVersion", t);
        }
    }

    /**
     * D = alpha·op(A)·op(B) + beta·C (+ epilogue); alpha and beta are host floats (the default pointer mode).
     * {@code what} describes the product for an error message; it is only called on failure (this runs
     * once per product, and the description is a string built from the shape).
     */
    public static void matmul(MemorySegment handle, MemorySegment desc, MemorySegment alpha, long a, MemorySegment aDesc,
                              long b, MemorySegment bDesc, MemorySegment beta, long c, MemorySegment cDesc, long d, MemorySegment dDesc,
                              MemorySegment algo, long workspace, long workspaceBytes, MemorySegment stream, Supplier<String> what) {
        try {
            int r = (int) cublasLtMatmul.invokeExact(handle, desc, alpha, MemorySegment.ofAddress(a), aDesc, MemorySegment.ofAddress(b), bDesc,
                    beta, MemorySegment.ofAddress(c), cDesc, MemorySegment.ofAddress(d), dDesc, algo,
                    MemorySegment.ofAddress(workspace), workspaceBytes, stream);
            if (r != 0) check(r, "cublasLtMatmul(" + what.get() + ")");
        } catch (Throwable t) {
            throw CudaException.downcall("cublasLtMatmul", t);
        }
    }
}
