package dev.perceiver4j.backend.cpu;

import org.junit.jupiter.api.Test;

import java.util.concurrent.atomic.AtomicIntegerArray;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class CpuPoolTest {
    @Test
    void everyIndexRunsExactlyOnceForAnySplit() {
        for (int threads : new int[] {1, 2, 3, 5}) {
            try (CpuPool pool = CpuPool.create(threads)) {
                for (int n : new int[] {1, 2, 7, 100, 1001}) {
                    AtomicIntegerArray hits = new AtomicIntegerArray(n);
                    pool.parallelFor(n, (from, to) -> {
                        for (int i = from; i < to; i++) hits.incrementAndGet(i);
                    });
                    for (int i = 0; i < n; i++) assertThat(hits.get(i)).as("threads %d n %d index %d", threads, n, i).isEqualTo(1);
                }
            }
        }
    }

    @Test
    void nestedLoopsRunInlineAndFailuresPropagate() {
        try (CpuPool pool = CpuPool.create(3)) {
            AtomicIntegerArray hits = new AtomicIntegerArray(9);
            pool.parallelFor(3, (a, b) -> {
                for (int i = a; i < b; i++) {
                    int row = i;
                    pool.parallelFor(3, (c, d) -> {
                        for (int j = c; j < d; j++) hits.incrementAndGet(row * 3 + j);
                    });
                }
            });
            for (int i = 0; i < 9; i++) assertThat(hits.get(i)).isEqualTo(1);
            assertThatThrownBy(() -> pool.parallelFor(10, (a, b) -> {
                if (a > 0) throw new IllegalStateException("boom in chunk " + a);
            })).isInstanceOf(IllegalStateException.class).hasMessageContaining("boom");
        }
    }

    @Test
    void badThreadPropertyIsReported() {
        String old = System.getProperty("perceiver4j.threads");
        try {
            System.setProperty("perceiver4j.threads", "zero");
            assertThatThrownBy(CpuPool::defaultThreads).hasMessageContaining("perceiver4j.threads");
        } finally {
            if (old == null) System.clearProperty("perceiver4j.threads"); else System.setProperty("perceiver4j.threads", old);
        }
    }
}
