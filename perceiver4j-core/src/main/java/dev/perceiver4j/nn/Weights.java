package dev.perceiver4j.nn;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.perceiver4j.io.AtomicFiles;
import dev.perceiver4j.io.NamedTensor;
import dev.perceiver4j.io.SafetensorsWriter;
import dev.perceiver4j.io.StateDict;
import dev.perceiver4j.io.TensorSource;
import dev.perceiver4j.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * Moves a model's parameters to and from checkpoint files by name. Loading checks everything
 * first and reports every missing, unexpected and mis-shaped tensor in one error naming the file.
 */
public final class Weights {
    private Weights() {}

    /** Every trainable parameter and buffer of {@code params} by full name. */
    public static Map<String, Tensor> tensors(Params params) {
        Map<String, Tensor> all = new LinkedHashMap<>(params.trainable());
        all.putAll(params.buffers());
        return all;
    }

    /** Loads every tensor of {@code params} from {@code src} (checkpoint names = model names). */
    public static void load(Params params, TensorSource src) throws IOException {
        load(params, src, UnaryOperator.identity());
    }

    /**
     * Loads every tensor of {@code params} from {@code src}; {@code rename} maps a checkpoint name
     * to a model name (null: skip that tensor).
     */
    public static void load(Params params, TensorSource src, UnaryOperator<String> rename) throws IOException {
        Map<String, Tensor> want = tensors(params);
        Map<String, long[]> expected = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : want.entrySet()) {
            int[] d = e.getValue().shape().dims();
            long[] l = new long[d.length];
            for (int i = 0; i < d.length; i++) l[i] = d[i];
            expected.put(e.getKey(), l);
        }
        StateDict.compare(src, expected, rename).throwIfAny(src.path());
        for (String fileName : src.names()) {
            String name = rename.apply(fileName);
            if (name == null) continue;
            Tensor t = want.get(name);
            t.backend().copy(t.backend().fromFloats(src.readFloats(fileName), t.shape()), t); // any backend
        }
    }

    /** Writes every tensor of {@code params} as F32 to a safetensors file (atomically), under its model name. */
    public static void save(Params params, Path file, Map<String, String> metadata) throws IOException {
        List<NamedTensor> out = new ArrayList<>();
        for (Map.Entry<String, Tensor> e : tensors(params).entrySet()) {
            int[] d = e.getValue().shape().dims();
            long[] shape = new long[d.length];
            for (int i = 0; i < d.length; i++) shape[i] = d[i];
            out.add(NamedTensor.f32(e.getKey(), shape, e.getValue().toFloatArray()));
        }
        SafetensorsWriter.write(file, out, metadata);
    }

    /** The directory holding a model's config.json: the path itself, or the folder of a weights file. */
    public static Path modelDir(Path modelDirOrFile) {
        return Files.isDirectory(modelDirOrFile) ? modelDirOrFile : modelDirOrFile.toAbsolutePath().getParent();
    }

    /** Writes {@code model.safetensors} and {@code config.json} into {@code dir}, each atomically. */
    public static void saveModelDir(Params params, JsonNode config, Path dir) throws IOException {
        Files.createDirectories(dir);
        save(params, dir.resolve("model.safetensors"), Map.of("format", "pt"));
        byte[] json = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsBytes(config);
        AtomicFiles.write(dir.resolve("config.json"), json);
    }
}
