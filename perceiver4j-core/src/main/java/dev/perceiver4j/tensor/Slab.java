package dev.perceiver4j.tensor;

import dev.perceiver4j.backend.Backend;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * One contiguous F32 buffer holding many tensors as views: parameters, their gradients, or
 * optimizer moments. One copy saves them all, one all-reduce syncs every gradient, one fill zeroes
 * them.
 *
 * <p>{@link #pack} moves existing tensors into a new slab (the tensors keep their identity and are
 * re-bound to views); {@link #like} allocates a zeroed slab with the same layout.
 */
public final class Slab {
    /** Where one member lives inside the slab. */
    public record Entry(String name, int offset, Shape shape) {}

    private final Tensor data; // [total]
    private final List<Entry> entries;

    private Slab(Tensor data, List<Entry> entries) {
        this.data = data;
        this.entries = Collections.unmodifiableList(entries);
    }

    /** Copies {@code tensors} (all F32, same backend) into one new slab and re-binds each to its view. */
    public static Slab pack(Backend backend, List<Tensor> tensors) {
        long total = 0;
        List<Entry> entries = new ArrayList<>(tensors.size());
        for (Tensor t : tensors) {
            if (t.dtype() != DType.F32) throw new IllegalArgumentException("slabs hold F32 tensors only, got " + t.describe());
            if (t.root() != t) throw new IllegalArgumentException("cannot pack a view: " + t.describe());
            entries.add(new Entry(t.name(), Math.toIntExact(total), t.shape()));
            total += t.shape().numel();
        }
        Tensor data = backend.persistentZeros(Shape.of(Math.toIntExact(total)), DType.F32);
        for (int i = 0; i < tensors.size(); i++) {
            Tensor t = tensors.get(i);
            Tensor view = data.alias(entries.get(i).offset(), t.shape());
            backend.copy(t, view);
            t.rebind(view.data(), view.offset());
        }
        return new Slab(data, entries);
    }

    /** A zeroed slab with the same layout as this one. */
    public Slab like(Backend backend) {
        return new Slab(backend.persistentZeros(data.shape(), DType.F32), new ArrayList<>(entries));
    }

    /** The whole slab as a 1-D tensor. */
    public Tensor data() {
        return data;
    }

    public List<Entry> entries() {
        return entries;
    }

    /** The view of member {@code i}. */
    public Tensor view(int i) {
        Entry e = entries.get(i);
        return data.alias(e.offset(), e.shape()).name(e.name());
    }

    public int totalElements() {
        return data.size();
    }
}
