package dev.perceiver4j.nn;

import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Slab;
import dev.perceiver4j.tensor.Tensor;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Where modules register their parameters, under stable hierarchical names that become
 * checkpoint keys ({@code layers.0.attention.q_proj.weight}).
 *
 * <pre>{@code
 * Params root = Params.root(backend, seed);
 * Linear q = new Linear(root.sub("attention").sub("q_proj"), 64, 64, true);
 * Slab slab = root.pack();   // all trainable parameters now live in one buffer
 * }</pre>
 * Each parameter is initialised from its own random stream derived from (seed, full name), so
 * adding a parameter never changes the initial values of the others.
 */
public final class Params {
    private static final class Registry {
        final Backend backend;
        final long seed;
        final Map<String, Tensor> trainable = new LinkedHashMap<>();
        final Map<String, Tensor> buffers = new LinkedHashMap<>();
        Slab slab;     // parameter values, after pack()
        Slab gradSlab; // their gradients, same layout

        Registry(Backend backend, long seed) {
            this.backend = backend;
            this.seed = seed;
        }
    }

    private final Registry registry;
    private final String prefix;

    private Params(Registry registry, String prefix) {
        this.registry = registry;
        this.prefix = prefix;
    }

    /** A new, empty parameter registry; {@code seed} fixes every initial value. */
    public static Params root(Backend backend, long seed) {
        return new Params(new Registry(backend, seed), "");
    }

    /** The registry's scope for child {@code name} (names are joined with '.'). */
    public Params sub(String name) {
        if (name.isEmpty() || name.contains(" ")) throw new IllegalArgumentException("bad parameter scope name '" + name + "'");
        return new Params(registry, qualify(name));
    }

    /** Same as {@code sub(String.valueOf(index))}, for layer lists. */
    public Params sub(int index) {
        return sub(Integer.toString(index));
    }

    /** This scope's full name ("" for the root). */
    public String name() {
        return prefix;
    }

    public Backend backend() {
        return registry.backend;
    }

    private String qualify(String name) {
        return prefix.isEmpty() ? name : prefix + "." + name;
    }

    /** Registers a trainable F32 parameter initialised by {@code init}. */
    public Tensor weight(String name, Shape shape, Init init) {
        if (registry.slab != null) throw new IllegalStateException("parameters already packed; cannot add " + qualify(name));
        String full = qualify(name);
        if (registry.trainable.containsKey(full) || registry.buffers.containsKey(full)) {
            throw new IllegalArgumentException("parameter name registered twice: " + full);
        }
        Tensor t = registry.backend.persistentZeros(shape, DType.F32).name(full);
        SplittableRandom rng = new SplittableRandom(registry.seed ^ mix(full.hashCode()));
        if (t.data() instanceof float[] f) {
            init.fill(f, t.offset(), t.size(), rng);
        } else { // device memory: the same values, drawn on the host and copied over
            float[] host = new float[t.size()];
            init.fill(host, 0, host.length, rng);
            registry.backend.copy(registry.backend.fromFloats(host, shape), t);
        }
        t.requiresGrad(true);
        registry.trainable.put(full, t);
        return t;
    }

    /** Registers a non-trainable tensor that is still part of the model's state (saved, loaded). */
    public Tensor buffer(String name, Tensor value) {
        String full = qualify(name);
        if (registry.trainable.containsKey(full) || registry.buffers.put(full, value.name(full)) != null) {
            throw new IllegalArgumentException("parameter name registered twice: " + full);
        }
        return value;
    }

    /** Trainable parameters by full name, in registration order. */
    public Map<String, Tensor> trainable() {
        return Collections.unmodifiableMap(registry.trainable);
    }

    /** Non-trainable state by full name, in registration order. */
    public Map<String, Tensor> buffers() {
        return Collections.unmodifiableMap(registry.buffers);
    }

    /** Total number of trainable scalars. */
    public long parameterCount() {
        long n = 0;
        for (Tensor t : registry.trainable.values()) n += t.shape().numel();
        return n;
    }

    /**
     * Moves every trainable parameter into one slab (idempotent) and gives each a gradient view in
     * a second slab of the same layout. Returns the parameter slab. Matrices (rank ≥ 2) come first,
     * then vectors, each group in registration order: AdamW decays exactly the matrices, so its
     * update is two launches over two contiguous runs instead of one per parameter.
     */
    public Slab pack() {
        if (registry.slab == null) {
            List<Tensor> ts = new ArrayList<>();
            for (Tensor t : registry.trainable.values()) if (t.rank() >= 2) ts.add(t);
            for (Tensor t : registry.trainable.values()) if (t.rank() < 2) ts.add(t);
            Slab values = Slab.pack(registry.backend, ts);
            Slab grads = values.like(registry.backend);
            for (int i = 0; i < ts.size(); i++) ts.get(i).setGrad(grads.view(i));
            registry.slab = values;
            registry.gradSlab = grads;
        }
        return registry.slab;
    }

    /** The gradient slab made by {@link #pack()}. */
    public Slab gradients() {
        if (registry.gradSlab == null) throw new IllegalStateException("call pack() before asking for the gradient slab");
        return registry.gradSlab;
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 33)) * 0xff51afd7ed558ccdL;
        z = (z ^ (z >>> 33)) * 0xc4ceb9fe1a85ec53L;
        return z ^ (z >>> 33);
    }
}
