package dev.perceiver4j.backend.cpu.gemm;

import dev.perceiver4j.backend.cpu.CpuPool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class JavaSgemmTest {

    @ParameterizedTest(name = "{0} threads")
    @ValueSource(ints = {1, 2, 3})
    void matchesNaiveOnAllLayouts(int threads) {
        try (CpuPool pool = CpuPool.create(threads)) {
            int checked = SgemmChecks.compareAll(new JavaSgemm(pool), 42 + threads);
            assertThat(checked).isEqualTo(SgemmChecks.SHAPES.length * 4 * 3);
        }
    }

    @ParameterizedTest(name = "{0} threads")
    @ValueSource(ints = {1, 2, 3})
    void crossesEveryBlockBoundary(int threads) {
        // Larger than MC, KC and NC in every dimension, with tails, so that several K panels
        // accumulate, several N panels and M blocks are visited and the thread split is uneven.
        int m = JavaSgemm.MC + 2 * JavaSgemm.MR + 1;
        int k = 2 * JavaSgemm.KC + 3;
        int n = JavaSgemm.NC + JavaSgemm.NR + 5;
        SplittableRandom rnd = new SplittableRandom(7);
        try (CpuPool pool = CpuPool.create(threads)) {
            Sgemm g = new JavaSgemm(pool);
            SgemmChecks.compare(g, false, false, m, n, k, 1f, 0f, 1, rnd);
            SgemmChecks.compare(g, true, true, m, n, k, 0.5f, 0.5f, 0, rnd);
            SgemmChecks.compare(g, false, true, n, m, k, 1f, 1f, 2, rnd);
        }
    }

    @Test
    void reusesWorkspacesAcrossCallsOfDifferentSizes() {
        try (CpuPool pool = CpuPool.create(2)) {
            Sgemm g = new JavaSgemm(pool);
            SplittableRandom rnd = new SplittableRandom(3);
            SgemmChecks.compare(g, false, false, 300, 300, 300, 1f, 0f, 0, rnd);
            SgemmChecks.compare(g, false, false, 9, 11, 13, 1f, 0f, 0, rnd);
            SgemmChecks.compare(g, true, false, 300, 300, 300, 1f, 0f, 0, rnd);
        }
    }

    @Test
    void zeroSizesAndTrivialCases() {
        try (CpuPool pool = CpuPool.create(2)) {
            Sgemm g = new JavaSgemm(pool);
            float[] c = {Float.NaN, 2f, 3f, 4f};
            // k == 0: C = beta * C; beta == 0 overwrites the NaN.
            g.sgemm(false, false, 2, 2, 0, 1f, new float[0], 0, 0, new float[0], 0, 2, 0f, c, 0, 2);
            assertThat(c).containsExactly(0f, 0f, 0f, 0f);
            float[] d = {1f, 2f};
            g.sgemm(false, false, 1, 2, 0, 1f, new float[0], 0, 0, new float[0], 0, 2, 2f, d, 0, 2);
            assertThat(d).containsExactly(2f, 4f);
            // m == 0 / n == 0: nothing is touched.
            g.sgemm(false, false, 0, 2, 3, 1f, new float[0], 0, 3, new float[6], 0, 2, 0f, d, 0, 2);
            assertThat(d).containsExactly(2f, 4f);
        }
    }

    @Test
    void rejectsBadArguments() {
        try (CpuPool pool = CpuPool.create(1)) {
            Sgemm g = new JavaSgemm(pool);
            float[] x = new float[100];
            assertThatThrownBy(() -> g.sgemm(false, false, -1, 2, 2, 1f, x, 0, 2, x, 0, 2, 0f, x, 0, 2))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("m must be >= 0");
            assertThatThrownBy(() -> g.sgemm(false, false, 2, 2, -3, 1f, x, 0, 2, x, 0, 2, 0f, x, 0, 2))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("k must be >= 0");
            assertThatThrownBy(() -> g.sgemm(false, false, 2, 3, 4, 1f, x, 0, 3, x, 0, 3, 0f, x, 0, 3))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("lda (3) must be >= k (4)");
            assertThatThrownBy(() -> g.sgemm(true, false, 5, 3, 4, 1f, x, 0, 4, x, 0, 3, 0f, x, 0, 3))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("lda (4) must be >= m (5)");
            assertThatThrownBy(() -> g.sgemm(false, true, 2, 3, 4, 1f, x, 0, 4, x, 0, 3, 0f, x, 0, 3))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("ldb (3) must be >= k (4)");
            assertThatThrownBy(() -> g.sgemm(false, false, 2, 3, 4, 1f, x, 0, 4, x, 0, 3, 0f, x, 0, 2))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("ldc (2) must be >= n (3)");
            assertThatThrownBy(() -> g.sgemm(false, false, 10, 10, 10, 1f, x, 1, 10, x, 0, 10, 0f, x, 0, 10))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("A needs 101 floats");
            assertThatThrownBy(() -> g.sgemm(false, false, 2, 2, 2, 1f, x, 0, 2, x, -1, 2, 0f, x, 0, 2))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("offset of B");
            assertThatThrownBy(() -> g.sgemm(false, false, 10, 10, 10, 1f, x, 0, 10, x, 0, 10, 0f, new float[99], 0, 10))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("C needs 100 floats");
        }
    }

    @Test
    void nameMentionsThreads() {
        try (CpuPool pool = CpuPool.create(2)) {
            assertThat(new JavaSgemm(pool).name()).startsWith("java-vector(2 threads");
        }
    }
}
