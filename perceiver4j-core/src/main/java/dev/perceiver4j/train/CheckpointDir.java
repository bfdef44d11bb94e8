package dev.perceiver4j.train;

import dev.perceiver4j.io.AtomicFiles;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * The checkpoints of a training run: {@code <run>/checkpoints/step-000120/} folders and a
 * {@code latest} file naming the newest complete one.
 *
 * <p>Atomic by construction: a checkpoint is written into {@code step-N.tmp-*}, renamed to
 * {@code step-N} when complete, and only then does {@code latest} (replaced by an atomic move) point
 * at it. A crash at any moment leaves the previous checkpoint readable; stray temp folders are
 * removed on the next save.
 */
public final class CheckpointDir {
    /** Writes a checkpoint's files into the folder it is given. */
    @FunctionalInterface
    public interface Writer {
        void write(Path dir) throws IOException;
    }

    private final Path root;
    private final int keep;

    /** root: {@code <run>/checkpoints}; keep: how many complete checkpoints to retain (at least 1). */
    public CheckpointDir(Path root, int keep) {
        if (keep < 1) throw new IllegalArgumentException("keep must be >= 1, got " + keep);
        this.root = root;
        this.keep = keep;
    }

    public static String name(long step) {
        return String.format(java.util.Locale.ROOT, "step-%06d", step);
    }

    /** The newest complete checkpoint, if any. */
    public Optional<Path> latest() throws IOException {
        Path pointer = root.resolve("latest");
        if (!Files.exists(pointer)) return Optional.empty();
        String name = Files.readString(pointer, StandardCharsets.UTF_8).strip();
        Path dir = root.resolve(name);
        if (name.isEmpty() || name.contains("/") || !Files.isDirectory(dir)) {
            throw new IOException(pointer + " names checkpoint '" + name + "', which does not exist; remove the file to start over");
        }
        return Optional.of(dir);
    }

    /** Writes checkpoint {@code step} atomically, points {@code latest} at it and prunes old ones. Returns its folder. */
    public Path save(long step, Writer writer) throws IOException {
        Files.createDirectories(root);
        cleanTemps();
        String name = name(step);
        Path tmp = Files.createTempDirectory(root, name + ".tmp-");
        Path dir = root.resolve(name);
        try {
            writer.write(tmp);
            if (Files.exists(dir)) AtomicFiles.deleteTree(dir);      // re-saving the same step (e.g. after resume)
            Files.move(tmp, dir, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException | RuntimeException e) {
            AtomicFiles.deleteTree(tmp);
            throw e;
        }
        AtomicFiles.write(root.resolve("latest"), (name + "\n").getBytes(StandardCharsets.UTF_8));
        prune(name);
        return dir;
    }

    /** Complete checkpoint folders, oldest first. */
    public List<Path> list() throws IOException {
        if (!Files.isDirectory(root)) return List.of();
        try (Stream<Path> s = Files.list(root)) {
            return s.filter(p -> Files.isDirectory(p) && p.getFileName().toString().matches("step-\\d+"))
                    .sorted(Comparator.comparing(p -> p.getFileName().toString())).toList();
        }
    }

    private void prune(String newest) throws IOException {
        List<Path> all = new ArrayList<>(list());
        all.removeIf(p -> p.getFileName().toString().compareTo(newest) > 0);   // never delete newer ones (a resumed run re-saving)
        for (int i = 0; i < all.size() - keep; i++) AtomicFiles.deleteTree(all.get(i));
    }

    private void cleanTemps() throws IOException {
        try (Stream<Path> s = Files.list(root)) {
            for (Path p : s.filter(p -> p.getFileName().toString().contains(".tmp")).toList()) AtomicFiles.deleteTree(p);
        }
    }
}
