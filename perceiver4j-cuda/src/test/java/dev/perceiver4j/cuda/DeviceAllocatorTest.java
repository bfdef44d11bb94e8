package dev.perceiver4j.cuda;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

/** The size classes (pure arithmetic; runs without a GPU). */
class DeviceAllocatorTest {

    @Test
    void sizeClassesAre512BytesThenEightPerPowerOfTwo() {
        assertThat(DeviceAllocator.sizeClass(1)).isEqualTo(512);
        assertThat(DeviceAllocator.sizeClass(512)).isEqualTo(512);
        assertThat(DeviceAllocator.sizeClass(513)).isEqualTo(1024);
        assertThat(DeviceAllocator.sizeClass(4096)).isEqualTo(4096);
        assertThat(DeviceAllocator.sizeClass(4097)).isEqualTo(4608);
        assertThat(DeviceAllocator.sizeClass(16L * 256 * 1280 * 4)).isEqualTo(16L * 256 * 1280 * 4);
        assertThat(DeviceAllocator.sizeClass(1L << 30)).isEqualTo(1L << 30);
        assertThat(DeviceAllocator.sizeClass((1L << 30) + 1)).isEqualTo((1L << 30) + (1L << 27));
        for (long b = 1; b < 1L << 34; b = b * 3 + 7) {
            long c = DeviceAllocator.sizeClass(b);
            assertThat(c).isGreaterThanOrEqualTo(b).isLessThanOrEqualTo(Math.max(512, b + b / 8 + 512));
            assertThat(c % 512).isZero();
            assertThat(DeviceAllocator.sizeClass(c)).isEqualTo(c); // a class is its own class
        }
    }
}
