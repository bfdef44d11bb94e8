package dev.perceiver4j.cli;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Backends;
import dev.perceiver4j.io.CheckpointFormatException;
import dev.perceiver4j.io.Checkpoints;
import dev.perceiver4j.io.NamedTensor;
import dev.perceiver4j.io.SafetensorsReader;
import dev.perceiver4j.io.SafetensorsWriter;
import dev.perceiver4j.io.TensorSource;
import dev.perceiver4j.model.ar.PerceiverAR;
import dev.perceiver4j.model.ar.PerceiverArConfig;
import dev.perceiver4j.model.io.PerceiverForMaskedLM;
import dev.perceiver4j.model.io.RecordedMaskedLm;
import dev.perceiver4j.nn.Weights;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** Batch inference: token tensors in a safetensors file in, logits out. */
@Command(name = "predict", mixinStandardHelpOptions = true,
        description = {"Run a model over a batch of token sequences stored in a safetensors file.",
                "Perceiver IO masked LM: input_ids [B, N] (int64 or int32) and optionally attention_mask [B, N] (1 = token, 0 = padding)",
                "  → logits [B, P, V] float32 (P = max_position_embeddings).",
                "Perceiver AR: input_ids [B, N] and optionally pad_mask [B, N] (1 = padding, left-padded), with --prefix-len P",
                "  → logits [B, N − P, V] float32 for the latent positions."},
        footer = {"", "Examples:",
                "  ./perceiver4j predict --model ./language-perceiver --input batch.safetensors --output logits.safetensors",
                "  ./perceiver4j predict --model ./language-perceiver --input batch.safetensors --output logits.safetensors --batch-size 4 --threads 2",
                "  ./perceiver4j predict --model runs/gutenberg/model --input ar.safetensors --output logits.safetensors --prefix-len 896"})
final class PredictCommand implements Runnable {
    @Mixin
    Main.Common common = new Main.Common();

    @Option(names = "--model", required = true, description = "HF model directory or weights file next to its config.json")
    Path model;

    @Option(names = "--input", required = true, description = "safetensors file with input_ids (and attention_mask)")
    Path input;

    @Option(names = "--output", required = true, description = "safetensors file to write (atomically) with logits")
    Path output;

    @Option(names = "--batch-size", defaultValue = "8", description = "sequences per forward pass (default: ${DEFAULT-VALUE})")
    int batchSize;

    @Option(names = "--prefix-len", description = "Perceiver AR: prefix length P (0 ≤ P < N; default: N − max_latents, at least 0)")
    Integer prefixLen;

    @Override
    public void run() {
        common.apply();
        if (batchSize < 1) throw new IllegalArgumentException("--batch-size must be >= 1, got " + batchSize);
        try {
            predict();
        } catch (IOException e) {
            throw new UncheckedIOException(e.getMessage(), e);
        }
    }

    private void predict() throws IOException {
        Path dir = GenerateCommand.modelFolder(model);
        boolean ar = PerceiverArConfig.MODEL_TYPE.equals(Checkpoints.readConfig(Weights.modelDir(dir)).path("model_type").asText());
        if (!ar && prefixLen != null) throw new IllegalArgumentException("--prefix-len applies to Perceiver AR models only; " + model + " is a masked LM");
        // Perceiver IO takes attention_mask (1 = token); Perceiver AR takes pad_mask (1 = padding, left).
        Inputs in = readInputs(ar ? "pad_mask" : "attention_mask", ar ? "attention_mask" : "pad_mask");
        Backend be = Backends.get();
        if (ar) {
            checkLeftPadding(in);
            PerceiverAR m = GenerateCommand.load(be, dir);
            if (in.n() > m.config().maxSeqLen()) {
                throw new IllegalArgumentException(input + ": sequences of " + in.n() + " tokens exceed max_seq_len " + m.config().maxSeqLen());
            }
            int p = prefixLen != null ? prefixLen : Math.max(0, in.n() - m.config().maxLatents());
            if (p < 0 || p >= in.n()) throw new IllegalArgumentException("--prefix-len " + p + " must be in [0, " + in.n() + ")");
            run(in, m.config().vocabSize(), in.n() - p, (ids, mask, rows) -> {
                try (Scope s = Scope.open()) {
                    return m.forward(be.fromInts(ids, Shape.of(rows, in.n())), mask == null ? null : be.fromInts(mask, Shape.of(rows, in.n())), p)
                            .toFloatArray();
                }
            });
            System.out.printf("(prefix length %d)%n", p);
        } else {
            PerceiverForMaskedLM m = Main.loadMaskedLm(be, model);
            // One recorded pass per chunk shape (the full --batch-size and a shorter last chunk): on a GPU
            // each chunk is then one CUDA graph launch.
            Map<Integer, RecordedMaskedLm> passes = new HashMap<>();
            try {
                run(in, m.config().vocabSize(), m.config().maxPositionEmbeddings(),
                        (ids, mask, rows) -> passes.computeIfAbsent(rows, r -> new RecordedMaskedLm(m, r, in.n())).forward(ids, mask).toFloatArray());
            } finally {
                passes.values().forEach(RecordedMaskedLm::close);
            }
        }
    }

    /** input_ids [B, N] and the optional mask, as ints. */
    private record Inputs(int b, int n, int[] ids, int[] mask) {}

    private Inputs readInputs(String maskName, String wrongMaskName) throws IOException {
        try (TensorSource in = SafetensorsReader.open(input)) {
            if (!in.contains("input_ids")) throw new CheckpointFormatException(input + ": no tensor 'input_ids' (found: " + in.names() + ")");
            long[] shape = in.info("input_ids").shape();
            if (shape.length != 2) throw new CheckpointFormatException(input + ": input_ids must be [B, N], got " + Arrays.toString(shape));
            int[] ids = toInts(in.readLongs("input_ids"), "input_ids"), mask = null;
            if (in.contains(wrongMaskName) && !in.contains(maskName)) {
                throw new CheckpointFormatException(input + ": this model takes " + maskName + ", not " + wrongMaskName
                        + " (attention_mask: 1 = token, for Perceiver IO; pad_mask: 1 = padding, for Perceiver AR)");
            }
            if (in.contains(maskName)) {
                long[] ms = in.info(maskName).shape();
                if (!Arrays.equals(ms, shape)) {
                    throw new CheckpointFormatException(input + ": " + maskName + " " + Arrays.toString(ms) + " must have the shape of input_ids " + Arrays.toString(shape));
                }
                mask = toInts(in.readLongs(maskName), maskName);
            }
            return new Inputs(Math.toIntExact(shape[0]), Math.toIntExact(shape[1]), ids, mask);
        }
    }

    private void checkLeftPadding(Inputs in) {
        if (in.mask() == null) return;
        for (int r = 0; r < in.b(); r++) {
            for (int t = 1; t < in.n(); t++) {
                if (in.mask()[r * in.n() + t] != 0 && in.mask()[r * in.n() + t - 1] == 0) {
                    throw new IllegalArgumentException(input + ": pad_mask row " + r + " has padding at position " + t + " after a real token; Perceiver AR needs LEFT padding");
                }
            }
        }
    }

    /** One chunk: ids and mask (null: none) of {@code rows} sequences → their logits, flattened. */
    @FunctionalInterface
    private interface ChunkForward {
        float[] apply(int[] ids, int[] mask, int rows);
    }

    /** Runs the model in chunks of --batch-size rows → writes logits [B, rowsOut, vocab]. */
    private void run(Inputs in, int vocab, int rowsOut, ChunkForward forward) throws IOException {
        int b = in.b(), n = in.n();
        for (int i = 0; i < in.ids().length; i++) {
            if (in.ids()[i] < 0 || in.ids()[i] >= vocab) {
                throw new IllegalArgumentException(input + ": input_ids[" + i / n + ", " + i % n + "] = " + in.ids()[i] + " is outside the vocabulary [0, " + vocab + ")");
            }
        }
        Backend be = Backends.get();
        float[] logits = new float[Math.multiplyExact(Math.multiplyExact(b, rowsOut), vocab)];
        Progress bar = new Progress("predict", b);
        try (var ng = Autograd.noGrad()) {
            for (int start = 0; start < b; start += batchSize) {
                int rows = Math.min(batchSize, b - start);
                int[] ids = Arrays.copyOfRange(in.ids(), start * n, (start + rows) * n);
                int[] mask = in.mask() == null ? null : Arrays.copyOfRange(in.mask(), start * n, (start + rows) * n);
                float[] out = forward.apply(ids, mask, rows);
                System.arraycopy(out, 0, logits, start * rowsOut * vocab, out.length);
                bar.update(start + rows, "");
            }
        }
        bar.finish();
        SafetensorsWriter.write(output, List.of(NamedTensor.f32("logits", new long[] {b, rowsOut, vocab}, logits)), Map.of("format", "pt"));
        System.out.printf("wrote logits [%d, %d, %d] to %s%n", b, rowsOut, vocab, output);
    }

    private int[] toInts(long[] v, String name) {
        int[] r = new int[v.length];
        for (int i = 0; i < v.length; i++) {
            if (v[i] < Integer.MIN_VALUE || v[i] > Integer.MAX_VALUE) throw new IllegalArgumentException(input + ": " + name + " element " + i + " = " + v[i] + " does not fit an int");
            r[i] = (int) v[i];
        }
        return r;
    }
}
