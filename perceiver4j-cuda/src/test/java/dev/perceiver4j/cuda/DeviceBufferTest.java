package dev.perceiver4j.cuda;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The pending-zero ranges of a buffer (host bookkeeping only; runs without a GPU: the address is never used). */
class DeviceBufferTest {

    @Test
    void marksMergeAndTakingSplitsWidenedToWords() {
        DeviceBuffer b = new DeviceBuffer(0, 1024);
        assertThat(b.zeroPending()).isFalse();
        b.markZero(0, 64);
        b.markZero(128, 256);
        b.markZero(64, 128);   // touches both: one range
        assertThat(b.zeroWithin(0, 256)).isTrue();
        assertThat(b.zeroWithin(0, 260)).isFalse();
        assertThat(b.zeroWithin(2, 8)).isFalse();   // not whole words: never written in place of zeros
        // a bf16 view [6, 10) bytes takes the words around it, [4, 12)
        assertThat(b.takeZeros(6, 10)).containsExactly(4, 12);
        assertThat(b.zeroWithin(0, 4)).isTrue();
        assertThat(b.zeroWithin(12, 256)).isTrue();
        assertThat(b.zeroWithin(0, 16)).isFalse();
        // a range over a gap and beyond the marks takes only what is pending
        assertThat(b.takeZeros(0, 512)).containsExactly(0, 4, 12, 256);
        assertThat(b.zeroPending()).isFalse();
        assertThat(b.takeZeros(0, 1024)).isEmpty();
    }

    @Test
    void takingEverythingEmptiesAndBadMarksAreRejected() {
        DeviceBuffer b = new DeviceBuffer(0, 512);
        b.markZero(8, 16);
        b.markZero(100, 200);
        assertThat(b.takeAllZeros()).containsExactly(8, 16, 100, 200);
        assertThat(b.zeroPending()).isFalse();
        b.markZero(0, 512);
        b.dropZeros();
        assertThat(b.zeroPending()).isFalse();
        assertThatThrownBy(() -> b.markZero(2, 8)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("[2, 8)");
        assertThatThrownBy(() -> b.markZero(0, 516)).isInstanceOf(IllegalArgumentException.class);
    }

    /** Random marks and takes against a byte map: taken bytes were pending and are no longer, the rest unchanged. */
    @Test
    void randomMarksAndTakesMatchAByteMap() {
        SplittableRandom rnd = new SplittableRandom(5);
        for (int round = 0; round < 200; round++) {
            int size = 4 * rnd.nextInt(1, 64);
            DeviceBuffer b = new DeviceBuffer(0, size);
            boolean[] pending = new boolean[size];
            for (int op = 0; op < 30; op++) {
                int s = rnd.nextInt(size), e = rnd.nextInt(s, size + 1);
                if (rnd.nextBoolean()) {
                    int s4 = s & ~3, e4 = (e + 3) & ~3;
                    b.markZero(s4, e4);
                    for (int i = s4; i < e4; i++) pending[i] = true;
                } else {
                    boolean within = e > s && s % 4 == 0 && e % 4 == 0;
                    for (int i = s; i < e && within; i++) within = pending[i];
                    assertThat(b.zeroWithin(s, e)).isEqualTo(within);
                    long[] taken = b.takeZeros(s, e);
                    boolean[] want = new boolean[size];
                    for (int i = s & ~3; i < Math.min(size, (e + 3) & ~3) && e > s; i++) want[i] = pending[i];
                    boolean[] got = new boolean[size];
                    for (int t = 0; t < taken.length; t += 2) {
                        assertThat(taken[t] % 4).isZero();
                        assertThat(taken[t + 1] % 4).isZero();
                        for (long i = taken[t]; i < taken[t + 1]; i++) got[(int) i] = true;
                    }
                    assertThat(got).isEqualTo(want);
                    for (int i = 0; i < size; i++) if (want[i]) pending[i] = false;
                }
                boolean any = false;
                for (boolean p : pending) any |= p;
                assertThat(b.zeroPending()).isEqualTo(any);
            }
        }
    }
}
