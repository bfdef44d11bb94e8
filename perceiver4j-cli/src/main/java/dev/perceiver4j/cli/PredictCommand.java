package dev.perceiver4j.cli;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Backends;
import dev.perceiver4j.io.CheckpointFormatException;
import dev.perceiver4j.io.NamedTensor;
import dev.perceiver4j.io.SafetensorsReader;
import dev.perceiver4j.io.SafetensorsWriter;
import dev.perceiver4j.io.TensorSource;
import dev.perceiver4j.model.io.PerceiverForMaskedLM;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/** Batch inference: token tensors in a safetensors file in, logits out. */
@Command(name = "predict", mixinStandardHelpOptions = true,
        description = {"Run a model over a batch of token sequences stored in a safetensors file.",
                "Input tensors: input_ids [B, N] (int64 or int32) and optionally attention_mask [B, N] (1 = token, 0 = padding).",
                "Output: logits [B, P, V] float32 (P = max_position_embeddings for Perceiver IO masked LMs)."},
        footer = {"", "Examples:",
                "  ./perceiver4j predict --model ./language-perceiver --input batch.safetensors --output logits.safetensors",
                "  ./perceiver4j predict --model ./language-perceiver --input batch.safetensors --output logits.safetensors --batch-size 4 --threads 2"})
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

    private int[] toInts(long[] v, String name) {
        int[] r = new int[v.length];
        for (int i = 0; i < v.length; i++) {
            if (v[i] < Integer.MIN_VALUE || v[i] > Integer.MAX_VALUE) throw new IllegalArgumentException(input + ": " + name + " element " + i + " = " + v[i] + " does not fit an int");
            r[i] = (int) v[i];
        }
        return r;
    }
}
