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
import dev.perceiver4j.nn.Weights;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
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
        Path dir = Files.isRegularFile(model.resolve("model").resolve("config.json")) ? model.resolve("model") : model;
        if (PerceiverArConfig.MODEL_TYPE.equals(Checkpoints.readConfig(Weights.modelDir(dir)).path("model_type").asText())) {
            predictAr(dir);
            return;
        }
        if (prefixLen != null) throw new IllegalArgumentException("--prefix-len applies to Perceiver AR models only; " + model + " is a masked LM");
        Backend be = Backends.get();
        int[] ids, mask;
        int b, n;
        try (TensorSource in = SafetensorsReader.open(input)) {
            if (!in.contains("input_ids")) throw new CheckpointFormatException(input + ": no tensor 'input_ids' (found: " + in.names() + ")");
            long[] shape = in.info("input_ids").shape();
            if (shape.length != 2) throw new CheckpointFormatException(input + ": input_ids must be [B, N], got " + Arrays.toString(shape));
            b = Math.toIntExact(shape[0]);
            n = Math.toIntExact(shape[1]);
            ids = toInts(in.readLongs("input_ids"), "input_ids");
            if (in.contains("attention_mask")) {
                long[] ms = in.info("attention_mask").shape();
                if (!Arrays.equals(ms, shape)) {
                    throw new CheckpointFormatException(input + ": attention_mask " + Arrays.toString(ms) + " must have the shape of input_ids " + Arrays.toString(shape));
                }
                mask = toInts(in.readLongs("attention_mask"), "attention_mask");
            } else {
                mask = null;
            }
        }
        PerceiverForMaskedLM m = Main.loadMaskedLm(be, model);
        int vocab = m.config().vocabSize(), p = m.config().maxPositionEmbeddings();
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] < 0 || ids[i] >= vocab) {
                throw new IllegalArgumentException(input + ": input_ids[" + i / n + ", " + i % n + "] = " + ids[i] + " is outside the vocabulary [0, " + vocab + ")");
            }
        }
        float[] logits = new float[Math.multiplyExact(Math.multiplyExact(b, p), vocab)];
        Progress bar = new Progress("predict", b);
        try (var ng = Autograd.noGrad()) {
            for (int start = 0; start < b; start += batchSize) {
                int rows = Math.min(batchSize, b - start);
                try (Scope s = Scope.open()) {
                    int[] chunk = Arrays.copyOfRange(ids, start * n, (start + rows) * n);
                    var maskT = mask == null ? null : be.fromInts(Arrays.copyOfRange(mask, start * n, (start + rows) * n), Shape.of(rows, n));
                    float[] out = m.forward(be.fromInts(chunk, Shape.of(rows, n)), maskT, false, 0L).toFloatArray();
                    System.arraycopy(out, 0, logits, start * p * vocab, out.length);
                }
                bar.update(start + rows, "");
            }
        }
        bar.finish();
        SafetensorsWriter.write(output, List.of(NamedTensor.f32("logits", new long[] {b, p, vocab}, logits)), Map.of("format", "pt"));
        System.out.printf("wrote logits [%d, %d, %d] to %s%n", b, p, vocab, output);
    }

    /** Perceiver AR: input_ids and pad_mask (1 = padding) → logits of the latent positions. */
    private void predictAr(Path dir) throws IOException {
        Backend be = Backends.get();
        int[] ids, pad;
        int b, n;
        try (TensorSource in = SafetensorsReader.open(input)) {
            if (!in.contains("input_ids")) throw new CheckpointFormatException(input + ": no tensor 'input_ids' (found: " + in.names() + ")");
            long[] shape = in.info("input_ids").shape();
            if (shape.length != 2) throw new CheckpointFormatException(input + ": input_ids must be [B, N], got " + Arrays.toString(shape));
            b = Math.toIntExact(shape[0]);
            n = Math.toIntExact(shape[1]);
            ids = toInts(in.readLongs("input_ids"), "input_ids");
            if (in.contains("attention_mask") && !in.contains("pad_mask")) {
                throw new CheckpointFormatException(input + ": Perceiver AR takes pad_mask (1 = padding), not attention_mask");
            }
            if (in.contains("pad_mask")) {
                long[] ms = in.info("pad_mask").shape();
                if (!Arrays.equals(ms, shape)) {
                    throw new CheckpointFormatException(input + ": pad_mask " + Arrays.toString(ms) + " must have the shape of input_ids " + Arrays.toString(shape));
                }
                pad = toInts(in.readLongs("pad_mask"), "pad_mask");
                for (int r = 0; r < b; r++) {
                    for (int t = 1; t < n; t++) {
                        if (pad[r * n + t] != 0 && pad[r * n + t - 1] == 0) {
                            throw new IllegalArgumentException(input + ": pad_mask row " + r + " has padding at position " + t + " after a real token; Perceiver AR needs LEFT padding");
                        }
                    }
                }
            } else {
                pad = null;
            }
        }
        PerceiverAR m = GenerateCommand.load(be, dir);
        int vocab = m.config().vocabSize();
        if (n > m.config().maxSeqLen()) throw new IllegalArgumentException(input + ": sequences of " + n + " tokens exceed max_seq_len " + m.config().maxSeqLen());
        int p = prefixLen != null ? prefixLen : Math.max(0, n - m.config().maxLatents());
        if (p < 0 || p >= n) throw new IllegalArgumentException("--prefix-len " + p + " must be in [0, " + n + ")");
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] < 0 || ids[i] >= vocab) {
                throw new IllegalArgumentException(input + ": input_ids[" + i / n + ", " + i % n + "] = " + ids[i] + " is outside the vocabulary [0, " + vocab + ")");
            }
        }
        int lat = n - p;
        float[] logits = new float[Math.multiplyExact(Math.multiplyExact(b, lat), vocab)];
        Progress bar = new Progress("predict", b);
        try (var ng = Autograd.noGrad()) {
            for (int start = 0; start < b; start += batchSize) {
                int rows = Math.min(batchSize, b - start);
                try (Scope s = Scope.open()) {
                    var idsT = be.fromInts(Arrays.copyOfRange(ids, start * n, (start + rows) * n), Shape.of(rows, n));
                    var padT = pad == null ? null : be.fromInts(Arrays.copyOfRange(pad, start * n, (start + rows) * n), Shape.of(rows, n));
                    float[] out = m.forward(idsT, padT, p).toFloatArray();
                    System.arraycopy(out, 0, logits, start * lat * vocab, out.length);
                }
                bar.update(start + rows, "");
            }
        }
        bar.finish();
        SafetensorsWriter.write(output, List.of(NamedTensor.f32("logits", new long[] {b, lat, vocab}, logits)), Map.of("format", "pt"));
        System.out.printf("wrote logits [%d, %d, %d] (prefix %d) to %s%n", b, lat, vocab, p, output);
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
