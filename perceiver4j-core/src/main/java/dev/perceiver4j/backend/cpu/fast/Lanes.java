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
    private static final VectorShuffle<Float>[] F_FOLDS = folds(F);
    private static final VectorShuffle<Double>[] D_FOLDS = folds(D);

    @SuppressWarnings("unchecked")
    private static <E> VectorShuffle<E>[] folds(VectorSpecies<E> s) {
        int n = s.length(), steps = Integer.numberOfTrailingZeros(n);
        VectorShuffle<E>[] r = new VectorShuffle[steps];
        for (int k = 0; k < steps; k++) {
            int shift = n >> (k + 1);
            r[k] = VectorShuffle.fromOp(s, i -> (i + shift) % n);
        }
        return r;
    }

    /** Σ lanes of a preferred-species float vector, in a fixed tree order. */
    public static float sum(FloatVector v) {
        if (v.species() != F) throw new IllegalArgumentException("Lanes.sum expects the preferred float species, got " + v.species());
        for (VectorShuffle<Float> s : F_FOLDS) v = v.add(v.rearrange(s));
        return v.lane(0);
    }

    /** Σ lanes of a preferred-species double vector, in a fixed tree order. */
    public static double sum(DoubleVector v) {
        if (v.species() != D) throw new IllegalArgumentException("Lanes.sum expects the preferred double species, got " + v.species());
        for (VectorShuffle<Double> s : D_FOLDS) v = v.add(v.rearrange(s));
        return v.lane(0);
    }
}
