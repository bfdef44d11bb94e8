package dev.perceiver4j.io;

import java.util.Arrays;
import java.util.Objects;

/**
 * A tensor to write: name, stored dtype, shape and exactly one data array. F32 and BF16 take {@code f32}
 * (BF16 is rounded to nearest even when written), I64 takes {@code i64}, I32 takes {@code i32}.
 * Use the factories; arrays are not copied.
 */
public record NamedTensor(String name, StoredDType dtype, long[] shape, float[] f32, long[] i64, int[] i32) {

    public NamedTensor {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(dtype, "dtype");
        shape = shape.clone();
        if (name.isEmpty() || name.equals("__metadata__")) {
            throw new IllegalArgumentException("invalid tensor name '" + name + "'");
        }
        long n = new TensorInfo(name, dtype, shape).numel();
        long len = switch (dtype) {
            case F32, BF16 -> requireOnly(name, f32, i64, i32) ? f32.length : -1;
            case I64 -> requireOnly(name, i64, f32, i32) ? i64.length : -1;
            case I32 -> requireOnly(name, i32, f32, i64) ? i32.length : -1;
            default -> throw new IllegalArgumentException("tensor '" + name + "': writing " + dtype
                    + " is not supported (F32, BF16, I64, I32)");
        };
        if (len != n) {
            throw new IllegalArgumentException("tensor '" + name + "': shape " + Arrays.toString(shape) + " has "
                    + n + " elements but the data has " + len);
        }
    }

    private static boolean requireOnly(String name, Object data, Object other1, Object other2) {
        if (data == null || other1 != null || other2 != null) {
            throw new IllegalArgumentException("tensor '" + name + "': exactly the array matching the dtype must be set");
        }
        return true;
    }

    public static NamedTensor f32(String name, long[] shape, float[] data) {
        return new NamedTensor(name, StoredDType.F32, shape, data, null, null);
    }

    public static NamedTensor bf16(String name, long[] shape, float[] data) {
        return new NamedTensor(name, StoredDType.BF16, shape, data, null, null);
    }

    public static NamedTensor i64(String name, long[] shape, long[] data) {
        return new NamedTensor(name, StoredDType.I64, shape, null, data, null);
    }

    public static NamedTensor i32(String name, long[] shape, int[] data) {
        return new NamedTensor(name, StoredDType.I32, shape, null, null, data);
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    /** Element count. */
    public long numel() {
        return new TensorInfo(name, dtype, shape).numel();
    }

    long byteSize() {
        return numel() * dtype.byteSize();
    }
}
