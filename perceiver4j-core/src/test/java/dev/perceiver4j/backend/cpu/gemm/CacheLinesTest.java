package dev.perceiver4j.backend.cpu.gemm;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

class CacheLinesTest {

    /** The tests run with native access (the poms' argLine), so addresses are known here. */
    @Test
    void startLandsAtTheAskedOffsetWithinALine() {
        assertThat(CacheLines.available()).isTrue();
        for (int len : new int[] {17, 1000, 100_003}) {
            float[] a = new float[len];
            for (int offset = 0; offset < CacheLines.LINE; offset += 8) {
                int start = CacheLines.start(a, offset);
                long address = CacheLines.address(a); // the array has not moved in between unless a GC ran: ask again
                assertThat(start).isBetween(0, CacheLines.SLACK - 1);
                if (address == CacheLines.address(a)) {
                    assertThat(Math.floorMod(address + 4L * CacheLines.start(a, offset), (long) CacheLines.LINE))
                            .as("offset %d, length %d", offset, len).isEqualTo(offset);
                }
            }
        }
    }

    /** Two arrays alive at once have different addresses, at least 4 * length bytes apart: a real address. */
    @Test
    void addressesAreThoseOfTheElements() {
        float[] a = new float[1024], b = new float[1024];
        long pa = CacheLines.address(a), pb = CacheLines.address(b);
        assertThat(pa).isPositive();
        assertThat(pa % 4).isZero();
        assertThat(Math.abs(pa - pb)).isGreaterThanOrEqualTo(4096L);
    }
}
