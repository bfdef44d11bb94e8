package dev.perceiver4j.model.ar;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Cached generation is exact: after every appended token the generator's logits equal an uncached
 * forward over the same window (same tokens, same prefix length), through latent slides and window
 * slides past max_seq_len, for several strides, latent counts and model variants.
 */
class PerceiverArGeneratorTest {
    static final CpuPool POOL = CpuPool.create(2);
    static final double TOL = 2e-5;

    static Backend fast() {
        return new CpuBackend(POOL, new JavaSgemm(POOL));
    }

    /** A small random model; random (not trained) weights scaled up so logits differ visibly per position. */
    static PerceiverAR model(boolean absPos, int rotaryLayers, Activation act, boolean tied) {
        return model(fast(), absPos, rotaryLayers, act, tied);
    }

    static PerceiverAR model(Backend be, boolean absPos, int rotaryLayers, Activation act, boolean tied) {
        PerceiverArConfig c = new PerceiverArConfig(4, null, 2, rotaryLayers, 2, 2, 0f, 0f, 0f, false, false,
                262, 24, 8, 32, !tied, true, absPos, 0.5f, act, tied, PerceiverArConfig.PrefixDropoutMode.SUBSET, null);
        PerceiverAR m = new PerceiverAR(be, c, 7L);
        if (!tied) {   // the untied head starts at zero; give it values so the comparison means something
            SplittableRandom r = new SplittableRandom(3);
            float[] w = m.params().trainable().get("output_adapter.linear.weight").floats();
            for (int i = 0; i < w.length; i++) w[i] = (float) r.nextGaussian() * 0.3f;
        }
        return m;
    }

    /** max |cached − uncached| of the last position's logits for the generator's current window. */
    static double diff(PerceiverAR m, PerceiverArGenerator g, float[] cached) {
        Backend be = m.params().backend();
        int[] toks = g.tokens();
        int ws = g.windowStart(), n = g.length(), p = g.prefixEnd() - ws;
        assertThat(n - ws).isLessThanOrEqualTo(m.config().maxSeqLen());
        float[] full;
        try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
            full = m.forward(be.fromInts(Arrays.copyOfRange(toks, ws, n), Shape.of(1, n - ws)), null, p).toFloatArray();
        }
        int v = m.config().vocabSize(), lat = n - ws - p;
        assertThat(cached).hasSize(v);
        double max = 0;
        for (int j = 0; j < v; j++) max = Math.max(max, Math.abs(cached[j] - full[(lat - 1) * v + j]));
        return max;
    }

    static void checkExact(PerceiverAR m, PerceiverArGenerator.Options o, int promptLen, int steps) {
        checkExact(m, o, promptLen, steps, PerceiverArGenerator.StepMode.AUTO);
    }

    static void checkExact(PerceiverAR m, PerceiverArGenerator.Options o, int promptLen, int steps, PerceiverArGenerator.StepMode mode) {
        checkClose(m, o, promptLen, steps, mode, TOL);
    }

    static void checkClose(PerceiverAR m, PerceiverArGenerator.Options o, int promptLen, int steps, PerceiverArGenerator.StepMode mode,
                           double tol) {
        PerceiverArGenerator g = new PerceiverArGenerator(m, o, mode);
        SplittableRandom r = new SplittableRandom(11);
        int[] prompt = r.ints(promptLen, 6, 262).toArray();
        double worst = diff(m, g, g.start(prompt));
        boolean latentSlid = false, windowSlid = false;
        for (int s = 0; s < steps; s++) {
            int prevWs = g.windowStart(), prevPe = g.prefixEnd();
            float[] logits = g.append(6 + r.nextInt(256));
            windowSlid |= g.windowStart() > prevWs;
            latentSlid |= g.prefixEnd() > prevPe && g.windowStart() == prevWs;
            assertThat(g.length() - g.prefixEnd()).isBetween(1, o.latents());
            worst = Math.max(worst, diff(m, g, logits));
            assertThat(worst).as("step %d (window %d, prefix end %d, length %d)", s, g.windowStart(), g.prefixEnd(), g.length())
                    .isLessThanOrEqualTo(tol);
        }
        assertThat(latentSlid).as("latents slid").isTrue();
        assertThat(windowSlid).as("window slid past max_seq_len").isTrue();
        if (mode == PerceiverArGenerator.StepMode.FIXED && o.latentStride() < o.latents()) {
            assertThat(g.fixedShapeSteps()).as("one-position steps with fixed shapes").isPositive();
        } else if (mode != PerceiverArGenerator.StepMode.FIXED) {
            assertThat(g.fixedShapeSteps()).as("the CPU backend records nothing: exact shapes").isZero();
        }
    }

    /**
     * The fixed-shape step (whole caches with padding masks, rows written through scatterRows at
     * indices read from a tensor: what a CUDA graph replays) gives the uncached logits too, through
     * every kind of slide, including the pad rebuilds after each slide.
     */
    @ParameterizedTest(name = "fixed-shape step: latents {0}, latent stride {1}, window stride {2}, prompt {3}")
    @CsvSource({"8, 1, 1, 3", "8, 3, 5, 3", "5, 2, 24, 10", "12, 12, 7, 30", "1, 1, 2, 1"})
    void fixedShapeStepEqualsUncachedForwardAcrossSlides(int latents, int latentStride, int windowStride, int promptLen) {
        checkExact(model(true, 1, Activation.GELU, true), new PerceiverArGenerator.Options(latents, latentStride, windowStride), promptLen, 70,
                PerceiverArGenerator.StepMode.FIXED);
    }

    /**
     * As in CUDA's bf16 mode: activations that products read are bf16 copies, except for products of
     * few rows (CUDA runs those in TF32 on F32 operands; here at most 4 rows), so one model mixes both:
     * the one-position step's products take F32, the uncached forward's bf16, and the cross-attention's
     * keys/values join a prefix of many rows and latents of few. Cached and uncached logits then differ
     * by the bf16 rounding of the forward's operands (8-bit mantissas): 0.010–0.017 at the first
     * step of these three runs; the bound is 0.05.
     */
    @ParameterizedTest(name = "bf16 products above 4 rows: latents {0}, latent stride {1}, window stride {2}, prompt {3}")
    @CsvSource({"8, 3, 5, 3", "5, 2, 24, 10", "12, 12, 7, 30"})
    void fixedShapeStepWithSkinnyProductsInF32MatchesTheBf16Forward(int latents, int latentStride, int windowStride, int promptLen) {
        Backend mixed = new CpuBackend(POOL, new JavaSgemm(POOL), DType.BF16, 4);
        assertThat(mixed.matmulOperandType(4)).isEqualTo(DType.F32);
        assertThat(mixed.matmulOperandType(5)).isEqualTo(DType.BF16);
        checkClose(model(mixed, true, 1, Activation.GELU, true), new PerceiverArGenerator.Options(latents, latentStride, windowStride), promptLen, 70,
                PerceiverArGenerator.StepMode.FIXED, 0.05);
    }

    @Test
    void fixedShapeStepExactForRotaryEverywhereSquaredReluAndUntiedHead() {
        checkExact(model(false, -1, Activation.SQUARED_RELU, false), new PerceiverArGenerator.Options(6, 2, 4), 4, 60,
                PerceiverArGenerator.StepMode.FIXED);
    }

    @ParameterizedTest(name = "latents {0}, latent stride {1}, window stride {2}, prompt {3}")
    @CsvSource({"8, 1, 1, 3", "8, 3, 5, 3", "5, 2, 24, 10", "12, 12, 7, 30", "1, 1, 2, 1"})
    void cachedLogitsEqualUncachedForwardAcrossSlides(int latents, int latentStride, int windowStride, int promptLen) {
        checkExact(model(true, 1, Activation.GELU, true), new PerceiverArGenerator.Options(latents, latentStride, windowStride), promptLen, 70);
    }

    @Test
    void exactForRotaryEverywhereSquaredReluAndUntiedHead() {
        checkExact(model(false, -1, Activation.SQUARED_RELU, false), new PerceiverArGenerator.Options(6, 2, 4), 4, 60);
    }

    /** The fixed-shape step fuses q/k/v weights; start() takes the model's current weights each time. */
    @Test
    void fixedShapeStepFollowsWeightChangesBetweenSequences() {
        PerceiverAR m = model(true, -1, Activation.GELU, true);
        PerceiverArGenerator g = new PerceiverArGenerator(m, new PerceiverArGenerator.Options(8, 2, 4), PerceiverArGenerator.StepMode.FIXED);
        int[] prompt = {10, 11, 12, 13};
        g.start(prompt);
        for (int s = 0; s < 5; s++) g.append(30 + s);
        for (dev.perceiver4j.tensor.Tensor t : new dev.perceiver4j.tensor.Tensor[] {m.crossAttention().k.weight, m.selfAttention(0).v.weight}) {
            float[] w = t.floats();
            for (int i = t.offset(); i < t.offset() + t.size(); i++) w[i] *= -1.5f;
        }
        float[] logits = g.start(prompt);
        for (int s = 0; s < 6; s++) {
            logits = g.append(40 + s);
            assertThat(diff(m, g, logits)).as("step %d after the weights changed", s).isLessThanOrEqualTo(TOL);
        }
        assertThat(g.fixedShapeSteps()).isPositive();
    }

    @Test
    void cachingComputesEachPrefixPositionOnceWhileTheWindowStays() {
        PerceiverAR m = model(true, 1, Activation.GELU, true);
        PerceiverArGenerator g = new PerceiverArGenerator(m, new PerceiverArGenerator.Options(8, 8, 4));
        g.start(new int[] {10, 11, 12});
        for (int s = 0; s < 20; s++) g.append(20 + s);                    // 23 tokens < max_seq_len 24: no window slide
        assertThat(g.windowStart()).isZero();
        assertThat(g.prefixPositionsProjected()).isEqualTo(g.prefixEnd());   // every prefix position exactly once
        // Latents: 3 at start, then one per step, plus the recomputation after each of the 2 slides of stride 8.
        assertThat(g.latentPositionsComputed()).isLessThan(3 + 20 + 2 * 8 + 1);
    }

    @Test
    void greedyDecodingWithTheCacheMatchesTheUncachedReferencePath() {
        PerceiverAR m = model(true, 1, Activation.GELU, true);
        int[] prompt = {40, 50, 60, 70, 80};
        int prefix = 0;   // uncached generateGreedy holds the prefix fixed; with latents ≥ length both agree
        int[] want = m.generateGreedy(prompt, 10, prefix);
        PerceiverArGenerator g = new PerceiverArGenerator(m, new PerceiverArGenerator.Options(16, 1, 3));
        float[] logits = g.start(prompt);
        int[] got = new int[10];
        for (int i = 0; i < 10; i++) {
            int best = 0;
            for (int j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
            got[i] = best;
            logits = g.append(best);
        }
        assertThat(got).containsExactly(want);
    }

    @Test
    void rejectsBadOptionsAndTokens() {
        PerceiverAR m = model(true, 1, Activation.GELU, true);
        assertThatThrownBy(() -> new PerceiverArGenerator(m, new PerceiverArGenerator.Options(0, 1, 1))).hasMessageContaining("latents");
        assertThatThrownBy(() -> new PerceiverArGenerator(m, new PerceiverArGenerator.Options(25, 1, 1))).hasMessageContaining("max_seq_len = 24");
        assertThatThrownBy(() -> new PerceiverArGenerator(m, new PerceiverArGenerator.Options(8, 9, 1))).hasMessageContaining("latent stride");
        PerceiverArGenerator g = new PerceiverArGenerator(m, PerceiverArGenerator.Options.defaults(m.config()));
        assertThatThrownBy(() -> g.start(new int[0])).hasMessageContaining("at least one token");
        assertThatThrownBy(() -> g.start(new int[] {1, 300})).hasMessageContaining("position 1");
    }
}
