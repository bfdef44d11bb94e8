package dev.perceiver4j.autograd;

import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * F.attentionPacked (self-attention over q, k, v as column ranges of one tensor) against F.attention over
 * the three ranges cut out with F.narrow: the same output and, through qkv's gradient, the same dQ, dK, dV
 * in the same columns, with dropout (the same masks: the same shape, seed and stream).
 */
class AttentionPackedTest {
    static final CpuPool POOL = CpuPool.create(2);

    @AfterAll
    static void stop() {
        POOL.close();
    }

    @Test
    void sameOutputAndGradientsAsAttentionOverTheRanges() {
        Backend be = new CpuBackend(POOL, new JavaSgemm(POOL));
        int b = 2, n = 19, heads = 3, qk = 3 * 8, v = 3 * 5, width = 2 * qk + v;
        SplittableRandom rnd = new SplittableRandom(11);
        float[] values = new float[b * n * width];
        int[] targets = new int[b * n];
        for (int i = 0; i < values.length; i++) values[i] = (float) rnd.nextGaussian();
        for (int i = 0; i < targets.length; i++) targets[i] = rnd.nextInt(v);
        float[][] got = new float[2][], grads = new float[2][];
        for (int packed = 0; packed < 2; packed++) {
            try (Scope s = Scope.open()) {
                Tensor qkv = be.fromFloats(values, Shape.of(b, n, width)).requiresGrad(true);
                Tensor out = packed == 1
                        ? F.attentionPacked(qkv, qk, v, heads, false, 0.2f, 77L, 5L, DType.F32)
                        : F.attention(F.narrow(qkv, 2, 0, qk), F.narrow(qkv, 2, qk, qk), F.narrow(qkv, 2, 2 * qk, v), null, heads, false,
                                0.2f, 77L, 5L);
                F.crossEntropy(out.reshape(b * n, v), be.fromInts(targets, Shape.of(b * n)), -1, 0f).backward();
                got[packed] = out.toFloatArray();
                grads[packed] = qkv.grad().toFloatArray();
            }
        }
        assertThat(got[1]).containsExactly(got[0]);
        assertThat(grads[1]).containsExactly(grads[0]);
        int nonzero = 0;
        for (float g : grads[1]) if (g != 0f) nonzero++;
        assertThat(nonzero).as("gradients reach q, k and v (most nonzero)").isGreaterThan(grads[1].length / 2);
    }

    @Test
    void aQkvOfTheWrongWidthIsRefusedNamingTheWidths() {
        Backend be = new CpuBackend(POOL, new JavaSgemm(POOL));
        Tensor qkv = be.zeros(Shape.of(1, 4, 20), DType.F32);
        assertThatThrownBy(() -> F.attentionPacked(qkv, 8, 8, 2, false, 0f, 0L, 0L, DType.F32))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("[B, N, 24]").hasMessageContaining("[1, 4, 20]");
        assertThatThrownBy(() -> F.attentionPacked(be.zeros(Shape.of(1, 4, 21), DType.F32), 7, 7, 2, false, 0f, 0L, 0L, DType.F32))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("not divisible by 2 heads");
    }
}
