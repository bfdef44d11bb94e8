package dev.perceiver4j.tensor;

import java.util.Arrays;

/** An immutable tensor shape (row-major; the last dimension is contiguous). */
public final class Shape {
    private final int[] dims;
    private final long numel;

    private Shape(int[] dims) {
        long n = 1;
        for (int i = 0; i < dims.length; i++) {
            if (dims[i] < 0) throw new IllegalArgumentException("negative dimension " + dims[i] + " at axis " + i + " of " + Arrays.toString(dims));
            n = Math.multiplyExact(n, dims[i]);
        }
        this.dims = dims;
        this.numel = n;
    }

    public static Shape of(int... dims) {
        return new Shape(dims.clone());
    }

    public int rank() {
        return dims.length;
    }

    /** Size of axis {@code i}; negative {@code i} counts from the end. */
    public int dim(int i) {
        return dims[axis(i)];
    }

    /** Normalises a possibly negative axis index. */
    public int axis(int i) {
        int a = i < 0 ? dims.length + i : i;
        if (a < 0 || a >= dims.length) throw new IllegalArgumentException("axis " + i + " out of range for shape " + this);
        return a;
    }

    public int last() {
        return dims[dims.length - 1];
    }

    /** Product of all dimensions but the last ("rows" of a row-major matrix view). */
    public int rows() {
        return dims.length == 0 ? 1 : Math.toIntExact(numel / Math.max(1, last()));
    }

    public long numel() {
        return numel;
    }

    /** numel as an int, failing clearly for tensors too large for one Java array. */
    public int size() {
        if (numel > Integer.MAX_VALUE - 16) throw new IllegalStateException("tensor of shape " + this + " has " + numel + " elements, more than one CPU array holds");
        return (int) numel;
    }

    /** Product of the dimensions in {@code [from, to)}. */
    public int product(int from, int to) {
        long p = 1;
        for (int i = from; i < to; i++) p *= dims[i];
        return Math.toIntExact(p);
    }

    public int[] dims() {
        return dims.clone();
    }

    /** The same shape with axis {@code i} replaced by {@code size}. */
    public Shape with(int i, int size) {
        int[] d = dims.clone();
        d[axis(i)] = size;
        return new Shape(d);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Shape s && Arrays.equals(dims, s.dims);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(dims);
    }

    @Override
    public String toString() {
        return Arrays.toString(dims);
    }
}
