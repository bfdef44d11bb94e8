package dev.perceiver4j.cuda;

/**
 * What {@code Tensor.data()} holds on the CUDA backend: one device allocation (its address and
 * its size class in bytes). {@code Tensor.offset()} counts elements from {@link #address()}.
 * Identity matters (Scopes track buffers by identity), so this is a plain class, not a record.
 */
public final class DeviceBuffer {
    private final long address;
    private final long bytes;
    /** Bytes the current holder asked for (≤ bytes); shared with the allocator's Cleaner action, which must not see this object. */
    final long[] requested = new long[1];
    /**
     * A bf16 copy of this buffer's fp32 contents that the products read instead of rounding the
     * buffer on every call (CudaBackend, "bf16 copies of persistent operands"), kept equal to them by
     * the backend after every write; null when there is none. Freed with this buffer.
     */
    DeviceBuffer mirror;
    /**
     * Zeros asked for and not yet written (CudaBackend.zeros): the first op that writes the whole
     * buffer writes instead of adding and so skips the memset; any other use zeroes it first.
     */
    boolean zeroPending;

    DeviceBuffer(long address, long bytes) {
        this.address = address;
        this.bytes = bytes;
    }

    /** Device address of the first byte. */
    public long address() {
        return address;
    }

    /** Capacity in bytes (the allocator's size class, at least what was asked for). */
    public long bytes() {
        return bytes;
    }

    @Override
    public String toString() {
        return "DeviceBuffer(0x" + Long.toHexString(address) + ", " + bytes + " bytes)";
    }
}
