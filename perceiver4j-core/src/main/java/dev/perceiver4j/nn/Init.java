package dev.perceiver4j.nn;

import java.util.SplittableRandom;

/** How a parameter is initialised; each parameter draws from its own stream (seed, name). */
public sealed interface Init {
    void fill(float[] a, int off, int n, SplittableRandom rng);

    record Zeros() implements Init {
        public void fill(float[] a, int off, int n, SplittableRandom rng) {
            java.util.Arrays.fill(a, off, off + n, 0f);
        }
    }

    record Constant(float value) implements Init {
        public void fill(float[] a, int off, int n, SplittableRandom rng) {
            java.util.Arrays.fill(a, off, off + n, value);
        }
    }

    /** N(0, std²). */
    record Normal(double std) implements Init {
        public void fill(float[] a, int off, int n, SplittableRandom rng) {
            for (int i = 0; i < n; i++) a[off + i] = (float) (gaussian(rng) * std);
        }
    }

    /** U(-bound, bound). */
    record Uniform(double bound) implements Init {
        public void fill(float[] a, int off, int n, SplittableRandom rng) {
            for (int i = 0; i < n; i++) a[off + i] = (float) ((rng.nextDouble() * 2 - 1) * bound);
        }
    }

    static Init zeros() {
        return new Zeros();
    }

    static Init ones() {
        return new Constant(1f);
    }

    static Init normal(double std) {
        return new Normal(std);
    }

    /** PyTorch's nn.Linear default for a weight with {@code fanIn} inputs: U(±1/√fanIn). */
    static Init linear(int fanIn) {
        return new Uniform(1.0 / Math.sqrt(fanIn));
    }

    private static double gaussian(SplittableRandom rng) {
        // Box–Muller; deterministic for a given stream.
        double u1 = rng.nextDouble(), u2 = rng.nextDouble();
        return Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2);
    }
}
