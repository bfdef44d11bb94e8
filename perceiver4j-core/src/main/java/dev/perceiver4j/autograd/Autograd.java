package dev.perceiver4j.autograd;

import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Tensor;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * The tape: ops record one entry per output while gradients are enabled, and
 * {@link #backward(Tensor)} replays the entries in reverse, each accumulating into its inputs'
 * gradients. One tape per thread; entries of coarse fused ops, not scalar primitives.
 */
public final class Autograd {

    /** What an op does in the backward pass: accumulate into its inputs' gradients given dOut. */
    @FunctionalInterface
    public interface BackwardFn {
        void apply(Tensor dOut);
    }

    private record Entry(String op, Tensor output, BackwardFn fn) {}

    private static final class State {
        final List<Entry> tape = new ArrayList<>();
        int noGradDepth;
    }

    private static final ThreadLocal<State> STATE = ThreadLocal.withInitial(State::new);

    private Autograd() {}

    /** Whether ops record onto the tape (false inside {@link #noGrad()}). */
    public static boolean enabled() {
        return STATE.get().noGradDepth == 0;
    }

    /** Disables recording until the returned handle is closed (inference, evaluation). */
    public static AutoCloseableNoThrow noGrad() {
        State s = STATE.get();
        s.noGradDepth++;
        return () -> s.noGradDepth--;
    }

    /** An AutoCloseable whose close throws nothing. */
    @FunctionalInterface
    public interface AutoCloseableNoThrow extends AutoCloseable {
        @Override
        void close();
    }

    /** True when gradients are enabled and any input needs one: the op must record itself. */
    public static boolean needsGrad(Tensor... inputs) {
        if (!enabled()) return false;
        for (Tensor t : inputs) if (t != null && t.requiresGrad()) return true;
        return false;
    }

    /** Records an op whose output is {@code output}; marks the output as requiring a gradient. */
    public static void record(String op, Tensor output, BackwardFn fn) {
        output.requiresGrad(true);
        STATE.get().tape.add(new Entry(op, output, fn));
    }

    /**
     * For a backward function of the op that produced {@code from}, when {@code from}'s gradient is
     * all that {@code to}'s gradient will start from: hands {@code from}'s gradient buffer to
     * {@code to} (a view of it in {@code to}'s shape) instead of {@code to.grad += from.grad} into
     * a fresh zero buffer. Only when {@code to} has no gradient yet, both live in the step scope
     * (activations, not parameters or inputs, whose gradients must outlive it) and have as many
     * elements; {@code from} is left without a gradient, and {@link #backward} no longer frees the
     * buffer after this op. Nothing may read {@code from}'s gradient after the call. Returns whether
     * it handed over (else the caller accumulates).
     */
    public static boolean handOverGrad(Tensor from, Tensor to) {
        Tensor src = from.root(), dst = to.root();
        Tensor g = src.grad();
        if (g == null || dst.grad() != null || src == dst || g.size() != dst.size() || g.dtype() != dst.gradType()) return false;
        if (!g.inStepScope() || !dst.inStepScope()) return false;
        dst.setGrad(g.reshape(dst.shape().dims()));
        src.setGrad(null);
        return true;
    }

    /** Number of entries on this thread's tape. */
    public static int tapeSize() {
        return STATE.get().tape.size();
    }

    /** Drops entries recorded after {@code mark} (a closing Scope calls this: their buffers are gone). */
    public static void truncate(int mark) {
        List<Entry> tape = STATE.get().tape;
        if (mark < tape.size()) tape.subList(Math.max(0, mark), tape.size()).clear();
    }

    /**
     * Reverse-mode differentiation of the scalar {@code loss}: its gradient is increased by 1, then
     * every recorded op, newest first, turns its output gradient into input gradients. The tape
     * is cleared afterwards; gradients of leaves (parameters, inputs) stay and accumulate over calls
     * until zeroed.
     *
     * <p>An activation's gradient is complete once every op that read the activation has run its
     * backward, and the op that produced the activation is the last to read that gradient. Right
     * after that op's backward the gradient buffer goes back to the step scope's pool (and
     * {@code grad()} of the activation becomes null), so the backward pass holds only the gradients
     * still in flight instead of one per activation. Values of a discarded, recomputable activation
     * (see {@link F#discard}) that a reader rebuilt go back to the pool at the same point.
     */
    public static void backward(Tensor loss) {
        if (loss.shape().numel() != 1) throw new IllegalArgumentException("backward() needs a scalar loss, got " + loss.describe());
        if (!loss.requiresGrad()) throw new IllegalStateException("loss " + loss.describe() + " does not depend on any tensor that requires a gradient");
        List<Entry> tape = STATE.get().tape;
        Tensor seed = loss.gradOrZeros();
        Tensor one = loss.backend().empty(seed.shape(), DType.F32);
        loss.backend().fill(one, 1f);                // on the device: no upload, so a GPU need not wait here
        loss.backend().axpy(1f, one, seed);
        // The oldest entry producing each output (a reshape view shares its base's gradient).
        Map<Tensor, Integer> producer = new IdentityHashMap<>();
        for (int i = 0; i < tape.size(); i++) producer.putIfAbsent(tape.get(i).output().root(), i);
        try (var ng = noGrad()) {
            for (int i = tape.size() - 1; i >= 0; i--) {
                Entry e = tape.get(i);
                Tensor root = e.output().root();
                boolean last = producer.get(root) == i;   // no later reader of the output's values or gradient
                Tensor dOut = e.output().grad();
                if (dOut != null) {
                    e.fn().apply(dOut);
                    // releases only scope buffers, and not one the op handed over (handOverGrad)
                    if (last && root.grad() != null && Scope.release(dOut.data())) root.setGrad(null);
                }
                if (last) root.releaseRecomputed();     // values F.discard gave away and a reader rebuilt
            }
        } finally {
            tape.clear();
        }
    }
}
