package dev.perceiver4j.backend;

import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.RefBackend;

import java.util.Locale;
import java.util.Optional;
import java.util.ServiceLoader;

/**
 * Picks the backend once per process: {@code --backend} / {@code -Dperceiver4j.backend=auto|cpu|reference|cuda}
 * (reference = the slow double-precision oracle), and logs the choice in one line.
 *
 * <p>Backends outside core (CUDA) are found through {@link ServiceLoader} as a
 * {@link BackendProvider}; core does not depend on their modules. {@code auto} takes the CUDA
 * provider when one is on the class path and a GPU initialises, else the CPU, and says why.
 */
public final class Backends {
    private static final System.Logger LOG = System.getLogger("perceiver4j");
    private static volatile Backend chosen;
    private static volatile String autoNote = "";

    private Backends() {}

    /** The process-wide backend, chosen on first use. */
    public static Backend get() {
        Backend b = chosen;
        if (b == null) {
            synchronized (Backends.class) {
                b = chosen;
                if (b == null) {
                    b = create(System.getProperty("perceiver4j.backend", "auto"));
                    if (Boolean.getBoolean("perceiver4j.profile")) b = new ProfilingBackend(b);
                    LOG.log(System.Logger.Level.INFO, "Using " + b.name() + autoNote);
                    chosen = b;
                }
            }
        }
        return b;
    }

    /** Creates the named backend ({@code auto}, {@code cpu}, {@code reference}, {@code cuda}). */
    public static Backend create(String name) {
        return switch (name.trim().toLowerCase(Locale.ROOT)) {
            case "auto" -> auto();
            case "cpu" -> CpuBackend.create();
            case "reference", "ref" -> new RefBackend(CpuPool.common());
            case "cuda" -> provider("cuda")
                    .orElseThrow(() -> new IllegalStateException("--backend cuda: the CUDA backend is not on the class path "
                            + "(it is the perceiver4j-cuda jar); use --backend cpu"))
                    .create();
            default -> throw new IllegalArgumentException("unknown backend '" + name + "'; choose one of: auto, cpu, reference, cuda");
        };
    }

    /** CUDA when its provider is present and a GPU initialises, else the CPU. */
    private static Backend auto() {
        Optional<BackendProvider> cuda = provider("cuda");
        if (cuda.isEmpty()) {
            LOG.log(System.Logger.Level.DEBUG, "auto: no CUDA backend on the class path; using the CPU");
            autoNote = "";
            return CpuBackend.create();
        }
        try {
            Backend b = cuda.get().create();
            autoNote = " (auto: a GPU initialised)";
            return b;
        } catch (RuntimeException | LinkageError e) {
            String why = String.valueOf(e.getMessage());
            int cut = why.indexOf("; tried");   // the full list of paths tried is for --backend cuda's error
            LOG.log(System.Logger.Level.INFO, "auto: no usable GPU (" + (cut > 0 ? why.substring(0, cut) : why) + "); using the CPU");
            LOG.log(System.Logger.Level.DEBUG, "auto: CUDA start-up failed: " + why);
            autoNote = " (auto: CUDA not usable)";
            return CpuBackend.create();
        }
    }

    /** The provider of that name on the class path, if any. */
    public static Optional<BackendProvider> provider(String name) {
        for (BackendProvider p : ServiceLoader.load(BackendProvider.class)) {
            if (p.name().equalsIgnoreCase(name)) return Optional.of(p);
        }
        return Optional.empty();
    }
}
