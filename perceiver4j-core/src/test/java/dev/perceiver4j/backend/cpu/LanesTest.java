package dev.perceiver4j.backend.cpu;

import dev.perceiver4j.backend.cpu.fast.Lanes;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/** Lanes.sum adds in one documented tree order, bit for bit, whatever the execution mode. */
class LanesTest {
    /** Scalar model of the fold: lane i += lane (i + n/2) % n, then n/4, … ; the answer is lane 0. */
    static float treeSum(float[] a) {
        float[] v = a.clone();
        for (int shift = v.length / 2; shift >= 1; shift /= 2) {
            float[] w = new float[v.length];
            for (int i = 0; i < v.length; i++) w[i] = v[i] + v[(i + shift) % v.length];
            v = w;
        }
        return v[0];
    }

    @Test
    void floatSumFollowsTheTreeOrderExactly() {
        int n = FloatVector.SPECIES_PREFERRED.length();
        SplittableRandom r = new SplittableRandom(1);
        for (int t = 0; t < 20_000; t++) {   // enough calls for C2 to compile Lanes.sum mid-loop
            float[] a = new float[n];
            for (int i = 0; i < n; i++) a[i] = (float) (r.nextGaussian() * Math.pow(10, r.nextInt(-3, 4)));
            float got = Lanes.sum(FloatVector.fromArray(FloatVector.SPECIES_PREFERRED, a, 0));
            assertThat(Float.floatToRawIntBits(got)).as("call %d", t).isEqualTo(Float.floatToRawIntBits(treeSum(a)));
        }
    }

    @Test
    void doubleSumIsTheExactSumForSmallIntegers() {
        int n = DoubleVector.SPECIES_PREFERRED.length();
        double[] a = new double[n];
        double want = 0;
        for (int i = 0; i < n; i++) want += a[i] = i + 1;
        assertThat(Lanes.sum(DoubleVector.fromArray(DoubleVector.SPECIES_PREFERRED, a, 0))).isEqualTo(want);
    }
}
