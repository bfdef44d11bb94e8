package dev.perceiver4j.cli;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Backends;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.Sgemm;
import dev.perceiver4j.backend.cpu.gemm.Sgemms;
import dev.perceiver4j.model.ar.PerceiverArConfig;
import dev.perceiver4j.model.io.PerceiverConfig;
import dev.perceiver4j.model.io.PerceiverForMaskedLM;
import dev.perceiver4j.model.io.RecordedMaskedLm;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Tensor;
import dev.perceiver4j.train.AdamW;
import dev.perceiver4j.train.RecordedStep;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.text.ByteTokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Times standard model workloads end to end (random weights, random bytes) and prints one line
 * per workload. Kernel-level benchmarks live in the JMH lab ({@code ./perceiver4j jmh}).
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = {"Time a standard workload end to end on the chosen backend (random weights, random bytes).",
                "Workloads:",
                "  mlm-forward  forward pass of the deepmind/language-perceiver architecture (201M parameters)",
                "  mlm-train    masked-LM training step of that model (15%% of positions scored, dropout on, AdamW)",
                "  ar-train     Perceiver AR training step (forward, backward, AdamW) per --contexts length",
                "               (>= --latents; equal: no prefix), with analytic GFLOP and the FLOP ratio",
                "  ar-generate  Perceiver AR exact cached generation against the uncached forward per byte"},
        footer = {"", "Examples:",
                "  ./perceiver4j bench --threads 2                       language-perceiver forward, batch 1 x 2048 bytes",
                "  ./perceiver4j bench --threads 2 --gemm java --compare-gemm packed   two SGEMMs, alternating passes",
                "  python3 scripts/hf_cpu_duel.py 2 20 -- ./perceiver4j bench --backend cpu --threads 2 --reps 20 --paced",
                "                                                        passes in turn with HF PyTorch's, pair by pair",
                "  ./perceiver4j bench --batch 4 --reps 3 --threads 16",
                "  ./perceiver4j bench --backend cuda --workload mlm-train --batch 16",
                "  ./perceiver4j bench --backend cuda --batch 32 --profile   time per op and shape (adds a wait after each op)",
                "  ./perceiver4j bench --workload ar-train --contexts 1024,2048,4096,8192,16384",
                "  ./perceiver4j bench --workload ar-generate --length 1024 --gen-bytes 200"})
final class BenchCommand implements Runnable {
    @Mixin
    Main.Common common = new Main.Common();

    @Option(names = "--workload", defaultValue = "mlm-forward", description = "workload (default: ${DEFAULT-VALUE})")
    String workload;

    @Option(names = "--batch", defaultValue = "1", description = "sequences per forward (default: ${DEFAULT-VALUE})")
    int batch;

    @Option(names = "--length", defaultValue = "2048", description = "bytes per sequence (default: ${DEFAULT-VALUE})")
    int length;

    @Option(names = "--warmup", defaultValue = "2", description = "untimed passes first (default: ${DEFAULT-VALUE})")
    int warmup;

    @Option(names = "--reps", defaultValue = "5", description = "timed passes (default: ${DEFAULT-VALUE})")
    int reps;

    @Option(names = "--contexts", split = ",", defaultValue = "1024,2048,4096,8192,16384", description = "ar-train: context lengths (default: ${DEFAULT-VALUE})")
    List<Integer> contexts;

    @Option(names = "--latents", defaultValue = TrainCommand.LATENTS, description = "ar-*: latent positions (default: ${DEFAULT-VALUE})")
    int latents;

    @Option(names = "--channels", defaultValue = TrainCommand.CHANNELS, description = "ar-*: model width (default: ${DEFAULT-VALUE})")
    int channels;

    @Option(names = "--heads", defaultValue = TrainCommand.HEADS, description = "ar-*: attention heads (default: ${DEFAULT-VALUE})")
    int heads;

    @Option(names = "--layers", defaultValue = TrainCommand.LAYERS, description = "ar-*: self-attention layers (default: ${DEFAULT-VALUE})")
    int layers;

    @Option(names = "--prefix-dropout", defaultValue = TrainCommand.PREFIX_DROPOUT, description = "ar-train: prefix dropout (default: ${DEFAULT-VALUE})")
    float prefixDropout;

    @Option(names = "--profile", description = "also print the time of every op by shape (slower: waits after each op)")
    boolean profile;

    @Option(names = "--gen-bytes", defaultValue = "200", description = "ar-generate: bytes generated per rep (default: ${DEFAULT-VALUE})")
    int genBytes;

    @Option(names = "--attention-dropout", description = "mlm-*: attention_probs_dropout_prob of the model (default: the"
            + " language-perceiver's 0.1; mlm-train applies it, 0 shows what the dropout costs)")
    Float attentionDropout;

    @Option(names = "--paced", description = "mlm-forward: after the warm-up passes print 'paced: ready', then run one timed pass per line"
            + " read from standard input (at most --reps; the end of input stops early) and print 'pass N: X ms' after each: for taking"
            + " turns with another program on the same CPU (scripts/hf_cpu_duel.py runs HF PyTorch's passes in between)")
    boolean paced;

    @Option(names = "--compare-gemm", description = "mlm-forward on the CPU: time the passes alternately with the matrix products of --gemm /"
            + " --gemm-kernel and with this one, in one process, and print both and their ratio: packed (the pure-Java kernel"
            + " always packing B, without its transposed formulation), static (one fixed strip of each product per thread instead of"
            + " claimed pieces), 8x2, 6x4, 4x2, cblas, or another formulation of the same kernel, choices joined by '+':"
            + " unaligned (packed operands wherever their arrays start), scalarpack (transposing copies one float at a time),"
            + " norows (the 2048-row products by the blocked algorithm), noinplace (weight rows copied for the 6x4 tile),"
            + " nofirstpass (first slivers in L1 steps), chunkN (the transposed products' A in chunks of N rows, 6x4),"
            + " blockN, rowblockN, stepN, panelN (block rows, L1 step, K panel rows);"
            + " norows+noinplace+block128 = session 24's paths, with"
            + " +unaligned+scalarpack session 23's")
    String compareGemm;

    @Override
    public void run() {
        common.apply();
        if (profile) System.setProperty("perceiver4j.profile", "true");
        if (batch < 1 || length < 1 || reps < 1 || warmup < 0) throw new IllegalArgumentException("--batch, --length and --reps must be >= 1, --warmup >= 0");
        if (compareGemm != null && !workload.equals("mlm-forward")) {
            throw new IllegalArgumentException("--compare-gemm applies to --workload mlm-forward only");
        }
        if (paced && (!workload.equals("mlm-forward") || compareGemm != null || profile)) {
            throw new IllegalArgumentException("--paced applies to --workload mlm-forward alone (without --compare-gemm or --profile)");
        }
        switch (workload) {
            case "mlm-forward" -> {
                if (compareGemm == null) mlmForward();
                else mlmForwardCompared();
            }
            case "mlm-train" -> mlmTrain();
            case "ar-train" -> ArBench.scaling(Backends.get(), arConfig(contexts.getFirst()), contexts, batch, warmup, reps);
            case "ar-generate" -> ArBench.generation(Backends.get(), arConfig(length), Math.max(1, length / 2), genBytes, warmup, reps);
            default -> throw new IllegalArgumentException("unknown workload '" + workload + "'; available: mlm-forward, mlm-train, ar-train, ar-generate");
        }
    }

    private PerceiverArConfig arConfig(int seqLen) {
        return PerceiverArConfig.krasserm(heads, layers, 1, 4, prefixDropout, ByteTokenizer.VOCAB, seqLen, Math.min(latents, seqLen), channels, false, true);
    }

    private PerceiverForMaskedLM languagePerceiver(Backend be) {
        PerceiverConfig c = PerceiverConfig.languagePerceiver();
        if (attentionDropout != null) c = c.withAttentionDropout(attentionDropout);
        if (length > c.maxPositionEmbeddings()) throw new IllegalArgumentException("--length must be <= " + c.maxPositionEmbeddings());
        long t0 = System.nanoTime();
        PerceiverForMaskedLM m = new PerceiverForMaskedLM(be, c, 1L);
        System.out.printf(Locale.ROOT, "built language-perceiver (%,d parameters) in %.1f s on %s%n",
                m.params().parameterCount(), (System.nanoTime() - t0) / 1e9, be.name());
        return m;
    }

    private int[] randomBytes(long seed) {
        return new SplittableRandom(seed).ints((long) batch * length, 6, 262).toArray();
    }

    private void mlmForward() {
        Backend be = Backends.get();
        PerceiverForMaskedLM m = languagePerceiver(be);
        int[] ids = randomBytes(7), mask = allOnes(ids.length);
        ArBench.Timing t;
        // As predict runs it: inputs written into persistent tensors, the pass replayed where the backend records.
        try (RecordedMaskedLm pass = new RecordedMaskedLm(m, batch, length)) {
            t = paced ? timePaced(be, () -> pass.forward(ids, mask)) : ArBench.time(be, warmup, reps, () -> pass.forward(ids, mask));
            System.out.println(pass.recorded() ? "pass replayed as a recording of " + pass.recordedOps() + " ops" : "pass run op by op");
        }
        printResult("mlm-forward", t, mlmForwardFlops(m.config(), length) * batch / 1e9, "pass");
        printMemory(be);
    }

    /**
     * {@code --paced}: the warm-up passes, then one timed pass per line of standard input (at most
     * {@code reps}), each pass's time printed as it ends, so that another program can run its own
     * passes in between and compare pass by pass under the same machine load.
     */
    private ArBench.Timing timePaced(Backend be, Runnable pass) {
        for (int i = 0; i < warmup; i++) {
            pass.run();
            be.synchronize();
        }
        System.out.println("paced: ready (one timed pass per line of standard input, at most " + reps + ")");
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        double[] ms = new double[reps];
        int n = 0;
        try {
            while (n < reps && in.readLine() != null) {
                long t0 = System.nanoTime();
                pass.run();
                be.synchronize();
                ms[n] = (System.nanoTime() - t0) / 1e6;
                System.out.printf(Locale.ROOT, "pass %d: %.1f ms%n", n + 1, ms[n]);
                System.out.flush();
                n++;
            }
        } catch (IOException e) {
            throw new UncheckedIOException("--paced: reading standard input failed", e);
        }
        if (n == 0) throw new IllegalStateException("--paced: standard input ended before the first timed pass");
        return ArBench.Timing.of(Arrays.copyOf(ms, n));
    }

    /**
     * The forward pass of {@link #mlmForward} on one CPU backend whose products alternate between
     * two SGEMMs: warm-up passes with each, then {@code reps} rounds of one timed pass with each,
     * in the order AB, BA, AB, ... (neither always runs first). Prints each one's mean and min,
     * the ratio of the means, and how many rounds the second won.
     */
    private void mlmForwardCompared() {
        String backendName = common.backend.trim().toLowerCase(Locale.ROOT);
        if (!backendName.equals("cpu") && !backendName.equals("auto")) {
            throw new IllegalArgumentException("--compare-gemm compares CPU matrix products: use --backend cpu (or auto), not " + common.backend);
        }
        CpuPool pool = CpuPool.common();
        Sgemm base = Sgemms.select(pool);
        AlternatingSgemm ab = new AlternatingSgemm(base, AlternatingSgemm.named(compareGemm, base, pool));
        Backend be = new CpuBackend(pool, ab);
        PerceiverForMaskedLM m = languagePerceiver(be);
        int[] ids = randomBytes(7), mask = allOnes(ids.length);
        double[][] ms = new double[2][reps];
        int secondWins = 0;
        try (RecordedMaskedLm pass = new RecordedMaskedLm(m, batch, length)) {
            for (int i = 0; i < 2 * warmup; i++) {
                ab.use(i % 2);
                pass.forward(ids, mask);
            }
            for (int r = 0; r < reps; r++) {
                for (int j = 0; j < 2; j++) {
                    int which = (r + j) % 2;
                    ab.use(which);
                    long t0 = System.nanoTime();
                    pass.forward(ids, mask);
                    be.synchronize();
                    ms[which][r] = (System.nanoTime() - t0) / 1e6;
                }
                if (ms[1][r] < ms[0][r]) secondWins++;
            }
        }
        double gflop = mlmForwardFlops(m.config(), length) * batch / 1e9;
        for (int which = 0; which < 2; which++) {
            ArBench.Timing t = ArBench.Timing.of(ms[which]);
            System.out.println((which == 0 ? "A" : "B") + " = " + ab.get(which).name());
            printResult("mlm-forward " + (which == 0 ? "A" : "B"), t, gflop, "pass");
        }
        double ratio = Arrays.stream(ms[1]).sum() / Arrays.stream(ms[0]).sum();
        System.out.printf(Locale.ROOT, "B / A = %.3f (mean time); B faster in %d of %d rounds%n", ratio, secondWins, reps);
        printMemory(be);
    }

    /**
     * Masked-LM training step as HF's {@code PerceiverForMaskedLM(labels=...)} trains: dropout on,
     * cross-entropy over the 15% of positions drawn as labels (the rest ignored), backward, AdamW.
     */
    private void mlmTrain() {
        Backend be = Backends.get();
        PerceiverForMaskedLM m = languagePerceiver(be);
        Params p = m.params();
        AdamW opt = new AdamW(be, AdamW.Config.defaults(1e-4f), p.pack(), p.gradients());
        int[] ids = randomBytes(7);   // no padding
        int positions = m.config().maxPositionEmbeddings();
        SplittableRandom rng = new SplittableRandom(11);
        int[] labels = new int[batch * positions];
        for (int i = 0; i < labels.length; i++) {
            int pos = i % positions;
            labels[i] = pos < length && rng.nextDouble() < 0.15 ? ids[i / positions * length + pos] : -100;
        }
        // Forward and backward as one recording replayed per step (from the second step on), the
        // dropout masks drawn from each step's seed; inputs in persistent tensors written beforehand.
        // The gradients are zeroed inside it, as PyTorch's zero_grad(set_to_none=True) before backward:
        // on the GPU the zeros are then lazy and each gradient's first contribution writes it.
        Tensor idsT = be.persistentZeros(Shape.of(batch, length), DType.I32);
        Tensor labelsT = be.persistentZeros(Shape.of(batch, positions), DType.I32);
        be.writeInts(ids, idsT);
        be.writeInts(labels, labelsT);
        long[] step = {0};
        ArBench.Timing t;
        int recordedOps;
        try (RecordedStep forwardBackward = new RecordedStep(be, s -> {
            opt.zeroGrad();
            F.crossEntropy(m.forwardWithKeyPad(idsT, null, true, s), labelsT, -100, 0f).backward();
        }, "masked-LM training step")) {
            t = ArBench.time(be, warmup, reps, () -> {
                forwardBackward.run(++step[0]);
                opt.step(1e-4f);
            });
            recordedOps = forwardBackward.recordedOps();
        }
        printResult("mlm-train", t, 3 * mlmForwardFlops(m.config(), length) * batch / 1e9, "step");
        System.out.println(recordedOps > 0 ? "forward and backward: one recording replayed per step (" + recordedOps + " ops)"
                : "forward and backward: op by op (the backend does not record)");
        printMemory(be);
    }

    private static int[] allOnes(int n) {
        int[] v = new int[n];
        Arrays.fill(v, 1);
        return v;
    }

    /** One result line: mean and min time, bytes/s, GFLOP/s at {@code gflop} per {@code unit}. */
    private void printResult(String workloadName, ArBench.Timing t, double gflop, String unit) {
        System.out.printf(Locale.ROOT, "%s batch %d x %d bytes: mean %.1f ms, min %.1f ms over %d reps (%.0f bytes/s, %.1f GFLOP/s at %.1f GFLOP per %s); median %.1f ms, max %.1f ms%n",
                workloadName, batch, length, t.mean(), t.min(), t.count(), batch * length / (t.mean() / 1e3), gflop / (t.mean() / 1e3), gflop, unit,
                t.median(), t.max());
    }

    /** Peak RSS, and the device memory report of backends that have one. */
    static void printMemory(Backend be) {
        System.out.println("peak RSS " + peakRss());
        String device = be.memoryReport();
        if (!device.isEmpty()) System.out.println(device);
    }

    /** Multiply-add FLOPs (×2) of one PerceiverForMaskedLM forward over {@code n} input bytes. */
    static double mlmForwardFlops(PerceiverConfig c, int n) {
        double l = c.numLatents(), dl = c.dLatents(), dm = c.dModel(), p = c.maxPositionEmbeddings(), v = c.vocabSize();
        double qkC = c.qkChannels() != null ? c.qkChannels() : dm, vC = c.vChannels() != null ? c.vChannels() : qkC;
        double cross = l * dl * qkC + n * dm * qkC + n * dm * vC + l * n * (qkC + vC) + l * vC * dl
                + 2 * l * dl * dl * c.crossAttentionWideningFactor();
        double sqk = c.qkChannels() != null ? c.qkChannels() : dl, sv = c.vChannels() != null ? c.vChannels() : sqk;
        double self = 2 * l * dl * sqk + l * dl * sv + l * l * (sqk + sv) + l * sv * dl + 2 * l * dl * dl * c.selfAttentionWideningFactor();
        double dqk = PerceiverForMaskedLM.DECODER_QK;
        double dec = p * dm * dqk + l * dl * dqk + l * dl * dm + p * l * (dqk + dm) + p * dm * dm + 2 * p * dm * dm;
        double out = p * dm * v;
        return 2 * (cross + c.numBlocks() * c.numSelfAttendsPerBlock() * self + dec + out);
    }

    /** Peak resident set size of this process (Linux VmHWM), or "n/a". */
    static String peakRss() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    long kb = Long.parseLong(line.replaceAll("[^0-9]", ""));
                    return String.format(Locale.ROOT, "%.2f GiB", kb / 1024.0 / 1024.0);
                }
            }
        } catch (IOException | RuntimeException e) {
            // not Linux: fall through
        }
        return "n/a";
    }
}
