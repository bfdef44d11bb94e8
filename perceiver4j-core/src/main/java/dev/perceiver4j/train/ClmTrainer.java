package dev.perceiver4j.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.data.CropSampler;
import dev.perceiver4j.data.Split;
import dev.perceiver4j.io.AtomicFiles;
import dev.perceiver4j.io.CheckpointFormatException;
import dev.perceiver4j.io.NamedTensor;
import dev.perceiver4j.io.SafetensorsReader;
import dev.perceiver4j.io.SafetensorsWriter;
import dev.perceiver4j.io.TensorSource;
import dev.perceiver4j.model.ar.PerceiverAR;
import dev.perceiver4j.model.ar.PerceiverArConfig;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Slab;
import dev.perceiver4j.tensor.Tensor;

import java.awt.Color;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Causal language-model training of a {@link PerceiverAR} on raw bytes (task {@code clm}).
 *
 * <p>One optimizer step: {@code accumulation} micro-batches of {@code batch} random crops of
 * {@code seqLen + 1} bytes from the training stream; the model sees the first {@code seqLen}
 * bytes with prefix {@code seqLen − latents} (prefix dropout per the model config) and is scored
 * on the next byte of each latent position. AdamW with linear warm-up and cosine decay, global
 * gradient-norm clipping, optional z-loss.
 *
 * <p><b>Exact resume.</b> Everything random is a function of (seed, step): crops, prefix dropout,
 * dropout masks. A checkpoint holds parameters, both AdamW moments and the step, so a run resumed
 * from step k reproduces the uninterrupted run bit for bit (same thread count and backend).
 *
 * <p>Run folder: {@code run.json} (settings), {@code checkpoints/} ({@link CheckpointDir}),
 * {@code model/} (the latest weights as a plain model folder for generate/predict),
 * {@code metrics.jsonl} (one line per step and per evaluation) and {@code loss.png}.
 */
public final class ClmTrainer {

    /** Training settings (the model's shape is its {@link PerceiverArConfig}). */
    public record Config(int batch, int accumulation, int steps, float lr, int warmup, float minLrRatio, float weightDecay,
                         double clip, float zLoss, float randomTruncation, int evalEvery, int evalWindows, int checkpointEvery,
                         int keepCheckpoints, long seed) {
        public Config {
            if (!(randomTruncation >= 0 && randomTruncation <= 1)) {
                throw new IllegalArgumentException("random truncation must be a probability in [0, 1], got " + randomTruncation);
            }
            if (batch < 1 || accumulation < 1 || steps < 1) throw new IllegalArgumentException("batch, accumulation and steps must be >= 1");
            if (evalEvery < 1 || evalWindows < 1 || checkpointEvery < 1) {
                throw new IllegalArgumentException("eval-every, eval-windows and checkpoint-every must be >= 1");
            }
            if (!(zLoss >= 0)) throw new IllegalArgumentException("z-loss must be >= 0, got " + zLoss);
            new LrSchedule(lr, Math.min(warmup, steps), steps, minLrRatio);   // validates the schedule
        }

        ObjectNode toJson() {
            ObjectNode o = MAPPER.createObjectNode();
            o.put("batch", batch).put("accumulation", accumulation).put("steps", steps).put("lr", lr).put("warmup", warmup)
                    .put("min_lr_ratio", minLrRatio).put("weight_decay", weightDecay).put("clip", clip).put("z_loss", zLoss).put("random_truncation", randomTruncation)
                    .put("eval_every", evalEvery).put("eval_windows", evalWindows).put("checkpoint_every", checkpointEvery)
                    .put("keep_checkpoints", keepCheckpoints).put("seed", seed);
            return o;
        }
    }

    /** Receives progress; called on the training thread. */
    public interface Listener {
        default void message(String line) {}

        default void step(StepStats s) {}

        default void eval(EvalStats e) {}
    }

    /** One optimizer step: mean loss in nats (includes z-loss), learning rate, gradient norm before clipping, throughput. */
    public record StepStats(long step, long steps, double loss, float lr, double gradNorm, double targetBytesPerSecond, double seconds) {
        public double bitsPerByte() {
            return loss / Math.log(2);
        }
    }

    /** Validation bits per byte over {@code windows} fixed windows at {@code step}. */
    public record EvalStats(long step, double bitsPerByte, int windows) {}

    /** How a run ended. {@code interrupted}: stopped early by {@link #requestStop()} (after saving). */
    public record Result(long step, double validationBitsPerByte, double initialValidationBitsPerByte, Path modelDir, boolean interrupted,
                         double seconds, long targetBytes) {}

    static final ObjectMapper MAPPER = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private final Backend backend;
    private final Config config;
    private final Split data;
    private final Path runDir;
    private final Listener listener;
    private final PerceiverArConfig modelConfig;
    private final String corpus;
    private volatile boolean stopRequested;

    /**
     * modelConfig: the model to create when the run folder has no checkpoint (its max_seq_len and
     * max_latents are the training sequence length and latent count); corpus: a description stored
     * in run.json and checked on resume.
     */
    public ClmTrainer(Backend backend, PerceiverArConfig modelConfig, Config config, Split data, String corpus, Path runDir, Listener listener) {
        this.backend = backend;
        this.modelConfig = modelConfig;
        this.config = config;
        this.data = data;
        this.corpus = corpus;
        this.runDir = runDir;
        this.listener = listener == null ? new Listener() {} : listener;
        int crop = modelConfig.maxSeqLen() + 1;
        if (data.train().length < crop) {
            throw new IllegalArgumentException("the training text has " + data.train().length + " bytes, fewer than one crop of " + crop
                    + " (max_seq_len + 1); use more text or a shorter --seq-len");
        }
        if (data.validation().length < crop) {
            throw new IllegalArgumentException("the validation text has " + data.validation().length + " bytes, fewer than one window of " + crop
                    + "; use more text, a larger validation fraction or a shorter --seq-len");
        }
    }

    /** Asks the loop to stop after the current step; it then saves a checkpoint and returns. Safe from any thread. */
    public void requestStop() {
        stopRequested = true;
    }

    /** Trains from scratch, or resumes from the run folder's latest checkpoint. */
    public Result run() throws IOException {
        Files.createDirectories(runDir);
        CheckpointDir checkpoints = new CheckpointDir(runDir.resolve("checkpoints"), config.keepCheckpoints());
        Optional<Path> latest = checkpoints.latest();
        PerceiverAR model;
        long step = 0;
        Path settings = runDir.resolve("run.json");
        if (latest.isPresent()) {
            checkSameRun(settings);
            model = PerceiverAR.load(backend, latest.get());
            step = readState(latest.get()).path("step").asLong();
            listener.message("resuming " + runDir + " from " + latest.get().getFileName() + " (step " + step + " of " + config.steps() + ")");
        } else {
            model = new PerceiverAR(backend, modelConfig, config.seed());
            writeSettings(settings);
            listener.message("new run " + runDir + ": " + String.format(java.util.Locale.ROOT, "%,d", model.params().parameterCount()) + " parameters");
        }
        PerceiverArConfig mc = model.config();
        int seqLen = mc.maxSeqLen(), latents = mc.maxLatents(), prefix = seqLen - latents;
        AdamW opt = new AdamW(backend, new AdamW.Config(config.lr(), 0.9f, 0.95f, 1e-8f, config.weightDecay()), model.params().pack(),
                model.params().gradients());
        if (latest.isPresent()) loadMoments(latest.get(), opt, step);
        Tensor lossSum = backend.persistentZeros(Shape.of(1), DType.F32);   // the step's loss, summed over micro-batches on the device
        LrSchedule schedule = new LrSchedule(config.lr(), Math.min(config.warmup(), config.steps()), config.steps(), config.minLrRatio());
        CropSampler train = new CropSampler(data.train(), seqLen + 1);
        CropSampler valid = new CropSampler(data.validation(), seqLen + 1);

        List<double[]> trainCurve = new ArrayList<>(), validCurve = new ArrayList<>();
        readCurves(step, trainCurve, validCurve);
        double initialBpb = validCurve.isEmpty() ? Double.NaN : validCurve.getFirst()[1];
        double lastBpb = validCurve.isEmpty() ? Double.NaN : validCurve.getLast()[1];
        long t0 = System.nanoTime();
        long targetBytes = 0;
        boolean interrupted = false;
        long saved = step;
        FullLengthStep fullLength = null;
        try (MetricsLog log = MetricsLog.open(runDir.resolve("metrics.jsonl"), step)) {
            if (step == 0) {
                lastBpb = initialBpb = evaluate(model, valid, prefix);
                record(log, validCurve, 0, lastBpb, valid);
            }
            while (step < config.steps()) {
                if (stopRequested) {
                    interrupted = true;
                    break;
                }
                step++;
                long ts = System.nanoTime();
                backend.fill(lossSum, 0f);
                long[] microBytes = new long[config.accumulation()];
                for (int micro = 0; micro < config.accumulation(); micro++) {
                    long draw = step * config.accumulation() + micro;
                    int[] crops = train.batch(config.seed(), draw, config.batch());                // [B, seqLen + 1]
                    // Random truncation: some micro-batches use only the first n bytes of their crops, so the
                    // model also sees latents at the start of a text (positions count from the first byte),
                    // which is where generation from a short prompt puts them.
                    int n = truncatedLength(draw, seqLen);
                    int p = Math.max(0, n - latents);
                    if (n < seqLen) crops = firstColumns(crops, seqLen + 1, n + 1);
                    microBytes[micro] = (long) config.batch() * (n - p);
                    long seed = mixSeed(config.seed(), draw);
                    PerceiverAR.TrainingInputs in = model.trainingInputs(inputs(crops, n), config.batch(), p, seed);
                    if (n == seqLen) {
                        // Full-length micro-batches: one recording replayed (from the second on), see FullLengthStep.
                        if (fullLength == null) fullLength = new FullLengthStep(model, in, lossSum);
                        fullLength.run(in, targetIds(crops, n, p), seed);
                    } else {
                        try (Scope s = Scope.open()) {
                            microBatch(model, PerceiverAR.TrainingTensors.upload(backend, in), backend.fromInts(targetIds(crops, n, p),
                                    Shape.of(config.batch(), n - p)), seed, lossSum);
                        }
                    }
                }
                Tensor gradNorm = opt.clipGradNorm(config.clip());
                float lr = schedule.at(step);
                opt.step(lr);
                opt.zeroGrad();
                double loss = lossSum.item(), norm = gradNorm.item();   // the first wait of the step, with all of it queued
                double secs = (System.nanoTime() - ts) / 1e9;
                long bytes = 0;
                for (long mb : microBytes) bytes += mb;
                targetBytes += bytes;
                if (!Double.isFinite(loss)) throw new IllegalStateException("loss became " + loss + " at step " + step + "; lower --lr or raise --warmup");
                StepStats st = new StepStats(step, config.steps(), loss, lr, norm, bytes / secs, (System.nanoTime() - t0) / 1e9);
                trainCurve.add(new double[] {step, st.bitsPerByte()});
                Map<String, Object> rec = new LinkedHashMap<>();
                rec.put("step", step);
                rec.put("loss", loss);
                rec.put("bits_per_byte", st.bitsPerByte());
                rec.put("lr", lr);
                rec.put("grad_norm", norm);
                rec.put("target_bytes_per_s", st.targetBytesPerSecond());
                rec.put("seconds", secs);
                log.write(rec);
                listener.step(st);
                boolean last = step == config.steps();
                if (step % config.evalEvery() == 0 || last) {
                    lastBpb = evaluate(model, valid, prefix);
                    record(log, validCurve, step, lastBpb, valid);
                    plot(trainCurve, validCurve);
                }
                if (step % config.checkpointEvery() == 0 || last) {
                    save(checkpoints, model, opt, step);
                    saved = step;
                }
            }
        } finally {
            if (fullLength != null) fullLength.close();
        }
        if (interrupted && saved != step) save(checkpoints, model, opt, step);
        plot(trainCurve, validCurve);
        Path modelDir = runDir.resolve("model");
        model.save(modelDir);
        return new Result(step, lastBpb, initialBpb, modelDir, interrupted, (System.nanoTime() - t0) / 1e9, targetBytes);
    }

    double evaluate(PerceiverAR model, CropSampler valid, int prefix) {
        return bitsPerByte(model, valid, model.config().maxSeqLen() - prefix, config.evalWindows(), config.batch());
    }

    /**
     * Bits per byte of {@code model} on the fixed evaluation windows of {@code windows} (crops of
     * max_seq_len + 1 bytes, up to {@code maxWindows} of them): the mean cross-entropy of the next
     * byte at each of the last {@code latents} positions of every window, in bits. The latent count
     * is free here (1 … max_seq_len), as Perceiver AR allows.
     */
    public static double bitsPerByte(PerceiverAR model, CropSampler windows, int latents, int maxWindows, int batch) {
        int seqLen = model.config().maxSeqLen(), prefix = seqLen - latents;
        if (latents < 1 || latents > seqLen) throw new IllegalArgumentException("latents must be in [1, " + seqLen + "], got " + latents);
        Backend be = model.params().backend();
        int count = windows.evalWindowCount(maxWindows);
        int[] all = windows.evalWindows(maxWindows);
        double sum = 0;
        try (var ng = Autograd.noGrad()) {
            for (int start = 0; start < count; start += batch) {
                int rows = Math.min(batch, count - start);
                int[] crops = java.util.Arrays.copyOfRange(all, start * (seqLen + 1), (start + rows) * (seqLen + 1));
                try (Scope s = Scope.open()) {
                    Tensor logits = model.forward(be.fromInts(inputs(crops, seqLen), Shape.of(rows, seqLen)), null, prefix);
                    sum += F.crossEntropy(logits, targets(be, crops, seqLen, prefix), -1, 0f).item() * rows;
                }
            }
        }
        return sum / count / Math.log(2);
    }

    private void record(MetricsLog log, List<double[]> validCurve, long step, double bpb, CropSampler valid) throws IOException {
        validCurve.add(new double[] {step, bpb});
        Map<String, Object> rec = new LinkedHashMap<>();
        rec.put("step", step);
        rec.put("val_bits_per_byte", bpb);
        rec.put("val_windows", valid.evalWindowCount(config.evalWindows()));
        log.write(rec);
        listener.eval(new EvalStats(step, bpb, valid.evalWindowCount(config.evalWindows())));
    }

    /** Sequence length of training draw {@code draw}: seqLen, or with probability randomTruncation a uniform length in [1, seqLen]. */
    int truncatedLength(long draw, int seqLen) {
        if (config.randomTruncation() == 0f) return seqLen;
        java.util.SplittableRandom r = new java.util.SplittableRandom(mixSeed(config.seed() ^ 0x7472756E63L, draw));
        return r.nextFloat() < config.randomTruncation() ? 1 + r.nextInt(seqLen) : seqLen;
    }

    /** The first {@code cols} of each row of a row-major [rows, width] array. */
    static int[] firstColumns(int[] a, int width, int cols) {
        int rows = a.length / width;
        int[] r = new int[rows * cols];
        for (int i = 0; i < rows; i++) System.arraycopy(a, i * width, r, i * cols, cols);
        return r;
    }

    /** First seqLen tokens of each crop: [B·seqLen]. */
    static int[] inputs(int[] crops, int seqLen) {
        int b = crops.length / (seqLen + 1);
        int[] r = new int[b * seqLen];
        for (int i = 0; i < b; i++) System.arraycopy(crops, i * (seqLen + 1), r, i * seqLen, seqLen);
        return r;
    }

    /** Next-byte targets of the latent positions: crop[prefix + 1 … seqLen] → [B, L]. */
    static Tensor targets(Backend backend, int[] crops, int seqLen, int prefix) {
        int b = crops.length / (seqLen + 1);
        return backend.fromInts(targetIds(crops, seqLen, prefix), Shape.of(b, seqLen - prefix));
    }

    /** {@link #targets} on the host: [B·L]. */
    static int[] targetIds(int[] crops, int seqLen, int prefix) {
        int b = crops.length / (seqLen + 1), lat = seqLen - prefix;
        int[] r = new int[b * lat];
        for (int i = 0; i < b; i++) System.arraycopy(crops, i * (seqLen + 1) + prefix + 1, r, i * lat, lat);
        return r;
    }

    /**
     * Forward, loss and backward of one micro-batch; the loss (over the accumulation count) is added
     * into {@code lossSum} on the device, so the step goes on without waiting.
     */
    private void microBatch(PerceiverAR model, PerceiverAR.TrainingTensors in, Tensor targets, long seed, Tensor lossSum) {
        Tensor l = F.crossEntropy(model.forwardTraining(in, seed), targets, -1, config.zLoss());
        (config.accumulation() == 1 ? l : F.scale(l, 1f / config.accumulation())).backward();
        backend.axpy(1f / config.accumulation(), l, lossSum);
    }

    /**
     * The full-length micro-batch as a {@link RecordedStep}: its inputs live in persistent tensors
     * written before each run, and on a backend that records (the GPU) its forward and backward are
     * one recording replayed with each micro-batch's seed. Truncated micro-batches (random
     * truncation) have other shapes and run op by op beside it; the recording keeps its own
     * intermediate buffers meanwhile. Results are bit for bit those of the op-by-op path, so a
     * resumed run still repeats the uninterrupted one.
     */
    private final class FullLengthStep implements AutoCloseable {
        private final PerceiverAR.TrainingTensors inputs;
        private final Tensor targets;
        private final RecordedStep step;

        FullLengthStep(PerceiverAR model, PerceiverAR.TrainingInputs like, Tensor lossSum) {
            this.inputs = PerceiverAR.TrainingTensors.persistent(backend, like);
            this.targets = backend.persistentZeros(Shape.of(like.batch(), like.length() - like.prefixLen()), DType.I32);
            this.step = new RecordedStep(backend, seed -> microBatch(model, inputs, targets, seed, lossSum), "Perceiver AR training step");
        }

        void run(PerceiverAR.TrainingInputs in, int[] targetIds, long seed) {
            inputs.write(backend, in);
            backend.writeInts(targetIds, targets);
            step.run(seed);
        }

        @Override
        public void close() {
            step.close();
        }
    }

    static long mixSeed(long seed, long draw) {
        long z = seed * 0x9E3779B97F4A7C15L + draw;
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    // ---- run folder ----------------------------------------------------------------------------

    private ObjectNode settingsJson() {
        ObjectNode o = MAPPER.createObjectNode();
        o.put("task", "clm");
        o.put("corpus", corpus);
        o.put("train_bytes", data.train().length);
        o.put("validation_bytes", data.validation().length);
        o.set("train", config.toJson());
        o.set("model", modelConfig.toJson());
        return o;
    }

    private void writeSettings(Path settings) throws IOException {
        AtomicFiles.write(settings, MAPPER.writeValueAsBytes(settingsJson()));
    }

    /** A resumed run must train the same model on the same data with the same settings; only the step count may grow. */
    private void checkSameRun(Path settings) throws IOException {
        if (!Files.exists(settings)) throw new IOException(settings + " is missing, so this run cannot be resumed safely; use a new --run folder");
        JsonNode saved = MAPPER.readTree(settings.toFile());
        JsonNode now = MAPPER.readTree(MAPPER.writeValueAsBytes(settingsJson()));   // same number types as the file
        List<String> diffs = new ArrayList<>();
        for (String section : List.of("corpus", "train_bytes", "validation_bytes")) {
            if (!saved.path(section).equals(now.path(section))) diffs.add(section + ": " + saved.path(section) + " → " + now.path(section));
        }
        for (String section : List.of("train", "model")) {
            JsonNode a = saved.path(section), b = now.path(section);
            JsonNode am = a.has("model_config") ? a.get("model_config") : a, bm = b.has("model_config") ? b.get("model_config") : b;
            for (var it = bm.fieldNames(); it.hasNext(); ) {
                String f = it.next();
                if (f.equals("steps")) continue;
                if (!am.path(f).equals(bm.path(f))) diffs.add(section + "." + f + ": " + am.path(f) + " → " + bm.path(f));
            }
        }
        if (!diffs.isEmpty()) {
            throw new IllegalArgumentException(runDir + " holds a run with other settings (" + String.join("; ", diffs)
                    + "); resume with the same flags (only --steps may change) or pick a new --run folder");
        }
        writeSettings(settings);   // records a changed step count
    }

    private void save(CheckpointDir checkpoints, PerceiverAR model, AdamW opt, long step) throws IOException {
        Path dir = checkpoints.save(step, d -> {
            model.save(d);
            List<NamedTensor> moments = new ArrayList<>();
            addSlab(moments, "exp_avg.", opt.firstMoment());
            addSlab(moments, "exp_avg_sq.", opt.secondMoment());
            SafetensorsWriter.write(d.resolve("optimizer.safetensors"), moments, Map.of("step", Long.toString(step)));
            ObjectNode st = MAPPER.createObjectNode();
            st.put("step", step);
            st.put("optimizer_step", opt.step());
            Files.write(d.resolve("trainer_state.json"), MAPPER.writeValueAsBytes(st));
        });
        listener.message("saved checkpoint " + dir);
    }

    private static void addSlab(List<NamedTensor> out, String prefix, Slab slab) {
        for (int i = 0; i < slab.entries().size(); i++) {
            Slab.Entry e = slab.entries().get(i);
            int[] d = e.shape().dims();
            long[] shape = new long[d.length];
            for (int j = 0; j < d.length; j++) shape[j] = d[j];
            out.add(NamedTensor.f32(prefix + e.name(), shape, slab.view(i).toFloatArray()));
        }
    }

    private static JsonNode readState(Path dir) throws IOException {
        Path f = dir.resolve("trainer_state.json");
        if (!Files.exists(f)) throw new CheckpointFormatException(f + " is missing: " + dir + " is not a training checkpoint");
        JsonNode st = MAPPER.readTree(f.toFile());
        if (!st.path("step").canConvertToLong()) throw new CheckpointFormatException(f + ": no integer 'step'");
        return st;
    }

    private void loadMoments(Path dir, AdamW opt, long step) throws IOException {
        Path f = dir.resolve("optimizer.safetensors");
        try (TensorSource src = SafetensorsReader.open(f)) {
            for (var pair : List.of(Map.entry("exp_avg.", opt.firstMoment()), Map.entry("exp_avg_sq.", opt.secondMoment()))) {
                Slab slab = pair.getValue();
                for (int i = 0; i < slab.entries().size(); i++) {
                    String name = pair.getKey() + slab.entries().get(i).name();
                    if (!src.contains(name)) throw new CheckpointFormatException(f + ": tensor " + name + " is missing");
                    float[] v = src.readFloats(name);
                    Tensor view = slab.view(i);
                    if (v.length != view.size()) {
                        throw new CheckpointFormatException(f + ": " + name + " has " + v.length + " values, the model needs " + view.size());
                    }
                    backend.copy(backend.fromFloats(v, view.shape()), view);
                }
            }
        }
        opt.setStep(readState(dir).path("optimizer_step").asLong(step));
    }

    private void readCurves(long upTo, List<double[]> trainCurve, List<double[]> validCurve) throws IOException {
        Path f = runDir.resolve("metrics.jsonl");
        if (upTo == 0 || !Files.exists(f)) return;
        for (Map<String, Object> r : MetricsLog.read(f)) {
            long s = ((Number) r.get("step")).longValue();
            if (s > upTo) continue;
            if (r.get("bits_per_byte") instanceof Number n) trainCurve.add(new double[] {s, n.doubleValue()});
            if (r.get("val_bits_per_byte") instanceof Number n) validCurve.add(new double[] {s, n.doubleValue()});
        }
    }

    /** java.desktop (AWT) is absent from minimal runtimes such as the GPU machine's jlink image. */
    private static final boolean CAN_PLOT = ModuleLayer.boot().findModule("java.desktop").isPresent();
    private boolean plotWarned;

    private void plot(List<double[]> trainCurve, List<double[]> validCurve) throws IOException {
        if (!CAN_PLOT) {
            if (!plotWarned) listener.message("no loss.png: this Java runtime lacks the java.desktop module (metrics.jsonl has every value)");
            plotWarned = true;
            return;
        }
        LossPlot.write(runDir.resolve("loss.png"), "Perceiver AR on " + corpus, "step", "bits per byte", List.of(
                series("train (per step)", new Color(70, 130, 200), trainCurve),
                series("validation", new Color(220, 80, 40), validCurve)));
    }

    private static LossPlot.Series series(String label, Color c, List<double[]> pts) {
        double[] x = new double[pts.size()], y = new double[pts.size()];
        for (int i = 0; i < x.length; i++) {
            x[i] = pts.get(i)[0];
            y[i] = pts.get(i)[1];
        }
        return new LossPlot.Series(label, c, x, y);
    }
}
