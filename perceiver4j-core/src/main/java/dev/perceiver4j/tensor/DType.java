package dev.perceiver4j.tensor;

/** Element types a tensor can hold. */
public enum DType {
    F32(4),
    BF16(2),
    I32(4),
    I64(8),
    BOOL(1);

    private final int bytes;

    DType(int bytes) {
        this.bytes = bytes;
    }

    /** Size of one element in bytes. */
    public int bytes() {
        return bytes;
    }

    public boolean isFloating() {
        return this == F32 || this == BF16;
    }
}
