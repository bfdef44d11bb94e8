package dev.perceiver4j.backend;

import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/** The profiling decorator: same results as the backend it wraps, every op counted by shape. */
class ProfilingBackendTest {

    private static float[] random(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) r.nextGaussian();
        return v;
    }

    /** x·wᵀ + b, then GELU, then + x: on the plain backend and through the profiler. */
    private static float[] run(Backend be) {
        Tensor x = be.fromFloats(random(6 * 8, 1), Shape.of(6, 8));
        Tensor w = be.fromFloats(random(8 * 8, 2), Shape.of(8, 8));
        Tensor b = be.fromFloats(random(8, 3), Shape.of(8));
        Tensor pre = be.empty(Shape.of(6, 8), DType.F32), y = be.empty(Shape.of(6, 8), DType.F32);
        be.matmul(x, false, w, true, b, Activation.GELU, y, pre);
        be.add(y, x, y);
        be.add(y, x, y);
        return be.toFloatArray(y);
    }

    @Test
    void givesTheWrappedBackendsResultsAndCountsEachOpByShape() {
        Backend cpu = CpuBackend.create();
        ProfilingBackend prof = new ProfilingBackend(cpu);
        assertThat(run(prof)).containsExactly(run(cpu));

        Tensor t = prof.zeros(Shape.of(3), DType.F32);
        assertThat(t.backend()).as("tensors it creates route their ops through it").isSameAs(prof);

        String report = prof.report(1);
        assertThat(report).contains("matmul 6x8x8 tB +bias GELU").contains("add [6, 8] [6, 8]");
        String addLine = report.lines().filter(l -> l.startsWith("add [6, 8] [6, 8]")).findFirst().orElseThrow();
        assertThat(addLine.trim().split("\\s+")[5]).as("calls column of " + addLine).isEqualTo("2");
        String matmulLine = report.lines().filter(l -> l.startsWith("matmul 6x8x8")).findFirst().orElseThrow();
        assertThat(matmulLine).as("a matrix product reports its rate").matches(".*\\d+\\.\\d\\s*$");

        prof.reset();
        assertThat(prof.report(1)).doesNotContain("matmul");
    }
}
