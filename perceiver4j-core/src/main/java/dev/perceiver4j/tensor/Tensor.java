package dev.perceiver4j.tensor;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.backend.Backend;

import java.util.Arrays;

/**
 * A row-major, contiguous n-dimensional array owned by one {@link Backend}.
 *
 * <p>The storage is backend-specific ({@code float[]}/{@code short[]}/{@code int[]}/{@code long[]}/
 * {@code byte[]} plus an element offset on the CPU). {@link #reshape} is free (a view over the same
 * storage); anything that would need strides is materialised by an op. Parameters are re-bound
 * into one slab after a model is built ({@link Slab}), which is why storage is not final.
 *
 * <p>Autograd state: {@link #requiresGrad()}, the accumulated {@link #grad()}, and for views the
 * {@code base} tensor whose gradient the view shares.
 */
public final class Tensor {
    private final Backend backend;
    private final Shape shape;
    private final DType dtype;
    private Object data;       // null for views: their storage is the base's (data(), offset())
    private int offset;

    private final Tensor base; // non-null for views: gradients live on the base
    private boolean requiresGrad;
    private boolean discarded; // values handed back to the step's pool (F.discard); the gradient still lives in the scope
    private Runnable recompute; // rewrites this tensor's values from saved inputs (layer norm, matmul activation outputs)
    private boolean recomputed; // holds values rebuilt by materialize(), to be handed back after the producer's backward
    private Tensor grad;
    /** The dtype {@link #gradOrZeros} gives the gradient (F32; BF16 after {@link #bf16Gradient}). */
    private DType gradType = DType.F32;
    private String name;
    private Tensor productCopy; // F.matmul's low-precision copy of this activation, shared by every product that reads it
    private Scope productCopyScope; // the scope that holds the copy's buffer: the copy is valid while it is open

    /** For backends: wraps storage they allocated. Users create tensors through a Backend. */
    public Tensor(Backend backend, Shape shape, DType dtype, Object data, int offset) {
        this(backend, shape, dtype, data, offset, null);
    }

    private Tensor(Backend backend, Shape shape, DType dtype, Object data, int offset, Tensor base) {
        this.backend = backend;
        this.shape = shape;
        this.dtype = dtype;
        this.data = data;
        this.offset = offset;
        this.base = base;
    }

    public Backend backend() {
        return backend;
    }

    public Shape shape() {
        return shape;
    }

    public DType dtype() {
        return dtype;
    }

    public int rank() {
        return shape.rank();
    }

    public int dim(int i) {
        return shape.dim(i);
    }

    /** Number of elements as an int. */
    public int size() {
        return shape.size();
    }

    /** Backend storage object (CPU: the Java array); a view reads its base's, which may have been discarded or rebuilt. */
    public Object data() {
        return base != null ? base.data : data;
    }

    /** Element offset of this tensor's first element inside {@link #data()}. */
    public int offset() {
        return base != null ? base.offset : offset;
    }

    /** The CPU float array behind an F32 tensor. */
    public float[] floats() {
        if (data() instanceof float[] f && dtype == DType.F32) return f;
        throw new IllegalStateException("tensor " + describe() + " is not a CPU F32 tensor");
    }

    /** The CPU int array behind an I32 tensor. */
    public int[] ints() {
        if (data() instanceof int[] a && dtype == DType.I32) return a;
        throw new IllegalStateException("tensor " + describe() + " is not a CPU I32 tensor");
    }

    /** The CPU long array behind an I64 tensor. */
    public long[] longs() {
        if (data() instanceof long[] a && dtype == DType.I64) return a;
        throw new IllegalStateException("tensor " + describe() + " is not a CPU I64 tensor");
    }

    /** The CPU short array (raw bf16 bits) behind a BF16 tensor. */
    public short[] shorts() {
        if (data() instanceof short[] a && dtype == DType.BF16) return a;
        throw new IllegalStateException("tensor " + describe() + " is not a CPU BF16 tensor");
    }

    /** The CPU byte array (0 / 1) behind a BOOL tensor. */
    public byte[] bools() {
        if (data() instanceof byte[] a && dtype == DType.BOOL) return a;
        throw new IllegalStateException("tensor " + describe() + " is not a CPU BOOL tensor");
    }

    /** Points this tensor at other storage (used when parameters are packed into a slab). */
    public void rebind(Object newData, int newOffset) {
        if (base != null) throw new IllegalStateException("cannot rebind a view: " + describe());
        this.data = newData;
        this.offset = newOffset;
    }

    /**
     * Drops this activation's storage (its buffer has gone back to the step scope's pool): reading
     * it afterwards fails loudly, and its gradient, if backward needs one, is still allocated in
     * the step scope. Used by {@code F.discard}.
     */
    public void discardStorage() {
        if (base != null) throw new IllegalStateException("cannot discard a view: " + describe());
        this.data = null;
        this.discarded = true;
        this.recomputed = false;
    }

    /**
     * Registers how to rebuild this activation's values from inputs its producer keeps for backward
     * anyway (F.layerNorm: the normalisation again; F.matmul with an activation: act(preAct)), so
     * {@code F.discard} may hand its buffer back even though a backward pass reads it.
     */
    public void recomputeWith(Runnable recipe) {
        if (base != null) throw new IllegalStateException("cannot make a view recomputable: " + describe());
        this.recompute = recipe;
    }

    /**
     * Whether this tensor (or its base) is a step activation: its storage is a buffer of an open
     * {@link Scope}, or was until F.discard handed it back. Its gradient may then live in the scope
     * too; a leaf's (parameter, input) must outlive it.
     */
    public boolean inStepScope() {
        Tensor r = root();
        return r.discarded || Scope.owns(r.data);
    }

    /**
     * The low-precision copy {@link #cacheProductCopy} stored on this tensor (or its base), or null
     * when there is none or the scope that held its buffer has closed.
     */
    public Tensor productCopy() {
        Tensor r = root();
        if (r.productCopy != null && !r.productCopyScope.isOpen()) {
            r.productCopy = null;
            r.productCopyScope = null;
        }
        return r.productCopy;
    }

    /**
     * Stores {@code copy} (same shape as this tensor's base) as the operand F.matmul multiplies in
     * place of this activation; it stays valid while the current scope is open. Only for values
     * that do not change while that scope lives (a step's activations), and only inside a scope.
     */
    public void cacheProductCopy(Tensor copy) {
        Tensor r = root();
        if (!copy.shape.equals(r.shape)) throw new IllegalArgumentException("copy " + copy.describe() + " does not match " + r.describe());
        Scope s = Scope.current();
        if (s == null) throw new IllegalStateException("a product copy needs an open Scope: " + describe());
        r.productCopy = copy;
        r.productCopyScope = s;
    }

    /** Whether {@link #recomputeWith} gave this tensor (or its base) a recipe. */
    public boolean recomputable() {
        return root().recompute != null;
    }

    /**
     * Makes sure the values are present: a tensor whose storage was discarded gets a fresh buffer
     * from the current scope and its recipe runs again. A discarded tensor without a recipe is an
     * IllegalStateException naming it (an op reads values that F.discard gave away). Returns this.
     */
    public Tensor materialize() {
        Tensor r = root();
        if (r.data != null) return this;
        if (!r.discarded) throw new IllegalStateException("tensor " + describe() + " has no storage");
        if (r.recompute == null) {
            throw new IllegalStateException("tensor " + describe() + " was discarded (F.discard) but an op still reads its values");
        }
        Tensor fresh = backend.empty(r.shape, r.dtype);
        r.data = fresh.data;
        r.offset = fresh.offset;
        r.recomputed = true;
        r.recompute.run();
        return this;
    }

    /**
     * Hands values rebuilt by {@link #materialize} back to the scope's pool (the producer's backward,
     * the last reader, has run); a no-op for any other tensor. Returns whether a buffer went back.
     */
    public boolean releaseRecomputed() {
        Tensor r = root();
        if (!r.recomputed || !Scope.release(r.data)) return false;
        r.data = null;
        r.recomputed = false;
        return true;
    }

    /** A view with another shape of the same element count; shares storage and gradient. */
    public Tensor reshape(int... dims) {
        int infer = -1;
        long known = 1;
        for (int i = 0; i < dims.length; i++) {
            if (dims[i] == -1) {
                if (infer >= 0) throw new IllegalArgumentException("only one -1 allowed in reshape " + Arrays.toString(dims));
                infer = i;
            } else {
                known *= dims[i];
            }
        }
        int[] d = dims.clone();
        if (infer >= 0) {
            if (known == 0 || shape.numel() % known != 0) throw new IllegalArgumentException("cannot reshape " + shape + " to " + Arrays.toString(dims));
            d[infer] = (int) (shape.numel() / known);
        }
        Shape s = Shape.of(d);
        if (s.numel() != shape.numel()) throw new IllegalArgumentException("cannot reshape " + shape + " (" + shape.numel() + " elements) to " + s);
        Tensor root = base != null ? base : this;
        Tensor v = new Tensor(backend, s, dtype, null, 0, root);   // storage is read from the base (data(), offset())
        v.requiresGrad = root.requiresGrad;
        v.name = name;
        return v;
    }

    /**
     * A tensor over {@code shape.numel()} elements of this one's storage starting {@code elemOffset}
     * elements in. Unlike {@link #reshape} it does not share autograd state: slabs use it to hand out
     * parameter, gradient and optimizer-state views.
     */
    public Tensor alias(int elemOffset, Shape s) {
        if (elemOffset < 0 || elemOffset + s.numel() > shape.numel()) {
            throw new IllegalArgumentException("alias [" + elemOffset + ", +" + s.numel() + ") outside " + describe());
        }
        return new Tensor(backend, s, dtype, data(), offset() + elemOffset, null);
    }

    /**
     * One tensor over {@code parts} when they lie back to back in one storage (parameters that a
     * {@link Slab} packed in registration order, such as a self-attention's query, key and value
     * weights): [Σ dim0, trailing dims...], or null when they do not (different storages, gaps, other
     * trailing dims, dtypes or backends, views). It requires gradients as the parts do, and its
     * gradient is the view over theirs when those lie back to back too (a product's backward then
     * adds into the parts' own gradients); null when only some parts have one or theirs are apart.
     */
    public static Tensor adjacent(Tensor... parts) {
        if (parts.length == 0) throw new IllegalArgumentException("adjacent: no tensors");
        Tensor first = parts[0];
        int rows = 0;
        for (int i = 0; i < parts.length; i++) {
            Tensor t = parts[i];
            if (t.base != null || t.data == null || t.data != first.data || t.backend != first.backend || t.dtype != first.dtype
                    || t.rank() != first.rank() || t.rank() == 0 || t.requiresGrad != first.requiresGrad) return null;
            for (int d = 1; d < t.rank(); d++) if (t.dim(d) != first.dim(d)) return null;
            if (i > 0 && t.offset != parts[i - 1].offset + parts[i - 1].size()) return null;
            rows += t.dim(0);
        }
        int[] dims = first.shape.dims();
        dims[0] = rows;
        Tensor whole = new Tensor(first.backend, Shape.of(dims), first.dtype, first.data, first.offset, null);
        whole.requiresGrad = first.requiresGrad;
        if (first.grad != null) {
            Tensor[] grads = new Tensor[parts.length];
            for (int i = 0; i < parts.length; i++) {
                if (parts[i].grad == null) return null;
                grads[i] = parts[i].grad;
            }
            Tensor g = adjacent(grads);
            if (g == null) return null;
            whole.grad = g;
        } else {
            for (Tensor t : parts) if (t.grad != null) return null;
        }
        return whole;
    }

    /** The tensor whose gradient this one shares (itself unless it is a view). */
    public Tensor root() {
        return base != null ? base : this;
    }

    public boolean requiresGrad() {
        return root().requiresGrad;
    }

    public Tensor requiresGrad(boolean on) {
        if (on && !dtype.isFloating()) throw new IllegalArgumentException("only floating tensors can require gradients: " + describe());
        root().requiresGrad = on;
        this.requiresGrad = on;
        return this;
    }

    /** Accumulated gradient (same shape as this tensor), or null if none was computed yet. */
    public Tensor grad() {
        Tensor r = root();
        if (r.grad == null) return null;
        return r == this ? grad : r.grad.reshape(shape.dims());
    }

    /** The gradient, allocated (zeroed) on first use. */
    public Tensor gradOrZeros() {
        Tensor r = root();
        if (r.grad == null) {
            // An activation's gradient lives as long as the activation (same scope); a leaf's
            // gradient (a parameter or an input) must outlive every step scope.
            r.grad = r.inStepScope() ? backend.zeros(r.shape, r.gradType) : backend.persistentZeros(r.shape, r.gradType);
        }
        return r == this ? grad : r.grad.reshape(shape.dims());
    }

    /**
     * Stores this activation's gradient as BF16 when the activation itself is BF16 (an input of matrix
     * products on a bf16-product backend), as PyTorch's bf16 autocast does: the one op that reads it
     * writes its gradient rounded, and the op that produced it reads it so. Only for a tensor that
     * exactly one op reads (a BF16 gradient takes one contribution; a second fails loudly), and only
     * before its gradient exists; no effect on other dtypes (see F.bf16Gradient).
     */
    public void bf16Gradient() {
        Tensor r = root();
        if (r.dtype == DType.BF16 && r.grad == null) r.gradType = DType.BF16;
    }

    /** The dtype of this tensor's gradient: F32, or BF16 after {@link #bf16Gradient}. */
    public DType gradType() {
        return root().gradType;
    }

    /** Sets the gradient buffer (e.g. a view into a gradient slab). */
    public void setGrad(Tensor g) {
        if (g != null && !g.shape.equals(shape)) throw new IllegalArgumentException("gradient shape " + g.shape + " does not match " + describe());
        root().grad = g;
    }

    public String name() {
        return name;
    }

    public Tensor name(String n) {
        this.name = n;
        return this;
    }

    /** Runs reverse-mode differentiation from this scalar over the current tape. */
    public void backward() {
        Autograd.backward(this);
    }

    /** The single value of a one-element tensor, as a float. */
    public float item() {
        if (shape.numel() != 1) throw new IllegalStateException("item() needs a one-element tensor, got " + describe());
        return backend.toFloatArray(this)[0];
    }

    /** A copy of the contents as floats (any dtype). */
    public float[] toFloatArray() {
        return backend.toFloatArray(this);
    }

    /** "name [2, 3] F32" for messages. */
    public String describe() {
        return (name != null ? name + " " : "") + shape + " " + dtype;
    }

    @Override
    public String toString() {
        return "Tensor(" + describe() + ")";
    }
}
