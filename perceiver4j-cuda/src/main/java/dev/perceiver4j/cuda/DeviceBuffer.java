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
     * Zeros asked for and not yet written (CudaBackend.zeros, a fill with 0), as byte ranges [start, end):
     * sorted, disjoint, their ends multiples of 4 (so each is one 32-bit memset); null when there are
     * none. The first op that writes a tensor lying inside one writes instead of adding and so skips the
     * memset; any other use zeroes the part of the ranges it touches first (CudaBackend.ptr).
     */
    private java.util.TreeMap<Long, Long> zeroRanges;

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

    /** Whether any zeros are pending. */
    boolean zeroPending() {
        return zeroRanges != null;
    }

    /** Marks [start, end) as pending zeros (both multiples of 4), merged with the ranges it touches. */
    void markZero(long start, long end) {
        if (start % 4 != 0 || end % 4 != 0 || start < 0 || end > bytes) {
            throw new IllegalArgumentException("pending zeros [" + start + ", " + end + ") in " + this);
        }
        if (end <= start) return;
        if (zeroRanges == null) zeroRanges = new java.util.TreeMap<>();
        var before = zeroRanges.floorEntry(start);
        if (before != null && before.getValue() >= start) {
            start = before.getKey();
            end = Math.max(end, before.getValue());
        }
        for (var e = zeroRanges.ceilingEntry(start); e != null && e.getKey() <= end; e = zeroRanges.ceilingEntry(start)) {
            end = Math.max(end, e.getValue());
            zeroRanges.remove(e.getKey());
        }
        zeroRanges.put(start, end);
    }

    /** Whether [start, end) (non-empty, ends multiples of 4) lies inside one pending range. */
    boolean zeroWithin(long start, long end) {
        if (zeroRanges == null || end <= start || start % 4 != 0 || end % 4 != 0) return false;
        var e = zeroRanges.floorEntry(start);
        return e != null && e.getValue() >= end;
    }

    /**
     * Takes out of the pending ranges their overlap with [start, end), widened to multiples of 4 inside
     * them, and returns it as {start0, end0, start1, end1, ...}: what the caller must zero now.
     */
    long[] takeZeros(long start, long end) {
        if (zeroRanges == null || end <= start) return new long[0];
        long from = start & ~3L, to = (end + 3) & ~3L;
        var first = zeroRanges.floorKey(from);
        var touched = new java.util.ArrayList<>(zeroRanges.subMap(first != null ? first : from, true, to, false).entrySet());
        long[] taken = new long[2 * touched.size()];
        int n = 0;
        for (var e : touched) {
            long a = e.getKey(), b = e.getValue(), lo = Math.max(a, from), hi = Math.min(b, to);
            if (lo >= hi) continue;
            zeroRanges.remove(a);
            if (a < lo) zeroRanges.put(a, lo);
            if (hi < b) zeroRanges.put(hi, b);
            taken[n++] = lo;
            taken[n++] = hi;
        }
        if (zeroRanges.isEmpty()) zeroRanges = null;
        return java.util.Arrays.copyOf(taken, n);
    }

    /** Every pending range, taken (as {@link #takeZeros}). */
    long[] takeAllZeros() {
        return takeZeros(0, bytes);
    }

    /** Forgets the pending zeros (the buffer goes back to the allocator). */
    void dropZeros() {
        zeroRanges = null;
    }

    @Override
    public String toString() {
        return "DeviceBuffer(0x" + Long.toHexString(address) + ", " + bytes + " bytes)";
    }
}
