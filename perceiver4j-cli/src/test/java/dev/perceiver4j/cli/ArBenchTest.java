package dev.perceiver4j.cli;

import dev.perceiver4j.backend.ProfilingBackend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.model.ar.PerceiverAR;
import dev.perceiver4j.model.ar.PerceiverArConfig;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.text.ByteTokenizer;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

/** The analytic FLOP count that {@code bench --workload ar-train} prints next to its step times. */
class ArBenchTest {
    static final CpuPool POOL = CpuPool.create(2);

    /** The bench's summary of timed repetitions: mean, min, median (the middle one, or the mean of the two middle ones) and max. */
    @Test
    void timingSummarisesTheRepetitionsWhateverTheirOrder() {
        ArBench.Timing odd = ArBench.Timing.of(new double[] {5, 1, 4, 2, 3});
        assertThat(odd.mean()).isEqualTo(3.0);
        assertThat(odd.min()).isEqualTo(1.0);
        assertThat(odd.median()).isEqualTo(3.0);
        assertThat(odd.max()).isEqualTo(5.0);
        assertThat(odd.count()).isEqualTo(5);
        ArBench.Timing even = ArBench.Timing.of(new double[] {10, 2, 30, 4});
        assertThat(even.median()).isEqualTo(7.0);
        assertThat(even.mean()).isEqualTo(11.5);
        double[] ms = {3, 1, 2};
        ArBench.Timing.of(ms);
        assertThat(ms).containsExactly(3, 1, 2);   // the caller's array is left in its order
    }

    /** The products' FLOPs equal what the backend is asked to multiply in one training forward, prefix dropout included. */
    @Test
    void productFlopsMatchTheProductsOfATrainingForward() {
        for (int context : new int[] {16, 40, 64}) {   // no prefix, then kept subsets of 24 and 48 prefix positions
            PerceiverArConfig c = PerceiverArConfig.krasserm(2, 2, 1, 3, 0.5f, ByteTokenizer.VOCAB, context, 16, 32, false, true);
            ProfilingBackend be = new ProfilingBackend(new CpuBackend(POOL, new JavaSgemm(POOL)));
            PerceiverAR m = new PerceiverAR(be, c, 5L);
            int batch = 3;
            int[] ids = new SplittableRandom(context).ints((long) batch * context, 6, 262).toArray();
            be.reset();
            try (Scope s = Scope.open()) {
                m.forwardTraining(ids, batch, context - 16, 9L);
            }
            double counted = be.flops("matmul ") + be.flops("matmulAdd ");   // products alone, and those added to the residual stream
            assertThat(counted).isPositive();
            assertThat(ArBench.forwardFlops(c, batch).products()).as("context %d", context).isCloseTo(counted, within(counted * 1e-12));
        }
    }

    @Test
    void aLongerContextAddsOnlyPrefixWork() {
        PerceiverArConfig base = PerceiverArConfig.krasserm(8, 8, 1, 4, 0f, ByteTokenizer.VOCAB, 1024, 1024, 512, false, true);
        ArBench.ForwardFlops noPrefix = ArBench.forwardFlops(base, 1), longer = ArBench.forwardFlops(base.withSizes(16384, 1024), 1);
        // 15,360 more positions: their k/v projections (2·C² multiply-adds each) and every latent's scores and sums over them.
        double extra = 2 * (15360.0 * 2 * 512 * 512 + 1024.0 * 15360 * 2 * 512);
        assertThat(longer.products() + longer.attention() - noPrefix.products() - noPrefix.attention()).isCloseTo(extra, within(1.0));
    }
}
