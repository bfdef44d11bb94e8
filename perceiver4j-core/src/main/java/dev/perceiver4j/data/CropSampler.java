package dev.perceiver4j.data;

import dev.perceiver4j.random.Philox;
import dev.perceiver4j.text.ByteTokenizer;
import java.util.Objects;

/**
 * Training crops and evaluation windows over one byte stream, as token ids of the byte tokenizer
 * (byte & 0xFF) + {@link ByteTokenizer#OFFSET}.
 *
 * <p>Crops are a pure function of (seed, step, row): crop {@code r} of step {@code s} starts at a
 * uniform offset in [0, length − cropLen], drawn from Philox4x32-10 with key = seed and counter =
 * (step, row, attempt) with rejection for exact uniformity. A run resumed at step {@code s} draws
 * exactly the crops it would have drawn, on any JVM. Give it the training stream only; the
 * validation stream gets its own sampler for {@link #evalWindows}.
 */
public final class CropSampler {
    private final byte[] stream;
    private final int cropLen;

    /**
     * @throws IllegalArgumentException naming both sizes if {@code cropLen < 2} or the stream is
     *     shorter than one crop
     */
    public CropSampler(byte[] stream, int cropLen) {
        Objects.requireNonNull(stream, "stream");
        if (cropLen < 2 || stream.length < cropLen) {
            throw new IllegalArgumentException("cannot take crops of " + cropLen + " bytes from a stream of "
                    + stream.length + " bytes: " + (cropLen < 2 ? "the crop length must be at least 2"
                            : "the stream is shorter than one crop"));
        }
        this.stream = stream;
        this.cropLen = cropLen;
    }

    /** {@code rows} crops of step {@code step}, row-major {@code [rows, cropLen]}, as token ids. */
    public int[] batch(long seed, long step, int rows) {
        if (rows < 1 || (long) rows * cropLen > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("rows must be in [1, " + (Integer.MAX_VALUE - 8) / cropLen
                    + "] for crops of " + cropLen + " bytes, got " + rows);
        }
        int[] ids = new int[rows * cropLen];
        for (int r = 0; r < rows; r++) {
            copyTokens((int) startOf(seed, step, r), ids, r * cropLen);
        }
        return ids;
    }

    /** The start offset of crop {@code row} of step {@code step}, uniform in [0, length − cropLen]. */
    public long startOf(long seed, long step, int row) {
        if (row < 0) {
            throw new IllegalArgumentException("row must be >= 0, got " + row);
        }
        long range = (long) stream.length - cropLen + 1; // >= 1
        // Lemire's multiply-shift with rejection: exactly uniform in [0, range)
        long threshold = Long.remainderUnsigned(-range, range);
        int[] out = new int[4];
        for (int attempt = 0; ; attempt++) {
            Philox.block((int) step, (int) (step >>> 32), row, attempt, (int) seed, (int) (seed >>> 32), out);
            long x = ((long) out[0] << 32) | (out[1] & 0xFFFFFFFFL);
            long low = x * range;
            if (Long.compareUnsigned(low, threshold) >= 0) {
                return Math.unsignedMultiplyHigh(x, range);
            }
        }
    }

    /**
     * Up to {@code maxWindows} non-overlapping windows of cropLen bytes spread evenly over the
     * stream, the first at 0 and (when there are two or more) the last ending at the stream's end;
     * row-major {@code [evalWindowCount(maxWindows), cropLen]} token ids. Deterministic.
     */
    public int[] evalWindows(int maxWindows) {
        int count = evalWindowCount(maxWindows);
        int[] ids = new int[Math.multiplyExact(count, cropLen)];
        for (int i = 0; i < count; i++) {
            copyTokens(evalStart(count, i), ids, i * cropLen);
        }
        return ids;
    }

    /** {@code min(maxWindows, length / cropLen)}, at least 1. */
    public int evalWindowCount(int maxWindows) {
        if (maxWindows < 1) {
            throw new IllegalArgumentException("maxWindows must be >= 1, got " + maxWindows);
        }
        return (int) Math.max(1, Math.min(maxWindows, stream.length / cropLen));
    }

    /** Start of window {@code i} of {@code count}: floor(i · (length − cropLen) / (count − 1)). */
    int evalStart(int count, int i) {
        return count == 1 ? 0 : (int) ((long) i * (stream.length - cropLen) / (count - 1));
    }

    private void copyTokens(int start, int[] ids, int at) {
        for (int j = 0; j < cropLen; j++) {
            ids[at + j] = (stream[start + j] & 0xFF) + ByteTokenizer.OFFSET;
        }
    }
}
