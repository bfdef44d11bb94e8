package dev.perceiver4j.autograd;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.ProfilingBackend;
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
import static org.assertj.core.api.Assertions.within;

/**
 * F.linears (q, k and v from one input): without gradients one backend call (on the CPU the
 * products share their packed input), with them the products recorded one by one; either way
 * the outputs of F.linear, bit for bit, and with gradients the same gradients.
 */
class LinearsTest {
    static final CpuPool POOL = CpuPool.create(2);

    @AfterAll
    static void stop() {
        POOL.close();
    }

    @Test
    void sameOutputsAsLinearWithAndWithoutGradients() {
        Backend be = new CpuBackend(POOL, new JavaSgemm(POOL));
        SplittableRandom rnd = new SplittableRandom(3);
        int rows = 40, in = 48;
        int[] outs = {40, 40, 72};   // n >= rows: the shared formulation applies
        try (Scope s = Scope.open()) {
            Tensor x = be.fromFloats(random(rnd, rows * in), Shape.of(2, rows / 2, in));
            Tensor[] ws = new Tensor[3], bs = new Tensor[3];
            for (int i = 0; i < 3; i++) {
                ws[i] = be.fromFloats(random(rnd, outs[i] * in), Shape.of(outs[i], in)).requiresGrad(true);
                bs[i] = be.fromFloats(random(rnd, outs[i]), Shape.of(outs[i])).requiresGrad(true);
            }
            Tensor[] alone = new Tensor[3];
            for (int i = 0; i < 3; i++) alone[i] = F.linear(x, ws[i], bs[i], Activation.NONE);
            Tensor[] fused;
            try (var off = Autograd.noGrad()) {
                fused = F.linears(x, ws, bs, DType.F32);
            }
            for (int i = 0; i < 3; i++) {
                assertThat(fused[i].shape()).isEqualTo(alone[i].shape());
                assertThat(fused[i].toFloatArray()).as("output %d without gradients", i).containsExactly(alone[i].toFloatArray());
            }
            // with gradients: recorded, and backward reaches every weight
            Tensor[] recorded = F.linears(x, ws, bs, DType.F32);
            Tensor loss = null; // the sum of every output, as 1 x (rows·n) times a column of ones
            for (int i = 0; i < 3; i++) {
                int size = rows * outs[i];
                float[] ones = new float[size];
                java.util.Arrays.fill(ones, 1f);
                Tensor sum = F.matmul(recorded[i].reshape(1, size), false, be.fromFloats(ones, Shape.of(size, 1)), false, null, Activation.NONE);
                loss = loss == null ? sum : F.add(loss, sum);
            }
            loss.backward();
            float[] xs = x.toFloatArray();
            for (int i = 0; i < 3; i++) {
                assertThat(recorded[i].toFloatArray()).containsExactly(alone[i].toFloatArray());
                assertThat(bs[i].grad().toFloatArray()).as("bias %d gradient: one per row", i).containsOnly((float) rows);
                float[] dw = ws[i].grad().toFloatArray();
                for (int o = 0; o < outs[i]; o++) {
                    for (int j = 0; j < in; j++) {
                        double want = 0;
                        for (int r = 0; r < rows; r++) want += xs[r * in + j];
                        assertThat((double) dw[o * in + j]).as("weight %d gradient [%d, %d]: the column sum of x", i, o, j).isCloseTo(want, within(1e-4));
                    }
                }
            }
        }
    }

    @Test
    void profilingTimesTheCallAsOneOp() {
        ProfilingBackend be = new ProfilingBackend(new CpuBackend(POOL, new JavaSgemm(POOL)));
        SplittableRandom rnd = new SplittableRandom(4);
        try (Scope s = Scope.open(); var off = Autograd.noGrad()) {
            Tensor x = be.fromFloats(random(rnd, 8 * 16), Shape.of(8, 16));
            Tensor w1 = be.fromFloats(random(rnd, 8 * 16), Shape.of(8, 16)), w2 = be.fromFloats(random(rnd, 24 * 16), Shape.of(24, 16));
            F.linears(x, new Tensor[] {w1, w2}, new Tensor[] {null, null}, DType.F32);
        }
        assertThat(be.report(1)).contains("matmulShared 8x16x8+24 tB");
    }

    private static float[] random(SplittableRandom rnd, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) (2 * rnd.nextDouble() - 1);
        return a;
    }
}
