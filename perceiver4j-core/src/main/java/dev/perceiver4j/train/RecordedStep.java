package dev.perceiver4j.train;

import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Recording;
import dev.perceiver4j.tensor.Scope;

import java.util.function.LongConsumer;

/**
 * The forward, loss and backward of one training micro-batch, run op by op the first time and then
 * recorded once ({@link Backend#record}: a CUDA graph) and replayed, so a GPU step costs one launch
 * instead of one per op. Where the backend does not record (the CPU), every run is op by op.
 *
 * <p>The body is called with the step's dropout seed. It must read everything that changes between
 * steps from persistent tensors the caller rewrites before {@link #run} (token ids, positions,
 * targets), leave its results in persistent tensors (the parameter gradients, a loss sum), use the
 * seed for every random draw, and keep the same shapes at every call. A replay for seed s shifts the
 * recorded seed to s ({@link Recording#replay(long)}), so the masks are those of the op-by-op run
 * with seed s, and the results repeat bit for bit. The optimizer (clipping, AdamW with its learning
 * rate and step count) runs outside, op by op.
 *
 * <p>The first run is op by op so that what a backend makes on first use (bf16 copies of the weights)
 * is made outside the recording. The recording holds its step's intermediate buffers until
 * {@link #close()}.
 */
public final class RecordedStep implements AutoCloseable {
    private final Backend backend;
    private final LongConsumer body;
    private final String what;
    private Recording recording;
    private long recordedSeed;
    private long runs;
    private boolean opByOp;   // the backend does not record, or recording failed

    /** body: the step's ops for a seed; what: names the step in the message a failed recording prints. */
    public RecordedStep(Backend backend, LongConsumer body, String what) {
        this.backend = backend;
        this.body = body;
        this.what = what;
    }

    /** Queues one step with dropout seed {@code seed} (inputs written beforehand). */
    public void run(long seed) {
        if (recording == null && !opByOp && runs > 0) {
            recording = Recording.recordOrNull(backend, () -> body.accept(seed), what);
            recordedSeed = seed;
            opByOp = recording == null;
        }
        runs++;
        if (recording != null) {
            recording.replay(seed - recordedSeed);
            return;
        }
        try (Scope s = Scope.open()) {
            body.accept(seed);
        }
    }

    /** Whether steps now replay a recording. */
    public boolean recorded() {
        return recording != null;
    }

    /** Ops in the recording (0 while steps run op by op). */
    public int recordedOps() {
        return recording == null ? 0 : recording.ops();
    }

    /** Frees the recording and its buffers; a later run records again. */
    @Override
    public void close() {
        if (recording != null) recording.close();
        recording = null;
        runs = 0;
    }
}
