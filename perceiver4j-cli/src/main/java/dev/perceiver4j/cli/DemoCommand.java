package dev.perceiver4j.cli;

import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Backends;
import dev.perceiver4j.model.demo.CopyTaskTrainer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.util.Locale;

/** Trains the tiny transformer on the synthetic copy task and reports what it learned. */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = {"Train a small causal transformer (attention + MLP) on a synthetic sequence-copy task,",
                "end to end on this machine, and report held-out loss, accuracy and a sample."},
        footer = {"", "Examples:", "  ./perceiver4j demo", "  ./perceiver4j demo --steps 1500 --channels 96 --threads 2"})
final class DemoCommand implements Runnable {
    @Mixin
    Main.Common common = new Main.Common();

    @Option(names = "--steps", description = "training steps (default: ${DEFAULT-VALUE})", defaultValue = "600")
    int steps;

    @Option(names = "--batch", description = "sequences per step (default: ${DEFAULT-VALUE})", defaultValue = "32")
    int batch;

    @Option(names = "--length", description = "symbols to copy (default: ${DEFAULT-VALUE})", defaultValue = "12")
    int length;

    @Option(names = "--channels", description = "model width (default: ${DEFAULT-VALUE})", defaultValue = "64")
    int channels;

    @Option(names = "--layers", description = "transformer blocks (default: ${DEFAULT-VALUE})", defaultValue = "2")
    int layers;

    @Option(names = "--lr", description = "peak learning rate (default: ${DEFAULT-VALUE})", defaultValue = "3e-3")
    float lr;

    @Option(names = "--seed", description = "random seed (default: ${DEFAULT-VALUE})", defaultValue = "1234")
    long seed;

    @Override
    public void run() {
        common.apply();
        Backend backend = Backends.get();
        CopyTaskTrainer.Config d = CopyTaskTrainer.Config.defaults();
        CopyTaskTrainer.Config c = new CopyTaskTrainer.Config(d.symbols(), length, channels, 4, layers, batch, steps, lr,
                Math.min(d.warmup(), Math.max(1, steps / 10)), d.clip(), seed);
        System.out.printf(Locale.ROOT, "perceiver4j demo: copy %d symbols of %d, %d-layer transformer, width %d, %d steps of %d sequences on %s%n",
                c.length(), c.symbols(), c.layers(), c.channels(), c.steps(), c.batch(), backend.name());
        Progress bar = new Progress("train", steps);
        CopyTaskTrainer.Result r = new CopyTaskTrainer(backend, c).run(p ->
                bar.update(p.step(), String.format(Locale.ROOT, "loss %.4f lr %.2e |g| %.2f", p.loss(), p.lr(), p.gradNorm())));
        bar.finish();
        System.out.printf(Locale.ROOT, "parameters        %,d%n", r.parameters());
        System.out.printf(Locale.ROOT, "held-out loss     %.4f nats/token (before training %.4f; chance %.4f)%n",
                r.evalLoss(), r.initialEvalLoss(), Math.log(c.symbols()));
        System.out.printf(Locale.ROOT, "held-out accuracy %.1f%% of copied tokens%n", 100 * r.evalAccuracy());
        System.out.printf(Locale.ROOT, "sample            %s%n", r.sample());
        System.out.printf(Locale.ROOT, "time              %.1f s (%.1f steps/s)%n", r.seconds(), r.steps() / r.seconds());
    }
}
