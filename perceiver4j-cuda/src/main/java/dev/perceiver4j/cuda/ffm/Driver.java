package dev.perceiver4j.cuda.ffm;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The CUDA driver API entry points perceiver4j uses (cuda.h, CUDA 12/13), one
 * {@code static final MethodHandle} each, and thin wrappers that check the {@code CUresult} and
 * throw a {@link CudaException} naming the call and the error ({@code cuGetErrorName}).
 *
 * <p>C types: {@code CUresult}, {@code CUdevice}, {@code CUdevice_attribute} = int;
 * {@code CUdeviceptr} = unsigned long long (JAVA_LONG); {@code size_t} = JAVA_LONG (64-bit
 * Linux); {@code CUcontext}, {@code CUstream}, {@code CUmodule}, {@code CUfunction} = opaque
 * pointers (ADDRESS). The {@code _v2} names are what cuda.h's macros map the plain names to.
 *
 * <p>Loading this class loads libcuda (see {@link NativeLibraries#driver()}); call that first
 * to get a clean error when the library is missing.
 */
@SuppressWarnings("restricted") // FFM downcalls need --enable-native-access
public final class Driver {
    private Driver() {}

    private static final Linker LINKER = Linker.nativeLinker();
    private static final NativeLibraries.Loaded LIB = NativeLibraries.driver();

    private static MethodHandle bind(String name, FunctionDescriptor fd, Linker.Option... options) {
        MemorySegment sym = LIB.lookup().find(name)
                .orElseThrow(() -> new CudaException(LIB.from() + " has no symbol " + name + " (driver too old?)"));
        return LINKER.downcallHandle(sym, fd, options);
    }

    // CUresult cuGetErrorName(CUresult error, const char **pStr)
    private static final MethodHandle cuGetErrorName = bind("cuGetErrorName", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
    // CUresult cuInit(unsigned int Flags)
    private static final MethodHandle cuInit = bind("cuInit", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    // CUresult cuDriverGetVersion(int *driverVersion)
    private static final MethodHandle cuDriverGetVersion = bind("cuDriverGetVersion", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    // CUresult cuDeviceGetCount(int *count)
    private static final MethodHandle cuDeviceGetCount = bind("cuDeviceGetCount", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    // CUresult cuDeviceGet(CUdevice *device, int ordinal)
    private static final MethodHandle cuDeviceGet = bind("cuDeviceGet", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    // CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
    private static final MethodHandle cuDeviceGetName = bind("cuDeviceGetName", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
    // CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
    private static final MethodHandle cuDeviceGetAttribute = bind("cuDeviceGetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
    // CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
    private static final MethodHandle cuDevicePrimaryCtxRetain = bind("cuDevicePrimaryCtxRetain", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    // CUresult cuCtxSetCurrent(CUcontext ctx)
    private static final MethodHandle cuCtxSetCurrent = bind("cuCtxSetCurrent", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    // CUresult cuCtxSynchronize(void)
    private static final MethodHandle cuCtxSynchronize = bind("cuCtxSynchronize", FunctionDescriptor.of(JAVA_INT));
    // CUresult cuStreamCreate(CUstream *phStream, unsigned int Flags)
    private static final MethodHandle cuStreamCreate = bind("cuStreamCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    // CUresult cuStreamSynchronize(CUstream hStream)
    private static final MethodHandle cuStreamSynchronize = bind("cuStreamSynchronize", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    // CUresult cuMemGetInfo_v2(size_t *free, size_t *total)
    private static final MethodHandle cuMemGetInfo = bind("cuMemGetInfo_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
    // CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
    private static final MethodHandle cuMemAlloc = bind("cuMemAlloc_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
    // CUresult cuMemFree_v2(CUdeviceptr dptr)
    private static final MethodHandle cuMemFree = bind("cuMemFree_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
    // CUresult cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
    // critical: the source may be a Java array (heap segment); the GC holds still for the copy.
    private static final MethodHandle cuMemcpyHtoD = bind("cuMemcpyHtoD_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG),
            Linker.Option.critical(true));
    // CUresult cuMemcpyDtoH_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
    private static final MethodHandle cuMemcpyDtoH = bind("cuMemcpyDtoH_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG),
            Linker.Option.critical(true));
    // CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)
    private static final MethodHandle cuMemcpyDtoDAsync = bind("cuMemcpyDtoDAsync_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, ADDRESS));
    // CUresult cuMemsetD32Async(CUdeviceptr dstDevice, unsigned int ui, size_t N, CUstream hStream)
    private static final MethodHandle cuMemsetD32Async = bind("cuMemsetD32Async", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_LONG, ADDRESS));
    // CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount, CUstream hStream)
    // (the source is page-locked memory from cuMemHostAlloc, never a Java array: the copy runs after the call returns)
    private static final MethodHandle cuMemcpyHtoDAsync = bind("cuMemcpyHtoDAsync_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG, ADDRESS));
    // CUresult cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags)
    private static final MethodHandle cuMemHostAlloc = bind("cuMemHostAlloc", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
    // CUresult cuMemFreeHost(void *p)
    private static final MethodHandle cuMemFreeHost = bind("cuMemFreeHost", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    // CUresult cuEventCreate(CUevent *phEvent, unsigned int Flags)
    private static final MethodHandle cuEventCreate = bind("cuEventCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    // CUresult cuEventRecord(CUevent hEvent, CUstream hStream)
    private static final MethodHandle cuEventRecord = bind("cuEventRecord", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
    // CUresult cuEventSynchronize(CUevent hEvent)
    private static final MethodHandle cuEventSynchronize = bind("cuEventSynchronize", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    // CUresult cuEventElapsedTime(float *pMilliseconds, CUevent hStart, CUevent hEnd)
    private static final MethodHandle cuEventElapsedTime = bind("cuEventElapsedTime", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
    // CUresult cuEventDestroy_v2(CUevent hEvent)
    private static final MethodHandle cuEventDestroy = bind("cuEventDestroy_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    // CUresult cuModuleLoadData(CUmodule *module, const void *image)
    private static final MethodHandle cuModuleLoadData = bind("cuModuleLoadData", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
    // CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
    private static final MethodHandle cuModuleGetFunction = bind("cuModuleGetFunction", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
    // CUresult cuModuleGetGlobal_v2(CUdeviceptr *dptr, size_t *bytes, CUmodule hmod, const char *name)
    private static final MethodHandle cuModuleGetGlobal = bind("cuModuleGetGlobal_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS));
    // CUresult cuLaunchKernel(CUfunction f, unsigned gridDimX, gridDimY, gridDimZ, unsigned blockDimX, blockDimY, blockDimZ,
    //                         unsigned sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
    private static final MethodHandle cuLaunchKernel = bind("cuLaunchKernel", FunctionDescriptor.of(JAVA_INT,
            ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, ADDRESS));

    // CUresult cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib, int value)
    private static final MethodHandle cuFuncSetAttribute = bind("cuFuncSetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));

    // CUresult cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode)
    private static final MethodHandle cuStreamBeginCapture = bind("cuStreamBeginCapture_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    // CUresult cuStreamEndCapture(CUstream hStream, CUgraph *phGraph)
    private static final MethodHandle cuStreamEndCapture = bind("cuStreamEndCapture", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
    // CUresult cuGraphInstantiateWithFlags(CUgraphExec *phGraphExec, CUgraph hGraph, unsigned long long flags)
    private static final MethodHandle cuGraphInstantiateWithFlags = bind("cuGraphInstantiateWithFlags",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, JAVA_LONG));
    // CUresult cuGraphGetNodes(CUgraph hGraph, CUgraphNode *nodes, size_t *numNodes)
    private static final MethodHandle cuGraphGetNodes = bind("cuGraphGetNodes", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
    // CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
    private static final MethodHandle cuGraphLaunch = bind("cuGraphLaunch", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
    // CUresult cuGraphExecDestroy(CUgraphExec hGraphExec)
    private static final MethodHandle cuGraphExecDestroy = bind("cuGraphExecDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    // CUresult cuGraphDestroy(CUgraph hGraph)
    private static final MethodHandle cuGraphDestroy = bind("cuGraphDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));

    /**
     * CUstreamCaptureMode: the capturing thread may still make calls that are unsafe during capture
     * (cuMemAlloc when the caching allocator grows); other threads are not affected.
     */
    public static final int CU_STREAM_CAPTURE_MODE_RELAXED = 2;

    /** CUfunction_attribute: the most dynamic shared memory a launch of the function may request. */
    public static final int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;

    // CUdevice_attribute values used (cuda.h)
    public static final int CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1;
    public static final int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK = 8;
    public static final int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    public static final int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    public static final int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    /** cuStreamCreate flag: a blocking stream (orders with the legacy default stream, which the synchronous copies use). */
    public static final int CU_STREAM_DEFAULT = 0;
    public static final int CUDA_ERROR_OUT_OF_MEMORY = 2;
    /** cuEventCreate flag: no timing data (a cheaper event). */
    public static final int CU_EVENT_DISABLE_TIMING = 2;

    /** "CUDA_ERROR_OUT_OF_MEMORY (2)" for a CUresult. */
    public static String errorName(int code) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            int r = (int) cuGetErrorName.invokeExact(code, p);
            MemorySegment s = p.get(ADDRESS, 0);
            if (r != 0 || s.equals(MemorySegment.NULL)) return "unknown CUresult (" + code + ")";
            return s.reinterpret(256).getString(0) + " (" + code + ")";
        } catch (Throwable t) {
            return "CUresult " + code;
        }
    }

    /** Throws a CudaException naming {@code call} when {@code status} is not CUDA_SUCCESS. */
    public static void check(int status, String call) {
        if (status != 0) throw new CudaException(call + " failed: " + errorName(status), status, null);
    }

    public static void init() {
        try {
            check((int) cuInit.invokeExact(0), "cuInit(0)");
        } catch (Throwable t) {
            throw CudaException.downcall("cuInit", t);
        }
    }

    public static int driverVersion() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check((int) cuDriverGetVersion.invokeExact(v), "cuDriverGetVersion");
            return v.get(JAVA_INT, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuDriverGetVersion", t);
        }
    }

    public static int deviceCount() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check((int) cuDeviceGetCount.invokeExact(v), "cuDeviceGetCount");
            return v.get(JAVA_INT, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuDeviceGetCount", t);
        }
    }

    /** The CUdevice handle of device {@code ordinal}. */
    public static int deviceGet(int ordinal) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check((int) cuDeviceGet.invokeExact(v, ordinal), "cuDeviceGet(" + ordinal + ")");
            return v.get(JAVA_INT, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuDeviceGet", t);
        }
    }

    public static String deviceName(int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(256);
            check((int) cuDeviceGetName.invokeExact(buf, 256, device), "cuDeviceGetName");
            return buf.getString(0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuDeviceGetName", t);
        }
    }

    public static int deviceAttribute(int attribute, int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check((int) cuDeviceGetAttribute.invokeExact(v, attribute, device), "cuDeviceGetAttribute(" + attribute + ")");
            return v.get(JAVA_INT, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuDeviceGetAttribute", t);
        }
    }

    /** The device's primary context (retained; perceiver4j keeps it for the life of the process). */
    public static MemorySegment primaryCtxRetain(int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuDevicePrimaryCtxRetain.invokeExact(v, device), "cuDevicePrimaryCtxRetain");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuDevicePrimaryCtxRetain", t);
        }
    }

    public static void ctxSetCurrent(MemorySegment ctx) {
        try {
            check((int) cuCtxSetCurrent.invokeExact(ctx), "cuCtxSetCurrent");
        } catch (Throwable t) {
            throw CudaException.downcall("cuCtxSetCurrent", t);
        }
    }

    public static void ctxSynchronize() {
        try {
            check((int) cuCtxSynchronize.invokeExact(), "cuCtxSynchronize");
        } catch (Throwable t) {
            throw CudaException.downcall("cuCtxSynchronize", t);
        }
    }

    public static MemorySegment streamCreate(int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuStreamCreate.invokeExact(v, flags), "cuStreamCreate");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuStreamCreate", t);
        }
    }

    /** Waits for the stream; errors of earlier asynchronous work (a faulting kernel) surface here. */
    public static void streamSynchronize(MemorySegment stream) {
        try {
            check((int) cuStreamSynchronize.invokeExact(stream), "cuStreamSynchronize");
        } catch (Throwable t) {
            throw CudaException.downcall("cuStreamSynchronize", t);
        }
    }

    /** {free, total} device memory in bytes. */
    public static long[] memGetInfo() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment f = a.allocate(JAVA_LONG), t = a.allocate(JAVA_LONG);
            check((int) cuMemGetInfo.invokeExact(f, t), "cuMemGetInfo_v2");
            return new long[] {f.get(JAVA_LONG, 0), t.get(JAVA_LONG, 0)};
        } catch (Throwable t) {
            throw CudaException.downcall("cuMemGetInfo_v2", t);
        }
    }

    /** cuMemAlloc_v2; returns the CUresult (the caller handles out-of-memory) and writes the address into {@code out[0]}. */
    public static int memAlloc(long bytes, long[] out) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_LONG);
            int r = (int) cuMemAlloc.invokeExact(v, bytes);
            out[0] = v.get(JAVA_LONG, 0);
            return r;
        } catch (Throwable t) {
            throw CudaException.downcall("cuMemAlloc_v2", t);
        }
    }

    public static void memFree(long address) {
        try {
            check((int) cuMemFree.invokeExact(address), "cuMemFree_v2");
        } catch (Throwable t) {
            throw CudaException.downcall("cuMemFree_v2", t);
        }
    }

    /** Synchronous copy host → device; {@code src} may be a heap segment of a Java array. */
    public static void memcpyHtoD(long dst, MemorySegment src, long bytes) {
        try {
            check((int) cuMemcpyHtoD.invokeExact(dst, src, bytes), "cuMemcpyHtoD_v2(" + bytes + " bytes)");
        } catch (Throwable t) {
            throw CudaException.downcall("cuMemcpyHtoD_v2", t);
        }
    }

    /** Synchronous copy device → host; {@code dst} may be a heap segment of a Java array. Synchronize the stream first. */
    public static void memcpyDtoH(MemorySegment dst, long src, long bytes) {
        try {
            check((int) cuMemcpyDtoH.invokeExact(dst, src, bytes), "cuMemcpyDtoH_v2(" + bytes + " bytes)");
        } catch (Throwable t) {
            throw CudaException.downcall("cuMemcpyDtoH_v2", t);
        }
    }

    public static void memcpyDtoDAsync(long dst, long src, long bytes, MemorySegment stream) {
        try {
            check((int) cuMemcpyDtoDAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyDtoDAsync_v2(" + bytes + " bytes)");
        } catch (Throwable t) {
            throw CudaException.downcall("cuMemcpyDtoDAsync_v2", t);
        }
    }

    /** Queues a copy host → device on {@code stream}; {@code src} must be page-locked ({@link #memHostAlloc}) and stay unchanged until the copy has run. */
    public static void memcpyHtoDAsync(long dst, MemorySegment src, long bytes, MemorySegment stream) {
        try {
            check((int) cuMemcpyHtoDAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyHtoDAsync_v2(" + bytes + " bytes)");
        } catch (Throwable t) {
            throw CudaException.downcall("cuMemcpyHtoDAsync_v2", t);
        }
    }

    /** {@code bytes} of page-locked host memory (free with {@link #memFreeHost}). */
    public static MemorySegment memHostAlloc(long bytes) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuMemHostAlloc.invokeExact(v, bytes, 0), "cuMemHostAlloc(" + bytes + " bytes)");
            return v.get(ADDRESS, 0).reinterpret(bytes);
        } catch (Throwable t) {
            throw CudaException.downcall("cuMemHostAlloc", t);
        }
    }

    public static void memFreeHost(MemorySegment p) {
        try {
            check((int) cuMemFreeHost.invokeExact(p), "cuMemFreeHost");
        } catch (Throwable t) {
            throw CudaException.downcall("cuMemFreeHost", t);
        }
    }

    /** An event without timing (cheapest to record and wait for). */
    public static MemorySegment eventCreate() {
        return eventCreate(CU_EVENT_DISABLE_TIMING);
    }

    /** An event that records a timestamp, for {@link #eventElapsedMs}. */
    public static MemorySegment eventCreateTimed() {
        return eventCreate(0);
    }

    private static MemorySegment eventCreate(int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuEventCreate.invokeExact(v, flags), "cuEventCreate");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuEventCreate", t);
        }
    }

    /** Milliseconds of device time between two completed timed events (resolution about 0.5 µs). */
    public static float eventElapsedMs(MemorySegment start, MemorySegment end) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ms = a.allocate(JAVA_FLOAT);
            check((int) cuEventElapsedTime.invokeExact(ms, start, end), "cuEventElapsedTime");
            return ms.get(JAVA_FLOAT, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuEventElapsedTime", t);
        }
    }

    /** Marks the point the stream has reached: the event completes when the work queued before it has run. */
    public static void eventRecord(MemorySegment event, MemorySegment stream) {
        try {
            check((int) cuEventRecord.invokeExact(event, stream), "cuEventRecord");
        } catch (Throwable t) {
            throw CudaException.downcall("cuEventRecord", t);
        }
    }

    /** Waits until the event's work has run. */
    public static void eventSynchronize(MemorySegment event) {
        try {
            check((int) cuEventSynchronize.invokeExact(event), "cuEventSynchronize");
        } catch (Throwable t) {
            throw CudaException.downcall("cuEventSynchronize", t);
        }
    }

    public static void eventDestroy(MemorySegment event) {
        try {
            check((int) cuEventDestroy.invokeExact(event), "cuEventDestroy_v2");
        } catch (Throwable t) {
            throw CudaException.downcall("cuEventDestroy_v2", t);
        }
    }

    /** Sets {@code n} 32-bit words at {@code dst} (4-byte aligned) to {@code value}. */
    public static void memsetD32Async(long dst, int value, long n, MemorySegment stream) {
        try {
            check((int) cuMemsetD32Async.invokeExact(dst, value, n, stream), "cuMemsetD32Async(" + n + " words)");
        } catch (Throwable t) {
            throw CudaException.downcall("cuMemsetD32Async", t);
        }
    }

    /** Loads a cubin (or PTX) image; {@code image} must be a native segment. */
    public static MemorySegment moduleLoadData(MemorySegment image) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuModuleLoadData.invokeExact(v, image), "cuModuleLoadData");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuModuleLoadData", t);
        }
    }

    public static MemorySegment moduleGetFunction(MemorySegment module, String name) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuModuleGetFunction.invokeExact(v, module, a.allocateFrom(name)), "cuModuleGetFunction(" + name + ")");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuModuleGetFunction", t);
        }
    }

    /** The device address of the module's global variable {@code name} (a {@code __device__} variable of the source). */
    public static long moduleGetGlobal(MemorySegment module, String name) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ptr = a.allocate(JAVA_LONG), bytes = a.allocate(JAVA_LONG);
            check((int) cuModuleGetGlobal.invokeExact(ptr, bytes, module, a.allocateFrom(name)), "cuModuleGetGlobal_v2(" + name + ")");
            return ptr.get(JAVA_LONG, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuModuleGetGlobal_v2", t);
        }
    }

    /** Sets one attribute of a kernel function (e.g. its dynamic shared memory limit). */
    public static void funcSetAttribute(MemorySegment f, int attribute, int value, String name) {
        try {
            check((int) cuFuncSetAttribute.invokeExact(f, attribute, value), "cuFuncSetAttribute(" + name + ", " + attribute + ", " + value + ")");
        } catch (Throwable t) {
            throw CudaException.downcall("cuFuncSetAttribute", t);
        }
    }

    /** Launches {@code f}; {@code params} is the {@code void*[]} of pointers to each argument value. */
    public static void launchKernel(MemorySegment f, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ,
                                    int sharedMemBytes, MemorySegment stream, MemorySegment params, String name) {
        try {
            int r = (int) cuLaunchKernel.invokeExact(f, gridX, gridY, gridZ, blockX, blockY, blockZ, sharedMemBytes, stream, params,
                    MemorySegment.NULL);
            if (r != 0) {
                check(r, "cuLaunchKernel(" + name + ", grid " + gridX + "x" + gridY + "x" + gridZ + ", block " + blockX + "x" + blockY + "x" + blockZ
                        + ", smem " + sharedMemBytes + ")");
            }
        } catch (Throwable t) {
            throw CudaException.downcall("cuLaunchKernel", t);
        }
    }

    // ---- graphs ----------------------------------------------------------------------------------

    /** Starts capturing the work queued on {@code stream} into a graph instead of running it. */
    public static void streamBeginCapture(MemorySegment stream, int mode) {
        try {
            check((int) cuStreamBeginCapture.invokeExact(stream, mode), "cuStreamBeginCapture_v2");
        } catch (Throwable t) {
            throw CudaException.downcall("cuStreamBeginCapture_v2", t);
        }
    }

    /**
     * Ends the capture; returns the CUresult (CUDA_ERROR_STREAM_CAPTURE_INVALIDATED when an illegal
     * call broke it) and the graph in {@code graph[0]} (NULL on failure). Always call it after
     * {@link #streamBeginCapture}, or the stream stays in capture mode.
     */
    public static int streamEndCapture(MemorySegment stream, MemorySegment[] graph) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            int r = (int) cuStreamEndCapture.invokeExact(stream, v);
            graph[0] = v.get(ADDRESS, 0);
            return r;
        } catch (Throwable t) {
            throw CudaException.downcall("cuStreamEndCapture", t);
        }
    }

    public static MemorySegment graphInstantiate(MemorySegment graph) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuGraphInstantiateWithFlags.invokeExact(v, graph, 0L), "cuGraphInstantiateWithFlags");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuGraphInstantiateWithFlags", t);
        }
    }

    /** Number of nodes (kernels, copies, memsets) in a graph. */
    public static long graphNodeCount(MemorySegment graph) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment n = a.allocate(JAVA_LONG);
            check((int) cuGraphGetNodes.invokeExact(graph, MemorySegment.NULL, n), "cuGraphGetNodes");
            return n.get(JAVA_LONG, 0);
        } catch (Throwable t) {
            throw CudaException.downcall("cuGraphGetNodes", t);
        }
    }

    public static void graphLaunch(MemorySegment exec, MemorySegment stream) {
        try {
            check((int) cuGraphLaunch.invokeExact(exec, stream), "cuGraphLaunch");
        } catch (Throwable t) {
            throw CudaException.downcall("cuGraphLaunch", t);
        }
    }

    public static void graphExecDestroy(MemorySegment exec) {
        try {
            check((int) cuGraphExecDestroy.invokeExact(exec), "cuGraphExecDestroy");
        } catch (Throwable t) {
            throw CudaException.downcall("cuGraphExecDestroy", t);
        }
    }

    public static void graphDestroy(MemorySegment graph) {
        try {
            check((int) cuGraphDestroy.invokeExact(graph), "cuGraphDestroy");
        } catch (Throwable t) {
            throw CudaException.downcall("cuGraphDestroy", t);
        }
    }
}
