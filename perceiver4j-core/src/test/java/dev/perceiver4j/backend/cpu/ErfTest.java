package dev.perceiver4j.backend.cpu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class ErfTest {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;

    /** Reference values (40-digit evaluation); erf(x) in double must match to 1e-15 relative. */
    @ParameterizedTest
    @CsvSource({
        "1e-10, 1.1283791670955125739e-10",
        "0.1, 0.1124629160182848922",
        "0.5, 0.52049987781304653768",
        "1, 0.84270079294971486934",
        "1.5, 0.96610514647531072707",
        "2, 0.99532226501895273416",
        "2.4, 0.99931148610335492143",
        "2.5, 0.99959304798255504106",
        "2.6, 0.9997639655834706508",
        "3, 0.99997790950300141456",
        "4, 0.99999998458274209972",
        "5, 0.99999999999846254021",
        "5.9, 0.9999999999999999281",
    })
    void doubleErfMatchesKnownValues(double x, double expected) {
        assertThat(Erf.erf(x)).isCloseTo(expected, within(1e-15 * Math.abs(expected)));
        assertThat(Erf.erf(-x)).isCloseTo(-expected, within(1e-15 * Math.abs(expected)));
    }

    @Test
    void doubleErfSpecialValues() {
        assertThat(Erf.erf(0.5)).isCloseTo(0.5204998778130465, within(1e-16));
        assertThat(Erf.erf(1.0)).isCloseTo(0.8427007929497149, within(1e-16));
        assertThat(Erf.erf(2.0)).isCloseTo(0.9953222650189527, within(2e-16));
        assertThat(Erf.erf(0.0)).isEqualTo(0.0);
        assertThat(Erf.erf(6.0)).isCloseTo(1.0, within(1e-16));
        assertThat(Erf.erf(30.0)).isEqualTo(1.0);
        assertThat(Erf.erf(Double.POSITIVE_INFINITY)).isEqualTo(1.0);
        assertThat(Erf.erf(Double.NEGATIVE_INFINITY)).isEqualTo(-1.0);
        assertThat(Erf.erf(Double.NaN)).isNaN();
    }

    @Test
    void doubleErfIsOddAndMonotone() {
        double prev = -1.0;
        for (double x = -7; x <= 7; x += 1e-3) {
            double e = Erf.erf(x);
            assertThat(Erf.erf(-x)).isEqualTo(-e);
            assertThat(e).isGreaterThanOrEqualTo(prev);
            prev = e;
        }
    }

    @Test
    void doubleErfIsContinuousAcrossBranchPoints() {
        for (double b : new double[] {2.5, 6.0}) {
            double below = Erf.erf(Math.nextDown(b)), at = Erf.erf(b);
            assertThat(Math.abs(at - below)).isLessThanOrEqualTo(1e-15);
        }
    }

    @Test
    void fastErfWithin2e7OfDoubleOnDenseGrid() {
        int n = 2_000_001; // step 1e-5 over [-10, 10]
        float[] x = new float[n], vec = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) (-10.0 + 20.0 * i / (n - 1));
        int i = 0;
        for (; i < S.loopBound(n); i += S.length()) Erf.erf(FloatVector.fromArray(S, x, i)).intoArray(vec, i);
        for (; i < n; i++) vec[i] = Erf.erf(x[i]);
        double maxVec = 0, maxScalar = 0;
        for (int k = 0; k < n; k++) {
            double ref = Erf.erf((double) x[k]);
            maxVec = Math.max(maxVec, Math.abs(vec[k] - ref));
            maxScalar = Math.max(maxScalar, Math.abs(Erf.erf(x[k]) - ref));
        }
        assertThat(maxVec).isLessThanOrEqualTo(2e-7);
        assertThat(maxScalar).isLessThanOrEqualTo(2e-7);
    }

    @Test
    void fastErfSmallArgumentsHaveRelativeAccuracy() {
        for (float x : new float[] {1e-30f, 1e-10f, 1e-5f, 1e-3f, 0.01f, -0.02f}) {
            float[] in = new float[S.length()], out = new float[S.length()];
            java.util.Arrays.fill(in, x);
            Erf.erf(FloatVector.fromArray(S, in, 0)).intoArray(out, 0);
            double ref = Erf.erf((double) x);
            assertThat((double) out[0]).isCloseTo(ref, within(3e-7 * Math.abs(ref)));
        }
    }

    @Test
    void vectorExpMatchesMathExp() {
        int n = 1_000_000;
        float[] z = new float[n], out = new float[n];
        for (int i = 0; i < n; i++) z[i] = (float) (-100.0 + 110.0 * i / n); // [-100, 10)
        int i = 0;
        for (; i < S.loopBound(n); i += S.length()) Erf.exp(FloatVector.fromArray(S, z, i)).intoArray(out, i);
        for (; i < n; i++) out[i] = (float) Math.exp(z[i]);
        for (int k = 0; k < n; k++) {
            double ref = Math.exp(z[k]);
            if (z[k] < -87.3f) assertThat(out[k]).isEqualTo(0f);
            else assertThat((double) out[k]).isCloseTo(ref, within(3e-7 * ref));
        }
    }

    /**
     * Erf.gelu writes erf and exp out in one loop; it must give exactly what the vector erf and
     * exp give lane by lane (forward, derivative written and accumulated by fma), vector tails
     * by the scalar twins, over values in both erf branches, past its clamp and where exp underflows.
     */
    @Test
    void writtenOutGeluMatchesTheVectorErfAndExpBitForBit() {
        int n = 7 * S.length() + 5;
        float[] x = new float[n], dOut = new float[n], acc = new float[n];
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(5);
        float[] special = {0f, -0f, 0.999f, 1f, -1f, 1.001f, 2.5f, 5.6f, -5.6f, 13f, -13f, 40f, -40f, 1e-30f};
        for (int i = 0; i < n; i++) {
            x[i] = i < special.length ? special[i] : (float) (rnd.nextDouble() * 12 - 6);
            dOut[i] = (float) (rnd.nextDouble() * 2 - 1);
            acc[i] = (float) (rnd.nextDouble() - 0.5);
        }
        float invSqrt2 = 0.70710678118654752f, invSqrt2Pi = 0.39894228040143268f;
        float[] fwd = new float[n], grad = new float[n], gradAcc = acc.clone();
        Erf.gelu(false, x, 0, null, 0, fwd, 0, n, false);
        Erf.gelu(true, x, 0, dOut, 0, grad, 0, n, false);
        Erf.gelu(true, x, 0, dOut, 0, gradAcc, 0, n, true);
        float[] wantFwd = new float[n], wantGrad = new float[n], wantAcc = new float[n];
        int bound = S.loopBound(n);
        for (int i = 0; i < bound; i += S.length()) {
            FloatVector v = FloatVector.fromArray(S, x, i);
            FloatVector erf = Erf.erf(v.mul(invSqrt2));
            v.mul(0.5f).mul(erf.add(1f)).intoArray(wantFwd, i);
            FloatVector dv = v.fma(Erf.exp(v.mul(v).mul(-0.5f)).mul(invSqrt2Pi), erf.add(1f).mul(0.5f));
            FloatVector g = FloatVector.fromArray(S, dOut, i);
            g.mul(dv).intoArray(wantGrad, i);
            g.fma(dv, FloatVector.fromArray(S, acc, i)).intoArray(wantAcc, i);
        }
        for (int i = bound; i < n; i++) {
            float xv = x[i];
            wantFwd[i] = 0.5f * xv * (1f + Erf.erf(xv * invSqrt2));
            float d = dOut[i] * (0.5f * (1f + Erf.erf(xv * invSqrt2)) + xv * invSqrt2Pi * (float) Math.exp(-0.5f * xv * xv));
            wantGrad[i] = d;
            wantAcc[i] = acc[i] + d;
        }
        assertThat(fwd).containsExactly(wantFwd);
        assertThat(grad).containsExactly(wantGrad);
        assertThat(gradAcc).containsExactly(wantAcc);
        // and it is GELU: 0.5 x (1 + erf(x / sqrt 2)) in double, to the fast erf's accuracy
        for (int i = 0; i < n; i++) {
            double xd = x[i], want = 0.5 * xd * (1 + Erf.erf(xd / Math.sqrt(2)));
            assertThat((double) fwd[i]).as("x = %s", x[i]).isCloseTo(want, within(1e-6 * Math.max(1, Math.abs(want))));
        }
    }

    /** Erf.expShifted equals the vector exp lane by lane and Lanes.sum of those, bit for bit; the tail is left alone. */
    @Test
    void writtenOutExpShiftedMatchesTheVectorExpBitForBit() {
        int n = 5 * S.length() + 3;
        float[] x = new float[n];
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(9);
        for (int i = 0; i < n; i++) x[i] = (float) (rnd.nextDouble() * 200 - 150); // exp underflows below -87.3 + shift
        x[0] = Float.NEGATIVE_INFINITY; // a masked score
        float shift = 3.25f;
        float[] out = new float[n];
        java.util.Arrays.fill(out, 7f);
        float sum = Erf.expShifted(x, 0, n, shift, out, 0);
        float[] want = new float[n];
        java.util.Arrays.fill(want, 7f);
        FloatVector acc = FloatVector.zero(S);
        for (int i = 0; i < S.loopBound(n); i += S.length()) {
            FloatVector e = Erf.exp(FloatVector.fromArray(S, x, i).sub(shift));
            e.intoArray(want, i);
            acc = acc.add(e);
        }
        assertThat(out).containsExactly(want);
        assertThat(sum).isEqualTo(dev.perceiver4j.backend.cpu.fast.Lanes.sum(acc));
        assertThat(Erf.expShifted(x, 0, n, shift, null, 0)).isEqualTo(sum);
        float[] inPlace = x.clone();
        assertThat(Erf.expShifted(inPlace, 0, n, shift, inPlace, 0)).isEqualTo(sum);
        for (int i = 0; i < n; i++) assertThat(inPlace[i]).isEqualTo(i < S.loopBound(n) ? want[i] : x[i]);
    }
}
