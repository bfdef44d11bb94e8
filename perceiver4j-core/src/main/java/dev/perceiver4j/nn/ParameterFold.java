package dev.perceiver4j.nn;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Tensor;

import java.util.Arrays;
import java.util.function.Supplier;

/**
 * A tensor computed from parameters alone (no input), kept between inference passes and computed
 * again as soon as any of those parameters changed. "Changed" is decided by comparing every
 * parameter's bits with a copy taken when the value was computed ({@code Arrays.equals}: 0.0 and
 * -0.0 differ, NaNs of any payload are equal), so every way of writing weights
 * (an optimizer step, loading a checkpoint, a direct write into the storage) invalidates it; no
 * caller has to remember to. The comparison reads the parameters once per pass, which costs far
 * less than the work it saves when that work is a matrix product over them.
 *
 * <p>Folding applies only to inference ({@link Autograd#enabled()} false: no gradients can flow
 * through the kept value) on backends that keep F32 parameters in Java arrays (the CPU backends);
 * elsewhere {@link #applies()} is false and callers compute as usual. Not for concurrent passes.
 */
public final class ParameterFold {
    private final Tensor[] sources;
    private float[][] copies;  // the sources' values when value was computed, or null
    private Tensor value;      // persistent: outlives the pass that computed it

    public ParameterFold(Tensor... sources) {
        if (sources.length == 0) throw new IllegalArgumentException("ParameterFold: no source parameters");
        this.sources = sources.clone();
    }

    /** Whether a folded value may be used now: no gradients recorded, every source an F32 tensor in a Java array. */
    public boolean applies() {
        if (Autograd.enabled()) return false;
        for (Tensor t : sources) {
            if (t.dtype() != DType.F32 || !(t.data() instanceof float[])) return false;
        }
        return true;
    }

    /**
     * The value {@code compute} gives for the sources as they are now: the kept one while every source
     * has the bits it had when that was computed, else {@code compute}'s new result (copied into a
     * tensor that outlives the caller's scope). Only where {@link #applies()}.
     */
    public synchronized Tensor get(Supplier<Tensor> compute) {
        if (!applies()) throw new IllegalStateException("ParameterFold: folding applies only to F32 CPU parameters with gradients off");
        if (value != null && unchanged()) return value;
        value = null;
        copies = null;
        Tensor v = compute.get();
        Tensor kept = v.backend().persistentZeros(v.shape(), v.dtype());
        v.backend().copy(v, kept);
        float[][] c = new float[sources.length][];
        for (int i = 0; i < sources.length; i++) {
            Tensor t = sources[i];
            c[i] = Arrays.copyOfRange((float[]) t.data(), t.offset(), t.offset() + t.size());
        }
        copies = c;
        value = kept;
        return kept;
    }

    /** Computations of the value so far would give the same bits now: every source equals its copy. */
    private boolean unchanged() {
        for (int i = 0; i < sources.length; i++) {
            Tensor t = sources[i];
            float[] now = (float[]) t.data(), then = copies[i];
            if (!Arrays.equals(now, t.offset(), t.offset() + t.size(), then, 0, then.length)) return false;
        }
        return true;
    }
}
