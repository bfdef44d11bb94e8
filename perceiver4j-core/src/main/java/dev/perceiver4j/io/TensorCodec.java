package dev.perceiver4j.io;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** Little-endian element decoding shared by all readers. */
final class TensorCodec {
    static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Largest element count we put in one Java array. */
    static final long MAX_ARRAY = Integer.MAX_VALUE - 16;

    private TensorCodec() {}

    static int arrayLength(String where, TensorInfo info) throws CheckpointFormatException {
        long n = info.numel();
        if (n > MAX_ARRAY) {
            throw new CheckpointFormatException(where + ": tensor '" + info.name() + "' has " + n
                    + " elements, more than a Java array holds");
        }
        return (int) n;
    }

    static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xFFFF) << 16);
    }

    /** Round-to-nearest-even float32 → bfloat16 bits; NaN stays a (quiet) NaN. */
    static short floatToBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if (Float.isNaN(f)) {
            return (short) ((bits >>> 16) | 0x0040);
        }
        int rounded = bits + 0x7FFF + ((bits >>> 16) & 1);
        return (short) (rounded >>> 16);
    }

    /** Decodes {@code count} elements at byte offset {@code off} of {@code src} into {@code dst[dstOff..]}. */
    static void decodeFloats(MemorySegment src, long off, StoredDType t, float[] dst, int dstOff, int count) {
        switch (t) {
            case F32 -> MemorySegment.copy(src, F32, off, dst, dstOff, count);
            case F64 -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = (float) src.get(F64, off + 8L * i);
            }
            case F16 -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = Float.float16ToFloat(src.get(I16, off + 2L * i));
            }
            case BF16 -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = bf16ToFloat(src.get(I16, off + 2L * i));
            }
            case I64 -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = (float) src.get(I64, off + 8L * i);
            }
            case I32 -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = (float) src.get(I32, off + 4L * i);
            }
            case I16 -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = src.get(I16, off + 2L * i);
            }
            case I8 -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = src.get(ValueLayout.JAVA_BYTE, off + i);
            }
            case U8 -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = src.get(ValueLayout.JAVA_BYTE, off + i) & 0xFF;
            }
            case BOOL -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = src.get(ValueLayout.JAVA_BYTE, off + i) != 0 ? 1f : 0f;
            }
        }
    }

    /** Decodes integer/bool elements; the caller has rejected floating point types. */
    static void decodeLongs(MemorySegment src, long off, StoredDType t, long[] dst, int dstOff, int count) {
        switch (t) {
            case I64 -> MemorySegment.copy(src, I64, off, dst, dstOff, count);
            case I32 -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = src.get(I32, off + 4L * i);
            }
            case I16 -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = src.get(I16, off + 2L * i);
            }
            case I8 -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = src.get(ValueLayout.JAVA_BYTE, off + i);
            }
            case U8 -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = src.get(ValueLayout.JAVA_BYTE, off + i) & 0xFF;
            }
            case BOOL -> {
                for (int i = 0; i < count; i++) dst[dstOff + i] = src.get(ValueLayout.JAVA_BYTE, off + i) != 0 ? 1 : 0;
            }
            default -> throw new IllegalStateException("not an integer dtype: " + t);
        }
    }

    static void requireIntegral(String where, TensorInfo info) throws CheckpointFormatException {
        if (info.dtype().isFloatingPoint()) {
            throw new CheckpointFormatException(where + ": tensor '" + info.name() + "' is " + info.dtype()
                    + ", readLongs needs an integer or bool tensor (use readFloats)");
        }
    }
}
