package dev.perceiver4j.data;

import dev.perceiver4j.text.ByteTokenizer;

import java.util.SplittableRandom;

/**
 * Fixed-length crops of one byte stream as token ids ({@code byte + 6}).
 *
 * <p>Training crops are a pure function of (seed, step, row): a resumed run draws exactly the
 * crops the uninterrupted run would have. A sampler only ever sees one stream, so a training crop
 * can never reach into the validation text (and vice versa).
 */
public final class CropSampler {
    private final byte[] stream;
    private final int cropLen;

    public CropSampler(byte[] stream, int cropLen) {
        if (cropLen < 2) throw new IllegalArgumentException("crop length must be >= 2, got " + cropLen);
        if (stream.length < cropLen) {
            throw new IllegalArgumentException("a stream of " + stream.length + " bytes is shorter than one crop of " + cropLen + " bytes");
        }
        this.stream = stream;
        this.cropLen = cropLen;
    }

    public int cropLength() {
        return cropLen;
    }

    /** Start offset of crop {@code row} of training draw {@code step}: uniform in [0, length − cropLen]. */
    public long startOf(long seed, long step, int row) {
        long z = seed * 0x9E3779B97F4A7C15L + step * 0xD1B54A32D192ED03L + row;
        return new SplittableRandom(z).nextLong(stream.length - cropLen + 1L);
    }

    /** {@code rows} random crops, row-major [rows, cropLen]. */
    public int[] batch(long seed, long step, int rows) {
        int[] out = new int[rows * cropLen];
        for (int r = 0; r < rows; r++) copy((int) startOf(seed, step, r), out, r * cropLen);
        return out;
    }

    /** Number of evaluation windows: min(maxWindows, length / cropLen), at least 1. */
    public int evalWindowCount(int maxWindows) {
        if (maxWindows < 1) throw new IllegalArgumentException("maxWindows must be >= 1, got " + maxWindows);
        return Math.max(1, Math.min(maxWindows, stream.length / cropLen));
    }

    /** Deterministic, non-overlapping evaluation windows spread evenly over the stream (the first at 0): [count, cropLen]. */
    public int[] evalWindows(int maxWindows) {
        int count = evalWindowCount(maxWindows);
        int[] out = new int[count * cropLen];
        long span = stream.length - (long) count * cropLen;   // free bytes to spread between windows
        for (int w = 0; w < count; w++) {
            long start = (long) w * cropLen + (count == 1 ? 0 : span * w / (count - 1));
            copy((int) start, out, w * cropLen);
        }
        return out;
    }

    private void copy(int start, int[] out, int at) {
        for (int i = 0; i < cropLen; i++) out[at + i] = (stream[start + i] & 0xFF) + ByteTokenizer.OFFSET;
    }
}
