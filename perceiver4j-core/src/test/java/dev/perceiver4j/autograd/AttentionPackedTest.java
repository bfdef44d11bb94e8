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

    /**
     * F.attentionKvPacked (cross-attention over k, v as column ranges of one tensor, q separate, with key
     * padding and dropout) against F.attention over the two ranges cut out: the same output, dQ and dK, dV.
     */
    @Test
    void keysAndValuesPackedGiveTheSameOutputAndGradients() {
        Backend be = new CpuBackend(POOL, new JavaSgemm(POOL));
        int b = 2, nq = 7, nk = 13, heads = 2, qk = 2 * 8, v = 2 * 6, width = qk + v;
        SplittableRandom rnd = new SplittableRandom(12);
        float[] qv = new float[b * nq * qk], kvv = new float[b * nk * width];
        for (int i = 0; i < qv.length; i++) qv[i] = (float) rnd.nextGaussian();
        for (int i = 0; i < kvv.length; i++) kvv[i] = (float) rnd.nextGaussian();
        boolean[] pad = new boolean[b * nk];
        for (int i = 0; i < pad.length; i++) pad[i] = i % nk >= nk - 1 - i / nk * 3;   // the last 1 and 4 keys padded
        int[] targets = new int[b * nq];
        for (int i = 0; i < targets.length; i++) targets[i] = rnd.nextInt(v);
        float[][] got = new float[2][], dq = new float[2][], dkv = new float[2][];
        for (int packed = 0; packed < 2; packed++) {
            try (Scope s = Scope.open()) {
                Tensor q = be.fromFloats(qv, Shape.of(b, nq, qk)).requiresGrad(true), kv = be.fromFloats(kvv, Shape.of(b, nk, width)).requiresGrad(true);
                Tensor keyPad = be.fromBools(pad, Shape.of(b, nk));
                Tensor out = packed == 1
                        ? F.attentionKvPacked(q, kv, qk, v, keyPad, heads, 0.2f, 78L, 6L, DType.F32)
                        : F.attention(q, F.narrow(kv, 2, 0, qk), F.narrow(kv, 2, qk, v), keyPad, heads, false, 0.2f, 78L, 6L);
                F.crossEntropy(out.reshape(b * nq, v), be.fromInts(targets, Shape.of(b * nq)), -1, 0f).backward();
                got[packed] = out.toFloatArray();
                dq[packed] = q.grad().toFloatArray();
                dkv[packed] = kv.grad().toFloatArray();
            }
        }
        assertThat(got[1]).containsExactly(got[0]);
        assertThat(dq[1]).containsExactly(dq[0]);
        assertThat(dkv[1]).containsExactly(dkv[0]);
        int nonzero = 0;
        for (float g : dkv[1]) if (g != 0f) nonzero++;
        assertThat(nonzero).as("gradients reach k and v of the unpadded keys").isGreaterThan(dkv[1].length / 2);
        assertThatThrownBy(() -> F.attentionKvPacked(be.zeros(Shape.of(b, nq, qk), DType.F32), be.zeros(Shape.of(b, nk, width + 1), DType.F32),
                qk, v, null, heads, 0f, 0L, 0L, DType.F32)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("[B, Nk, 28]");
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
