package dev.perceiver4j.io;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;

/** Opens a checkpoint of any supported format, or the weights of a Hugging Face model directory. */
public final class Checkpoints {
    /** Files looked for in a model directory, in order of preference. */
    public static final List<String> MODEL_FILES = List.of(
            "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json");

    private Checkpoints() {}

    /**
     * Opens {@code path}: a directory (the first of {@link #MODEL_FILES} present), an {@code *.index.json}
     * shard index, a torch.save zip ({@code .bin/.pt/.pth}, detected by its zip signature) or a safetensors file.
     */
    public static TensorSource open(Path path) throws IOException {
        if (Files.isDirectory(path)) {
            for (String f : MODEL_FILES) {
                Path p = path.resolve(f);
                if (Files.isRegularFile(p)) {
                    return openFile(p);
                }
            }
            throw new CheckpointFormatException(path + ": no model weights found (looked for "
                    + String.join(", ", MODEL_FILES) + ")");
        }
        if (!Files.isRegularFile(path)) {
            throw new NoSuchFileException(path.toString(), null, "no such checkpoint file or directory");
        }
        return openFile(path);
    }

    private static TensorSource openFile(Path file) throws IOException {
        String name = file.getFileName().toString();
        if (name.endsWith(".index.json")) {
            return ShardedSafetensors.open(file, Checkpoints::openFile);
        }
        byte[] magic;
        try (InputStream in = Files.newInputStream(file)) {
            magic = in.readNBytes(4);
        }
        if (magic.length == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4) {
            return TorchZipReader.open(file);
        }
        if (magic.length >= 2 && (magic[0] & 0xFF) == 0x80 && magic[1] >= 2 && magic[1] <= 5
                && !name.endsWith(".safetensors")) {
            throw new CheckpointFormatException(file + ": legacy torch.save format (plain pickle, PyTorch < 1.6) "
                    + "is not supported; re-save with a current PyTorch or convert to safetensors");
        }
        return SafetensorsReader.open(file);
    }

    /**
     * Reads {@code config.json} from a model directory (or the given JSON file) with the same JSON limits as
     * checkpoint headers.
     */
    public static JsonNode readConfig(Path dir) throws IOException {
        Path file = Files.isDirectory(dir) ? dir.resolve("config.json") : dir;
        if (!Files.isRegularFile(file)) {
            throw new NoSuchFileException(file.toString(), null, "model config not found");
        }
        JsonNode node = Json.readFile(file);
        if (!node.isObject()) {
            throw new CheckpointFormatException(file + ": config must be a JSON object");
        }
        return node;
    }
}
