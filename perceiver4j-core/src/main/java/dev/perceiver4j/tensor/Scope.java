package dev.perceiver4j.tensor;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.backend.Backend;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;

/**
 * A per-step activation scope: every buffer a backend allocates while the scope is open is handed
 * back to that backend's pool when it closes, so the next step reuses the same buffers (on the GPU
 * the same addresses, which is what lets a step be captured as a CUDA graph).
 *
 * <pre>{@code
 * try (Scope step = Scope.open()) {
 *     Tensor loss = model.loss(batch);
 *     loss.backward();
 *     lossValue = loss.item();      // copy out what must survive the scope
 *     optimizer.step();
 * }                                 // activations and their gradients are released here
 * }</pre>
 * Scopes nest per thread. Tensors that must outlive a scope (parameters, optimizer state) are
 * allocated outside any scope or with {@link Backend#persistentZeros}.
 */
public final class Scope implements AutoCloseable {
    private static final ThreadLocal<Scope> CURRENT = new ThreadLocal<>();

    private record Owned(Backend backend, Object buffer) {}

    private final Scope parent;
    private final Thread thread = Thread.currentThread();
    private final List<Owned> owned = new ArrayList<>();
    private final Set<Object> buffers = Collections.newSetFromMap(new IdentityHashMap<>());
    private final int tapeMark = Autograd.tapeSize(); // tape entries after this refer to our buffers
    private boolean closed;

    private Scope(Scope parent) {
        this.parent = parent;
    }

    /** Opens a scope nested in the current one (if any) on this thread. */
    public static Scope open() {
        Scope s = new Scope(CURRENT.get());
        CURRENT.set(s);
        return s;
    }

    /** The innermost open scope of this thread, or null. */
    public static Scope current() {
        return CURRENT.get();
    }

    /** Backends call this for every buffer they allocate; no-op when no scope is open. */
    public static void track(Backend backend, Object buffer) {
        Scope s = CURRENT.get();
        if (s != null) {
            s.owned.add(new Owned(backend, buffer));
            s.buffers.add(buffer);
        }
    }

    /** Whether {@code buffer} was allocated inside one of this thread's open scopes. */
    public static boolean owns(Object buffer) {
        for (Scope s = CURRENT.get(); s != null; s = s.parent) {
            if (s.buffers.contains(buffer)) return true;
        }
        return false;
    }

    /**
     * Hands {@code t}'s buffer to the enclosing scope (or, with none, to the garbage collector), so
     * that closing this scope releases everything else it allocated. Inference uses one short
     * scope per layer this way, which keeps its working set to about one layer's activations.
     * Only for tensors no open tape entry needs: a closing scope truncates the tape.
     */
    public Tensor keep(Tensor t) {
        Object buffer = t.data();
        for (int i = owned.size() - 1; i >= 0; i--) {
            if (owned.get(i).buffer() == buffer) {
                Owned o = owned.remove(i);
                buffers.remove(buffer);
                if (parent != null) {
                    parent.owned.add(o);
                    parent.buffers.add(buffer);
                }
                return t;
            }
        }
        return t; // not ours (a parameter, or allocated in an outer scope): nothing to hand over
    }

    /**
     * Hands {@code buffer} back to its backend's pool now, if one of this thread's open scopes
     * holds it (innermost first, newest allocation first); returns whether it did. For buffers
     * nothing will read again, such as an activation's gradient once the op that produced the
     * activation has run its backward. On the GPU the buffer's next user runs after the work already
     * queued, on the same stream.
     */
    public static boolean release(Object buffer) {
        for (Scope s = CURRENT.get(); s != null; s = s.parent) {
            if (!s.buffers.remove(buffer)) continue;
            for (int i = s.owned.size() - 1; i >= 0; i--) {
                if (s.owned.get(i).buffer() == buffer) {
                    s.owned.remove(i).backend().release(buffer);
                    return true;
                }
            }
            throw new IllegalStateException("scope bookkeeping: a tracked buffer is missing from its owner list");
        }
        return false;
    }

    /** Whether this scope has not been closed yet. */
    public boolean isOpen() {
        return !closed;
    }

    /** Number of buffers this scope holds (for tests and leak reports). */
    public int buffersHeld() {
        return owned.size();
    }

    @Override
    public void close() {
        if (closed) return;
        if (Thread.currentThread() != thread) throw new IllegalStateException("a Scope must be closed on the thread that opened it");
        if (CURRENT.get() != this) throw new IllegalStateException("scopes must be closed innermost first");
        closed = true;
        CURRENT.set(parent);
        Autograd.truncate(tapeMark);
        // Newest first: pools are stacks, so the next step's first request gets this step's first
        // buffer back, and a step that repeats its allocations gets the same buffers (addresses).
        for (int i = owned.size() - 1; i >= 0; i--) owned.get(i).backend().release(owned.get(i).buffer());
        owned.clear();
        buffers.clear();
    }
}
