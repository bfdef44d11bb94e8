package dev.perceiver4j.generate;

import java.util.Arrays;
import java.util.BitSet;
import java.util.Objects;
import java.util.SplittableRandom;

/**
 * Picks the next token from one row of logits: temperature, then top-k, then top-p (nucleus),
 * then a draw from the renormalised distribution. Probabilities are computed in double precision
 * with the maximum subtracted first.
 *
 * <pre>
 *   p_i ∝ exp((l_i − max l) / T)            over the tokens not banned
 *   top-k: keep the k largest logits         (ties: lower index first)
 *   top-p: keep the smallest prefix of those, by decreasing probability, whose mass ≥ topP
 * </pre>
 * A sampler owns its random generator (seeded once), so a given seed and sequence of calls
 * always gives the same tokens. Not thread-safe.
 */
public final class Sampler {
    /**
     * Sampling settings. {@code temperature} 0 is greedy (argmax, lowest index wins ties;
     * top-k and top-p then do not matter and no random number is drawn); {@code topK} 0 is off;
     * {@code topP} 1 is off; {@code seed} seeds the sampler's generator.
     */
    public record Config(float temperature, int topK, float topP, long seed) {
        public Config {
            if (!(temperature >= 0) || Float.isInfinite(temperature)) throw new IllegalArgumentException("temperature must be finite and >= 0, got " + temperature);
            if (topK < 0) throw new IllegalArgumentException("topK must be >= 0 (0 = off), got " + topK);
            if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("topP must be in (0, 1] (1 = off), got " + topP);
        }

        /** Argmax decoding. */
        public static Config greedy() {
            return new Config(0f, 0, 1f, 0L);
        }
    }

    private final Config config;
    private final SplittableRandom random;

    public Sampler(Config c) {
        this.config = Objects.requireNonNull(c, "config");
        this.random = new SplittableRandom(c.seed());
    }

    public Config config() {
        return config;
    }

    /**
     * A token id in {@code [0, vocab)} drawn from {@code logits[offset .. offset+vocab)}. Ids set
     * in {@code banned} (may be null) are removed before top-k and top-p and are never returned.
     *
     * @throws IllegalArgumentException if the row lies outside {@code logits}, a logit is NaN
     *     (the message names its index), every id is banned, or (when sampling) every allowed
     *     logit is −∞
     */
    public int sample(float[] logits, int offset, int vocab, BitSet banned) {
        Objects.requireNonNull(logits, "logits");
        if (vocab < 1) throw new IllegalArgumentException("vocab must be >= 1, got " + vocab);
        if (offset < 0 || offset > logits.length - vocab) {
            throw new IllegalArgumentException("row [" + offset + ", " + ((long) offset + vocab) + ") is outside logits of length " + logits.length);
        }
        int[] candidates = new int[vocab];
        int n = 0;
        for (int i = 0; i < vocab; i++) {
            if (Float.isNaN(logits[offset + i])) throw new IllegalArgumentException("logit of token " + i + " (logits[" + (offset + i) + "]) is NaN");
            if (banned == null || !banned.get(i)) candidates[n++] = i;
        }
        if (n == 0) throw new IllegalArgumentException("every token of the vocabulary (" + vocab + ") is banned");

        if (config.temperature() == 0f) return argmax(logits, offset, candidates, n);

        boolean truncate = (config.topK() > 0 && config.topK() < n) || config.topP() < 1f;
        if (truncate) candidates = byDecreasingLogit(logits, offset, candidates, n);

        double max = Double.NEGATIVE_INFINITY;
        for (int j = 0; j < n; j++) max = Math.max(max, logits[offset + candidates[j]]);
        if (max == Double.NEGATIVE_INFINITY) throw new IllegalArgumentException("every allowed logit is -Infinity: nothing to sample");
        double[] weight = new double[n];
        for (int j = 0; j < n; j++) {
            double l = logits[offset + candidates[j]];
            if (max == Double.POSITIVE_INFINITY) weight[j] = l == max ? 1 : 0; // the limit: uniform over the +inf logits
            else weight[j] = Math.exp((l - max) / config.temperature());
        }

        int keep = n;
        if (config.topK() > 0) keep = Math.min(keep, config.topK());
        if (config.topP() < 1f) keep = nucleus(weight, keep, config.topP());

        double total = 0;
        for (int j = 0; j < keep; j++) total += weight[j];
        double u = random.nextDouble() * total;
        double cumulative = 0;
        int last = -1;
        for (int j = 0; j < keep; j++) {
            if (weight[j] == 0) continue;
            cumulative += weight[j];
            last = j;
            if (u < cumulative) return candidates[j];
        }
        return candidates[last]; // u rounded up to the total: the last token with weight
    }

    /** Number of leading (largest) weights whose share of the first {@code keep} reaches {@code topP}; at least 1. */
    private static int nucleus(double[] weight, int keep, double topP) {
        double total = 0;
        for (int j = 0; j < keep; j++) total += weight[j];
        double cumulative = 0;
        for (int j = 0; j < keep; j++) {
            cumulative += weight[j];
            if (cumulative >= topP * total) return j + 1;
        }
        return keep;
    }

    private static int argmax(float[] logits, int offset, int[] candidates, int n) {
        int best = candidates[0];
        for (int j = 1; j < n; j++) if (logits[offset + candidates[j]] > logits[offset + best]) best = candidates[j];
        return best;
    }

    /** The first {@code n} candidates ordered by decreasing logit, lower index first among equals. */
    private static int[] byDecreasingLogit(float[] logits, int offset, int[] candidates, int n) {
        Integer[] boxed = new Integer[n];
        for (int j = 0; j < n; j++) boxed[j] = candidates[j];
        Arrays.sort(boxed, (a, b) -> {
            int byLogit = Float.compare(logits[offset + b], logits[offset + a]);
            return byLogit != 0 ? byLogit : Integer.compare(a, b);
        });
        int[] sorted = new int[n];
        for (int j = 0; j < n; j++) sorted[j] = boxed[j];
        return sorted;
    }
}
