package dev.perceiver4j.model.ar;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.random.Philox;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/** Prefix dropout keeps exactly the stated number of prefix positions and really removes the others. */
class PrefixDropoutTest {
    static final CpuPool POOL = CpuPool.create(2);

    static PerceiverAR model(float prefixDropout, PerceiverArConfig.PrefixDropoutMode mode) {
        PerceiverArConfig c = new PerceiverArConfig(4, null, 2, 1, 2, 2, prefixDropout, 0f, 0f, false, false,
                262, 40, 8, 32, false, true, true, 0.3f, Activation.GELU, true, mode, null);
        Backend be = new CpuBackend(POOL, new JavaSgemm(POOL));
        return new PerceiverAR(be, c, 5L);
    }

    @Test
    void keepsExactlyPMinusFloorPTimesRateDistinctSortedPositions() {
        for (int p : new int[] {1, 7, 32, 100}) {
            for (float rate : new float[] {0f, 0.1f, 0.5f, 0.9f}) {
                int keep = PerceiverAR.keptPrefix(p, rate);
                assertThat(keep).isEqualTo(p - (int) Math.floor(p * (double) rate));
                for (int row = 0; row < 5; row++) {
                    int[] kept = PerceiverAR.keptPrefixPositions(p, keep, 99L, row);
                    assertThat(kept).hasSize(keep).isSorted().doesNotHaveDuplicates();
                    if (keep > 0) assertThat(kept[0]).isGreaterThanOrEqualTo(0);
                    if (keep > 0) assertThat(kept[keep - 1]).isLessThan(p);
                }
            }
        }
    }

    /**
     * The draw as its definition reads: swap i of a partial Fisher–Yates uses Philox output i of stream
     * "PREF" + row (one full block per output), then the kept prefix is sorted. The model's version
     * draws each block once per four swaps and orders by marking; both must give the same positions.
     */
    @Test
    void theFastDrawEqualsTheDefinition() {
        for (int[] pk : new int[][] {{3584, 1792}, {100, 1}, {37, 30}, {5, 5}, {1, 1}}) {
            for (int row : new int[] {0, 1, 23}) {
                int p = pk[0], keep = pk[1];
                int[] idx = new int[p];
                for (int i = 0; i < p; i++) idx[i] = i;
                for (int i = 0; i < keep; i++) {
                    long bits = Philox.bits(77L, 0x5052_4546_0000_0000L + row, i) & 0xFFFFFFFFL;
                    int j = i + (int) ((bits * (p - i)) >>> 32);
                    int t = idx[i];
                    idx[i] = idx[j];
                    idx[j] = t;
                }
                int[] expected = Arrays.copyOf(idx, keep);
                Arrays.sort(expected);
                assertThat(PerceiverAR.keptPrefixPositions(p, keep, 77L, row)).as("P %d keep %d row %d", p, keep, row).isEqualTo(expected);
            }
        }
    }

    @Test
    void subsetsAreUniformOverPositions() {
        int p = 20, keep = 10, draws = 20_000;
        int[] hits = new int[p];
        for (int s = 0; s < draws; s++) for (int k : PerceiverAR.keptPrefixPositions(p, keep, s, 0)) hits[k]++;
        for (int h : hits) assertThat(h / (double) draws).isCloseTo(0.5, org.assertj.core.data.Offset.offset(0.02));
    }

    /** Logits of the training pass for ids, as floats. */
    static float[] train(PerceiverAR m, int[] ids, int b, int prefix, long seed) {
        try (Scope s = Scope.open()) {
            return m.forwardTraining(ids, b, prefix, seed).toFloatArray();
        }
    }

    @Test
    void droppedPrefixTokensDoNotInfluenceTheOutputAndKeptOnesDo() {
        PerceiverAR m = model(0.5f, PerceiverArConfig.PrefixDropoutMode.SUBSET);
        int n = 40, prefix = 32, b = 2;
        int[] ids = new SplittableRandom(1).ints(b * n, 6, 262).toArray();
        long seed = 12345L;
        float[] base = train(m, ids, b, prefix, seed);
        int keep = PerceiverAR.keptPrefix(prefix, 0.5f);
        assertThat(keep).isEqualTo(16);
        for (int row = 0; row < b; row++) {
            int[] kept = PerceiverAR.keptPrefixPositions(prefix, keep, seed, row);
            int changedDropped = 0, changedKept = 0;
            for (int t = 0; t < prefix; t++) {
                int[] mutated = ids.clone();
                mutated[row * n + t] = ids[row * n + t] == 100 ? 101 : 100;
                boolean same = Arrays.equals(train(m, mutated, b, prefix, seed), base);
                if (Arrays.binarySearch(kept, t) >= 0) {
                    if (!same) changedKept++;
                } else if (!same) {
                    changedDropped++;
                }
            }
            assertThat(changedDropped).as("row %d: dropped positions that changed the output", row).isZero();
            assertThat(changedKept).as("row %d: kept positions that changed the output", row).isEqualTo(keep);
        }
    }

    @Test
    void withoutDropoutTheTrainingPassEqualsTheInferencePass() {
        PerceiverAR m = model(0f, PerceiverArConfig.PrefixDropoutMode.SUBSET);
        int n = 40, prefix = 30, b = 2;
        int[] ids = new SplittableRandom(2).ints(b * n, 6, 262).toArray();
        float[] inference;
        try (var ng = dev.perceiver4j.autograd.Autograd.noGrad(); Scope s = Scope.open()) {
            Backend be = m.params().backend();
            inference = m.forward(be.fromInts(ids, Shape.of(b, n)), null, prefix).toFloatArray();
        }
        assertThat(train(m, ids, b, prefix, 7L)).containsExactly(inference);
    }

    @Test
    void bernoulliModeMasksRoughlyTheRateAndIsSeeded() {
        PerceiverAR m = model(0.5f, PerceiverArConfig.PrefixDropoutMode.BERNOULLI);
        int n = 40, prefix = 32, b = 2;
        int[] ids = new SplittableRandom(3).ints(b * n, 6, 262).toArray();
        float[] a = train(m, ids, b, prefix, 1L), again = train(m, ids, b, prefix, 1L), other = train(m, ids, b, prefix, 2L);
        assertThat(again).containsExactly(a);
        assertThat(Arrays.equals(a, other)).isFalse();
        for (float v : a) assertThat(Float.isFinite(v)).isTrue();
    }
}
