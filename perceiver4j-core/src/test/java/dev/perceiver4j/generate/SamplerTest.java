package dev.perceiver4j.generate;

import java.util.BitSet;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

class SamplerTest {
    /** 200k draws: the standard error of a frequency is at most 0.0011, so 0.005 is > 4.4 sigma. */
    static final int DRAWS = 200_000;
    static final double FREQ_TOLERANCE = 0.005;

    @Test
    void greedyIsArgmaxWithLowestIndexWinningTies() {
        Sampler greedy = new Sampler(Sampler.Config.greedy());
        SplittableRandom r = new SplittableRandom(1);
        for (int trial = 0; trial < 200; trial++) {
            float[] row = new float[7 + 50];
            for (int i = 0; i < row.length; i++) row[i] = (float) r.nextGaussian();
            int best = 7;
            for (int i = 8; i < row.length; i++) if (row[i] > row[best]) best = i;
            assertThat(greedy.sample(row, 7, 50, null)).isEqualTo(best - 7);
        }
        assertThat(greedy.sample(new float[] {1, 3, 3, 2}, 0, 4, null)).isEqualTo(1);
        assertThat(greedy.sample(new float[] {Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY}, 0, 2, null)).isEqualTo(0);
    }

    @Test
    void temperatureSamplingMatchesSoftmaxOfScaledLogits() {
        float[] logits = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
        for (float t : new float[] {1.0f, 0.7f, 2.5f}) {
            double[] freq = frequencies(new Sampler(new Sampler.Config(t, 0, 1f, 42)), logits, null);
            assertClose(freq, softmax(logits, t, new boolean[] {true, true, true, true, true}));
        }
    }

    @Test
    void tinyTemperatureIsEffectivelyGreedy() {
        Sampler s = new Sampler(new Sampler.Config(1e-30f, 0, 1f, 3));
        for (int i = 0; i < 100; i++) assertThat(s.sample(new float[] {0.1f, 0.3f, 0.2999f}, 0, 3, null)).isEqualTo(1);
    }

    @Test
    void topKOneEqualsGreedy() {
        Sampler top1 = new Sampler(new Sampler.Config(1.3f, 1, 1f, 9));
        Sampler greedy = new Sampler(Sampler.Config.greedy());
        SplittableRandom r = new SplittableRandom(2);
        for (int trial = 0; trial < 500; trial++) {
            float[] row = new float[262];
            for (int i = 0; i < row.length; i++) row[i] = (float) r.nextGaussian() * 3;
            assertThat(top1.sample(row, 0, row.length, null)).isEqualTo(greedy.sample(row, 0, row.length, null));
        }
    }

    @Test
    void topKRestrictsTheSupportAndRenormalises() {
        float[] logits = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
        double[] freq = frequencies(new Sampler(new Sampler.Config(1f, 3, 1f, 5)), logits, null);
        assertThat(freq[2]).isZero();
        assertThat(freq[3]).isZero();
        assertClose(freq, softmax(logits, 1f, new boolean[] {true, true, false, false, true}));
        // ties at the k boundary keep the lower index
        Sampler tie = new Sampler(new Sampler.Config(1f, 2, 1f, 6));
        for (int i = 0; i < 1000; i++) assertThat(tie.sample(new float[] {5, 1, 1, 1}, 0, 4, null)).isIn(0, 1);
    }

    @Test
    void topPKeepsExactlyTheNucleus() {
        // probabilities 1/2, 1/4, 1/8, 1/16, 1/16 (at T = 1), in shuffled positions
        float[] logits = new float[5];
        double[] p = {0.0625, 0.5, 0.125, 0.0625, 0.25};
        for (int i = 0; i < 5; i++) logits[i] = (float) Math.log(p[i]);
        // 0.5 < 0.7 <= 0.75: the two largest, renormalised to 2/3 and 1/3
        assertClose(frequencies(new Sampler(new Sampler.Config(1f, 0, 0.7f, 11)), logits, null), new double[] {0, 2 / 3.0, 0, 0, 1 / 3.0});
        // 0.75 < 0.8 <= 0.875: three tokens
        assertClose(frequencies(new Sampler(new Sampler.Config(1f, 0, 0.8f, 12)), logits, null), new double[] {0, 4 / 7.0, 1 / 7.0, 0, 2 / 7.0});
        // below the largest probability: always at least that one token
        assertClose(frequencies(new Sampler(new Sampler.Config(1f, 0, 0.01f, 13)), logits, null), new double[] {0, 1, 0, 0, 0});
        // top-k first (3 tokens: 1/2, 1/4, 1/8 → 4/7, 2/7, 1/7), then top-p 0.8 of that: 4/7 + 2/7 = 0.857 >= 0.8
        assertClose(frequencies(new Sampler(new Sampler.Config(1f, 3, 0.8f, 14)), logits, null), new double[] {0, 2 / 3.0, 0, 0, 1 / 3.0});
    }

    @Test
    void sameSeedSameTokensDifferentSeedDifferentTokens() {
        SplittableRandom r = new SplittableRandom(3);
        float[] row = new float[262];
        for (int i = 0; i < row.length; i++) row[i] = (float) r.nextGaussian();
        Sampler.Config config = new Sampler.Config(1f, 40, 0.95f, 1234);
        Sampler a = new Sampler(config), b = new Sampler(config), c = new Sampler(new Sampler.Config(1f, 40, 0.95f, 1235));
        int[] ta = new int[200], tb = new int[200], tc = new int[200];
        for (int i = 0; i < 200; i++) {
            ta[i] = a.sample(row, 0, row.length, null);
            tb[i] = b.sample(row, 0, row.length, null);
            tc[i] = c.sample(row, 0, row.length, null);
        }
        assertThat(ta).isEqualTo(tb);
        assertThat(ta).isNotEqualTo(tc);
    }

    @Test
    void bannedTokensAreNeverDrawn() {
        BitSet specials = new BitSet();
        specials.set(0, 6);
        float[] row = new float[262];
        row[2] = 10; // the favourite is banned
        row[100] = 1;
        assertThat(new Sampler(Sampler.Config.greedy()).sample(row, 0, 262, specials)).isEqualTo(100);
        Sampler s = new Sampler(new Sampler.Config(1f, 0, 1f, 8));
        for (int i = 0; i < 20_000; i++) assertThat(s.sample(row, 0, 262, specials)).isGreaterThanOrEqualTo(6);
        Sampler k = new Sampler(new Sampler.Config(1f, 2, 0.5f, 8));
        for (int i = 0; i < 1000; i++) assertThat(k.sample(row, 0, 262, specials)).isGreaterThanOrEqualTo(6);
        // the banned mass is removed before renormalising
        float[] logits = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
        BitSet ban1 = new BitSet();
        ban1.set(1);
        assertClose(frequencies(new Sampler(new Sampler.Config(1f, 0, 1f, 21)), logits, ban1), softmax(logits, 1f, new boolean[] {true, false, true, true, true}));

        BitSet all = new BitSet();
        all.set(0, 262);
        assertThatThrownBy(() -> s.sample(row, 0, 262, all)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("banned");
    }

    @Test
    void negativeInfinityIsNeverDrawnAndPositiveInfinityAlwaysIs() {
        float ninf = Float.NEGATIVE_INFINITY, pinf = Float.POSITIVE_INFINITY;
        Sampler s = new Sampler(new Sampler.Config(1f, 0, 1f, 4));
        for (int i = 0; i < 5000; i++) assertThat(s.sample(new float[] {ninf, 0, ninf, -50}, 0, 4, null)).isIn(1, 3);
        for (int i = 0; i < 1000; i++) assertThat(s.sample(new float[] {3, pinf, 1e30f, pinf}, 0, 4, null)).isIn(1, 3);
        assertThatThrownBy(() -> s.sample(new float[] {ninf, ninf}, 0, 2, null)).hasMessageContaining("-Infinity");
    }

    @Test
    void nanLogitsAndBadRowsAreRejected() {
        Sampler s = new Sampler(new Sampler.Config(1f, 0, 1f, 1));
        float[] row = {0, 1, 2, Float.NaN, 4};
        assertThatThrownBy(() -> s.sample(row, 1, 4, null)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("token 2").hasMessageContaining("logits[3]").hasMessageContaining("NaN");
        assertThatThrownBy(() -> new Sampler(Sampler.Config.greedy()).sample(row, 0, 5, null)).hasMessageContaining("token 3");
        assertThatThrownBy(() -> s.sample(new float[4], 2, 3, null)).hasMessageContaining("[2, 5)").hasMessageContaining("length 4");
        assertThatThrownBy(() -> s.sample(new float[4], -1, 3, null)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> s.sample(new float[4], 0, 0, null)).hasMessageContaining("vocab");
    }

    @Test
    void badConfigsAreRejectedNamingTheValue() {
        assertThatThrownBy(() -> new Sampler.Config(-0.5f, 0, 1f, 0)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("-0.5");
        assertThatThrownBy(() -> new Sampler.Config(Float.NaN, 0, 1f, 0)).hasMessageContaining("NaN");
        assertThatThrownBy(() -> new Sampler.Config(Float.POSITIVE_INFINITY, 0, 1f, 0)).hasMessageContaining("Infinity");
        assertThatThrownBy(() -> new Sampler.Config(1f, -3, 1f, 0)).hasMessageContaining("-3");
        assertThatThrownBy(() -> new Sampler.Config(1f, 0, 0f, 0)).hasMessageContaining("topP").hasMessageContaining("0.0");
        assertThatThrownBy(() -> new Sampler.Config(1f, 0, 1.5f, 0)).hasMessageContaining("1.5");
        assertThatThrownBy(() -> new Sampler.Config(1f, 0, Float.NaN, 0)).hasMessageContaining("NaN");
        assertThat(Sampler.Config.greedy()).isEqualTo(new Sampler.Config(0f, 0, 1f, 0));
    }

    private static double[] frequencies(Sampler s, float[] logits, BitSet banned) {
        // the row sits at an offset inside a larger array, as in a [T, V] logits tensor
        float[] padded = new float[logits.length + 3];
        System.arraycopy(logits, 0, padded, 3, logits.length);
        double[] f = new double[logits.length];
        for (int i = 0; i < DRAWS; i++) f[s.sample(padded, 3, logits.length, banned)]++;
        for (int i = 0; i < f.length; i++) f[i] /= DRAWS;
        return f;
    }

    private static double[] softmax(float[] logits, float t, boolean[] keep) {
        double[] p = new double[logits.length];
        double sum = 0;
        for (int i = 0; i < p.length; i++) if (keep[i]) sum += p[i] = Math.exp(logits[i] / t);
        for (int i = 0; i < p.length; i++) p[i] /= sum;
        return p;
    }

    private static void assertClose(double[] freq, double[] expected) {
        for (int i = 0; i < freq.length; i++) {
            if (expected[i] == 0) assertThat(freq[i]).as("token %d", i).isZero();
            else assertThat(freq[i]).as("token %d", i).isCloseTo(expected[i], within(FREQ_TOLERANCE));
        }
    }
}
