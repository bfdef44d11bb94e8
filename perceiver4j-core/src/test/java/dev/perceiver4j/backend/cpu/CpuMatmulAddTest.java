package dev.perceiver4j.backend.cpu;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

/**
 * The CPU backend's matmulAdd (the product, then bias and residual in one pass) gives the bits of
 * the interface's default (product with bias, then a separate add), and the reference backend's
 * values within float rounding.
 */
class CpuMatmulAddTest {
    static final CpuPool POOL = CpuPool.create(2);

    @AfterAll
    static void close() {
        POOL.close();
    }

    private static float[] random(SplittableRandom rng, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) (rng.nextDouble() * 2 - 1);
        return v;
    }

    @Test
    void fusedEpilogueMatchesTheTwoPassesBitForBitAndTheReference() {
        Backend cpu = new CpuBackend(POOL, new JavaSgemm(POOL));
        Backend ref = new RefBackend(POOL);
        SplittableRandom rng = new SplittableRandom(5);
        // [2, 37, 70] x [33, 70]^T: row and column tails for every register tile; 256 x 64 x 48: the transposed formulation.
        int[][] shapes = {{2, 37, 70, 33}, {1, 256, 64, 48}};
        for (int[] sh : shapes) {
            int batch = sh[0], m = sh[1], k = sh[2], n = sh[3];
            float[] a = random(rng, batch * m * k), w = random(rng, n * k), bias = random(rng, n), res = random(rng, batch * m * n);
            for (boolean withBias : new boolean[] {true, false}) {
                Tensor fused = cpu.empty(Shape.of(batch, m, n), DType.F32);
                cpu.matmulAdd(cpu.fromFloats(a, Shape.of(batch, m, k)), false, cpu.fromFloats(w, Shape.of(n, k)), true,
                        withBias ? cpu.fromFloats(bias, Shape.of(n)) : null, cpu.fromFloats(res, Shape.of(batch, m, n)), fused);

                Tensor twoPasses = cpu.empty(Shape.of(batch, m, n), DType.F32);
                cpu.matmul(cpu.fromFloats(a, Shape.of(batch, m, k)), false, cpu.fromFloats(w, Shape.of(n, k)), true,
                        withBias ? cpu.fromFloats(bias, Shape.of(n)) : null, Activation.NONE, twoPasses, null);
                cpu.add(twoPasses, cpu.fromFloats(res, Shape.of(batch, m, n)), twoPasses);
                assertThat(fused.toFloatArray()).as("bits, %s bias %s", java.util.Arrays.toString(sh), withBias).isEqualTo(twoPasses.toFloatArray());

                Tensor want = ref.empty(Shape.of(batch, m, n), DType.F32);
                ref.matmulAdd(ref.fromFloats(a, Shape.of(batch, m, k)), false, ref.fromFloats(w, Shape.of(n, k)), true,
                        withBias ? ref.fromFloats(bias, Shape.of(n)) : null, ref.fromFloats(res, Shape.of(batch, m, n)), want);
                float[] got = fused.toFloatArray(), exp = want.toFloatArray();
                for (int i = 0; i < exp.length; i++) assertThat(got[i]).as("[%d]", i).isCloseTo(exp[i], within(1e-4f * (float) Math.sqrt(k)));
            }
        }
    }

    @Test
    void residualAndBiasShapesAreCheckedAndOutMustNotOverlapTheResidual() {
        Backend cpu = new CpuBackend(POOL, new JavaSgemm(POOL));
        Tensor a = cpu.fromFloats(new float[12], Shape.of(3, 4)), w = cpu.fromFloats(new float[20], Shape.of(5, 4));
        assertThatThrownBy(() -> cpu.matmulAdd(a, false, w, true, null, cpu.zeros(Shape.of(3, 4), DType.F32), cpu.empty(Shape.of(3, 5), DType.F32)))
                .hasMessageContaining("matmulAdd residual: sizes differ");
        Tensor out = cpu.empty(Shape.of(3, 5), DType.F32);
        assertThatThrownBy(() -> cpu.matmulAdd(a, false, w, true, null, out, out)).hasMessageContaining("must not overlap");
        assertThatThrownBy(() -> cpu.matmulAdd(a, false, w, true, cpu.zeros(Shape.of(4), DType.F32), cpu.zeros(Shape.of(3, 5), DType.F32), out))
                .hasMessageContaining("matmulAdd: bias").hasMessageContaining("should have 5 elements");
    }
}
