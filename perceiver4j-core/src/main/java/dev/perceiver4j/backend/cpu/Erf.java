package dev.perceiver4j.backend.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The error function, which exact GELU needs and {@link Math} lacks.
 *
 * <ul>
 *   <li>{@link #erf(double)}: double precision, about 1e-15 relative. For |x| &lt; 2.5 it sums the
 *       all-positive series erf(x) = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3·…·(2n+1)), which has no
 *       cancellation; for 2.5 ≤ |x| &lt; 6 it evaluates erfc by its continued fraction
 *       erfc(x) = e^(−x²)/√π · 1/(x + ½/(x + 1/(x + (3/2)/(x + …)))) with Lentz's method; beyond
 *       6, erf(x) = ±1 in double.
 *   <li>{@link #erf(FloatVector)} and {@link #erf(float)}: float, at most 2e-7 absolute error. For
 *       |x| &lt; 1, erf(x) = x·P(x²) with P of degree 6; for |x| ≥ 1, erf(x) = ±(1 − exp(Q(|x| − 2.5)))
 *       with Q of degree 7 approximating log(erfc) on [1, 4] (|x| is clamped to 4, where erfc is
 *       below float resolution). The coefficients are weighted minimax fits made for this class.
 * </ul>
 */
public final class Erf {
    private Erf() {}

    // ---------------------------------------------------------------- double precision

    private static final double TWO_OVER_SQRT_PI = 1.1283791670955126; // 2/√π
    private static final double ONE_OVER_SQRT_PI = 0.5641895835477563; // 1/√π
    private static final double SERIES_LIMIT = 2.5;
    private static final double SATURATION = 6.0; // erfc(6) ≈ 2.2e-17 < ulp(1)/2

    /** erf(x) in double precision (about 1e-15 relative); odd, erf(±∞) = ±1, NaN stays NaN. */
    public static double erf(double x) {
        if (Double.isNaN(x)) return x;
        double a = Math.abs(x);
        double r;
        if (a < SERIES_LIMIT) {
            r = erfSeries(a);
        } else if (a < SATURATION) {
            r = 1.0 - erfcContinuedFraction(a);
        } else {
            r = 1.0;
        }
        return Math.copySign(r, x);
    }

    /** e^(−a²) with a² carried in two parts so the rounding of a² does not reach the result. */
    private static double expMinusSquare(double a) {
        double a2 = a * a;
        double a2err = Math.fma(a, a, -a2); // a² = a2 + a2err exactly
        return Math.exp(-a2) * (1.0 - a2err);
    }

    /** erf(a) for 0 ≤ a &lt; 2.5 by the positive-term series (terms shrink once n > a²). */
    private static double erfSeries(double a) {
        double twoA2 = 2.0 * a * a;
        double term = a;
        double sum = a;
        for (int n = 1; n < 200; n++) {
            term *= twoA2 / (2 * n + 1);
            sum += term;
            if (term < sum * 1e-17) break;
        }
        return TWO_OVER_SQRT_PI * expMinusSquare(a) * sum;
    }

    /** erfc(a) for a ≥ 2.5 by the continued fraction, evaluated with the modified Lentz method. */
    private static double erfcContinuedFraction(double a) {
        final double tiny = 1e-300;
        // g = a + (1/2)/(a + (2/2)/(a + (3/2)/(a + ...)));  erfc(a) = e^(−a²)/√π / g
        double f = a;
        double c = a;
        double d = 0.0;
        for (int j = 1; j < 1000; j++) {
            double aj = 0.5 * j;
            d = a + aj * d;
            if (d == 0.0) d = tiny;
            c = a + aj / c;
            if (c == 0.0) c = tiny;
            d = 1.0 / d;
            double delta = c * d;
            f *= delta;
            if (Math.abs(delta - 1.0) < 1e-16) break;
        }
        return ONE_OVER_SQRT_PI * expMinusSquare(a) / f;
    }

    // ---------------------------------------------------------------- float, vectorised

    /** The species every vector method here takes and returns (a constant, so the JIT can intrinsify). */
    public static final VectorSpecies<Float> SPECIES = FloatVector.SPECIES_PREFERRED;

    /** P(u), erf(x) = x·P(x²) on |x| &lt; 1; ascending powers of u. */
    private static final float[] SMALL = {
        1.1283791065216064f, -0.3761262595653534f, 0.11283600330352783f, -0.026854444295167923f,
        0.005189535208046436f, -0.0008020837558433414f, 7.889105472713709e-05f
    };

    /** Q(t), log(erfc(x)) ≈ Q(x − 2.5) on 1 ≤ x ≤ 4; ascending powers of t. */
    private static final float[] LARGE = {
        -7.806815147399902f, -5.352680683135986f, -0.9438918232917786f, -0.010853499174118042f,
        0.002166523365303874f, -0.0004309143405407667f, 6.181698699947447e-05f, -2.1686753825633787e-05f
    };

    // The coefficients as constants: polynomials below are written out in Horner form with these
    // (C2 folds static final floats; a loop over the arrays loaded and broadcast every coefficient on
    // every pass, 1.5x the time of GELU on dev). The same FMAs in the same order as horner().
    private static final float S0 = SMALL[0], S1 = SMALL[1], S2 = SMALL[2], S3 = SMALL[3], S4 = SMALL[4], S5 = SMALL[5], S6 = SMALL[6];
    private static final float Q0 = LARGE[0], Q1 = LARGE[1], Q2 = LARGE[2], Q3 = LARGE[3], Q4 = LARGE[4], Q5 = LARGE[5], Q6 = LARGE[6],
            Q7 = LARGE[7];

    private static final float LARGE_CENTER = 2.5f;
    private static final float LARGE_CLAMP = 4.0f;

    /** Fast float erf of every lane (at most 2e-7 absolute error); no scalar calls. x must be of {@link #SPECIES}. */
    public static FloatVector erf(FloatVector x) {
        FloatVector u = x.mul(x);
        FloatVector small = u.fma(S6, S5).fma(u, FloatVector.broadcast(SPECIES, S4)).fma(u, FloatVector.broadcast(SPECIES, S3))
                .fma(u, FloatVector.broadcast(SPECIES, S2)).fma(u, FloatVector.broadcast(SPECIES, S1))
                .fma(u, FloatVector.broadcast(SPECIES, S0)).mul(x);
        FloatVector a = x.abs();
        FloatVector t = a.min(LARGE_CLAMP).sub(LARGE_CENTER);
        FloatVector q = t.fma(Q7, Q6).fma(t, FloatVector.broadcast(SPECIES, Q5)).fma(t, FloatVector.broadcast(SPECIES, Q4))
                .fma(t, FloatVector.broadcast(SPECIES, Q3)).fma(t, FloatVector.broadcast(SPECIES, Q2))
                .fma(t, FloatVector.broadcast(SPECIES, Q1)).fma(t, FloatVector.broadcast(SPECIES, Q0));
        FloatVector large = FloatVector.broadcast(SPECIES, 1f).sub(exp(q));
        large = large.lanewise(VectorOperators.NEG, x.compare(VectorOperators.LT, 0f));
        return small.blend(large, a.compare(VectorOperators.GE, 1f));
    }

    /** Scalar twin of {@link #erf(FloatVector)} for tail loops (same approximation). */
    public static float erf(float x) {
        float a = Math.abs(x);
        if (!(a >= 1f)) { // also NaN
            float u = x * x;
            return horner(u, SMALL) * x;
        }
        float t = Math.min(a, LARGE_CLAMP) - LARGE_CENTER;
        float r = 1f - (float) Math.exp(horner(t, LARGE));
        return x < 0 ? -r : r;
    }

    private static float horner(float t, float[] c) {
        float r = c[c.length - 1];
        for (int k = c.length - 2; k >= 0; k--) r = Math.fma(r, t, c[k]);
        return r;
    }

    // ---------------------------------------------------------------- exp over a range

    /**
     * out[oo+j] = exp(x[xo+j] − shift) for j below n rounded down to whole vectors (none when out
     * is null; out may be x), returning their sum folded in {@code Lanes.sum}'s fixed order;
     * callers take the tail past the last whole vector. The vector exp written out in the loop,
     * the same operations as {@link #exp(FloatVector)}, for the reason given at {@link #gelu}: the
     * softmax rows of attention and of the CPU ops must not depend on whether C2 inlines exp.
     */
    public static float expShifted(float[] x, int xo, int n, float shift, float[] out, int oo) {
        int L = SPECIES.length();
        FloatVector acc = FloatVector.zero(SPECIES);
        for (int j = 0, bound = SPECIES.loopBound(n); j < bound; j += L) {
            FloatVector z = FloatVector.fromArray(SPECIES, x, xo + j).sub(shift);
            VectorMask<Float> under = z.compare(VectorOperators.LT, EXP_MIN);
            FloatVector zc = z.max(EXP_MIN).min(EXP_MAX);
            FloatVector kf = zc.fma(LOG2E, ROUND_MAGIC).sub(ROUND_MAGIC);
            FloatVector r = kf.fma(FloatVector.broadcast(SPECIES, -LN2_HI), zc);
            r = kf.fma(FloatVector.broadcast(SPECIES, -LN2_LO), r);
            FloatVector e = r.fma(E7, E6).fma(r, FloatVector.broadcast(SPECIES, E5)).fma(r, FloatVector.broadcast(SPECIES, E4))
                    .fma(r, FloatVector.broadcast(SPECIES, E3)).fma(r, FloatVector.broadcast(SPECIES, E2))
                    .fma(r, FloatVector.broadcast(SPECIES, E1)).fma(r, FloatVector.broadcast(SPECIES, E0));
            IntVector ki = kf.add(ROUND_MAGIC).reinterpretAsInts().sub(MAGIC_BITS_LESS_BIAS); // k + 127 (no F2I convert)
            e = e.mul(ki.lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats()).blend(0f, under);
            if (out != null) e.intoArray(out, oo + j);
            acc = acc.add(e);
        }
        for (int h = L / 2; h >= 1; h /= 2) acc = acc.add(acc.slice(h, acc)); // Lanes.sum's fold, written out
        return acc.lane(0);
    }

    // ---------------------------------------------------------------- GELU over a range

    private static final float GELU_INV_SQRT2 = 0.70710678118654752f;
    private static final float GELU_INV_SQRT_2PI = 0.39894228040143268f;

    /**
     * GELU over x[xo, xo+n), exact form 0.5·x·(1 + erf(x/√2)) with this class's erf: y = gelu(x)
     * when {@code grad} is false; else y = dOut·gelu'(x), gelu' = Φ(x) + x·φ(x), added into y when
     * {@code accumulate} (dOut unused and may be null when not grad). y may be x or dOut.
     *
     * <p>One loop with erf and exp written out, the same operations in the same order as
     * {@link #erf(FloatVector)} and {@link #exp(FloatVector)}, so the results are theirs: a method
     * that takes or returns vectors is inlined by C2 only while its own compiled code is small,
     * and once it has also been compiled on its own (exp is called from many places) a caller
     * compiled later calls it, boxing every vector on the heap. JFR caught the GELU epilogue doing
     * that: 780 MB of vector boxes per language-perceiver forward pass.
     */
    public static void gelu(boolean grad, float[] x, int xo, float[] dOut, int go, float[] y, int yo, int n, boolean accumulate) {
        int L = SPECIES.length(), i = 0;
        FloatVector one = FloatVector.broadcast(SPECIES, 1f);
        for (int bound = SPECIES.loopBound(n); i < bound; i += L) {
            FloatVector v = FloatVector.fromArray(SPECIES, x, xo + i);
            FloatVector z = v.mul(GELU_INV_SQRT2);
            // erf(z): x·P(x²) below 1, 1 − exp(Q(|x| − 2.5)) (signed) above
            FloatVector u = z.mul(z);
            FloatVector small = u.fma(S6, S5).fma(u, FloatVector.broadcast(SPECIES, S4)).fma(u, FloatVector.broadcast(SPECIES, S3))
                    .fma(u, FloatVector.broadcast(SPECIES, S2)).fma(u, FloatVector.broadcast(SPECIES, S1))
                    .fma(u, FloatVector.broadcast(SPECIES, S0)).mul(z);
            FloatVector a = z.abs();
            FloatVector t = a.min(LARGE_CLAMP).sub(LARGE_CENTER);
            FloatVector q = t.fma(Q7, Q6).fma(t, FloatVector.broadcast(SPECIES, Q5)).fma(t, FloatVector.broadcast(SPECIES, Q4))
                    .fma(t, FloatVector.broadcast(SPECIES, Q3)).fma(t, FloatVector.broadcast(SPECIES, Q2))
                    .fma(t, FloatVector.broadcast(SPECIES, Q1)).fma(t, FloatVector.broadcast(SPECIES, Q0));
            // exp(q), written out as exp(FloatVector) but without its clamps: t lies in [−2.5, 1.5],
            // where Q stays within [−18, 0.0002], so clamping to [EXP_MIN, EXP_MAX] changes nothing.
            FloatVector kf = q.fma(LOG2E, ROUND_MAGIC).sub(ROUND_MAGIC);
            FloatVector r = kf.fma(FloatVector.broadcast(SPECIES, -LN2_HI), q);
            r = kf.fma(FloatVector.broadcast(SPECIES, -LN2_LO), r);
            FloatVector e = r.fma(E7, E6).fma(r, FloatVector.broadcast(SPECIES, E5)).fma(r, FloatVector.broadcast(SPECIES, E4))
                    .fma(r, FloatVector.broadcast(SPECIES, E3)).fma(r, FloatVector.broadcast(SPECIES, E2))
                    .fma(r, FloatVector.broadcast(SPECIES, E1)).fma(r, FloatVector.broadcast(SPECIES, E0));
            IntVector ki = kf.add(ROUND_MAGIC).reinterpretAsInts().sub(MAGIC_BITS_LESS_BIAS); // k + 127 (no F2I convert)
            e = e.mul(ki.lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats());
            FloatVector large = one.sub(e).lanewise(VectorOperators.NEG, z.compare(VectorOperators.LT, 0f));
            FloatVector erf = small.blend(large, a.compare(VectorOperators.GE, 1f));
            if (!grad) {
                v.mul(0.5f).mul(erf.add(1f)).intoArray(y, yo + i);
                continue;
            }
            // φ(v)·√(2π) = exp(−v²/2), written out as above
            FloatVector w = v.mul(v).mul(-0.5f);
            VectorMask<Float> wUnder = w.compare(VectorOperators.LT, EXP_MIN);
            FloatVector wc = w.max(EXP_MIN).min(EXP_MAX);
            FloatVector wk = wc.fma(LOG2E, ROUND_MAGIC).sub(ROUND_MAGIC);
            FloatVector wr = wk.fma(FloatVector.broadcast(SPECIES, -LN2_HI), wc);
            wr = wk.fma(FloatVector.broadcast(SPECIES, -LN2_LO), wr);
            FloatVector we = wr.fma(E7, E6).fma(wr, FloatVector.broadcast(SPECIES, E5)).fma(wr, FloatVector.broadcast(SPECIES, E4))
                    .fma(wr, FloatVector.broadcast(SPECIES, E3)).fma(wr, FloatVector.broadcast(SPECIES, E2))
                    .fma(wr, FloatVector.broadcast(SPECIES, E1)).fma(wr, FloatVector.broadcast(SPECIES, E0));
            IntVector wki = wk.add(ROUND_MAGIC).reinterpretAsInts().sub(MAGIC_BITS_LESS_BIAS);
            we = we.mul(wki.lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats()).blend(0f, wUnder);
            FloatVector cdf = erf.add(1f).mul(0.5f);
            FloatVector pdf = we.mul(GELU_INV_SQRT_2PI);
            FloatVector dv = v.fma(pdf, cdf), g = FloatVector.fromArray(SPECIES, dOut, go + i);
            (accumulate ? g.fma(dv, FloatVector.fromArray(SPECIES, y, yo + i)) : g.mul(dv)).intoArray(y, yo + i);
        }
        for (; i < n; i++) {
            float xv = x[xo + i];
            if (!grad) {
                y[yo + i] = 0.5f * xv * (1f + erf(xv * GELU_INV_SQRT2));
            } else {
                float d = dOut[go + i] * (0.5f * (1f + erf(xv * GELU_INV_SQRT2)) + xv * GELU_INV_SQRT_2PI * (float) Math.exp(-0.5f * xv * xv));
                y[yo + i] = accumulate ? y[yo + i] + d : d;
            }
        }
    }

    // ---------------------------------------------------------------- vector exp

    private static final float LOG2E = 1.44269504088896341f;
    private static final float LN2_HI = 0.693359375f;       // ln 2 split so k·LN2_HI is exact
    private static final float LN2_LO = -2.12194440e-4f;
    private static final float ROUND_MAGIC = 12582912f;     // 1.5·2²³: adding it rounds to an integer
    private static final float EXP_MIN = -87.3f;            // below this e^z is under the normal range: 0
    private static final float EXP_MAX = 88.0f;
    private static final float[] EXP_POLY = { // e^r Taylor terms, |r| ≤ ln2/2: error ≤ 6e-9 relative
        1f, 1f, 1f / 2, 1f / 6, 1f / 24, 1f / 120, 1f / 720, 1f / 5040
    };
    private static final float E0 = EXP_POLY[0], E1 = EXP_POLY[1], E2 = EXP_POLY[2], E3 = EXP_POLY[3], E4 = EXP_POLY[4], E5 = EXP_POLY[5],
            E6 = EXP_POLY[6], E7 = EXP_POLY[7];
    /** The bits of {@link #ROUND_MAGIC} less the exponent bias: bits(k + ROUND_MAGIC) − this = k + 127 for an integer k of the exp's range. */
    private static final int MAGIC_BITS_LESS_BIAS = Float.floatToRawIntBits(ROUND_MAGIC) - 127;

    /**
     * e^z of every lane (a few ulp): z = k·ln2 + r, e^r by a polynomial, 2^k by building the
     * exponent bits. Lanes below −87.3 give 0; lanes above 88 are clamped to 88. Used by the
     * fast erf and by FastOps' softmax and cross-entropy. z must be of {@link #SPECIES}.
     */
    public static FloatVector exp(FloatVector z) {
        VectorMask<Float> under = z.compare(VectorOperators.LT, EXP_MIN);
        FloatVector zc = z.max(EXP_MIN).min(EXP_MAX);
        FloatVector kf = zc.fma(LOG2E, ROUND_MAGIC).sub(ROUND_MAGIC); // round(z·log2 e)
        FloatVector r = kf.fma(FloatVector.broadcast(SPECIES, -LN2_HI), zc);
        r = kf.fma(FloatVector.broadcast(SPECIES, -LN2_LO), r);
        FloatVector p = r.fma(E7, E6).fma(r, FloatVector.broadcast(SPECIES, E5)).fma(r, FloatVector.broadcast(SPECIES, E4))
                .fma(r, FloatVector.broadcast(SPECIES, E3)).fma(r, FloatVector.broadcast(SPECIES, E2))
                .fma(r, FloatVector.broadcast(SPECIES, E1)).fma(r, FloatVector.broadcast(SPECIES, E0));
        IntVector k = kf.add(ROUND_MAGIC).reinterpretAsInts().sub(MAGIC_BITS_LESS_BIAS); // k + 127
        FloatVector scale = k.lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
        return p.mul(scale).blend(0f, under);
    }
}
