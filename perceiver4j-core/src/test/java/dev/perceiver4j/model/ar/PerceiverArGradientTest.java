package dev.perceiver4j.model.ar;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.RefBackend;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.Map;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The whole Perceiver AR training pass (prefix dropout on, tied or untied head) differentiated by
 * the tape agrees with central finite differences of the loss, on the double-precision reference
 * backend, for sampled entries of every parameter tensor.
 */
class PerceiverArGradientTest {
    static final CpuPool POOL = CpuPool.create(2);

    @ParameterizedTest(name = "tied head {0}")
    @ValueSource(booleans = {true, false})
    void tapeGradientsMatchFiniteDifferences(boolean tied) {
        Backend be = new RefBackend(POOL);
        PerceiverArConfig c = new PerceiverArConfig(2, null, 1, 1, 2, 2, 0.5f, 0f, 0f, false, false,
                262, 12, 4, 16, !tied, true, true, 0.3f, tied ? Activation.GELU : Activation.SQUARED_RELU, tied,
                PerceiverArConfig.PrefixDropoutMode.SUBSET, null);
        PerceiverAR m = new PerceiverAR(be, c, 3L);
        SplittableRandom r = new SplittableRandom(5);
        if (!tied) {
            float[] w = m.params().trainable().get("output_adapter.linear.weight").floats();
            for (int i = 0; i < w.length; i++) w[i] = (float) r.nextGaussian() * 0.3f;
        }
        int b = 2, n = 12, lat = 4;
        int[] ids = r.ints(b * n, 6, 262).toArray();
        int[] targets = r.ints(b * lat, 6, 262).toArray();
        m.params().pack();
        try (Scope s = Scope.open()) {
            loss(m, be, ids, targets).backward();
        }
        int checked = 0;
        for (Map.Entry<String, Tensor> e : m.params().trainable().entrySet()) {
            Tensor p = e.getValue();
            float[] v = p.floats(), g = p.grad().floats();
            for (int k = 0; k < 3; k++) {
                int i = r.nextInt(p.size());
                float keep = v[p.offset() + i];
                double h = 1e-2;
                v[p.offset() + i] = (float) (keep + h);
                double up = lossValue(m, be, ids, targets);
                v[p.offset() + i] = (float) (keep - h);
                double down = lossValue(m, be, ids, targets);
                v[p.offset() + i] = keep;
                double fd = (up - down) / (2 * h), an = g[p.grad().offset() + i];
                assertThat(Math.abs(fd - an)).as("%s[%d]: finite difference %.6g, tape %.6g", e.getKey(), i, fd, an)
                        .isLessThanOrEqualTo(2e-4 + 2e-2 * Math.abs(fd));
                checked++;
            }
        }
        assertThat(checked).isGreaterThan(60);
    }

    static Tensor loss(PerceiverAR m, Backend be, int[] ids, int[] targets) {
        Tensor logits = m.forwardTraining(ids, 2, 8, 99L);                         // prefix 8 → 4 kept
        return F.crossEntropy(logits, be.fromInts(targets, Shape.of(2, 4)), -1, 1e-3f);
    }

    static double lossValue(PerceiverAR m, Backend be, int[] ids, int[] targets) {
        try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
            return loss(m, be, ids, targets).item();
        }
    }
}
