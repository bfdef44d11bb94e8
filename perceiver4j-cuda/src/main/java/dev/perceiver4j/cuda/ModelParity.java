package dev.perceiver4j.cuda;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.io.SafetensorsReader;
import dev.perceiver4j.io.TensorSource;
import dev.perceiver4j.model.ar.PerceiverAR;
import dev.perceiver4j.model.ar.PerceiverArConfig;
import dev.perceiver4j.model.ar.PerceiverArGenerator;
import dev.perceiver4j.model.io.PerceiverForMaskedLM;
import dev.perceiver4j.model.io.RecordedMaskedLm;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import dev.perceiver4j.train.AdamW;
import dev.perceiver4j.train.RecordedStep;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Whole-model parity of a backend under test (the GPU), as {@link OpParity.Check}s:
 * <ul>
 *   <li>{@link #fixtureChecks}: the two reference fixtures (the folders
 *       {@code hf-perceiver-mlm-tiny} and {@code kr-perceiver-ar}, copies of
 *       perceiver4j-core/src/test/resources/fixtures/*), compared exactly as the CPU tests
 *       PerceiverForMaskedLMTest and PerceiverArParityTest do: masked-LM logits at every position
 *       within 1e-4 (absolute) of Hugging Face's; Perceiver AR logits for prefix lengths 48, 20 and 0
 *       within 1e-4 over non-padded latent positions, and the 12 greedy tokens identical;</li>
 *   <li>{@link #trainingChecks}: three Perceiver AR training steps (prefix, attention and residual
 *       dropout on; forwardTraining, crossEntropy, backward, gradient clipping, AdamW) on the
 *       backend under test and on a CPU backend from the same initial weights; every parameter after
 *       step 3 within 1e-4 relative (|Δ| / max(1, |cpu|)), and each step's loss within 1e-4 relative.</li>
 * </ul>
 */
public final class ModelParity {
    /** Logit tolerance of the fixture checks (absolute), as in the CPU tests. */
    public static final double LOGITS = 1e-4;
    /** Parameter and loss tolerance of the training check (relative to max(1, |cpu|)). */
    public static final double TRAINING = 1e-4;

    private ModelParity() {}

    /** The fixture checks; {@code dir} holds the folders hf-perceiver-mlm-tiny and kr-perceiver-ar. */
    public static List<OpParity.Check> fixtureChecks(Backend gpu, Path dir) {
        List<OpParity.Check> c = new ArrayList<>();
        Path mlm = dir.resolve("hf-perceiver-mlm-tiny"), ar = dir.resolve("kr-perceiver-ar");
        c.add(new OpParity.Check("model: hf-perceiver-mlm-tiny logits vs Hugging Face (all positions, abs)", LOGITS,
                () -> mlmLogits(gpu, mlm)));
        c.add(new OpParity.Check("model: hf-perceiver-mlm-tiny recorded pass (CUDA graph) vs Hugging Face, then new inputs vs op by op", LOGITS,
                () -> mlmRecorded(gpu, mlm)));
        for (int p : new int[] {48, 20, 0}) {
            c.add(new OpParity.Check("model: kr-perceiver-ar logits, prefix " + p + " (non-pad latents, abs)", LOGITS,
                    () -> arLogits(gpu, ar, p)));
        }
        c.add(new OpParity.Check("model: kr-perceiver-ar greedy tokens identical (prefix held at 24)", 0, () -> arGreedy(gpu, ar)));
        return c;
    }

    /** The training check: 3 AdamW steps of a small Perceiver AR on {@code gpu} and on {@code cpu}. */
    public static List<OpParity.Check> trainingChecks(Backend gpu, Backend cpu) {
        return trainingChecks(gpu, cpu, TRAINING, "fp32");
    }

    /** The training check at another tolerance, labelled (a reduced-precision backend). */
    public static List<OpParity.Check> trainingChecks(Backend gpu, Backend cpu, double tolerance, String label) {
        return List.of(new OpParity.Check(
                "model: Perceiver AR 3 training steps (dropouts on), params + losses vs CPU (rel, " + label + ")", tolerance,
                () -> training(gpu, cpu)));
    }

    /**
     * Cached generation with the one-position step recorded as a CUDA graph and replayed: after every
     * appended byte (70, through latent and window slides) its logits must equal an uncached forward
     * over the same window on the same backend, within {@code tolerance} (absolute).
     */
    public static List<OpParity.Check> generationChecks(Backend gpu, double tolerance, String label) {
        return List.of(new OpParity.Check("model: Perceiver AR generation, recorded step vs uncached forward, 70 bytes (" + label + ")",
                tolerance, () -> generation(gpu)));
    }

    private static double generation(Backend be) {
        PerceiverArConfig c = trainingConfig();
        PerceiverAR m = new PerceiverAR(be, c, 5L);
        SplittableRandom r = new SplittableRandom(11);
        double worst = 0;
        try (PerceiverArGenerator g = new PerceiverArGenerator(m, new PerceiverArGenerator.Options(12, 3, 5))) {
            float[] logits = g.start(r.ints(20, 6, 262).toArray());
            for (int step = 0; step < 70; step++) {
                worst = Math.max(worst, generationError(be, m, g, logits));
                logits = g.append(6 + r.nextInt(256));
            }
            worst = Math.max(worst, generationError(be, m, g, logits));
            if (!g.stepRecorded()) throw new AssertionError("the one-position step was not recorded");
            if (g.fixedShapeSteps() < 30) throw new AssertionError("only " + g.fixedShapeSteps() + " recorded steps ran");
            if (g.windowStart() == 0) throw new AssertionError("the window never slid");
        }
        return worst;
    }

    /** max |cached − uncached| over the last position's logits of the generator's window. */
    private static double generationError(Backend be, PerceiverAR m, PerceiverArGenerator g, float[] cached) {
        int[] toks = g.tokens();
        int ws = g.windowStart(), n = g.length(), p = g.prefixEnd() - ws, v = m.config().vocabSize();
        float[] full;
        try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
            full = m.forward(be.fromInts(Arrays.copyOfRange(toks, ws, n), Shape.of(1, n - ws)), null, p).toFloatArray();
        }
        int last = (n - ws - p - 1) * v;
        double max = 0;
        for (int j = 0; j < v; j++) max = Math.max(max, Math.abs((double) cached[j] - full[last + j]));
        return max;
    }

    // ---- fixtures ------------------------------------------------------------------------------

    private static Path require(Path p) {
        if (!Files.exists(p)) throw new IllegalArgumentException("fixture file missing: " + p);
        return p;
    }

    private static int[] ints(long[] a) {
        int[] r = new int[a.length];
        for (int i = 0; i < a.length; i++) r[i] = Math.toIntExact(a[i]);
        return r;
    }

    private static double mlmLogits(Backend be, Path dir) {
        try (TensorSource io = SafetensorsReader.open(require(dir.resolve("io.safetensors")))) {
            int b = (int) io.info("input_ids").shape()[0], n = (int) io.info("input_ids").shape()[1];
            int v = (int) io.info("logits").shape()[2];
            int[] ids = ints(io.readLongs("input_ids")), mask = ints(io.readLongs("attention_mask"));
            float[] want = io.readFloats("logits");
            PerceiverForMaskedLM m = PerceiverForMaskedLM.load(be, require(dir.resolve("model.safetensors")));
            float[] got;
            try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
                Tensor logits = m.forward(be.fromInts(ids, Shape.of(b, n)), be.fromInts(mask, Shape.of(b, n)), false, 0L);
                if (!logits.shape().equals(Shape.of(b, n, v))) throw new AssertionError("logits " + logits.shape() + ", want [" + b + ", " + n + ", " + v + "]");
                got = logits.toFloatArray();
            }
            double max = 0;
            for (int i = 0; i < want.length; i++) max = Math.max(max, Math.abs((double) got[i] - want[i]));
            return max;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static double mlmRecorded(Backend be, Path dir) {
        try (TensorSource io = SafetensorsReader.open(require(dir.resolve("io.safetensors")))) {
            int b = (int) io.info("input_ids").shape()[0], n = (int) io.info("input_ids").shape()[1];
            int[] ids = ints(io.readLongs("input_ids")), mask = ints(io.readLongs("attention_mask"));
            float[] want = io.readFloats("logits");
            PerceiverForMaskedLM m = PerceiverForMaskedLM.load(be, require(dir.resolve("model.safetensors")));
            try (RecordedMaskedLm pass = new RecordedMaskedLm(m, b, n)) {
                if (!pass.recorded()) throw new AssertionError("the pass was not recorded");
                double max = maxDiff(pass.forward(ids, mask).toFloatArray(), want);
                int[] other = ids.clone();
                for (int i = 0; i < other.length; i++) other[i] = 6 + (other[i] * 7 + i) % 256;
                float[] again = pass.forward(other, null).toFloatArray(), opByOp;
                try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
                    opByOp = m.forward(be.fromInts(other, Shape.of(b, n)), null, false, 0L).toFloatArray();
                }
                return Math.max(max, maxDiff(again, opByOp));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static double maxDiff(float[] got, float[] want) {
        if (got.length != want.length) throw new AssertionError(got.length + " values, want " + want.length);
        double max = 0;
        for (int i = 0; i < want.length; i++) max = Math.max(max, Math.abs((double) got[i] - want[i]));
        return max;
    }

    private static double arLogits(Backend be, Path dir, int p) {
        try (TensorSource io = SafetensorsReader.open(require(dir.resolve("io.safetensors")))) {
            int b = (int) io.info("input_ids").shape()[0], n = (int) io.info("input_ids").shape()[1];
            int v = (int) io.info("logits_prefix" + p).shape()[2];
            int[] ids = ints(io.readLongs("input_ids")), pad = ints(io.readLongs("pad_mask"));
            float[] want = io.readFloats("logits_prefix" + p);
            PerceiverAR m = PerceiverAR.load(be, require(dir.resolve("model.safetensors")));
            int lat = n - p;
            float[] got;
            try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
                Tensor logits = m.forward(be.fromInts(ids, Shape.of(b, n)), be.fromInts(pad, Shape.of(b, n)), p);
                if (!logits.shape().equals(Shape.of(b, lat, v))) throw new AssertionError("logits " + logits.shape() + ", want [" + b + ", " + lat + ", " + v + "]");
                got = logits.toFloatArray();
            }
            double max = 0;
            int compared = 0;
            for (int r = 0; r < b; r++) {
                for (int i = 0; i < lat; i++) {
                    if (pad[r * n + p + i] != 0) continue;
                    compared++;
                    for (int j = 0; j < v; j++) {
                        int at = (r * lat + i) * v + j;
                        max = Math.max(max, Math.abs((double) got[at] - want[at]));
                    }
                }
            }
            if (compared == 0) throw new AssertionError("no non-padded latent position to compare");
            return max;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static double arGreedy(Backend be, Path dir) {
        try (TensorSource io = SafetensorsReader.open(require(dir.resolve("io.safetensors")))) {
            int[] prompt = ints(io.readLongs("greedy_prompt")), want = ints(io.readLongs("greedy_tokens"));
            PerceiverAR m = PerceiverAR.load(be, require(dir.resolve("model.safetensors")));
            int prefix = prompt.length - m.config().maxLatents();
            int[] got;
            try (var ng = Autograd.noGrad()) {
                got = m.generateGreedy(prompt, want.length, prefix);
            }
            if (!Arrays.equals(got, want)) {
                throw new AssertionError("greedy tokens " + Arrays.toString(got) + ", want " + Arrays.toString(want));
            }
            return 0;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    // ---- training ------------------------------------------------------------------------------

    /**
     * One masked-LM training step (forward with every dropout off, cross-entropy over a fifth of the
     * positions, backward) of the fixture's tiny language-perceiver, its parameters packed as AdamW packs
     * them (so a bf16 GPU backend runs q, k and v as one product and keeps BF16 gradients of its normed
     * inputs, attention outputs and hidden states, F.bf16Gradient): the loss and every parameter gradient
     * against the CPU's, each gradient as its largest difference over its largest |value| (at least 1 % of
     * the largest of all gradients). Run twice on
     * the GPU, with the BF16 gradients and without ({@code perceiver4j.bf16Gradients=false}); the result
     * is the worse (both printed).
     */
    public static List<OpParity.Check> maskedLmGradientChecks(Backend gpu, Backend cpu, Path dir, double tolerance, String label) {
        return List.of(new OpParity.Check("model: language-perceiver (tiny fixture) masked-LM gradients, packed, bf16 gradients on and off, "
                + "vs CPU (of each tensor's largest, " + label + ")", tolerance, () -> {
            double[] cpuLoss = new double[1];
            Map<String, float[]> want = maskedLmGradients(cpu, dir, cpuLoss);
            // each tensor's scale: its largest |value|, but at least 1 % of the largest over all (a key bias's
            // gradient is zero up to rounding: softmax ignores a shift shared by every key)
            double overall = 0;
            for (float[] r : want.values()) for (float v : r) overall = Math.max(overall, Math.abs(v));
            double floor = 1e-2 * overall;
            double worst = 0;
            String previous = System.getProperty("perceiver4j.bf16Gradients");
            try {
                for (String on : new String[] {"true", "false"}) {
                    System.setProperty("perceiver4j.bf16Gradients", on);
                    double[] loss = new double[1];
                    Map<String, float[]> got = maskedLmGradients(gpu, dir, loss);
                    double e = Math.abs(loss[0] - cpuLoss[0]) / Math.max(1, Math.abs(cpuLoss[0]));
                    String where = "loss";
                    for (Map.Entry<String, float[]> en : want.entrySet()) {
                        float[] r = en.getValue(), g = got.get(en.getKey());
                        double largest = Math.max(floor, 1e-30), diff = 0;
                        for (int i = 0; i < r.length; i++) {
                            largest = Math.max(largest, Math.abs(r[i]));
                            diff = Math.max(diff, Double.isNaN(g[i]) ? Double.POSITIVE_INFINITY : Math.abs((double) g[i] - r[i]));
                        }
                        if (!(diff / largest <= e)) {
                            e = diff / largest;
                            where = en.getKey();
                        }
                    }
                    System.out.printf("  masked-LM gradients, bf16 gradients %s: loss gpu %.6f cpu %.6f, worst %.2e at %s%n", on, loss[0], cpuLoss[0], e, where);
                    worst = Math.max(worst, e);
                }
            } finally {
                if (previous == null) System.clearProperty("perceiver4j.bf16Gradients");
                else System.setProperty("perceiver4j.bf16Gradients", previous);
            }
            return worst;
        }));
    }

    /** The step of {@link #maskedLmGradientChecks} on one backend: every trainable parameter's gradient by name; the loss in loss[0]. */
    private static Map<String, float[]> maskedLmGradients(Backend be, Path dir, double[] loss) {
        try {
            PerceiverForMaskedLM m = PerceiverForMaskedLM.load(be, require(dir.resolve("model.safetensors")));
            Params p = m.params();
            new AdamW(be, AdamW.Config.defaults(1e-3f), p.pack(), p.gradients());   // packs parameters and gradients into slabs
            int b = 4, n = m.config().maxPositionEmbeddings();
            SplittableRandom rng = new SplittableRandom(3);
            int[] ids = rng.ints((long) b * n, 6, 262).toArray(), labels = new int[b * n];
            for (int i = 0; i < labels.length; i++) labels[i] = rng.nextInt(5) == 0 ? ids[i] : -100;
            try (Scope s = Scope.open()) {
                Tensor l = F.crossEntropy(m.forwardWithKeyPad(be.fromInts(ids, Shape.of(b, n)), null, false, 1L),
                        be.fromInts(labels, Shape.of(b, n)), -100, 0f);
                loss[0] = l.item();
                l.backward();
            }
            Map<String, float[]> grads = new java.util.TreeMap<>();
            for (Map.Entry<String, Tensor> en : p.trainable().entrySet()) grads.put(en.getKey(), be.toFloatArray(en.getValue().grad()));
            return grads;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** A small Perceiver AR with every training dropout on: 4 heads of 16, 2 self-attention layers (1 rotary). */
    static PerceiverArConfig trainingConfig() {
        return PerceiverArConfig.krasserm(4, 2, 1, 2, 0.25f, 262, 48, 16, 64, true, true)
                .withDropouts(0.25f, PerceiverArConfig.PrefixDropoutMode.SUBSET, 0.1f, 0.1f);
    }

    private static double training(Backend gpu, Backend cpu) {
        PerceiverArConfig c = trainingConfig();
        int batch = 3, steps = 3;
        float lr = 1e-3f;
        PerceiverAR mg = new PerceiverAR(gpu, c, 21L), mc = new PerceiverAR(cpu, c, 21L); // the same initial weights
        double[] lossG = run(mg, c, batch, steps, lr, null, false), lossC = run(mc, c, batch, steps, lr, null, false);
        double e = 0;
        for (int i = 0; i < steps; i++) e = Math.max(e, Math.abs(lossG[i] - lossC[i]) / Math.max(1, Math.abs(lossC[i])));
        ParamDiff d = paramDiff(mg, mc);
        System.out.printf("  training: losses gpu %s cpu %s; largest parameter difference at %s%n",
                Arrays.toString(lossG), Arrays.toString(lossC), d.where());
        return Math.max(e, d.max());
    }

    /** The largest |a − ref| / max(1, |ref|) over every trainable parameter (NaN counts as infinite), and where. */
    private record ParamDiff(double max, String where) {}

    private static ParamDiff paramDiff(PerceiverAR a, PerceiverAR ref) {
        Map<String, Tensor> pa = a.params().trainable(), pr = ref.params().trainable();
        Backend ba = a.params().backend(), br = ref.params().backend();
        double e = 0;
        String worst = "-";
        for (Map.Entry<String, Tensor> en : pr.entrySet()) {
            float[] g = ba.toFloatArray(pa.get(en.getKey())), r = br.toFloatArray(en.getValue());
            for (int i = 0; i < r.length; i++) {
                double d = Math.abs((double) g[i] - r[i]) / Math.max(1, Math.abs(r[i]));
                if (!(d <= e)) {
                    e = Double.isNaN(d) ? Double.POSITIVE_INFINITY : d;
                    worst = en.getKey() + "[" + i + "]";
                }
            }
        }
        return new ParamDiff(e, worst);
    }

    /**
     * A recorded training step ({@link RecordedStep}: forward and backward captured as a CUDA graph at
     * step 2 and replayed at steps 2–5 with each step's seed) against the same 5 steps op by op, from
     * the same initial weights on the same backend: losses and every parameter identical (prefix,
     * attention and residual dropout on, so a replay that ignored its seed shift would differ). Twice:
     * the gradients zeroed after AdamW (as ClmTrainer: the backend's lazy zeros are then zeroed before
     * each replay) and zeroed inside the step (as the benchmarks: the first contributions write them).
     */
    public static List<OpParity.Check> recordedTrainingChecks(Backend gpu, String label) {
        return List.of(new OpParity.Check("model: Perceiver AR 5 training steps, recorded (CUDA graph, seeds shifted) vs op by op, exact (" + label + ")",
                        0, () -> recordedTraining(gpu, false)),
                new OpParity.Check("model: the same with the gradients zeroed inside the recorded step, exact (" + label + ")",
                        0, () -> recordedTraining(gpu, true)));
    }

    private static double recordedTraining(Backend be, boolean zeroInside) {
        PerceiverArConfig c = trainingConfig();
        int batch = 3, steps = 5;
        float lr = 1e-3f;
        PerceiverAR a = new PerceiverAR(be, c, 31L), b = new PerceiverAR(be, c, 31L);
        int[] ops = new int[1];
        double[] opByOp = run(a, c, batch, steps, lr, null, zeroInside), recorded = run(b, c, batch, steps, lr, ops, zeroInside);
        double e = 0;
        for (int i = 0; i < steps; i++) e = Math.max(e, Math.abs(recorded[i] - opByOp[i]));
        ParamDiff d = paramDiff(b, a);
        System.out.printf("  recorded training (%d ops): losses %s, op by op %s; largest parameter difference at %s%n",
                ops[0], Arrays.toString(recorded), Arrays.toString(opByOp), d.where());
        return Math.max(e, d.max());
    }

    /**
     * {@code steps} training steps of {@code m} on its backend; the batches repeat from a fixed seed
     * and step k draws its dropouts from seed k. Op by op when {@code recordedOps} is null, else through
     * a {@link RecordedStep} (inputs written into persistent tensors; the recording's node count is left
     * in recordedOps[0], and a step that was never recorded fails). {@code zeroInside}: the gradients are
     * zeroed at the start of each step's forward and backward (in the recording), else after AdamW.
     * Returns each step's loss.
     */
    private static double[] run(PerceiverAR m, PerceiverArConfig c, int batch, int steps, float lr, int[] recordedOps, boolean zeroInside) {
        Backend be = m.params().backend();
        Params p = m.params();
        AdamW opt = new AdamW(be, AdamW.Config.defaults(lr), p.pack(), p.gradients());
        SplittableRandom rng = new SplittableRandom(77);
        int n = c.maxSeqLen(), lat = c.maxLatents();
        double[] losses = new double[steps];
        Tensor targets = be.persistentZeros(Shape.of(batch, lat), DType.I32), loss = be.persistentZeros(Shape.of(1), DType.F32);
        PerceiverAR.TrainingTensors[] in = new PerceiverAR.TrainingTensors[1];   // made at the first step, from its shape
        RecordedStep recorded = recordedOps == null ? null : new RecordedStep(be, seed -> {
            if (zeroInside) opt.zeroGrad();
            Tensor l = F.crossEntropy(m.forwardTraining(in[0], seed), targets, -1, 0f);
            be.copy(l, loss);
            l.backward();
        }, "recorded training check");
        for (int step = 1; step <= steps; step++) {
            int[] ids = rng.ints((long) batch * n, 6, 262).toArray();
            int[] t = rng.ints((long) batch * lat, 6, 262).toArray();
            if (recorded != null) {
                PerceiverAR.TrainingInputs ti = m.trainingInputs(ids, batch, n - lat, step);
                if (in[0] == null) in[0] = PerceiverAR.TrainingTensors.persistent(be, ti);
                in[0].write(be, ti);
                be.writeInts(t, targets);
                recorded.run(step);
                losses[step - 1] = loss.item();
            } else {
                try (Scope s = Scope.open()) {
                    if (zeroInside) opt.zeroGrad();
                    Tensor l = F.crossEntropy(m.forwardTraining(ids, batch, n - lat, step), be.fromInts(t, Shape.of(batch, lat)), -1, 0f);
                    losses[step - 1] = l.item();
                    l.backward();
                }
            }
            opt.clipGradNorm(1.0);
            opt.step(lr);
            if (!zeroInside) opt.zeroGrad();
        }
        if (recorded != null) {
            if (!recorded.recorded()) throw new AssertionError("the training step was not recorded");
            recordedOps[0] = recorded.recordedOps();
            recorded.close();
        }
        return losses;
    }
}
