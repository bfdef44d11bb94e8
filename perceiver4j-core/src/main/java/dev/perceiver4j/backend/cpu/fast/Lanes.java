package dev.perceiver4j.backend.cpu.fast;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * Horizontal sums in a fixed order. {@code reduceLanes(ADD)} on floating-point vectors may add
 * the lanes in any order, and does: the interpreter adds them one by one while C2 uses a tree, so
 * the same call gives different last bits before and after JIT compilation, which breaks
 * bit-exact reproducibility (a resumed training run must equal the uninterrupted one). Here the
 * lanes are always folded as a tree of elementwise adds (halves, quarters, …), whose IEEE results
 * are the same in every execution mode.
 */
public final class Lanes {
    private Lanes() {}

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Double> D = DoubleVector.SPECIES_PREFERRED;
    // One constant shuffle per fold (lane i takes lane (i + shift) mod n), as separate static
    // finals so that C2 constant-folds them into the permute instructions.
    private static final VectorShuffle<Float> F8 = fold(F, 8), F4 = fold(F, 4), F2 = fold(F, 2), F1 = fold(F, 1);
    private static final VectorShuffle<Double> D4 = fold(D, 4), D2 = fold(D, 2), D1 = fold(D, 1);

    private static <E> VectorShuffle<E> fold(VectorSpecies<E> s, int shift) {
        int n = s.length();
        return VectorShuffle.fromOp(s, i -> (i + shift) % n);
    }

    /** Σ lanes of a preferred-species float vector (at most 16 lanes), in a fixed tree order. */
    public static float sum(FloatVector v) {
        int n = F.length();
        if (n > 16 || v.species() != F) throw new IllegalArgumentException("Lanes.sum expects the preferred float species of at most 16 lanes, got " + v.species());
        if (n >= 16) v = v.add(v.rearrange(F8));
        if (n >= 8) v = v.add(v.rearrange(F4));
        if (n >= 4) v = v.add(v.rearrange(F2));
        if (n >= 2) v = v.add(v.rearrange(F1));
        return v.lane(0);
    }

    /** Σ lanes of a preferred-species double vector (at most 8 lanes), in a fixed tree order. */
    public static double sum(DoubleVector v) {
        int n = D.length();
        if (n > 8 || v.species() != D) throw new IllegalArgumentException("Lanes.sum expects the preferred double species of at most 8 lanes, got " + v.species());
        if (n >= 8) v = v.add(v.rearrange(D4));
        if (n >= 4) v = v.add(v.rearrange(D2));
        if (n >= 2) v = v.add(v.rearrange(D1));
        return v.lane(0);
    }
}
