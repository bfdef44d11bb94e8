package dev.perceiver4j.io;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.function.UnaryOperator;
import java.util.List;
import java.util.Map;

/** Compares a checkpoint's tensors with the names and shapes a model expects. */
public final class StateDict {
    private StateDict() {}

    /** Missing, unexpected and mis-shaped tensors, each entry naming the tensor (and shapes). */
    public record LoadReport(List<String> missing, List<String> unexpected, List<String> misshaped) {
        public LoadReport {
            missing = List.copyOf(missing);
            unexpected = List.copyOf(unexpected);
            misshaped = List.copyOf(misshaped);
        }

        /** True when nothing is missing, unexpected or mis-shaped. */
        public boolean isClean() {
            return missing.isEmpty() && unexpected.isEmpty() && misshaped.isEmpty();
        }

        /** One message listing every problem ("ok" when clean). */
        public String describe() {
            if (isClean()) {
                return "ok";
            }
            List<String> parts = new ArrayList<>();
            if (!missing.isEmpty()) {
                parts.add(missing.size() + " missing: " + String.join(", ", missing));
            }
            if (!unexpected.isEmpty()) {
                parts.add(unexpected.size() + " unexpected: " + String.join(", ", unexpected));
            }
            if (!misshaped.isEmpty()) {
                parts.add(misshaped.size() + " mis-shaped: " + String.join(", ", misshaped));
            }
            return String.join("; ", parts);
        }

        /** @throws CheckpointFormatException naming {@code file} and every problem, unless clean */
        public void throwIfAny(Path file) throws CheckpointFormatException {
            if (!isClean()) {
                throw new CheckpointFormatException(file + ": state dict does not match the model: " + describe());
            }
        }
    }

    /** Compares {@code source} with {@code expected} (tensor name → shape, in the model's order). */
    public static LoadReport compare(TensorSource source, Map<String, long[]> expected) {
        return compare(source, expected, UnaryOperator.identity());
    }

    /**
     * Like {@link #compare(TensorSource, Map)}, with checkpoint names mapped to model names by
     * {@code rename} first (a name mapped to null is ignored: e.g. a buffer the model recomputes).
     */
    public static LoadReport compare(TensorSource source, Map<String, long[]> expected, UnaryOperator<String> rename) {
        Map<String, String> fileNameOf = new HashMap<>();
        List<String> unexpected = new ArrayList<>();
        for (String n : source.names()) {
            String model = rename.apply(n);
            if (model == null) continue;
            if (expected.containsKey(model)) {
                fileNameOf.put(model, n);
            } else {
                unexpected.add(n + " " + Arrays.toString(source.info(n).shape()));
            }
        }
        List<String> missing = new ArrayList<>();
        List<String> misshaped = new ArrayList<>();
        for (Map.Entry<String, long[]> e : expected.entrySet()) {
            String file = fileNameOf.get(e.getKey());
            if (file == null) {
                missing.add(e.getKey() + " " + Arrays.toString(e.getValue()));
                continue;
            }
            long[] actual = source.info(file).shape();
            if (!Arrays.equals(actual, e.getValue())) {
                misshaped.add(e.getKey() + " expected " + Arrays.toString(e.getValue()) + " but file has "
                        + Arrays.toString(actual));
            }
        }
        return new LoadReport(missing, unexpected, misshaped);
    }
}
