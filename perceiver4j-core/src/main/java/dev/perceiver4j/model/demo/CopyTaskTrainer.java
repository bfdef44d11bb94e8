package dev.perceiver4j.model.demo;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import dev.perceiver4j.train.AdamW;
import dev.perceiver4j.train.LrSchedule;

import java.util.SplittableRandom;
import java.util.function.Consumer;

/**
 * Trains a {@link TinyTransformer} on the {@link CopyTask} end to end with the foundation's pieces:
 * parameters in one slab, a step scope per iteration, tape autograd, AdamW with warm-up + cosine
 * and gradient clipping. Deterministic for a given seed.
 */
public final class CopyTaskTrainer {
    /** Everything that defines a run. */
    public record Config(int symbols, int length, int channels, int heads, int layers, int batch, int steps,
                         float lr, int warmup, double clip, long seed) {
        public Config {
            if (batch < 1 || steps < 1) throw new IllegalArgumentException("batch and steps must be >= 1");
        }

        /** Defaults sized for a 2-core laptop: about a minute. */
        public static Config defaults() {
            return new Config(16, 12, 64, 4, 2, 32, 600, 3e-3f, 50, 1.0, 1234L);
        }

        public Config withSteps(int s) {
            return new Config(symbols, length, channels, heads, layers, batch, s, lr, warmup, clip, seed);
        }
    }

    /** Progress of one step, reported to the caller. */
    public record Progress(int step, int steps, double loss, float lr, double gradNorm, double seconds) {}

    /** What a run achieved: held-out loss and per-token copy accuracy after training. */
    public record Result(double initialEvalLoss, double finalTrainLoss, double evalLoss, double evalAccuracy,
                         int steps, double seconds, long parameters, String sample) {}

    private final Backend backend;
    private final Config config;

    public CopyTaskTrainer(Backend backend, Config config) {
        this.backend = backend;
        this.config = config;
    }

    public Result run(Consumer<Progress> progress) {
        CopyTask task = new CopyTask(config.symbols(), config.length());
        Params params = Params.root(backend, config.seed());
        TinyTransformer model = new TinyTransformer(params,
                new TinyTransformer.Config(task.vocab(), task.inputLength(), config.channels(), config.heads(), config.layers(), 4));
        AdamW opt = new AdamW(backend, AdamW.Config.defaults(config.lr()), params.pack(), params.gradients());
        LrSchedule schedule = new LrSchedule(config.lr(), config.warmup(), config.steps(), 0.1f);

        SplittableRandom evalRng = new SplittableRandom(config.seed() ^ 0x5EEDL);
        CopyTask.Batch evalBatch = task.sample(evalRng, 256);
        double initialEval = evaluate(model, task, evalBatch)[0];

        SplittableRandom rng = new SplittableRandom(config.seed());
        long t0 = System.nanoTime();
        double loss = Double.NaN;
        for (int step = 1; step <= config.steps(); step++) {
            CopyTask.Batch b = task.sample(rng, config.batch());
            try (Scope s = Scope.open()) {
                opt.zeroGrad();
                Tensor logits = model.forward(ids(b, task));                       // [B, T, V]
                Tensor l = F.crossEntropy(logits, targets(b, task), CopyTask.IGNORE, 0f);
                l.backward();
                Tensor norm = opt.clipGradNorm(config.clip());
                float lr = schedule.at(step);
                opt.step(lr);
                loss = l.item();   // read once the whole step is queued
                if (progress != null) progress.accept(new Progress(step, config.steps(), loss, lr, norm.item(), (System.nanoTime() - t0) / 1e9));
            }
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        double[] eval = evaluate(model, task, evalBatch);
        return new Result(initialEval, loss, eval[0], eval[1], config.steps(), seconds, params.parameterCount(),
                sample(model, task, new SplittableRandom(config.seed() ^ 0xC0FFEEL)));
    }

    private Tensor ids(CopyTask.Batch b, CopyTask task) {
        return backend.fromInts(b.ids(), Shape.of(b.batch(), task.inputLength()));
    }

    private Tensor targets(CopyTask.Batch b, CopyTask task) {
        return backend.fromInts(b.targets(), Shape.of(b.batch(), task.inputLength()));
    }

    /** {loss, accuracy} on the copy positions of {@code b}, without gradients. */
    private double[] evaluate(TinyTransformer model, CopyTask task, CopyTask.Batch b) {
        try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
            Tensor logits = model.forward(ids(b, task));
            double loss = F.crossEntropy(logits, targets(b, task), CopyTask.IGNORE, 0f).item();
            float[] lg = logits.toFloatArray();
            int v = task.vocab(), correct = 0, counted = 0;
            for (int r = 0; r < b.targets().length; r++) {
                int t = b.targets()[r];
                if (t == CopyTask.IGNORE) continue;
                int best = 0;
                for (int j = 1; j < v; j++) if (lg[r * v + j] > lg[r * v + best]) best = j;
                if (best == t) correct++;
                counted++;
            }
            return new double[] {loss, (double) correct / counted};
        }
    }

    /** Greedy copy of one random sequence, fed back token by token: "input -> model's copy". */
    private String sample(TinyTransformer model, CopyTask task, SplittableRandom rng) {
        int len = task.length(), v = task.vocab();
        int[] seq = task.sample(rng, 1).ids(); // [2L]: x1..xL SEP x1..x(L-1); the copy is overwritten below
        int[] copy = new int[len];
        try (var ng = Autograd.noGrad()) {
            for (int j = 0; j < len; j++) {
                int pos = len + j; // predicts sequence position pos + 1
                try (Scope s = Scope.open()) {
                    float[] lg = model.forward(backend.fromInts(seq, Shape.of(1, seq.length))).toFloatArray();
                    int best = 0;
                    for (int c = 1; c < v; c++) if (lg[pos * v + c] > lg[pos * v + best]) best = c;
                    copy[j] = best;
                    if (pos + 1 < seq.length) seq[pos + 1] = best;
                }
            }
        }
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < len; i++) sb.append(Character.forDigit(seq[i], 36));
        sb.append(" -> ");
        for (int c : copy) sb.append(Character.forDigit(c, 36));
        return sb.toString();
    }
}
