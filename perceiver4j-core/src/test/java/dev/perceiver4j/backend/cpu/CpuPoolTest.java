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
    void claimedPiecesCoverEveryIndexExactlyOnce() {
        for (int threads : new int[] {1, 2, 3, 5}) {
            try (CpuPool pool = CpuPool.create(threads)) {
                for (int n : new int[] {1, 2, 7, 100, 1001}) {
                    for (int piece : new int[] {1, 3, 64, 5000}) {
                        AtomicIntegerArray hits = new AtomicIntegerArray(n);
                        pool.parallelForClaimed(n, piece, (from, to) -> {
                            assertThat(to - from).isBetween(1, piece);
                            for (int i = from; i < to; i++) hits.incrementAndGet(i);
                        });
                        for (int i = 0; i < n; i++) {
                            assertThat(hits.get(i)).as("threads %d n %d piece %d index %d", threads, n, piece, i).isEqualTo(1);
                        }
                    }
                }
            }
        }
    }

    @Test
    void claimedPiecesGoToWhicheverThreadIsFree() {
        // one piece blocks until all the others are done: with fixed shares its thread's share
        // would never finish; claimed, the other threads take every remaining piece
        try (CpuPool pool = CpuPool.create(3)) {
            java.util.concurrent.CountDownLatch others = new java.util.concurrent.CountDownLatch(29);
            AtomicIntegerArray hits = new AtomicIntegerArray(30);
            pool.parallelForClaimed(30, 1, (from, to) -> {
                hits.incrementAndGet(from);
                if (from == 0) {
                    try {
                        assertThat(others.await(20, java.util.concurrent.TimeUnit.SECONDS)).as("the other pieces ran meanwhile").isTrue();
                    } catch (InterruptedException e) {
                        throw new AssertionError(e);
                    }
                } else {
                    others.countDown();
                }
            });
            for (int i = 0; i < 30; i++) assertThat(hits.get(i)).isEqualTo(1);
            assertThatThrownBy(() -> pool.parallelForClaimed(10, 0, (a, b) -> { }))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("piece");
            assertThatThrownBy(() -> pool.parallelForClaimed(50, 2, (a, b) -> {
                if (a == 20) throw new IllegalStateException("boom in piece " + a);
            })).isInstanceOf(IllegalStateException.class).hasMessageContaining("boom");
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
