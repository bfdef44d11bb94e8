package dev.perceiver4j.cli;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.ProfilingBackend;
import dev.perceiver4j.model.ar.PerceiverAR;
import dev.perceiver4j.model.ar.PerceiverArConfig;
import dev.perceiver4j.model.ar.PerceiverArGenerator;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import dev.perceiver4j.train.AdamW;
import dev.perceiver4j.train.RecordedStep;

import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Perceiver AR workloads of {@code bench}: a full training step (forward, backward, AdamW) at one
 * or several context lengths with fixed latents, and cached against uncached generation.
 * Random weights and random bytes; every ratio compares runs made in the same process.
 */
final class ArBench {
    private ArBench() {}

    /** Mean and minimum milliseconds of {@code reps} timed runs after {@code warmup} untimed ones. */
    record Timing(double mean, double min, double median, double max, int count) {
        /** The summary of timed repetitions, ms each. */
        static Timing of(double[] ms) {
            double[] sorted = ms.clone();
            Arrays.sort(sorted);
            int n = sorted.length;
            double median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
            return new Timing(Arrays.stream(ms).average().orElseThrow(), sorted[0], median, sorted[n - 1], n);
        }
    }

    static Timing time(Backend be, int warmup, int reps, Runnable r) {
        double[] ms = new double[reps];
        for (int i = -warmup; i < reps; i++) {
            if (i == 0 && be instanceof ProfilingBackend p) p.reset();
            long a = System.nanoTime();
            r.run();
            be.synchronize();
            if (i >= 0) ms[i] = (System.nanoTime() - a) / 1e6;
        }
        if (be instanceof ProfilingBackend p) System.out.print(p.report(reps));
        return Timing.of(ms);
    }

    /** Random batches a training-step benchmark cycles through (drawn before timing, as a prefetching loader would have them). */
    static final int BATCHES = 4;

    /**
     * One training step per call: one of {@link #BATCHES} random batches (drawn once, before timing:
     * the reference benchmark also times its steps on data it made beforehand), forward with prefix
     * dropout drawn per step, backward, gradient clipping, AdamW. Forward and backward are a
     * {@link RecordedStep} (one CUDA graph replayed per step from the second step on); the prefix
     * dropout is drawn on the host and written into its persistent inputs first.
     */
    static TrainStep trainStep(Backend be, PerceiverArConfig c, int batch, long seed) {
        PerceiverAR m = new PerceiverAR(be, c, seed);
        Params p = m.params();
        AdamW opt = new AdamW(be, AdamW.Config.defaults(1e-4f), p.pack(), p.gradients());
        SplittableRandom rng = new SplittableRandom(seed);
        int n = c.maxSeqLen(), lat = c.maxLatents();
        int[][] idsPool = new int[BATCHES][], targetsPool = new int[BATCHES][];
        for (int i = 0; i < BATCHES; i++) {
            idsPool[i] = rng.ints((long) batch * n, 6, 262).toArray();
            targetsPool[i] = rng.ints((long) batch * lat, 6, 262).toArray();
        }
        PerceiverAR.TrainingTensors inputs = PerceiverAR.TrainingTensors.persistent(be, m.trainingInputs(idsPool[0], batch, n - lat, 0L));
        Tensor targets = be.persistentZeros(Shape.of(batch, lat), DType.I32);
        RecordedStep forwardBackward = new RecordedStep(be, s -> {
            opt.zeroGrad();   // inside the recording, as in BenchCommand's masked-LM step
            F.crossEntropy(m.forwardTraining(inputs, s), targets, -1, 0f).backward();
        }, "Perceiver AR training step");
        long[] step = {0};
        return new TrainStep(forwardBackward, () -> {
            int k = (int) (step[0] % BATCHES);
            long s = ++step[0];
            inputs.write(be, m.trainingInputs(idsPool[k], batch, n - lat, s));
            be.writeInts(targetsPool[k], targets);
            forwardBackward.run(s);
            opt.clipGradNorm(1.0);
            opt.step(1e-4f);
        });
    }

    /** A benchmarked training step; close() frees its recording (the next context length records its own). */
    record TrainStep(RecordedStep forwardBackward, Runnable step) implements Runnable, AutoCloseable {
        @Override
        public void run() {
            step.run();
        }

        @Override
        public void close() {
            forwardBackward.close();
        }
    }

    /** Training step time at each context length with fixed latents; ratios against the first length. */
    static void scaling(Backend be, PerceiverArConfig base, List<Integer> lengths, int batch, int warmup, int reps) {
        System.out.printf(Locale.ROOT, "Perceiver AR training step, batch %d, %d latents, %d channels, %d layers, prefix dropout %.2f, %s%n",
                batch, base.maxLatents(), base.numChannels(), base.numSelfAttentionLayers(), base.crossAttentionDropout(), be.name());
        // JIT warm-up on the first shape, so that compilation does not land in the first row.
        try (TrainStep warm = trainStep(be, base.withSizes(lengths.getFirst(), base.maxLatents()), batch, 2L)) {
            for (int i = 0; i < 6; i++) warm.run();
            be.synchronize();
        }
        System.out.printf(Locale.ROOT, "%8s %12s %12s %16s %16s %10s %10s %10s%n", "context", "mean ms", "min ms", "target bytes/s", "input bytes/s",
                "vs first", "GFLOP", "FLOPs vs");
        double first = Double.NaN, firstFlops = Double.NaN;
        int recordedOps = 0;
        for (int n : lengths) {
            // context = latents is a model without prefix (the latents attend to each other only).
            if (n < base.maxLatents()) throw new IllegalArgumentException("context " + n + " is shorter than the " + base.maxLatents() + " latents");
            PerceiverArConfig c = base.withSizes(n, base.maxLatents());
            Timing t;
            try (TrainStep step = trainStep(be, c, batch, 1L)) {
                t = time(be, warmup, reps, step);
                recordedOps = step.forwardBackward().recordedOps();
            }
            double flops = forwardFlops(c, batch).training();
            if (Double.isNaN(first)) {
                first = t.mean();
                firstFlops = flops;
            }
            System.out.printf(Locale.ROOT, "%8d %12.1f %12.1f %,16.0f %,16.0f %9.2fx %10.2f %9.2fx%n", n, t.mean(), t.min(),
                    batch * base.maxLatents() / (t.mean() / 1e3), (double) batch * n / (t.mean() / 1e3), t.mean() / first,
                    flops / 1e9, flops / firstFlops);
        }
        System.out.println(recordedOps > 0 ? "forward and backward: one recording replayed per step (" + recordedOps + " ops in the last one)"
                : "forward and backward: op by op (the backend does not record)");
        BenchCommand.printMemory(be);
    }

    /** Forward multiply-add FLOPs (×2) of a Perceiver AR step: matrix products and attention, separately. */
    record ForwardFlops(double products, double attention) {
        /** A training step: backward ≈ 2 × forward. */
        double training() {
            return 3 * (products + attention);
        }
    }

    /**
     * Analytic forward FLOPs of {@code c} at its full context ({@code maxSeqLen}, {@code maxLatents}),
     * {@code batch} sequences, prefix dropout applied as in training. Products: q/o projections
     * and MLPs of the cross-attention over the latents, its k/v projections over the kept prefix
     * plus the latents, the same per latent layer, the logits. Attention: scores and weighted sums,
     * each latent seeing the kept prefix and, causally, half the latents on average. Not counted:
     * embeddings, layer norms, softmax and elementwise ops (memory-bound, no multiply-adds).
     */
    static ForwardFlops forwardFlops(PerceiverArConfig c, int batch) {
        double ch = c.numChannels(), lat = c.maxLatents();
        int prefix = c.maxSeqLen() - c.maxLatents();
        double kept = c.crossAttentionDropout() > 0 && c.crossAttentionDropoutMode() == PerceiverArConfig.PrefixDropoutMode.SUBSET
                ? PerceiverAR.keptPrefix(prefix, c.crossAttentionDropout()) : prefix;
        double crossProducts = 2 * lat * ch * ch + 2 * (kept + lat) * ch * ch + 2 * lat * ch * ch * c.crossAttentionWideningFactor();
        double selfProducts = 4 * lat * ch * ch + 2 * lat * ch * ch * c.selfAttentionWideningFactor();
        double products = crossProducts + c.numSelfAttentionLayers() * selfProducts + lat * ch * c.vocabSize();
        double attention = 2 * lat * (kept + lat / 2) * ch + c.numSelfAttentionLayers() * 2 * lat * (lat / 2) * ch;
        return new ForwardFlops(2 * batch * products, 2 * batch * attention);
    }

    /** Cached generation (latent strides 1, N/8, N/2) against the uncached forward per byte, same model, same process. */
    static void generation(Backend be, PerceiverArConfig c, int promptLen, int bytes, int warmup, int reps) {
        PerceiverAR m = new PerceiverAR(be, c, 1L);
        int[] prompt = new SplittableRandom(3).ints(promptLen, 6, 262).toArray();
        System.out.printf(Locale.ROOT, "Perceiver AR generation, prompt %d bytes + %d new, context %d, %d latents, %d channels, %d layers, %s%n",
                promptLen, bytes, c.maxSeqLen(), c.maxLatents(), c.numChannels(), c.numSelfAttentionLayers(), be.name());
        Timing uncached = time(be, Math.min(warmup, 1), Math.max(1, reps / 2), () -> {
            int[] seq = Arrays.copyOf(prompt, promptLen + bytes);
            for (int i = 0; i < bytes; i++) seq[promptLen + i] = 6 + (i * 7) % 256;
            try (var ng = Autograd.noGrad()) {
                for (int i = 0; i <= bytes; i++) {
                    int n = promptLen + i, ws = Math.max(0, n - c.maxSeqLen()), len = n - ws;
                    try (Scope s = Scope.open()) {
                        m.forward(be.fromInts(Arrays.copyOfRange(seq, ws, n), Shape.of(1, len)), null, Math.max(0, len - c.maxLatents())).toFloatArray();
                    }
                }
            }
        });
        System.out.printf(Locale.ROOT, "uncached forward per byte:      %8.1f bytes/s (mean %.0f ms)%n", bytes / (uncached.mean() / 1e3), uncached.mean());
        PerceiverArGenerator.Options d = PerceiverArGenerator.Options.defaults(c);
        for (int stride : new int[] {1, Math.max(1, c.maxLatents() / 8), Math.max(1, c.maxLatents() / 2)}) {
            PerceiverArGenerator.Options o = new PerceiverArGenerator.Options(c.maxLatents(), stride, d.windowStride());
            // One generator per stride, as in a generate session: the warm-up passes record its step.
            try (PerceiverArGenerator g = new PerceiverArGenerator(m, o)) {
                double[] startMs = new double[reps], appendMs = new double[reps];
                for (int r = -warmup; r < reps; r++) {
                    long t0 = System.nanoTime();
                    g.start(prompt);
                    be.synchronize();
                    long t1 = System.nanoTime();
                    for (int i = 0; i < bytes; i++) g.append(6 + (i * 7) % 256);
                    be.synchronize();
                    if (r >= 0) {
                        startMs[r] = (t1 - t0) / 1e6;
                        appendMs[r] = (System.nanoTime() - t1) / 1e6;
                    }
                }
                double start = Arrays.stream(startMs).average().orElseThrow(), append = Arrays.stream(appendMs).average().orElseThrow();
                System.out.printf(Locale.ROOT, "cached, exact, latent stride %3d: %8.1f bytes/s (prompt %.0f ms + %d new bytes in %.0f ms: %.1f new bytes/s), %.1fx uncached; %s%n",
                        stride, bytes / ((start + append) / 1e3), start, bytes, append, bytes / (append / 1e3), uncached.mean() / (start + append),
                        g.stepRecorded() ? "one-position step replayed as a recording of " + g.recordedOps() + " ops" : "one-position step op by op");
            }
        }
        BenchCommand.printMemory(be);
    }
}
