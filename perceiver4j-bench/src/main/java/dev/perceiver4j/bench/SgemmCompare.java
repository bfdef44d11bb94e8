package dev.perceiver4j.bench;

import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Pure-Java SGEMM configurations timed in turn, round after round, in one process: on a shared host
 * separate JMH forks of two configurations differ by more than the configurations do, so this
 * alternates them and reports each one's median over the rounds.
 *
 * <pre>
 *   java --add-modules jdk.incubator.vector -cp perceiver4j-bench/target/perceiver4j-bench.jar \
 *       dev.perceiver4j.bench.SgemmCompare --shape 256x1280x1280 --threads 2 --rounds 15 \
 *       6x4/auto 8x2/auto 6x4/packed
 * </pre>
 * A configuration is {@code KERNEL/FORM}: the register tile ({@code 8x2}, {@code 6x4} or {@code 4x2}) and the
 * formulation ({@link JavaSgemm.Formulation#parse}): {@code auto} (the transposed one where it pays,
 * as in the models), {@code onepass} (the same, each A^T sliver walked in one pass over k as before
 * session 19 instead of L1-sized steps), {@code always} (transposed for every product) or
 * {@code packed} (the usual formulation, all of B packed). Products are C = A . B^T with B stored [N,K] (the nn.Linear layout), cycling through
 * {@code --weights} distinct B matrices (default 16: 105 MB at 1280 x 1280, read from memory as in
 * a model's forward pass); {@code KERNEL/FORM@W} cycles through the first W of them only ({@code @1}: one
 * weight, read from cache). Each round runs {@code --reps} products per configuration.
 *
 * <p>{@code --peak} first times a loop of 24 independent vector FMAs per iteration on registers only
 * (no loads), per thread of {@code --threads}: the rate the CPU's FMA units give the Vector API, the
 * ceiling against which the products' GFLOP/s are a fraction.
 */
public final class SgemmCompare {

    private SgemmCompare() {
    }

    public static void main(String[] args) {
        String shape = "256x1280x1280";
        int threads = 2, rounds = 15, reps = 16, weights = 16;
        boolean peak = false;
        List<String> configs = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--shape" -> shape = args[++i];
                case "--threads" -> threads = Integer.parseInt(args[++i]);
                case "--rounds" -> rounds = Integer.parseInt(args[++i]);
                case "--reps" -> reps = Integer.parseInt(args[++i]);
                case "--weights" -> weights = Integer.parseInt(args[++i]);
                case "--peak" -> peak = true;
                default -> configs.add(args[i]);
            }
        }
        if (configs.isEmpty()) configs = List.of("6x4/auto", "8x2/auto");
        if (peak) fmaPeak(threads);
        int[] mkn = SgemmBench.parseShape(shape);
        int m = mkn[0], k = mkn[1], n = mkn[2];
        SplittableRandom rnd = new SplittableRandom(7);
        float[] a = random(m * k, rnd), c = new float[m * n];
        float[][] bs = new float[weights][];
        for (int w = 0; w < weights; w++) bs[w] = random(n * k, rnd);

        try (CpuPool pool = CpuPool.create(threads)) {
            JavaSgemm[] impls = new JavaSgemm[configs.size()];
            int[] cycle = new int[configs.size()]; // weights each configuration cycles through
            for (int i = 0; i < impls.length; i++) {
                String[] at = configs.get(i).split("@", -1);
                cycle[i] = at.length == 2 ? parseCount(at[1]) : weights;
                if (at.length > 2 || cycle[i] < 1 || cycle[i] > weights) {
                    throw new IllegalArgumentException("a configuration is KERNEL/FORM or KERNEL/FORM@W, W = 1 to --weights (" + weights
                            + "), got " + configs.get(i));
                }
                impls[i] = parse(at[0], pool);
            }
            double[][] us = new double[impls.length][rounds];
            int next = 0;
            for (int round = -2; round < rounds; round++) { // two warm-up rounds
                for (int i = 0; i < impls.length; i++) {
                    long t0 = System.nanoTime();
                    for (int r = 0; r < reps; r++) {
                        impls[i].sgemm(false, true, m, n, k, 1f, a, 0, k, bs[next % cycle[i]], 0, k, 0f, c, 0, n);
                        next = (next + 1) % weights;
                    }
                    if (round >= 0) us[i][round] = (System.nanoTime() - t0) / 1e3 / reps;
                }
            }
            double flop = 2.0 * m * n * k;
            System.out.printf(Locale.ROOT, "SgemmCompare %s, %d threads, %d rounds x %d products, %d weights%n", shape, threads, rounds, reps, weights);
            double base = median(us[0]);
            for (int i = 0; i < impls.length; i++) {
                double med = median(us[i]);
                double[] sorted = us[i].clone();
                Arrays.sort(sorted);
                System.out.printf(Locale.ROOT, "  %-12s median %9.1f us (min %9.1f, max %9.1f)  %6.1f GFLOP/s  %5.3fx the first%n",
                        configs.get(i), med, sorted[0], sorted[sorted.length - 1], flop / med / 1e3, med / base);
            }
        }
    }

    /** W of {@code KERNEL/FORM@W}; -1 (rejected by the caller's range check) when it is not a number. */
    private static int parseCount(String digits) {
        try {
            return Integer.parseInt(digits);
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    private static JavaSgemm parse(String config, CpuPool pool) {
        String[] parts = config.split("/");
        if (parts.length != 2) {
            throw new IllegalArgumentException("a configuration is KERNEL/FORM (KERNEL 8x2, 6x4 or 4x2; FORM auto, packed, onepass or always), got "
                    + config);
        }
        return new JavaSgemm(pool, JavaSgemm.Kernel.parse(parts[0]), JavaSgemm.Formulation.parse(parts[1]));
    }

    /** Prints the register-only FMA rate of each of {@code threads} threads running at once, three rounds. */
    private static void fmaPeak(int threads) {
        int lanes = FloatVector.SPECIES_PREFERRED.length();
        long iterations = 20_000_000L;
        for (int round = 0; round < 3; round++) {
            double[] gflops = new double[threads];
            Thread[] ts = new Thread[threads];
            for (int t = 0; t < threads; t++) {
                int id = t;
                ts[t] = new Thread(() -> {
                    for (int w = 0; w < 200; w++) fmaLoop(20_000, 1.0001f); // compiled (C2) before timing
                    long t0 = System.nanoTime();
                    float sink = fmaLoop(iterations, 1.0001f);
                    gflops[id] = iterations * 24.0 * lanes * 2 / (System.nanoTime() - t0) + (sink == 42f ? 1e-9 : 0);
                });
                ts[t].start();
            }
            for (Thread th : ts) {
                try {
                    th.join();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return;
                }
            }
            StringBuilder line = new StringBuilder(String.format(Locale.ROOT, "FMA peak, %d-bit vectors, %d threads at once, GFLOP/s per thread:",
                    lanes * 32, threads));
            for (double g : gflops) line.append(String.format(Locale.ROOT, " %.1f", g));
            System.out.println(line);
        }
    }

    /** 24 independent accumulators, one FMA each per iteration, no memory operands. */
    private static float fmaLoop(long iterations, float x) {
        VectorSpecies<Float> s = FloatVector.SPECIES_PREFERRED;
        FloatVector b0 = FloatVector.broadcast(s, x), b1 = FloatVector.broadcast(s, x * 0.5f);
        FloatVector b2 = FloatVector.broadcast(s, x * 0.25f), b3 = FloatVector.broadcast(s, x * 0.125f);
        FloatVector v = FloatVector.broadcast(s, 0.999f), z = FloatVector.zero(s);
        FloatVector c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z, c20 = z, c21 = z, c22 = z, c23 = z;
        FloatVector c30 = z, c31 = z, c32 = z, c33 = z, c40 = z, c41 = z, c42 = z, c43 = z, c50 = z, c51 = z, c52 = z, c53 = z;
        for (long i = 0; i < iterations; i++) {
            c00 = v.fma(b0, c00); c01 = v.fma(b1, c01); c02 = v.fma(b2, c02); c03 = v.fma(b3, c03);
            c10 = v.fma(b0, c10); c11 = v.fma(b1, c11); c12 = v.fma(b2, c12); c13 = v.fma(b3, c13);
            c20 = v.fma(b0, c20); c21 = v.fma(b1, c21); c22 = v.fma(b2, c22); c23 = v.fma(b3, c23);
            c30 = v.fma(b0, c30); c31 = v.fma(b1, c31); c32 = v.fma(b2, c32); c33 = v.fma(b3, c33);
            c40 = v.fma(b0, c40); c41 = v.fma(b1, c41); c42 = v.fma(b2, c42); c43 = v.fma(b3, c43);
            c50 = v.fma(b0, c50); c51 = v.fma(b1, c51); c52 = v.fma(b2, c52); c53 = v.fma(b3, c53);
        }
        FloatVector sum = c00.add(c01).add(c02).add(c03).add(c10).add(c11).add(c12).add(c13).add(c20).add(c21).add(c22).add(c23)
                .add(c30).add(c31).add(c32).add(c33).add(c40).add(c41).add(c42).add(c43).add(c50).add(c51).add(c52).add(c53);
        return sum.reduceLanes(VectorOperators.ADD);
    }

    private static double median(double[] xs) {
        double[] s = xs.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }

    private static float[] random(int len, SplittableRandom rnd) {
        float[] x = new float[len];
        for (int i = 0; i < len; i++) x[i] = (float) (rnd.nextDouble() * 2 - 1);
        return x;
    }
}
