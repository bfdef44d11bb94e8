package dev.perceiver4j.backend;

import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.RefBackend;

import java.util.Locale;

/**
 * Picks the backend once per process: {@code --backend} / {@code -Dperceiver4j.backend=auto|cpu|reference|cuda}
 * (default auto = CPU until the CUDA module is present; reference = the slow double-precision oracle), and logs the choice in one line.
 */
public final class Backends {
    private static final System.Logger LOG = System.getLogger("perceiver4j");
    private static volatile Backend chosen;

    private Backends() {}

    /** The process-wide backend, chosen on first use. */
    public static Backend get() {
        Backend b = chosen;
        if (b == null) {
            synchronized (Backends.class) {
                b = chosen;
                if (b == null) {
                    b = create(System.getProperty("perceiver4j.backend", "auto"));
                    LOG.log(System.Logger.Level.INFO, "Using " + b.name());
                    chosen = b;
                }
            }
        }
        return b;
    }

    /** Creates the named backend ({@code auto}, {@code cpu}, {@code reference}, {@code cuda}). */
    public static Backend create(String name) {
        return switch (name.trim().toLowerCase(Locale.ROOT)) {
            case "auto", "cpu" -> CpuBackend.create();
            case "reference", "ref" -> new RefBackend(CpuPool.common());
            case "cuda" -> throw new IllegalStateException("the CUDA backend is not part of this build yet; use --backend cpu");
            default -> throw new IllegalArgumentException("unknown backend '" + name + "'; choose one of: auto, cpu, reference, cuda");
        };
    }
}
