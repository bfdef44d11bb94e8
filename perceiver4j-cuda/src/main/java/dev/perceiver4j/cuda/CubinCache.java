package dev.perceiver4j.cuda;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;

/**
 * Compiled kernels kept on disk between runs: NVRTC takes 20–50 s for kernels.cu, which every GPU
 * command (generate, fill-mask, bench) would otherwise pay at start-up.
 *
 * <p>A cubin is stored as {@code <dir>/kernels-sm_<cc>-<key>.cubin}, the key being the SHA-256 of the
 * source text, the compile options and the NVRTC version, so an edited source or another compiler
 * never reads an old file. The folder is {@code -Dperceiver4j.cuda.cache=DIR}, else
 * {@code $XDG_CACHE_HOME/perceiver4j}, else {@code ~/.cache/perceiver4j}; {@code
 * -Dperceiver4j.cuda.cache=none} switches the cache off. Files are written to a temporary name and
 * moved into place, so a crash or a concurrent run never leaves a partial cubin under the final name.
 * A cache that cannot be read or written costs only the compile: the problem is said once on stderr.
 */
final class CubinCache {
    private final Path dir;   // null: off

    private CubinCache(Path dir) {
        this.dir = dir;
    }

    /** The cache the system properties and environment select. */
    static CubinCache fromEnvironment() {
        String p = System.getProperty("perceiver4j.cuda.cache");
        if ("none".equals(p)) return new CubinCache(null);
        if (p != null && !p.isBlank()) return new CubinCache(Path.of(p));
        String xdg = System.getenv("XDG_CACHE_HOME");
        if (xdg != null && !xdg.isBlank()) return new CubinCache(Path.of(xdg, "perceiver4j"));
        String home = System.getProperty("user.home");
        return new CubinCache(home == null || home.isBlank() ? null : Path.of(home, ".cache", "perceiver4j"));
    }

    /** A cache in {@code dir} (tests), or off when null. */
    static CubinCache in(Path dir) {
        return new CubinCache(dir);
    }

    /** The file a cubin of this source, these options and compiler, for {@code sm_<cc>}, is kept in (null: off). */
    Path file(String source, List<String> options, String compiler, int cc) {
        if (dir == null) return null;
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            sha.update(source.getBytes(StandardCharsets.UTF_8));
            for (String o : options) sha.update(("\0" + o).getBytes(StandardCharsets.UTF_8));
            sha.update(("\0" + compiler).getBytes(StandardCharsets.UTF_8));
            return dir.resolve("kernels-sm_" + cc + "-" + HexFormat.of().formatHex(sha.digest(), 0, 16) + ".cubin");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this Java runtime", e);
        }
    }

    /** A file of this name in the cache folder (other cached results, e.g. {@link GemmTuning}'s), or null when the cache is off. */
    Path named(String name) {
        return dir == null ? null : dir.resolve(name);
    }

    /** The cached cubin in {@code file}, if there is one (null file: none). */
    static Optional<byte[]> read(Path file) {
        if (file == null || !Files.isRegularFile(file)) return Optional.empty();
        try {
            byte[] b = Files.readAllBytes(file);
            return b.length == 0 ? Optional.empty() : Optional.of(b);
        } catch (IOException e) {
            System.err.println("perceiver4j: cannot read the kernel cache " + file + " (" + e.getMessage() + "); compiling the kernels");
            return Optional.empty();
        }
    }

    /** Stores {@code cubin} (or any cached bytes) in {@code file} atomically (temporary file, then a move); a failure is said and ignored. */
    static void write(Path file, byte[] cubin) {
        if (file == null) return;
        Path tmp = null;
        try {
            Files.createDirectories(file.getParent());
            tmp = Files.createTempFile(file.getParent(), file.getFileName().toString(), ".tmp");
            Files.write(tmp, cubin);
            try {
                Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING);
            }
        } catch (IOException | UnsupportedOperationException e) {
            System.err.println("perceiver4j: cannot write the cache file " + file + " (" + e.getMessage()
                    + "); the next run makes it again (set -Dperceiver4j.cuda.cache=DIR or =none)");
            if (tmp != null) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // the temporary file stays; it never has the final name
                }
            }
        }
    }

    /** Removes a cached file the driver refused (corrupt or foreign); a failure is ignored. */
    static void discard(Path file) {
        if (file == null) return;
        try {
            Files.deleteIfExists(file);
        } catch (IOException ignored) {
            // the next run finds it again, is refused again and compiles
        }
    }
}
