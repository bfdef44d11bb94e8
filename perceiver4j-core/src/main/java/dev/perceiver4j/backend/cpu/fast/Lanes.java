package dev.perceiver4j.backend.cpu.fast;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Horizontal sums in a fixed order. {@code reduceLanes(ADD)} on floating-point vectors may add
 * the lanes in any order, and does: the interpreter adds them one by one while C2 uses a tree, so
 * the same call gives different last bits before and after JIT compilation, which breaks
 * bit-exact reproducibility (a resumed training run must equal the uninterrupted one). Here the
 * lanes are always folded as a tree of elementwise adds — lane i += lane (i + n/2) mod n, then
 * n/4, …, 1; the answer is lane 0 — whose IEEE results are the same in every execution mode.
 * The rotations are {@code slice(k, v)}, which C2 compiles to a single lane-rotate; a
 * {@code rearrange} with a constant shuffle measured 3× slower than {@code reduceLanes} here,
 * the slice fold slightly faster.
 *
 * <p>Row loops that run millions of times per pass (layer norm, softmax backward) write this fold
 * out instead of calling {@link #sum(FloatVector)}: when C2 compiles a caller without inlining
 * the call, the vector argument is boxed, and in layer norm the accumulator was boxed on every
 * iteration (JFR: Float512Vector allocations in its loop).
 */
public final class Lanes {
    private Lanes() {}

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Double> D = DoubleVector.SPECIES_PREFERRED;

    /** Σ lanes of a float vector of the preferred species, in the fixed tree order. */
    public static float sum(FloatVector v) {
        int n = F.length();
        if (n >= 16) v = v.add(v.slice(n / 2, v));
        if (n >= 8) v = v.add(v.slice(4, v));
        if (n >= 4) v = v.add(v.slice(2, v));
        if (n >= 2) v = v.add(v.slice(1, v));
        return v.lane(0);
    }

    /** Σ lanes of a double vector of the preferred species, in the fixed tree order. */
    public static double sum(DoubleVector v) {
        int n = D.length();
        if (n >= 8) v = v.add(v.slice(n / 2, v));
        if (n >= 4) v = v.add(v.slice(2, v));
        if (n >= 2) v = v.add(v.slice(1, v));
        return v.lane(0);
    }

    static {
        if (F.length() > 16 || D.length() > 8) throw new IllegalStateException("Lanes supports vectors of up to 512 bits, this JVM prefers " + F);
    }
}
