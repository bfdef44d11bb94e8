package dev.perceiver4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.perceiver4j.io.Checkpoints;
import dev.perceiver4j.io.TensorInfo;
import dev.perceiver4j.io.TensorSource;
import dev.perceiver4j.nn.Weights;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;

/** Shows what a checkpoint holds: config, tensors, dtypes, shapes and parameter count. */
@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = "Show a model directory or checkpoint file: its config.json, every tensor (dtype, shape) and the parameter count.",
        footer = {"", "Examples:", "  ./perceiver4j inspect ./language-perceiver", "  ./perceiver4j inspect pytorch_model.bin"})
final class InspectCommand implements Runnable {
    @Parameters(index = "0", paramLabel = "PATH", description = "model directory, *.safetensors, *.bin / *.pt zip, or *.index.json")
    Path path;

    @Override
    public void run() {
        try {
            inspect();
        } catch (IOException e) {
            throw new UncheckedIOException(e.getMessage(), e);
        }
    }

    private void inspect() throws IOException {
        Path dir = Weights.modelDir(path);
        if (Files.exists(dir.resolve("config.json"))) {
            JsonNode cfg = Checkpoints.readConfig(dir);
            System.out.println("config.json:");
            System.out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(cfg).indent(2).stripTrailing());
        }
        try (TensorSource src = Checkpoints.open(path)) {
            System.out.println("weights: " + src.path());
            if (!src.metadata().isEmpty()) System.out.println("metadata: " + src.metadata());
            long total = 0;
            int width = src.names().stream().mapToInt(String::length).max().orElse(4);
            for (String n : src.names()) {
                TensorInfo t = src.info(n);
                total += t.numel();
                System.out.printf(Locale.ROOT, "  %-" + width + "s  %-4s  %s%n", n, t.dtype(), Arrays.toString(t.shape()));
            }
            System.out.printf(Locale.ROOT, "%d tensors, %,d parameters%n", src.names().size(), total);
        }
    }
}
