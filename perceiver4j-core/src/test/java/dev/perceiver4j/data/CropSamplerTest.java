package dev.perceiver4j.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.perceiver4j.text.ByteTokenizer;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** Crops: a pure function of (seed, step, row), exact sub-arrays of the stream; evaluation windows. */
class CropSamplerTest {
    private static byte[] stream(int n) {
        byte[] b = new byte[n];
        new Random(11).nextBytes(b);
        return b;
    }

    private static int[] tokens(byte[] s, long start, int len) {
        int[] ids = new int[len];
        for (int j = 0; j < len; j++) {
            ids[j] = (s[(int) start + j] & 0xFF) + ByteTokenizer.OFFSET;
        }
        return ids;
    }

    @Test
    void cropsAreExactSubArraysAtTheirStarts() {
        byte[] s = stream(5000);
        CropSampler sampler = new CropSampler(s, 64);
        for (long step = 0; step < 50; step++) {
            int[] batch = sampler.batch(123, step, 8);
            assertThat(batch).hasSize(8 * 64);
            for (int r = 0; r < 8; r++) {
                long start = sampler.startOf(123, step, r);
                assertThat(start).isBetween(0L, 5000L - 64);
                assertThat(Arrays.copyOfRange(batch, r * 64, (r + 1) * 64)).isEqualTo(tokens(s, start, 64));
            }
        }
        for (int id : sampler.batch(1, 1, 4)) {
            assertThat(id).isBetween(ByteTokenizer.OFFSET, ByteTokenizer.VOCAB - 1);
        }
    }

    @Test
    void isAPureFunctionOfSeedStepAndRow() {
        byte[] s = stream(100_000);
        CropSampler a = new CropSampler(s, 128), b = new CropSampler(s.clone(), 128);
        assertThat(a.batch(7, 1000, 16)).isEqualTo(b.batch(7, 1000, 16));
        // a resumed run (fresh sampler, same step) draws the same crops; row r does not depend on the batch size
        assertThat(a.startOf(7, 1000, 3)).isEqualTo(b.startOf(7, 1000, 3));
        assertThat(Arrays.copyOfRange(a.batch(7, 1000, 4), 3 * 128, 4 * 128))
                .isEqualTo(Arrays.copyOfRange(b.batch(7, 1000, 16), 3 * 128, 4 * 128));
        assertThat(a.batch(7, 1001, 16)).isNotEqualTo(a.batch(7, 1000, 16));
        assertThat(a.batch(8, 1000, 16)).isNotEqualTo(a.batch(7, 1000, 16));
        assertThat(a.startOf(7, 1000, 0)).isNotEqualTo(a.startOf(7, 1000, 1));
        // pinned: Philox4x32-10 with rejection; a change here changes every resumed run
        assertThat(new long[] {a.startOf(0, 0, 0), a.startOf(1234, 5, 6), a.startOf(-1, Long.MAX_VALUE, 99)})
                .containsExactly(PINNED);
    }

    static final long[] PINNED = {39853, 36419, 91486};

    @Test
    void startsCoverTheRangeUniformly() {
        byte[] s = stream(20);
        CropSampler sampler = new CropSampler(s, 16); // starts 0..4
        int[] counts = new int[5];
        for (int step = 0; step < 5000; step++) {
            counts[(int) sampler.startOf(99, step, 0)]++;
        }
        for (int c : counts) {
            assertThat(c).isBetween(850, 1150);
        }
        CropSampler exact = new CropSampler(stream(16), 16); // one possible crop
        assertThat(exact.startOf(1, 2, 3)).isZero();
        // large streams: starts spread over the whole range
        CropSampler big = new CropSampler(stream(1 << 20), 2);
        Set<Long> starts = new HashSet<>();
        long max = 0;
        for (int step = 0; step < 1000; step++) {
            long st = big.startOf(5, step, 0);
            starts.add(st);
            max = Math.max(max, st);
        }
        assertThat(starts.size()).isGreaterThan(990);
        assertThat(max).isGreaterThan((1 << 20) * 9L / 10);
    }

    @Test
    void evalWindowsAreNonOverlappingSpreadAndInRange() {
        byte[] s = stream(10_000);
        CropSampler sampler = new CropSampler(s, 300);
        assertThat(sampler.evalWindowCount(8)).isEqualTo(8);
        assertThat(sampler.evalWindowCount(1000)).isEqualTo(10_000 / 300);
        for (int max : new int[] {1, 2, 7, 33, 34, 1000}) {
            int count = sampler.evalWindowCount(max);
            int[] windows = sampler.evalWindows(max);
            assertThat(windows).hasSize(count * 300);
            int previousEnd = 0;
            for (int i = 0; i < count; i++) {
                int start = sampler.evalStart(count, i);
                assertThat(start).isGreaterThanOrEqualTo(previousEnd).isLessThanOrEqualTo(10_000 - 300);
                assertThat(Arrays.copyOfRange(windows, i * 300, (i + 1) * 300)).isEqualTo(tokens(s, start, 300));
                previousEnd = start + 300;
            }
            assertThat(sampler.evalStart(count, 0)).isZero();
            if (count > 1) {
                assertThat(previousEnd).isEqualTo(10_000); // the last window ends at the end
            }
        }
        // an exact multiple tiles the stream
        CropSampler tiles = new CropSampler(stream(900), 300);
        assertThat(tiles.evalWindows(10)).isEqualTo(tokens(stream(900), 0, 900));
        // shorter than two windows: one window at 0
        CropSampler one = new CropSampler(stream(500), 300);
        assertThat(one.evalWindowCount(64)).isEqualTo(1);
        assertThat(one.evalWindows(64)).isEqualTo(tokens(stream(500), 0, 300));
        assertThat(sampler.evalWindows(5)).isEqualTo(new CropSampler(s, 300).evalWindows(5));
    }

    @Test
    void rejectsStreamsShorterThanACropAndBadArguments() {
        assertThatThrownBy(() -> new CropSampler(new byte[10], 11))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("11 bytes")
                .hasMessageContaining("10 bytes");
        assertThatThrownBy(() -> new CropSampler(new byte[10], 1))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("1 bytes")
                .hasMessageContaining("10 bytes")
                .hasMessageContaining("at least 2");
        assertThatThrownBy(() -> new CropSampler(new byte[0], 0)).isInstanceOf(IllegalArgumentException.class);
        CropSampler s = new CropSampler(new byte[10], 4);
        assertThatThrownBy(() -> s.batch(0, 0, 0)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> s.startOf(0, 0, -1)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> s.evalWindows(0)).isInstanceOf(IllegalArgumentException.class);
    }
}
