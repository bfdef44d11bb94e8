package dev.perceiver4j.backend;

/**
 * A sequence of backend ops recorded once and run again as a whole ({@link Backend#record}): a CUDA
 * graph on the GPU, where one launch replaces the host work of every op in it.
 *
 * <p>A replay runs exactly the recorded ops on exactly the recorded tensors, with the arguments they
 * had when recorded (sizes, offsets, scalars). Whatever changes from one replay to the next must be
 * read by the ops from tensors the caller updates in place before {@link #replay()} (token ids,
 * positions, row indices for {@link Backend#scatterRows}, padding masks). The recording owns the
 * intermediate buffers its ops use until {@link #close()}.
 */
public interface Recording extends AutoCloseable {

    /** Queues the recorded ops once more (asynchronously, like any backend op). */
    default void replay() {
        replay(0L);
    }

    /**
     * Queues the recorded ops once more with every dropout seed they were recorded with shifted by
     * {@code seedShift} (mod 2⁶⁴): ops recorded with seed s draw the masks of seed s + seedShift, as
     * if run op by op with that seed. A training step recorded at seed s₀ thus replays step k with
     * {@code replay(seedₖ − s₀)}.
     */
    void replay(long seedShift);

    /** Number of ops (graph nodes) recorded, for logs. */
    int ops();

    /** Frees the recording and hands its buffers back; replay afterwards throws. */
    @Override
    void close();

    /**
     * {@code backend.record(body)}, or null when the backend does not record or recording failed;
     * a failure (a backend problem, not the caller's) is said once on stderr, naming {@code what},
     * and the caller then runs the ops one by one.
     */
    static Recording recordOrNull(Backend backend, Runnable body, String what) {
        try {
            return backend.record(body);
        } catch (RuntimeException e) {
            System.err.println(what + ": recording failed, running the ops one by one: " + e.getMessage());
            return null;
        }
    }
}
