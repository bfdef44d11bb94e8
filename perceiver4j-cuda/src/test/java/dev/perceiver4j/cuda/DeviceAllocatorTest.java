package dev.perceiver4j.cuda;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

/** The size classes (pure arithmetic; runs without a GPU). */
class DeviceAllocatorTest {

    @Test
    void sizeClassesAre512BytesThenEightPerPowerOfTwoThen2MiB() {
        assertThat(DeviceAllocator.sizeClass(1)).isEqualTo(512);
        assertThat(DeviceAllocator.sizeClass(512)).isEqualTo(512);
        assertThat(DeviceAllocator.sizeClass(513)).isEqualTo(1024);
        assertThat(DeviceAllocator.sizeClass(4096)).isEqualTo(4096);
        assertThat(DeviceAllocator.sizeClass(4097)).isEqualTo(4608);
        assertThat(DeviceAllocator.sizeClass(16L * 256 * 1280 * 4)).isEqualTo(16L * 256 * 1280 * 4);
        assertThat(DeviceAllocator.sizeClass(1L << 30)).isEqualTo(1L << 30);
        assertThat(DeviceAllocator.sizeClass(64L << 20)).isEqualTo(64L << 20);
        assertThat(DeviceAllocator.sizeClass((64L << 20) + 1)).isEqualTo(66L << 20);   // beyond 64 MiB: multiples of 2 MiB
        assertThat(DeviceAllocator.sizeClass((1L << 30) + 1)).isEqualTo((1L << 30) + (2L << 20));
        assertThat(DeviceAllocator.sizeClass(201_108_230L * 4)).isEqualTo(768L << 20);   // language-perceiver's parameter slab: 767.2 MiB
        for (long b = 1; b < 1L << 34; b = b * 3 + 7) {
            long c = DeviceAllocator.sizeClass(b);
            assertThat(c).isGreaterThanOrEqualTo(b).isLessThanOrEqualTo(Math.max(512, b + (b > 64L << 20 ? 2L << 20 : b / 8 + 512)));
            assertThat(c % 512).isZero();
            assertThat(DeviceAllocator.sizeClass(c)).isEqualTo(c); // a class is its own class
        }
    }
}
