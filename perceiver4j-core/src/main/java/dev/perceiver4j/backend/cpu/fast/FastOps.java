package dev.perceiver4j.backend.cpu.fast;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.Erf;
import dev.perceiver4j.random.Philox;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * Fast float kernels (everything but matmul and attention): Vector API inner loops with scalar
 * tails, split over rows (or columns, for reductions over rows) with {@link CpuPool#parallelFor}
 * once the work passes {@link #grain} elements per thread.
 *
 * <p>Conventions: the first argument is the pool; every array is followed by its offset; the
 * names and argument order match {@code RefOps}. Backward methods accumulate into gradient arrays
 * unless documented otherwise. An output may be the same array at the same offset as an input
 * where the method says so; otherwise outputs must not overlap inputs. Reductions over rows
 * (dGamma, dBeta, dBias, sumRows, embedding scatter) split over columns, so they are race-free and
 * their results do not depend on the thread count.
 */
public final class FastOps {
    private FastOps() {}

    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    static final int L = S.length();
    /** System property fixing the elements a thread gets at least before a loop is split (experiments; default: {@link #grain}). */
    public static final String GRAIN_PROPERTY = "perceiver4j.cpu.grain";
    /** Elements per thread before a loop is split, per four threads of the pool (see {@link #grain}). */
    static final int BASE_GRAIN = 1 << 14;
    /** {@value #GRAIN_PROPERTY} when set, else 0 (see {@link #fixedGrain}). */
    private static final int FIXED_GRAIN = fixedGrain(System.getProperty(GRAIN_PROPERTY));
    /** Elements per partial sum of {@link #sumSquares}: fixed, so that its rounding never depends on the pool or the grain. */
    private static final int SUM_CHUNK = 1 << 14;

    /** The grain a {@value #GRAIN_PROPERTY} value fixes (0 when unset or blank); anything but a positive integer is an error naming the property. */
    public static int fixedGrain(String property) {
        if (property == null || property.isBlank()) return 0;
        try {
            int g = Integer.parseInt(property.trim());
            if (g >= 1) return g;
        } catch (NumberFormatException ignored) {
            // reported below
        }
        throw new IllegalArgumentException(GRAIN_PROPERTY + " must be a positive element count, got '" + property + "'");
    }

    /**
     * Elements a thread should get at least before a loop over {@code pool} is split: {@value
     * #BASE_GRAIN} up to four threads, that times ceil(threads / 4) beyond. Each share costs a hand-off
     * and a wait, and with more threads the slowest of more virtual CPUs: on gpu-host's 16 threads
     * 65,536 made the language-perceiver forward 1.22-1.30x faster than 16,384 (262,144 was slower),
     * while on 2 threads of dev 65,536 slowed the main job's training step by 3-9 % (docs/benchmarks.md,
     * session 20). Only how loops are split changes: every op gives the same bits at any grain.
     */
    public static int grain(CpuPool pool) {
        return FIXED_GRAIN > 0 ? FIXED_GRAIN : BASE_GRAIN * Math.max(1, (pool.threads() + 3) / 4);
    }

    private static final VectorSpecies<Integer> SI = S.withLanes(int.class);
    private static final VectorSpecies<Short> SS =
            VectorSpecies.of(short.class, VectorShape.forBitSize(S.vectorBitSize() / 2));
    private static final VectorSpecies<Double> SD = DoubleVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Float> SFD =
            VectorSpecies.of(float.class, VectorShape.forBitSize(SD.vectorBitSize() / 2));
    /** Swaps the lanes of each (even, odd) pair: the partner of a rotary channel. */
    private static final VectorShuffle<Float> PAIR_SWAP = VectorShuffle.fromOp(S, i -> i ^ 1);

    private static int rowGrain(CpuPool pool, int width) {
        return Math.max(1, grain(pool) / Math.max(1, width));
    }

    private static int colGrain(CpuPool pool, int rows) {
        return Math.max(L, (grain(pool) + Math.max(1, rows) - 1) / Math.max(1, rows));
    }

    // ================================================================ argument checks

    private static void checkSize(String name, long value) {
        if (value < 0) throw new IllegalArgumentException(name + " must be >= 0, got " + value);
    }

    private static void checkRange(String name, boolean isNull, int length, int off, long need) {
        if (isNull) throw new IllegalArgumentException(name + " must not be null");
        if (off < 0) throw new IllegalArgumentException(name + " offset must be >= 0, got " + off);
        if (off + need > length)
            throw new IllegalArgumentException(name + " needs " + need + " elements from offset " + off
                    + " (up to " + (off + need) + ") but has length " + length);
    }

    private static void checkRange(String name, float[] a, int off, long need) {
        checkRange(name, a == null, a == null ? 0 : a.length, off, need);
    }

    private static void checkRange(String name, int[] a, int off, long need) {
        checkRange(name, a == null, a == null ? 0 : a.length, off, need);
    }

    private static void checkRange(String name, short[] a, int off, long need) {
        checkRange(name, a == null, a == null ? 0 : a.length, off, need);
    }

    private static void checkRange(String name, long[] a, int off, long need) {
        checkRange(name, a == null, a == null ? 0 : a.length, off, need);
    }

    private static void checkNotNull(String name, Object o) {
        if (o == null) throw new IllegalArgumentException(name + " must not be null");
    }

    // ================================================================ 1. layer norm

    /**
     * out = (x − mean)·rstd·gamma + beta over the last dim; x, out [rows, d]; gamma, beta [d];
     * mean, rstd [rows] saved for backward (may be null); biased variance, rstd = 1/√(var + eps).
     * out may be x.
     */
    public static void layerNorm(CpuPool pool, float[] x, int xOff, float[] gamma, int gOff, float[] beta, int bOff,
                                 float[] out, int oOff, float[] mean, int mOff, float[] rstd, int rOff,
                                 int rows, int d, float eps) {
        checkSize("rows", rows);
        checkSize("d", d);
        long n = (long) rows * d;
        checkRange("x", x, xOff, n);
        checkRange("gamma", gamma, gOff, d);
        checkRange("beta", beta, bOff, d);
        checkRange("out", out, oOff, n);
        if (mean != null) checkRange("mean", mean, mOff, rows);
        if (rstd != null) checkRange("rstd", rstd, rOff, rows);
        int bound = S.loopBound(d), bound4 = d - d % (4 * L);
        pool.parallelFor(rows, rowGrain(pool, d), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int xb = xOff + r * d, ob = oOff + r * d;
                // Four partial sums (a0..a3 over every fourth vector) so that the adds do not wait on one
                // another: a single accumulator made each reduction a chain of dependent adds, latency-bound.
                FloatVector a0 = FloatVector.zero(S), a1 = a0, a2 = a0, a3 = a0;
                int j = 0;
                for (; j < bound4; j += 4 * L) {
                    a0 = a0.add(FloatVector.fromArray(S, x, xb + j));
                    a1 = a1.add(FloatVector.fromArray(S, x, xb + j + L));
                    a2 = a2.add(FloatVector.fromArray(S, x, xb + j + 2 * L));
                    a3 = a3.add(FloatVector.fromArray(S, x, xb + j + 3 * L));
                }
                for (; j < bound; j += L) a0 = a0.add(FloatVector.fromArray(S, x, xb + j));
                FloatVector acc = a0.add(a1).add(a2.add(a3));
                for (int h = L / 2; h >= 1; h /= 2) acc = acc.add(acc.slice(h, acc)); // Lanes.sum's fold, written out (see Lanes)
                float s = acc.lane(0);
                for (; j < d; j++) s += x[xb + j];
                float mu = d == 0 ? 0f : s / d;
                FloatVector v0 = FloatVector.zero(S), v1 = v0, v2 = v0, v3 = v0;
                j = 0;
                for (; j < bound4; j += 4 * L) {
                    FloatVector c0 = FloatVector.fromArray(S, x, xb + j).sub(mu), c1 = FloatVector.fromArray(S, x, xb + j + L).sub(mu);
                    FloatVector c2 = FloatVector.fromArray(S, x, xb + j + 2 * L).sub(mu), c3 = FloatVector.fromArray(S, x, xb + j + 3 * L).sub(mu);
                    v0 = c0.fma(c0, v0);
                    v1 = c1.fma(c1, v1);
                    v2 = c2.fma(c2, v2);
                    v3 = c3.fma(c3, v3);
                }
                for (; j < bound; j += L) {
                    FloatVector c = FloatVector.fromArray(S, x, xb + j).sub(mu);
                    v0 = c.fma(c, v0);
                }
                FloatVector accV = v0.add(v1).add(v2.add(v3));
                for (int h = L / 2; h >= 1; h /= 2) accV = accV.add(accV.slice(h, accV)); // Lanes.sum's fold, written out (see Lanes)
                float v = accV.lane(0);
                for (; j < d; j++) {
                    float c = x[xb + j] - mu;
                    v += c * c;
                }
                float rs = (float) (1.0 / Math.sqrt((d == 0 ? 0.0 : (double) v / d) + eps));
                j = 0;
                for (; j < bound; j += L) {
                    FloatVector xh = FloatVector.fromArray(S, x, xb + j).sub(mu).mul(rs);
                    xh.fma(FloatVector.fromArray(S, gamma, gOff + j), FloatVector.fromArray(S, beta, bOff + j))
                            .intoArray(out, ob + j);
                }
                for (; j < d; j++) out[ob + j] = (x[xb + j] - mu) * rs * gamma[gOff + j] + beta[bOff + j];
                if (mean != null) mean[mOff + r] = mu;
                if (rstd != null) rstd[rOff + r] = rs;
            }
        });
    }

    /**
     * With xhat = (x − mean)·rstd and g = dOut·gamma: dx += rstd·(g − mean_j(g) − xhat·mean_j(g·xhat)),
     * dGamma += Σ_rows dOut·xhat, dBeta += Σ_rows dOut. dOut, x, dx [rows, d]; gamma, dGamma, dBeta [d];
     * mean, rstd [rows]. dx, dGamma, dBeta may each be null (not wanted).
     */
    public static void layerNormBackward(CpuPool pool, float[] dOut, int dOff, float[] x, int xOff,
                                         float[] gamma, int gOff, float[] mean, int mOff, float[] rstd, int rOff,
                                         float[] dx, int dxOff, float[] dGamma, int dgOff, float[] dBeta, int dbOff,
                                         int rows, int d) {
        checkSize("rows", rows);
        checkSize("d", d);
        long n = (long) rows * d;
        checkRange("dOut", dOut, dOff, n);
        checkRange("x", x, xOff, n);
        checkRange("gamma", gamma, gOff, d);
        checkRange("mean", mean, mOff, rows);
        checkRange("rstd", rstd, rOff, rows);
        if (dx != null) checkRange("dx", dx, dxOff, n);
        if (dGamma != null) checkRange("dGamma", dGamma, dgOff, d);
        if (dBeta != null) checkRange("dBeta", dBeta, dbOff, d);
        int bound = S.loopBound(d);
        if (dx != null) {
            pool.parallelFor(rows, rowGrain(pool, 2 * d), (r0, r1) -> {
                for (int r = r0; r < r1; r++) {
                    int xb = xOff + r * d, gb = dOff + r * d, db = dxOff + r * d;
                    float mu = mean[mOff + r], rs = rstd[rOff + r];
                    FloatVector accG = FloatVector.zero(S), accGX = FloatVector.zero(S);
                    int j = 0;
                    for (; j < bound; j += L) {
                        FloatVector xh = FloatVector.fromArray(S, x, xb + j).sub(mu).mul(rs);
                        FloatVector g = FloatVector.fromArray(S, dOut, gb + j).mul(FloatVector.fromArray(S, gamma, gOff + j));
                        accG = accG.add(g);
                        accGX = g.fma(xh, accGX);
                    }
                    for (int h = L / 2; h >= 1; h /= 2) accG = accG.add(accG.slice(h, accG)); // Lanes.sum's fold, written out (see Lanes)
                    float sumG = accG.lane(0);
                    for (int h = L / 2; h >= 1; h /= 2) accGX = accGX.add(accGX.slice(h, accGX)); // Lanes.sum's fold, written out (see Lanes)
                    float sumGX = accGX.lane(0);
                    for (; j < d; j++) {
                        float xh = (x[xb + j] - mu) * rs;
                        float g = dOut[gb + j] * gamma[gOff + j];
                        sumG += g;
                        sumGX += g * xh;
                    }
                    float meanG = sumG / d, meanGX = sumGX / d;
                    j = 0;
                    for (; j < bound; j += L) {
                        FloatVector xh = FloatVector.fromArray(S, x, xb + j).sub(mu).mul(rs);
                        FloatVector g = FloatVector.fromArray(S, dOut, gb + j).mul(FloatVector.fromArray(S, gamma, gOff + j));
                        FloatVector t = g.sub(meanG).sub(xh.mul(meanGX));
                        t.fma(FloatVector.broadcast(S, rs), FloatVector.fromArray(S, dx, db + j)).intoArray(dx, db + j);
                    }
                    for (; j < d; j++) {
                        float xh = (x[xb + j] - mu) * rs;
                        float g = dOut[gb + j] * gamma[gOff + j];
                        dx[db + j] += rs * (g - meanG - xh * meanGX);
                    }
                }
            });
        }
        if (dGamma != null || dBeta != null) {
            // split over columns: each thread owns dGamma[c0, c1), dBeta[c0, c1)
            pool.parallelFor(d, colGrain(pool, rows), (c0, c1) -> {
                int w = c1 - c0;
                float[] accG = new float[w], accB = new float[w];
                int wb = S.loopBound(w);
                for (int r = 0; r < rows; r++) {
                    int xb = xOff + r * d + c0, gb = dOff + r * d + c0;
                    float mu = mean[mOff + r], rs = rstd[rOff + r];
                    int j = 0;
                    for (; j < wb; j += L) {
                        FloatVector g = FloatVector.fromArray(S, dOut, gb + j);
                        FloatVector xh = FloatVector.fromArray(S, x, xb + j).sub(mu).mul(rs);
                        g.fma(xh, FloatVector.fromArray(S, accG, j)).intoArray(accG, j);
                        g.add(FloatVector.fromArray(S, accB, j)).intoArray(accB, j);
                    }
                    for (; j < w; j++) {
                        float g = dOut[gb + j];
                        accG[j] += g * ((x[xb + j] - mu) * rs);
                        accB[j] += g;
                    }
                }
                for (int j = 0; j < w; j++) {
                    if (dGamma != null) dGamma[dgOff + c0 + j] += accG[j];
                    if (dBeta != null) dBeta[dbOff + c0 + j] += accB[j];
                }
            });
        }
    }

    // ================================================================ 2. activations

    /**
     * act(x) lane-wise, for every activation but GELU: loops over ranges run GELU through {@link
     * Erf#gelu} (no vector crosses a call there; see its note on boxing).
     */
    static FloatVector activate(Activation act, FloatVector x) {
        return switch (act) {
            case NONE -> x;
            case GELU -> throw new IllegalArgumentException("GELU over a range runs through Erf.gelu");
            case SQUARED_RELU -> {
                FloatVector r = x.max(0f);
                yield r.mul(r);
            }
            case RELU -> x.max(0f);
        };
    }

    /** act'(x) lane-wise, for every activation but GELU (see {@link #activate}); RELU'(0) = 0. */
    static FloatVector activateDerivative(Activation act, FloatVector x) {
        return switch (act) {
            case NONE -> FloatVector.broadcast(S, 1f);
            case GELU -> throw new IllegalArgumentException("GELU' over a range runs through Erf.gelu");
            case SQUARED_RELU -> x.max(0f).mul(2f);
            case RELU -> FloatVector.zero(S).blend(1f, x.compare(VectorOperators.GT, 0f));
        };
    }

    /** Scalar twin of {@link #activate(Activation, FloatVector)} for tails. */
    static float activate(Activation act, float x) {
        return switch (act) {
            case NONE -> x;
            case GELU -> throw new IllegalArgumentException("GELU over a range runs through Erf.gelu");
            case SQUARED_RELU -> x > 0 ? x * x : 0f;
            case RELU -> x > 0 ? x : 0f;
        };
    }

    /** Scalar twin of {@link #activateDerivative(Activation, FloatVector)} for tails. */
    static float activateDerivative(Activation act, float x) {
        return switch (act) {
            case NONE -> 1f;
            case GELU -> throw new IllegalArgumentException("GELU' over a range runs through Erf.gelu");
            case SQUARED_RELU -> x > 0 ? 2f * x : 0f;
            case RELU -> x > 0 ? 1f : 0f;
        };
    }

    /** out = act(x); x, out [n]; out may be x. */
    public static void activation(CpuPool pool, Activation act, float[] x, int xOff, float[] out, int oOff, int n) {
        checkNotNull("act", act);
        checkSize("n", n);
        checkRange("x", x, xOff, n);
        checkRange("out", out, oOff, n);
        if (act == Activation.NONE) {
            if (x != out || xOff != oOff) System.arraycopy(x, xOff, out, oOff, n);
            return;
        }
        pool.parallelFor(n, grain(pool), (from, to) -> {
            if (act == Activation.GELU) {
                Erf.gelu(false, x, xOff + from, null, 0, out, oOff + from, to - from, false);
                return;
            }
            int i = from;
            for (int bound = from + S.loopBound(to - from); i < bound; i += L)
                activate(act, FloatVector.fromArray(S, x, xOff + i)).intoArray(out, oOff + i);
            for (; i < to; i++) out[oOff + i] = activate(act, x[xOff + i]);
        });
    }

    /** dx += dOut·act'(x), x the pre-activation; x, dOut, dx [n]. */
    public static void activationBackward(CpuPool pool, Activation act, float[] x, int xOff, float[] dOut, int dOff,
                                          float[] dx, int dxOff, int n) {
        checkNotNull("act", act);
        checkSize("n", n);
        checkRange("x", x, xOff, n);
        checkRange("dOut", dOut, dOff, n);
        checkRange("dx", dx, dxOff, n);
        pool.parallelFor(n, grain(pool), (from, to) -> {
            if (act == Activation.GELU) {
                Erf.gelu(true, x, xOff + from, dOut, dOff + from, dx, dxOff + from, to - from, true);
                return;
            }
            int i = from;
            for (int bound = from + S.loopBound(to - from); i < bound; i += L) {
                FloatVector g = FloatVector.fromArray(S, dOut, dOff + i);
                FloatVector dv = activateDerivative(act, FloatVector.fromArray(S, x, xOff + i));
                g.fma(dv, FloatVector.fromArray(S, dx, dxOff + i)).intoArray(dx, dxOff + i);
            }
            for (; i < to; i++) dx[dxOff + i] += dOut[dOff + i] * activateDerivative(act, x[xOff + i]);
        });
    }

    // ================================================================ 3. bias + activation epilogue

    /**
     * pre = c + bias (bias broadcast over rows; bias may be null), c = act(pre) in place.
     * c, pre [rows, n]; bias [n]. pre may be null when act == NONE.
     */
    public static void biasActivation(CpuPool pool, float[] c, int cOff, int rows, int n, float[] bias, int bOff,
                                      Activation act, float[] pre, int pOff) {
        checkNotNull("act", act);
        checkSize("rows", rows);
        checkSize("n", n);
        long total = (long) rows * n;
        checkRange("c", c, cOff, total);
        if (bias != null) checkRange("bias", bias, bOff, n);
        if (pre != null) checkRange("pre", pre, pOff, total);
        else if (act != Activation.NONE) throw new IllegalArgumentException("pre must not be null when act is " + act);
        if (bias == null && pre == null) return; // act == NONE: identity
        int bound = S.loopBound(n);
        // GELU: the loop stores only pre = c + bias, then Erf.gelu turns the row (in L1) into c = gelu(pre).
        boolean gelu = act == Activation.GELU;
        pool.parallelFor(rows, rowGrain(pool, n), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int cb = cOff + r * n, pb = pOff + r * n;
                int j = 0;
                for (; j < bound; j += L) {
                    FloatVector p = FloatVector.fromArray(S, c, cb + j);
                    if (bias != null) p = p.add(FloatVector.fromArray(S, bias, bOff + j));
                    if (pre != null) p.intoArray(pre, pb + j);
                    if (!gelu) activate(act, p).intoArray(c, cb + j);
                }
                for (; j < n; j++) {
                    float p = c[cb + j] + (bias != null ? bias[bOff + j] : 0f);
                    if (pre != null) pre[pb + j] = p;
                    if (!gelu) c[cb + j] = activate(act, p);
                }
                if (gelu) Erf.gelu(false, pre, pb, null, 0, c, cb, n, false);
            }
        });
    }

    /**
     * c = (c + bias) + res in one pass, the sums in that order (the bits of adding the bias, then the
     * residual, in two passes): the epilogue of a product added to a residual stream. c, res [rows,
     * n] (res may be c's array at another offset, not overlapping); bias [n] or null.
     */
    public static void biasResidual(CpuPool pool, float[] c, int cOff, int rows, int n, float[] bias, int bOff, float[] res, int rOff) {
        checkSize("rows", rows);
        checkSize("n", n);
        long total = (long) rows * n;
        checkRange("c", c, cOff, total);
        checkRange("res", res, rOff, total);
        if (bias != null) checkRange("bias", bias, bOff, n);
        int bound = S.loopBound(n);
        pool.parallelFor(rows, rowGrain(pool, n), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int cb = cOff + r * n, rb = rOff + r * n;
                int j = 0;
                for (; j < bound; j += L) {
                    FloatVector p = FloatVector.fromArray(S, c, cb + j);
                    if (bias != null) p = p.add(FloatVector.fromArray(S, bias, bOff + j));
                    p.add(FloatVector.fromArray(S, res, rb + j)).intoArray(c, cb + j);
                }
                for (; j < n; j++) c[cb + j] = (c[cb + j] + (bias != null ? bias[bOff + j] : 0f)) + res[rb + j];
            }
        });
    }

    /**
     * dPre = dOut·act'(pre) (written, not accumulated), dBias += Σ_rows dPre (may be null).
     * dOut, pre, dPre [rows, n]; dBias [n]. dPre may be dOut; pre may be null when act == NONE.
     */
    public static void biasActivationBackward(CpuPool pool, float[] dOut, int dOff, float[] pre, int pOff,
                                              int rows, int n, Activation act, float[] dPre, int dpOff,
                                              float[] dBias, int dbOff) {
        checkNotNull("act", act);
        checkSize("rows", rows);
        checkSize("n", n);
        long total = (long) rows * n;
        checkRange("dOut", dOut, dOff, total);
        if (act != Activation.NONE) checkRange("pre", pre, pOff, total);
        checkRange("dPre", dPre, dpOff, total);
        if (dBias != null) checkRange("dBias", dBias, dbOff, n);
        if (act == Activation.NONE) {
            if (dOut != dPre || dOff != dpOff) System.arraycopy(dOut, dOff, dPre, dpOff, (int) total);
        } else {
            pool.parallelFor((int) total, grain(pool), (from, to) -> {
                if (act == Activation.GELU) {
                    Erf.gelu(true, pre, pOff + from, dOut, dOff + from, dPre, dpOff + from, to - from, false);
                    return;
                }
                int i = from;
                for (int bound = from + S.loopBound(to - from); i < bound; i += L) {
                    FloatVector dv = activateDerivative(act, FloatVector.fromArray(S, pre, pOff + i));
                    FloatVector.fromArray(S, dOut, dOff + i).mul(dv).intoArray(dPre, dpOff + i);
                }
                for (; i < to; i++) dPre[dpOff + i] = dOut[dOff + i] * activateDerivative(act, pre[pOff + i]);
            });
        }
        if (dBias != null) columnSums(pool, dPre, dpOff, null, 0, rows, n, dBias, dbOff);
    }

    // ================================================================ 4. rotary position embedding

    private static void checkRotary(int rows, int heads, int headDim, int rot) {
        checkSize("rows", rows);
        checkSize("heads", heads);
        checkSize("headDim", headDim);
        checkSize("rot", rot);
        if ((rot & 1) != 0) throw new IllegalArgumentException("rot must be even, got " + rot);
        if (rot > headDim) throw new IllegalArgumentException("rot must be <= headDim " + headDim + ", got " + rot);
    }

    /**
     * For row r: cosE[2i] = cosE[2i+1] = cos θ_i and sinE[2i] = −sin θ_i, sinE[2i+1] = +sin θ_i with
     * θ_i = positions[r]·invFreq[i] taken in double, so that rotated[j] = x[j]·cosE[j] + x[j^1]·sinE[j].
     */
    private static void rotaryTables(int position, float[] invFreq, int fOff, int rot, float[] cosE, float[] sinE) {
        for (int i = 0; i < rot / 2; i++) {
            double theta = position * (double) invFreq[fOff + i];
            float cs = (float) Math.cos(theta), sn = (float) Math.sin(theta);
            cosE[2 * i] = cs;
            cosE[2 * i + 1] = cs;
            sinE[2 * i] = -sn;
            sinE[2 * i + 1] = sn;
        }
    }

    /**
     * Interleaved RoPE: in each head, pair (x[2i], x[2i+1]) for 2i &lt; rot rotates by
     * θ = positions[r]·invFreq[i]: (x0·cosθ − x1·sinθ, x1·cosθ + x0·sinθ); other channels copy.
     * x, out [rows, heads·headDim]; positions [rows]; invFreq [rot/2]. out may be x.
     */
    public static void rotary(CpuPool pool, float[] x, int xOff, float[] out, int oOff, int[] positions, int pOff,
                              float[] invFreq, int fOff, int rows, int heads, int headDim, int rot) {
        checkRotary(rows, heads, headDim, rot);
        int width = heads * headDim;
        long total = (long) rows * width;
        checkRange("x", x, xOff, total);
        checkRange("out", out, oOff, total);
        checkRange("positions", positions, pOff, rows);
        checkRange("invFreq", invFreq, fOff, rot / 2);
        boolean inPlace = x == out && xOff == oOff;
        int bound = S.loopBound(rot); // even, since L is even: vectors hold whole pairs
        pool.parallelFor(rows, rowGrain(pool, width), (r0, r1) -> {
            float[] cosE = new float[rot], sinE = new float[rot];
            for (int r = r0; r < r1; r++) {
                rotaryTables(positions[pOff + r], invFreq, fOff, rot, cosE, sinE);
                for (int h = 0; h < heads; h++) {
                    int xb = xOff + r * width + h * headDim, ob = oOff + r * width + h * headDim;
                    int j = 0;
                    for (; j < bound; j += L) {
                        FloatVector xv = FloatVector.fromArray(S, x, xb + j);
                        FloatVector partner = xv.rearrange(PAIR_SWAP);
                        FloatVector cs = FloatVector.fromArray(S, cosE, j), sn = FloatVector.fromArray(S, sinE, j);
                        partner.fma(sn, xv.mul(cs)).intoArray(out, ob + j);
                    }
                    for (; j < rot; j += 2) {
                        float x0 = x[xb + j], x1 = x[xb + j + 1];
                        out[ob + j] = x0 * cosE[j] + x1 * sinE[j];
                        out[ob + j + 1] = x1 * cosE[j + 1] + x0 * sinE[j + 1];
                    }
                    if (!inPlace && rot < headDim) System.arraycopy(x, xb + rot, out, ob + rot, headDim - rot);
                }
            }
        });
    }

    /** dx += dOut rotated by −θ (the transpose of the forward rotation); shapes as {@link #rotary}. */
    public static void rotaryBackward(CpuPool pool, float[] dOut, int dOff, float[] dx, int dxOff,
                                      int[] positions, int pOff, float[] invFreq, int fOff,
                                      int rows, int heads, int headDim, int rot) {
        checkRotary(rows, heads, headDim, rot);
        int width = heads * headDim;
        long total = (long) rows * width;
        checkRange("dOut", dOut, dOff, total);
        checkRange("dx", dx, dxOff, total);
        checkRange("positions", positions, pOff, rows);
        checkRange("invFreq", invFreq, fOff, rot / 2);
        int bound = S.loopBound(rot);
        pool.parallelFor(rows, rowGrain(pool, width), (r0, r1) -> {
            float[] cosE = new float[rot], sinE = new float[rot];
            for (int r = r0; r < r1; r++) {
                rotaryTables(positions[pOff + r], invFreq, fOff, rot, cosE, sinE);
                for (int h = 0; h < heads; h++) {
                    int gb = dOff + r * width + h * headDim, db = dxOff + r * width + h * headDim;
                    int j = 0;
                    // dx[j] += g[j]·cosE[j] − g[j^1]·sinE[j]
                    for (; j < bound; j += L) {
                        FloatVector g = FloatVector.fromArray(S, dOut, gb + j);
                        FloatVector partner = g.rearrange(PAIR_SWAP);
                        FloatVector cs = FloatVector.fromArray(S, cosE, j), sn = FloatVector.fromArray(S, sinE, j);
                        FloatVector acc = g.fma(cs, FloatVector.fromArray(S, dx, db + j));
                        partner.neg().fma(sn, acc).intoArray(dx, db + j);
                    }
                    for (; j < rot; j += 2) {
                        float g0 = dOut[gb + j], g1 = dOut[gb + j + 1];
                        dx[db + j] += g0 * cosE[j] - g1 * sinE[j];
                        dx[db + j + 1] += g1 * cosE[j + 1] - g0 * sinE[j + 1];
                    }
                    for (j = rot; j < headDim; j++) dx[db + j] += dOut[gb + j];
                }
            }
        });
    }

    // ================================================================ 5. embedding

    private static void checkIds(int[] ids, int off, int n, int vocab) {
        for (int i = 0; i < n; i++) {
            int id = ids[off + i];
            if (id < 0 || id >= vocab)
                throw new IllegalArgumentException("token id " + id + " at position " + i
                        + " is outside the vocabulary [0, " + vocab + ")");
        }
    }

    /** out[i] = table[ids[i]]; table [vocab, d], ids [n], out [n, d]. */
    public static void embedding(CpuPool pool, float[] table, int tOff, int[] ids, int iOff, float[] out, int oOff,
                                 int n, int vocab, int d) {
        checkSize("n", n);
        checkSize("vocab", vocab);
        checkSize("d", d);
        checkRange("table", table, tOff, (long) vocab * d);
        checkRange("ids", ids, iOff, n);
        checkRange("out", out, oOff, (long) n * d);
        checkIds(ids, iOff, n, vocab);
        pool.parallelFor(n, rowGrain(pool, d), (i0, i1) -> {
            for (int i = i0; i < i1; i++) System.arraycopy(table, tOff + ids[iOff + i] * d, out, oOff + i * d, d);
        });
    }

    /** dTable[ids[i]] += dOut[i]; dOut [n, d], ids [n], dTable [vocab, d]. Threads split the columns of d. */
    public static void embeddingBackward(CpuPool pool, float[] dOut, int dOff, int[] ids, int iOff,
                                         float[] dTable, int tOff, int n, int vocab, int d) {
        checkSize("n", n);
        checkSize("vocab", vocab);
        checkSize("d", d);
        checkRange("dOut", dOut, dOff, (long) n * d);
        checkRange("ids", ids, iOff, n);
        checkRange("dTable", dTable, tOff, (long) vocab * d);
        checkIds(ids, iOff, n, vocab);
        pool.parallelFor(d, colGrain(pool, n), (c0, c1) -> {
            int w = c1 - c0, wb = S.loopBound(w);
            for (int i = 0; i < n; i++) {
                int src = dOff + i * d + c0, dst = tOff + ids[iOff + i] * d + c0;
                int j = 0;
                for (; j < wb; j += L) {
                    FloatVector.fromArray(S, dOut, src + j).add(FloatVector.fromArray(S, dTable, dst + j))
                            .intoArray(dTable, dst + j);
                }
                for (; j < w; j++) dTable[dst + j] += dOut[src + j];
            }
        });
    }

    // ================================================================ 6. softmax cross-entropy

    private static void checkTargets(int[] targets, int off, int rows, int vocab, int ignoreIndex) {
        for (int r = 0; r < rows; r++) {
            int t = targets[off + r];
            if (t != ignoreIndex && (t < 0 || t >= vocab))
                throw new IllegalArgumentException("target " + t + " at row " + r + " is outside [0, " + vocab
                        + ") and is not the ignore index " + ignoreIndex);
        }
    }

    /** max_j x[base + j] over n values. */
    private static float rowMax(float[] x, int base, int n) {
        int bound = S.loopBound(n);
        FloatVector m = FloatVector.broadcast(S, Float.NEGATIVE_INFINITY);
        int j = 0;
        for (; j < bound; j += L) m = m.max(FloatVector.fromArray(S, x, base + j));
        float max = m.reduceLanes(VectorOperators.MAX);
        for (; j < n; j++) max = Math.max(max, x[base + j]);
        return max;
    }

    /**
     * out[ob, ob + n) = softmax of x[xb, xb + n) (out may be x at the same offset: in place), the
     * rows of {@link #softmax} and of {@link MaterializedAttention}'s scores; returns the row's
     * log-sum-exp, max + log Σ_j exp(x_j − max).
     */
    static float softmaxRow(float[] x, int xb, float[] out, int ob, int n) {
        float max = rowMax(x, xb, n);
        float sum = sumExp(x, xb, n, max, out, ob);
        float inv = 1f / sum;
        int j = 0;
        for (int bound = S.loopBound(n); j < bound; j += L) FloatVector.fromArray(S, out, ob + j).mul(inv).intoArray(out, ob + j);
        for (; j < n; j++) out[ob + j] *= inv;
        return max + (float) Math.log(sum);
    }

    /** Σ_j exp(x[base + j] − shift) over n values; writes the exponentials to out[oBase + j] when out != null. */
    private static float sumExp(float[] x, int base, int n, float shift, float[] out, int oBase) {
        int j = S.loopBound(n);
        float s = Erf.expShifted(x, base, n, shift, out, oBase);
        for (; j < n; j++) {
            float e = (float) Math.exp(x[base + j] - shift);
            if (out != null) out[oBase + j] = e;
            s += e;
        }
        return s;
    }

    /**
     * Mean over rows whose target is not ignoreIndex of (lse_r − logits[r, t_r]) + zLoss·lse_r²,
     * lse_r = log Σ_j exp(logits[r, j]); 0 when every row is ignored. logits [rows, vocab];
     * targets, lse [rows] (lse written for every row).
     */
    public static double crossEntropy(CpuPool pool, float[] logits, int lOff, int[] targets, int tOff,
                                      int rows, int vocab, int ignoreIndex, float zLoss, float[] lse, int lseOff) {
        checkSize("rows", rows);
        checkSize("vocab", vocab);
        checkRange("logits", logits, lOff, (long) rows * vocab);
        checkRange("targets", targets, tOff, rows);
        checkRange("lse", lse, lseOff, rows);
        checkTargets(targets, tOff, rows, vocab, ignoreIndex);
        pool.parallelFor(rows, rowGrain(pool, vocab), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int base = lOff + r * vocab;
                float max = rowMax(logits, base, vocab);
                float s = sumExp(logits, base, vocab, max, null, 0);
                lse[lseOff + r] = (float) (max + Math.log(s));
            }
        });
        double total = 0;
        int count = 0;
        for (int r = 0; r < rows; r++) {
            int t = targets[tOff + r];
            if (t == ignoreIndex) continue;
            double l = lse[lseOff + r];
            total += l - logits[lOff + r * vocab + t] + zLoss * l * l;
            count++;
        }
        return count == 0 ? 0.0 : total / count;
    }

    /**
     * dLogits[r] += dLoss/count·(softmax_r·(1 + 2·zLoss·lse_r) − onehot(t_r)) for rows not ignored;
     * count = number of such rows. Shapes as {@link #crossEntropy}.
     */
    public static void crossEntropyBackward(CpuPool pool, float dLoss, float[] logits, int lOff, int[] targets, int tOff,
                                            float[] lse, int lseOff, int rows, int vocab, int ignoreIndex, float zLoss,
                                            float[] dLogits, int dOff) {
        checkSize("rows", rows);
        checkSize("vocab", vocab);
        checkRange("logits", logits, lOff, (long) rows * vocab);
        checkRange("targets", targets, tOff, rows);
        checkRange("lse", lse, lseOff, rows);
        checkRange("dLogits", dLogits, dOff, (long) rows * vocab);
        checkTargets(targets, tOff, rows, vocab, ignoreIndex);
        int count = 0;
        for (int r = 0; r < rows; r++) if (targets[tOff + r] != ignoreIndex) count++;
        if (count == 0) return;
        float scale = dLoss / count;
        int bound = S.loopBound(vocab);
        pool.parallelFor(rows, rowGrain(pool, vocab), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int t = targets[tOff + r];
                if (t == ignoreIndex) continue;
                int lb = lOff + r * vocab, db = dOff + r * vocab;
                float l = lse[lseOff + r];
                float pScale = scale * (1f + 2f * zLoss * l);
                int j = 0;
                for (; j < bound; j += L) {
                    FloatVector p = Erf.exp(FloatVector.fromArray(S, logits, lb + j).sub(l));
                    p.fma(FloatVector.broadcast(S, pScale), FloatVector.fromArray(S, dLogits, db + j)).intoArray(dLogits, db + j);
                }
                for (; j < vocab; j++) dLogits[db + j] += (float) Math.exp(logits[lb + j] - l) * pScale;
                dLogits[db + t] -= scale;
            }
        });
    }

    // ================================================================ 7. softmax

    /** out[r] = softmax(x[r]) over the last dim; x, out [rows, n]; out may be x. */
    public static void softmax(CpuPool pool, float[] x, int xOff, float[] out, int oOff, int rows, int n) {
        checkSize("rows", rows);
        checkSize("n", n);
        checkRange("x", x, xOff, (long) rows * n);
        checkRange("out", out, oOff, (long) rows * n);
        pool.parallelFor(rows, rowGrain(pool, n), (r0, r1) -> {
            for (int r = r0; r < r1; r++) softmaxRow(x, xOff + r * n, out, oOff + r * n, n);
        });
    }

    /** dx += y·(dOut − Σ_j dOut·y) with y = softmax output; y, dOut, dx [rows, n]. */
    public static void softmaxBackward(CpuPool pool, float[] y, int yOff, float[] dOut, int dOff, float[] dx, int dxOff,
                                       int rows, int n) {
        checkSize("rows", rows);
        checkSize("n", n);
        long total = (long) rows * n;
        checkRange("y", y, yOff, total);
        checkRange("dOut", dOut, dOff, total);
        checkRange("dx", dx, dxOff, total);
        int bound = S.loopBound(n);
        pool.parallelFor(rows, rowGrain(pool, n), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int yb = yOff + r * n, gb = dOff + r * n, db = dxOff + r * n;
                FloatVector acc = FloatVector.zero(S);
                int j = 0;
                for (; j < bound; j += L)
                    acc = FloatVector.fromArray(S, dOut, gb + j).fma(FloatVector.fromArray(S, y, yb + j), acc);
                for (int h = L / 2; h >= 1; h /= 2) acc = acc.add(acc.slice(h, acc)); // Lanes.sum's fold, written out (see Lanes)
                float dot = acc.lane(0);
                for (; j < n; j++) dot += dOut[gb + j] * y[yb + j];
                j = 0;
                for (; j < bound; j += L) {
                    FloatVector yv = FloatVector.fromArray(S, y, yb + j);
                    FloatVector t = FloatVector.fromArray(S, dOut, gb + j).sub(dot);
                    yv.fma(t, FloatVector.fromArray(S, dx, db + j)).intoArray(dx, db + j);
                }
                for (; j < n; j++) dx[db + j] += y[yb + j] * (dOut[gb + j] - dot);
            }
        });
    }

    // ================================================================ 8. elementwise

    private static void checkBroadcast(int n, int bLen) {
        checkSize("n", n);
        if (bLen <= 0) throw new IllegalArgumentException("bLen must be > 0, got " + bLen);
        if (n % bLen != 0) throw new IllegalArgumentException("bLen " + bLen + " must divide n " + n);
    }

    /**
     * out = a (+ or ·) b with b repeating every bLen elements. The operator is a boolean and each
     * loop names {@code add} or {@code mul} directly: a {@code lanewise(op, …)} whose operator is a
     * variable is not intrinsified by C2 and ran about 15× slower than this.
     */
    private static void broadcastBinary(CpuPool pool, boolean isAdd, float[] a, int aOff, float[] b, int bOff,
                                        float[] out, int oOff, int n, int bLen) {
        if (bLen == n || bLen == 1) {
            pool.parallelFor(n, grain(pool), (from, to) -> {
                int i = from, bound = from + S.loopBound(to - from);
                if (bLen == 1) {
                    FloatVector bv = FloatVector.broadcast(S, b[bOff]);
                    if (isAdd) for (; i < bound; i += L) FloatVector.fromArray(S, a, aOff + i).add(bv).intoArray(out, oOff + i);
                    else for (; i < bound; i += L) FloatVector.fromArray(S, a, aOff + i).mul(bv).intoArray(out, oOff + i);
                } else if (isAdd) {
                    for (; i < bound; i += L) FloatVector.fromArray(S, a, aOff + i).add(FloatVector.fromArray(S, b, bOff + i)).intoArray(out, oOff + i);
                } else {
                    for (; i < bound; i += L) FloatVector.fromArray(S, a, aOff + i).mul(FloatVector.fromArray(S, b, bOff + i)).intoArray(out, oOff + i);
                }
                for (; i < to; i++) {
                    float bs = b[bOff + (bLen == 1 ? 0 : i)];
                    out[oOff + i] = isAdd ? a[aOff + i] + bs : a[aOff + i] * bs;
                }
            });
            return;
        }
        int rows = n / bLen, bound = S.loopBound(bLen);
        pool.parallelFor(rows, rowGrain(pool, bLen), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int ab = aOff + r * bLen, ob = oOff + r * bLen;
                int j = 0;
                if (isAdd) {
                    for (; j < bound; j += L) {
                        FloatVector.fromArray(S, a, ab + j).add(FloatVector.fromArray(S, b, bOff + j)).intoArray(out, ob + j);
                    }
                    for (; j < bLen; j++) out[ob + j] = a[ab + j] + b[bOff + j];
                } else {
                    for (; j < bound; j += L) {
                        FloatVector.fromArray(S, a, ab + j).mul(FloatVector.fromArray(S, b, bOff + j)).intoArray(out, ob + j);
                    }
                    for (; j < bLen; j++) out[ob + j] = a[ab + j] * b[bOff + j];
                }
            }
        });
    }

    /** out[i] = a[i] + b[i mod bLen]; a, out [n]; b [bLen], bLen divides n. out may be a. */
    public static void add(CpuPool pool, float[] a, int aOff, float[] b, int bOff, float[] out, int oOff, int n, int bLen) {
        checkBroadcast(n, bLen);
        checkRange("a", a, aOff, n);
        checkRange("b", b, bOff, bLen);
        checkRange("out", out, oOff, n);
        broadcastBinary(pool, true, a, aOff, b, bOff, out, oOff, n, bLen);
    }

    /** dA += dOut; dB[j] += Σ_k dOut[k·bLen + j]; either may be null. */
    public static void addBackward(CpuPool pool, float[] dOut, int dOff, float[] dA, int daOff, float[] dB, int dbOff,
                                   int n, int bLen) {
        checkBroadcast(n, bLen);
        checkRange("dOut", dOut, dOff, n);
        if (dA != null) checkRange("dA", dA, daOff, n);
        if (dB != null) checkRange("dB", dB, dbOff, bLen);
        if (dA != null) axpy(pool, 1f, dOut, dOff, dA, daOff, n);
        if (dB != null) columnSums(pool, dOut, dOff, null, 0, n / bLen, bLen, dB, dbOff);
    }

    /** out[i] = a[i]·b[i mod bLen]; shapes as {@link #add}. out may be a. */
    public static void mul(CpuPool pool, float[] a, int aOff, float[] b, int bOff, float[] out, int oOff, int n, int bLen) {
        checkBroadcast(n, bLen);
        checkRange("a", a, aOff, n);
        checkRange("b", b, bOff, bLen);
        checkRange("out", out, oOff, n);
        broadcastBinary(pool, false, a, aOff, b, bOff, out, oOff, n, bLen);
    }

    /** dA[i] += dOut[i]·b[i mod bLen]; dB[j] += Σ_k dOut[k·bLen + j]·a[k·bLen + j]; either may be null. */
    public static void mulBackward(CpuPool pool, float[] dOut, int dOff, float[] a, int aOff, float[] b, int bOff,
                                   float[] dA, int daOff, float[] dB, int dbOff, int n, int bLen) {
        checkBroadcast(n, bLen);
        checkRange("dOut", dOut, dOff, n);
        checkRange("a", a, aOff, n);
        checkRange("b", b, bOff, bLen);
        if (dA != null) checkRange("dA", dA, daOff, n);
        if (dB != null) checkRange("dB", dB, dbOff, bLen);
        if (dA != null) {
            int rows = n / bLen, bound = S.loopBound(bLen);
            pool.parallelFor(rows, rowGrain(pool, bLen), (r0, r1) -> {
                for (int r = r0; r < r1; r++) {
                    int gb = dOff + r * bLen, db = daOff + r * bLen;
                    int j = 0;
                    for (; j < bound; j += L) {
                        FloatVector.fromArray(S, dOut, gb + j).fma(FloatVector.fromArray(S, b, bOff + j),
                                FloatVector.fromArray(S, dA, db + j)).intoArray(dA, db + j);
                    }
                    for (; j < bLen; j++) dA[db + j] += dOut[gb + j] * b[bOff + j];
                }
            });
        }
        if (dB != null) columnSums(pool, dOut, dOff, a, aOff, n / bLen, bLen, dB, dbOff);
    }

    /**
     * out[j] += Σ_r x[r, j]·(y == null ? 1 : y[r, j]); x, y [rows, n], out [n]. Threads split the
     * columns, each summing its columns over all rows into a private buffer.
     */
    private static void columnSums(CpuPool pool, float[] x, int xOff, float[] y, int yOff, int rows, int n,
                                   float[] out, int oOff) {
        pool.parallelFor(n, colGrain(pool, rows), (c0, c1) -> {
            int w = c1 - c0, wb = S.loopBound(w);
            float[] acc = new float[w];
            for (int r = 0; r < rows; r++) {
                int xb = xOff + r * n + c0, yb = yOff + r * n + c0;
                int j = 0;
                if (y == null) {
                    for (; j < wb; j += L)
                        FloatVector.fromArray(S, x, xb + j).add(FloatVector.fromArray(S, acc, j)).intoArray(acc, j);
                    for (; j < w; j++) acc[j] += x[xb + j];
                } else {
                    for (; j < wb; j += L) {
                        FloatVector.fromArray(S, x, xb + j).fma(FloatVector.fromArray(S, y, yb + j),
                                FloatVector.fromArray(S, acc, j)).intoArray(acc, j);
                    }
                    for (; j < w; j++) acc[j] += x[xb + j] * y[yb + j];
                }
            }
            for (int j = 0; j < w; j++) out[oOff + c0 + j] += acc[j];
        });
    }

    /** out = alpha·x; x, out [n]; out may be x. */
    public static void scale(CpuPool pool, float[] x, int xOff, float alpha, float[] out, int oOff, int n) {
        checkSize("n", n);
        checkRange("x", x, xOff, n);
        checkRange("out", out, oOff, n);
        pool.parallelFor(n, grain(pool), (from, to) -> {
            int i = from;
            for (int bound = from + S.loopBound(to - from); i < bound; i += L)
                FloatVector.fromArray(S, x, xOff + i).mul(alpha).intoArray(out, oOff + i);
            for (; i < to; i++) out[oOff + i] = alpha * x[xOff + i];
        });
    }

    /** y += alpha·x; x, y [n]. */
    public static void axpy(CpuPool pool, float alpha, float[] x, int xOff, float[] y, int yOff, int n) {
        checkSize("n", n);
        checkRange("x", x, xOff, n);
        checkRange("y", y, yOff, n);
        pool.parallelFor(n, grain(pool), (from, to) -> {
            int i = from;
            for (int bound = from + S.loopBound(to - from); i < bound; i += L) {
                FloatVector.fromArray(S, x, xOff + i).fma(FloatVector.broadcast(S, alpha), FloatVector.fromArray(S, y, yOff + i))
                        .intoArray(y, yOff + i);
            }
            for (; i < to; i++) y[yOff + i] += alpha * x[xOff + i];
        });
    }

    /** x[i] = v; x [n]. */
    public static void fill(CpuPool pool, float[] x, int xOff, float v, int n) {
        checkSize("n", n);
        checkRange("x", x, xOff, n);
        pool.parallelFor(n, grain(pool), (from, to) -> java.util.Arrays.fill(x, xOff + from, xOff + to, v));
    }

    /**
     * Σ x[i]², accumulated in double (each square is exact in double); x [n]. The result depends
     * only on the thread count's chunking, not on scheduling.
     */
    public static double sumSquares(CpuPool pool, float[] x, int xOff, int n) {
        checkSize("n", n);
        checkRange("x", x, xOff, n);
        int chunks = Math.min(pool.threads(), Math.max(1, n / SUM_CHUNK));
        double[] partial = new double[chunks];
        int ld = SFD.length();
        pool.parallelFor(chunks, 1, (c0, c1) -> {
            for (int c = c0; c < c1; c++) {
                int from = (int) ((long) n * c / chunks), to = (int) ((long) n * (c + 1) / chunks);
                DoubleVector acc = DoubleVector.zero(SD);
                int i = from;
                for (int bound = from + SFD.loopBound(to - from); i < bound; i += ld) {
                    DoubleVector v = (DoubleVector) FloatVector.fromArray(SFD, x, xOff + i)
                            .convertShape(VectorOperators.F2D, SD, 0);
                    acc = v.fma(v, acc);
                }
                double s = Lanes.sum(acc);
                for (; i < to; i++) s += (double) x[xOff + i] * x[xOff + i];
                partial[c] = s;
            }
        });
        double s = 0;
        for (double p : partial) s += p;
        return s;
    }

    /** out[j] += Σ_r x[r, j]; x [rows, n], out [n]. Threads split the columns. */
    public static void sumRows(CpuPool pool, float[] x, int xOff, int rows, int n, float[] out, int oOff) {
        checkSize("rows", rows);
        checkSize("n", n);
        checkRange("x", x, xOff, (long) rows * n);
        checkRange("out", out, oOff, n);
        columnSums(pool, x, xOff, null, 0, rows, n, out, oOff);
    }

    // ================================================================ 9. AdamW

    /**
     * One AdamW step (PyTorch, decoupled decay): p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g;
     * v ← β2·v + (1−β2)·g²; p ← p − lr·(m/(1−β1^step)) / (√(v/(1−β2^step)) + eps). All arrays [n]; step ≥ 1.
     */
    public static void adamw(CpuPool pool, float[] param, int pOff, float[] grad, int gOff, float[] m, int mOff,
                             float[] v, int vOff, int n, float lr, float beta1, float beta2, float eps,
                             float weightDecay, long step) {
        checkSize("n", n);
        if (step < 1) throw new IllegalArgumentException("step must be >= 1, got " + step);
        checkRange("param", param, pOff, n);
        checkRange("grad", grad, gOff, n);
        checkRange("m", m, mOff, n);
        checkRange("v", v, vOff, n);
        double bc1 = 1.0 - Math.pow(beta1, step);
        double bc2 = 1.0 - Math.pow(beta2, step);
        float stepSize = (float) (lr / bc1);
        float invSqrtBc2 = (float) (1.0 / Math.sqrt(bc2));
        float decay = (float) (1.0 - (double) lr * weightDecay);
        float b1 = beta1, b2 = beta2, c1 = 1f - beta1, c2 = 1f - beta2;
        pool.parallelFor(n, grain(pool), (from, to) -> {
            int i = from;
            for (int bound = from + S.loopBound(to - from); i < bound; i += L) {
                FloatVector g = FloatVector.fromArray(S, grad, gOff + i);
                FloatVector mv = FloatVector.fromArray(S, m, mOff + i).mul(b1).add(g.mul(c1));
                FloatVector vv = FloatVector.fromArray(S, v, vOff + i).mul(b2).add(g.mul(g).mul(c2));
                FloatVector denom = vv.sqrt().fma(FloatVector.broadcast(S, invSqrtBc2), FloatVector.broadcast(S, eps));
                FloatVector p = FloatVector.fromArray(S, param, pOff + i).mul(decay);
                p.sub(mv.mul(stepSize).div(denom)).intoArray(param, pOff + i);
                mv.intoArray(m, mOff + i);
                vv.intoArray(v, vOff + i);
            }
            for (; i < to; i++) {
                float g = grad[gOff + i];
                float mi = m[mOff + i] * b1 + g * c1;
                float vi = v[vOff + i] * b2 + g * g * c2;
                float denom = (float) Math.sqrt(vi) * invSqrtBc2 + eps;
                param[pOff + i] = param[pOff + i] * decay - mi * stepSize / denom;
                m[mOff + i] = mi;
                v[vOff + i] = vi;
            }
        });
    }

    // ================================================================ 10. casts

    /** out[i] = bfloat16 bits of x[i], round to nearest even; NaN stays (quiet) NaN, ±Inf kept. */
    public static void toBf16(CpuPool pool, float[] x, int xOff, short[] out, int oOff, int n) {
        checkSize("n", n);
        checkRange("x", x, xOff, n);
        checkRange("out", out, oOff, n);
        pool.parallelFor(n, grain(pool), (from, to) -> {
            int i = from;
            for (int bound = from + S.loopBound(to - from); i < bound; i += L) {
                FloatVector f = FloatVector.fromArray(S, x, xOff + i);
                IntVector bits = f.reinterpretAsInts();
                IntVector high = bits.lanewise(VectorOperators.LSHR, 16);
                IntVector rounded = bits.add(high.and(1)).add(0x7FFF).lanewise(VectorOperators.LSHR, 16);
                VectorMask<Integer> nan = f.test(VectorOperators.IS_NAN).cast(SI);
                IntVector r = rounded.blend(high.or(0x0040), nan);
                ((ShortVector) r.convertShape(VectorOperators.I2S, SS, 0)).intoArray(out, oOff + i);
            }
            for (; i < to; i++) out[oOff + i] = floatToBf16(x[xOff + i]);
        });
    }

    /** out[i] = the float that bfloat16 bits x[i] stand for (exact). */
    public static void fromBf16(CpuPool pool, short[] x, int xOff, float[] out, int oOff, int n) {
        checkSize("n", n);
        checkRange("x", x, xOff, n);
        checkRange("out", out, oOff, n);
        pool.parallelFor(n, grain(pool), (from, to) -> {
            int i = from;
            for (int bound = from + S.loopBound(to - from); i < bound; i += L) {
                IntVector iv = (IntVector) ShortVector.fromArray(SS, x, xOff + i).convertShape(VectorOperators.S2I, SI, 0);
                iv.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(out, oOff + i);
            }
            for (; i < to; i++) out[oOff + i] = Float.intBitsToFloat((x[xOff + i] & 0xFFFF) << 16);
        });
    }

    /** bfloat16 bits of one float, round to nearest even; NaN stays (quiet) NaN. */
    public static short floatToBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if (Float.isNaN(f)) return (short) ((bits >>> 16) | 0x0040);
        return (short) ((bits + 0x7FFF + ((bits >>> 16) & 1)) >>> 16);
    }

    /**
     * out[i] = (int) x[i]; throws on the first value outside the int range, naming its position
     * (serial, so the reported position is always the first bad one).
     */
    public static void toInt32(CpuPool pool, long[] x, int xOff, int[] out, int oOff, int n) {
        checkSize("n", n);
        checkRange("x", x, xOff, n);
        checkRange("out", out, oOff, n);
        for (int i = 0; i < n; i++) {
            long v = x[xOff + i];
            if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE)
                throw new IllegalArgumentException("value " + v + " at position " + i + " does not fit in int32");
            out[oOff + i] = (int) v;
        }
    }

    // ================================================================ 11. dropout

    private static void checkDropP(float p) {
        if (!(p >= 0 && p <= 1)) throw new IllegalArgumentException("p must be in [0, 1], got " + p);
    }

    /**
     * Writes into mask[0, to − from) the keep decision (1 or 0) of indices indexOffset + [from, to):
     * exactly {@link Philox#keep}, computing one Philox block per four consecutive indices.
     */
    private static void keepMask(long seed, long stream, long indexOffset, int from, int to, float p, float[] mask) {
        int[] block = new int[4];
        int c0 = (int) stream, c1 = (int) (stream >>> 32), k0 = (int) seed, k1 = (int) (seed >>> 32);
        long blockIndex = -1;
        for (int i = from; i < to; i++) {
            long g = indexOffset + i;
            long b = g >>> 2;
            if (b != blockIndex || i == from) {
                Philox.block((int) b, (int) (b >>> 32), c0, c1, k0, k1, block);
                blockIndex = b;
            }
            mask[i - from] = Philox.toUniform(block[(int) (g & 3)]) >= p ? 1f : 0f;
        }
    }

    private static final int DROPOUT_CHUNK = 1024;

    /** out[i] = keep(i) ? x[i]/(1−p) : 0, keep(i) = Philox.keep(seed, stream, indexOffset + i, p); x, out [n]; out may be x. */
    public static void dropout(CpuPool pool, float[] x, int xOff, float[] out, int oOff, int n, float p,
                               long seed, long stream, long indexOffset) {
        checkSize("n", n);
        checkDropP(p);
        checkRange("x", x, xOff, n);
        checkRange("out", out, oOff, n);
        if (p == 0f) {
            if (x != out || xOff != oOff) System.arraycopy(x, xOff, out, oOff, n);
            return;
        }
        float scale = p == 1f ? 0f : (float) (1.0 / (1.0 - p));
        pool.parallelFor(n, grain(pool) / 4, (from, to) -> {
            float[] mask = new float[DROPOUT_CHUNK];
            for (int c = from; c < to; c += DROPOUT_CHUNK) {
                int end = Math.min(to, c + DROPOUT_CHUNK), len = end - c;
                keepMask(seed, stream, indexOffset, c, end, p, mask);
                int j = 0;
                for (int bound = S.loopBound(len); j < bound; j += L) {
                    FloatVector.fromArray(S, x, xOff + c + j).mul(FloatVector.fromArray(S, mask, j)).mul(scale)
                            .intoArray(out, oOff + c + j);
                }
                for (; j < len; j++) out[oOff + c + j] = mask[j] != 0f ? x[xOff + c + j] * scale : 0f;
            }
        });
    }

    /** dx[i] += keep(i) ? dOut[i]/(1−p) : 0, the same mask as {@link #dropout}. */
    public static void dropoutBackward(CpuPool pool, float[] dOut, int dOff, float[] dx, int dxOff, int n, float p,
                                       long seed, long stream, long indexOffset) {
        checkSize("n", n);
        checkDropP(p);
        checkRange("dOut", dOut, dOff, n);
        checkRange("dx", dx, dxOff, n);
        if (p == 0f) {
            axpy(pool, 1f, dOut, dOff, dx, dxOff, n);
            return;
        }
        float scale = p == 1f ? 0f : (float) (1.0 / (1.0 - p));
        pool.parallelFor(n, grain(pool) / 4, (from, to) -> {
            float[] mask = new float[DROPOUT_CHUNK];
            for (int c = from; c < to; c += DROPOUT_CHUNK) {
                int end = Math.min(to, c + DROPOUT_CHUNK), len = end - c;
                keepMask(seed, stream, indexOffset, c, end, p, mask);
                int j = 0;
                for (int bound = S.loopBound(len); j < bound; j += L) {
                    FloatVector.fromArray(S, dOut, dOff + c + j).mul(FloatVector.fromArray(S, mask, j))
                            .fma(FloatVector.broadcast(S, scale), FloatVector.fromArray(S, dx, dxOff + c + j)).intoArray(dx, dxOff + c + j);
                }
                for (; j < len; j++) if (mask[j] != 0f) dx[dxOff + c + j] += dOut[dOff + c + j] * scale;
            }
        });
    }
}
