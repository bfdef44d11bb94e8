package dev.perceiver4j.train;

import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.RefBackend;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.nn.Linear;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

/**
 * Gradient-norm clipping, which now hands the norm back as a [1] tensor (on a GPU it stays there):
 * the norm it reports is the L2 norm computed by hand, clipping rescales the gradients to maxNorm
 * (up to the 1e-6 guard), and a norm within bounds leaves them untouched, on both CPU backends.
 */
class AdamWClipTest {
    private static final CpuPool POOL = CpuPool.create(1);

    @Test
    void clipGradNormReportsTheNormAndScalesOnlyAboveIt() {
        for (Backend be : List.of(new CpuBackend(POOL, new JavaSgemm(POOL)), new RefBackend(POOL))) {
            Params root = Params.root(be, 3);
            new Linear(root.sub("proj"), 2, 2, true);             // 4 + 2 parameters
            AdamW opt = new AdamW(be, AdamW.Config.defaults(1e-3f), root.pack(), root.gradients());
            Tensor g = root.gradients().data();
            float[] values = {3f, 0f, 0f, 4f, 12f, 0f};   // ‖g‖ = 13
            be.copy(be.fromFloats(values, g.shape()), g);

            Tensor norm = opt.clipGradNorm(100.0);              // within bounds: measured only
            assertThat(norm.item()).isEqualTo(13f);
            assertThat(g.toFloatArray()).containsExactly(values);

            assertThat(opt.clipGradNorm(1.0).item()).isEqualTo(13f);   // the norm before clipping
            float[] clipped = g.toFloatArray();
            double sq = 0;
            for (int i = 0; i < values.length; i++) {
                assertThat(clipped[i]).isCloseTo((float) (values[i] / (13 + 1e-6)), within(1e-7f));
                sq += (double) clipped[i] * clipped[i];
            }
            assertThat(Math.sqrt(sq)).isCloseTo(1.0, within(1e-6));
            assertThat(opt.clipGradNorm(0).item()).isCloseTo(1f, within(1e-6f));   // maxNorm 0 only measures
        }
    }
}
