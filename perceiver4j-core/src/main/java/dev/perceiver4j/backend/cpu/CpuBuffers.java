package dev.perceiver4j.backend.cpu;

import dev.perceiver4j.tensor.DType;

import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;

/**
 * Pool of Java arrays keyed by element type and length. Step scopes hand their arrays back here
 * and the next step takes the same arrays again, so a training loop allocates nothing after its
 * first step.
 *
 * <p>The pool holds at most a quarter of the maximum heap: workloads whose shapes keep changing
 * (randomly truncated training crops, generation over a growing window) would otherwise fill the
 * heap with arrays of lengths that never come back. Arrays beyond the cap are left to the GC.
 */
final class CpuBuffers {
    private record Key(DType dtype, int length) {}

    private final Map<Key, ArrayDeque<Object>> free = new HashMap<>();
    private long pooledBytes;
    private final long maxPooledBytes = Runtime.getRuntime().maxMemory() / 4;

    synchronized Object take(DType dtype, int length) {
        ArrayDeque<Object> q = free.get(new Key(dtype, length));
        if (q != null && !q.isEmpty()) {
            pooledBytes -= (long) length * dtype.bytes();
            return q.pop();
        }
        return null;
    }

    synchronized void give(Object array) {
        DType dt = dtypeOf(array);
        int len = lengthOf(array);
        if (pooledBytes + (long) len * dt.bytes() > maxPooledBytes) return;   // over the cap: let the GC have it
        free.computeIfAbsent(new Key(dt, len), k -> new ArrayDeque<>()).push(array);
        pooledBytes += (long) len * dt.bytes();
    }

    synchronized long pooledBytes() {
        return pooledBytes;
    }

    static Object allocate(DType dtype, int length) {
        return switch (dtype) {
            case F32 -> new float[length];
            case BF16 -> new short[length];
            case I32 -> new int[length];
            case I64 -> new long[length];
            case BOOL -> new byte[length];
        };
    }

    static int lengthOf(Object array) {
        return switch (array) {
            case float[] a -> a.length;
            case short[] a -> a.length;
            case int[] a -> a.length;
            case long[] a -> a.length;
            case byte[] a -> a.length;
            default -> throw new IllegalArgumentException("not a CPU buffer: " + array.getClass());
        };
    }

    static DType dtypeOf(Object array) {
        return switch (array) {
            case float[] a -> DType.F32;
            case short[] a -> DType.BF16;
            case int[] a -> DType.I32;
            case long[] a -> DType.I64;
            case byte[] a -> DType.BOOL;
            default -> throw new IllegalArgumentException("not a CPU buffer: " + array.getClass());
        };
    }
}
