package dev.perceiver4j.cli;

import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Backends;
import dev.perceiver4j.data.Corpus;
import dev.perceiver4j.data.CropSampler;
import dev.perceiver4j.data.Split;
import dev.perceiver4j.model.ar.PerceiverAR;
import dev.perceiver4j.train.ClmTrainer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.Locale;

/** Bits per byte of a Perceiver AR model on a corpus split, with a free number of latents. */
@Command(name = "eval", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Measure a Perceiver AR model's bits per byte on the validation (or training) part of a corpus.",
                "The split is by document with the same rule as train, so equal --corpus, --validation-fraction and --seed give the same held-out text."},
        footer = {"", "Examples:",
                "  ./perceiver4j eval --model runs/gutenberg",
                "  ./perceiver4j eval --model runs/gutenberg --latents 512 --windows 64"})
final class EvalCommand implements Runnable {
    @Mixin
    Main.Common common = new Main.Common();

    @Option(names = "--model", required = true, description = "model folder, checkpoint folder or run folder")
    Path model;

    @Option(names = "--corpus", defaultValue = "gutenberg", description = "corpus as for train (default: ${DEFAULT-VALUE})")
    String corpus;

    @Option(names = "--split", defaultValue = "validation", description = "validation | train (default: ${DEFAULT-VALUE})")
    String split;

    @Option(names = "--validation-fraction", defaultValue = "0.1", description = "as for train (default: ${DEFAULT-VALUE})")
    double validationFraction;

    @Option(names = "--seed", defaultValue = "1234", description = "split seed, as for train (default: ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--latents", description = "latent positions per window (default: the model's max_latents)")
    Integer latents;

    @Option(names = "--windows", defaultValue = "32", description = "evaluation windows of max_seq_len + 1 bytes (default: ${DEFAULT-VALUE})")
    int windows;

    @Option(names = "--batch", defaultValue = "8", description = "windows per forward pass (default: ${DEFAULT-VALUE})")
    int batch;

    @Override
    public void run() {
        common.apply();
        if (windows < 1 || batch < 1) throw new IllegalArgumentException("--windows and --batch must be >= 1");
        Backend be = Backends.get();
        PerceiverAR m = GenerateCommand.load(be, model);
        Split s;
        try {
            s = Corpus.load(corpus, Corpus.defaultCacheDir(), System.err::println).split(validationFraction, seed);
        } catch (IOException e) {
            throw new UncheckedIOException(e.getMessage(), e);
        }
        byte[] text = switch (split) {
            case "validation" -> s.validation();
            case "train" -> s.train();
            default -> throw new IllegalArgumentException("--split must be validation or train, got " + split);
        };
        int lat = latents == null ? m.config().maxLatents() : latents;
        CropSampler w = new CropSampler(text, m.config().maxSeqLen() + 1);
        long t0 = System.nanoTime();
        double bpb = ClmTrainer.bitsPerByte(m, w, lat, windows, batch);
        System.out.printf(Locale.ROOT, "%s %s: %.4f bits per byte (%d windows of %d bytes, %d latents, %.1f s)%n", corpus, split, bpb,
                w.evalWindowCount(windows), m.config().maxSeqLen(), lat, (System.nanoTime() - t0) / 1e9);
    }
}
