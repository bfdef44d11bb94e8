package dev.perceiver4j.cuda;

import dev.perceiver4j.cuda.ffm.Driver;
import dev.perceiver4j.cuda.ffm.NativeLibraries;

import java.lang.foreign.MemorySegment;

/**
 * Device 0's primary context and the one stream every perceiver4j kernel, copy and cuBLASLt call
 * is queued on (so work is ordered without events). The stream is a blocking stream: it orders
 * with the legacy default stream that the synchronous host copies use.
 *
 * <p>The CUDA context is current per thread; {@link #makeCurrent()} binds it to the calling thread
 * on first use there (cheap afterwards).
 */
public final class CudaContext {
    private final int ordinal;
    private final int device;
    private final MemorySegment context;
    private final MemorySegment stream;
    private final String name;
    private final int ccMajor, ccMinor, multiprocessors;
    private final int driverVersion;
    private final ThreadLocal<Boolean> current = ThreadLocal.withInitial(() -> false);

    private CudaContext(int ordinal) {
        NativeLibraries.driver(); // a clear CudaException when libcuda is missing, before Driver's bindings load
        Driver.init();
        int count = Driver.deviceCount();
        if (ordinal >= count) {
            throw new dev.perceiver4j.cuda.ffm.CudaException("CUDA device " + ordinal + " requested but the driver sees " + count + " device(s)");
        }
        this.ordinal = ordinal;
        this.device = Driver.deviceGet(ordinal);
        this.context = Driver.primaryCtxRetain(device);
        Driver.ctxSetCurrent(context);
        current.set(true);
        this.stream = Driver.streamCreate(Driver.CU_STREAM_DEFAULT);
        this.name = Driver.deviceName(device);
        this.ccMajor = Driver.deviceAttribute(Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device);
        this.ccMinor = Driver.deviceAttribute(Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device);
        this.multiprocessors = Driver.deviceAttribute(Driver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device);
        this.driverVersion = Driver.driverVersion();
    }

    /**
     * Initialises the driver and device {@code ordinal}'s primary context.
     *
     * @throws dev.perceiver4j.cuda.ffm.CudaException when libcuda is missing, no device is visible, or the driver fails
     */
    public static CudaContext create(int ordinal) {
        return new CudaContext(ordinal);
    }

    /** Binds the context to the calling thread (once per thread). */
    public void makeCurrent() {
        if (!current.get()) {
            Driver.ctxSetCurrent(context);
            current.set(true);
        }
    }

    /** Waits for all work queued on the stream; errors of earlier kernels surface here. */
    public void synchronize() {
        makeCurrent();
        Driver.streamSynchronize(stream);
    }

    public MemorySegment stream() {
        return stream;
    }

    public int ordinal() {
        return ordinal;
    }

    public String deviceName() {
        return name;
    }

    /** e.g. 90 for compute capability 9.0 (H100). */
    public int computeCapability() {
        return ccMajor * 10 + ccMinor;
    }

    public int multiprocessors() {
        return multiprocessors;
    }

    /** e.g. 13000 for CUDA 13.0. */
    public int driverVersion() {
        return driverVersion;
    }

    /** {free, total} device memory in bytes. */
    public long[] memoryInfo() {
        makeCurrent();
        return Driver.memGetInfo();
    }

    @Override
    public String toString() {
        long[] m = memoryInfo();
        return String.format("%s (sm_%d, %d SMs, %.1f of %.1f GiB free, driver CUDA %d.%d)", name, computeCapability(), multiprocessors,
                m[0] / 1073741824.0, m[1] / 1073741824.0, driverVersion / 1000, driverVersion % 1000 / 10);
    }
}
