package dev.perceiver4j.cuda.ffm;

/**
 * A CUDA driver, NVRTC or cuBLASLt call that failed (the message names the call and the error,
 * e.g. {@code "cuMemAlloc_v2(1073741824 bytes) failed: CUDA_ERROR_OUT_OF_MEMORY (2)"}), or a
 * library that could not be found (the message names it and every place that was tried).
 */
public final class CudaException extends RuntimeException {
    private final int code;

    public CudaException(String message) {
        this(message, 0, null);
    }

    public CudaException(String message, int code, Throwable cause) {
        super(message, cause);
        this.code = code;
    }

    /** The status code the call returned (0 when the error is not a status code). */
    public int code() {
        return code;
    }

    /** Wraps a Throwable from {@code MethodHandle.invokeExact} (which should not happen). */
    static CudaException downcall(String call, Throwable t) {
        if (t instanceof CudaException c) return c;
        if (t instanceof Error e) throw e;
        return new CudaException(call + ": native call failed: " + t, 0, t);
    }
}
