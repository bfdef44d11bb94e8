package dev.perceiver4j.backend.cpu.ref;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.cpu.Erf;
import dev.perceiver4j.random.Philox;

/**
 * Reference kernels: double precision, arrays at offset 0, plain loops. The oracle that the fast
 * float kernels ({@code FastOps}) and the gradient tests check against.
 *
 * <p>Backward methods accumulate into gradient arrays ({@code dx += ...}); callers zero them.
 * Shapes are row-major; a comment on each kernel gives them.
 */
public final class RefOps {
    private RefOps() {}

    private static final double INV_SQRT2 = 0.7071067811865476;
    private static final double INV_SQRT_2PI = 0.3989422804014327;

    // ================================================================ argument checks

    static void checkSize(String name, long value) {
        if (value < 0) throw new IllegalArgumentException(name + " must be >= 0, got " + value);
    }

    static void checkLen(String name, double[] a, long need) {
        if (a == null) throw new IllegalArgumentException(name + " must not be null");
        if (a.length < need)
            throw new IllegalArgumentException(name + " needs " + need + " elements but has length " + a.length);
    }

    static void checkLen(String name, int[] a, long need) {
        if (a == null) throw new IllegalArgumentException(name + " must not be null");
        if (a.length < need)
            throw new IllegalArgumentException(name + " needs " + need + " elements but has length " + a.length);
    }

    static void checkLen(String name, short[] a, long need) {
        if (a == null) throw new IllegalArgumentException(name + " must not be null");
        if (a.length < need)
            throw new IllegalArgumentException(name + " needs " + need + " elements but has length " + a.length);
    }

    static void checkLen(String name, long[] a, long need) {
        if (a == null) throw new IllegalArgumentException(name + " must not be null");
        if (a.length < need)
            throw new IllegalArgumentException(name + " needs " + need + " elements but has length " + a.length);
    }

    static void checkNotNull(String name, Object o) {
        if (o == null) throw new IllegalArgumentException(name + " must not be null");
    }

    // ================================================================ 1. layer norm

    /**
     * out = (x − mean)·rstd·gamma + beta over the last dim; x, out [rows, d]; gamma, beta [d];
     * mean, rstd [rows] saved for backward (may be null); biased variance, rstd = 1/√(var + eps).
     */
    public static void layerNorm(double[] x, double[] gamma, double[] beta, double[] out,
                                 double[] mean, double[] rstd, int rows, int d, double eps) {
        checkSize("rows", rows);
        checkSize("d", d);
        long n = (long) rows * d;
        checkLen("x", x, n);
        checkLen("gamma", gamma, d);
        checkLen("beta", beta, d);
        checkLen("out", out, n);
        if (mean != null) checkLen("mean", mean, rows);
        if (rstd != null) checkLen("rstd", rstd, rows);
        for (int r = 0; r < rows; r++) {
            int base = r * d;
            double s = 0;
            for (int j = 0; j < d; j++) s += x[base + j];
            double mu = d == 0 ? 0 : s / d;
            double v = 0;
            for (int j = 0; j < d; j++) {
                double c = x[base + j] - mu;
                v += c * c;
            }
            double rs = 1.0 / Math.sqrt((d == 0 ? 0 : v / d) + eps);
            for (int j = 0; j < d; j++) out[base + j] = (x[base + j] - mu) * rs * gamma[j] + beta[j];
            if (mean != null) mean[r] = mu;
            if (rstd != null) rstd[r] = rs;
        }
    }

    /**
     * With xhat = (x − mean)·rstd and g = dOut·gamma: dx += rstd·(g − mean_j(g) − xhat·mean_j(g·xhat)),
     * dGamma += Σ_rows dOut·xhat, dBeta += Σ_rows dOut. dOut, x, dx [rows, d]; gamma, dGamma, dBeta [d];
     * mean, rstd [rows]. dx, dGamma, dBeta may each be null (not wanted).
     */
    public static void layerNormBackward(double[] dOut, double[] x, double[] gamma, double[] mean, double[] rstd,
                                         double[] dx, double[] dGamma, double[] dBeta, int rows, int d) {
        checkSize("rows", rows);
        checkSize("d", d);
        long n = (long) rows * d;
        checkLen("dOut", dOut, n);
        checkLen("x", x, n);
        checkLen("gamma", gamma, d);
        checkLen("mean", mean, rows);
        checkLen("rstd", rstd, rows);
        if (dx != null) checkLen("dx", dx, n);
        if (dGamma != null) checkLen("dGamma", dGamma, d);
        if (dBeta != null) checkLen("dBeta", dBeta, d);
        for (int r = 0; r < rows; r++) {
            int base = r * d;
            double mu = mean[r], rs = rstd[r];
            double sumG = 0, sumGX = 0;
            for (int j = 0; j < d; j++) {
                double xhat = (x[base + j] - mu) * rs;
                double g = dOut[base + j] * gamma[j];
                sumG += g;
                sumGX += g * xhat;
                if (dGamma != null) dGamma[j] += dOut[base + j] * xhat;
                if (dBeta != null) dBeta[j] += dOut[base + j];
            }
            if (dx == null) continue;
            double meanG = sumG / d, meanGX = sumGX / d;
            for (int j = 0; j < d; j++) {
                double xhat = (x[base + j] - mu) * rs;
                double g = dOut[base + j] * gamma[j];
                dx[base + j] += rs * (g - meanG - xhat * meanGX);
            }
        }
    }

    // ================================================================ 2. activations

    /** act(x) for one value. GELU exact: 0.5·x·(1 + erf(x/√2)). */
    public static double activate(Activation act, double x) {
        return switch (act) {
            case NONE -> x;
            case GELU -> 0.5 * x * (1.0 + Erf.erf(x * INV_SQRT2));
            case SQUARED_RELU -> x > 0 ? x * x : 0.0;
            case RELU -> x > 0 ? x : 0.0;
        };
    }

    /** act'(x) for one value; RELU'(0) = SQUARED_RELU'(0) = 0; GELU' = Φ(x) + x·φ(x). */
    public static double activateDerivative(Activation act, double x) {
        return switch (act) {
            case NONE -> 1.0;
            case GELU -> 0.5 * (1.0 + Erf.erf(x * INV_SQRT2)) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);
            case SQUARED_RELU -> x > 0 ? 2 * x : 0.0;
            case RELU -> x > 0 ? 1.0 : 0.0;
        };
    }

    /** out = act(x); x, out [n]; out may be x. */
    public static void activation(Activation act, double[] x, double[] out, int n) {
        checkNotNull("act", act);
        checkSize("n", n);
        checkLen("x", x, n);
        checkLen("out", out, n);
        for (int i = 0; i < n; i++) out[i] = activate(act, x[i]);
    }

    /** dx += dOut·act'(x), x the pre-activation; x, dOut, dx [n]. */
    public static void activationBackward(Activation act, double[] x, double[] dOut, double[] dx, int n) {
        checkNotNull("act", act);
        checkSize("n", n);
        checkLen("x", x, n);
        checkLen("dOut", dOut, n);
        checkLen("dx", dx, n);
        for (int i = 0; i < n; i++) dx[i] += dOut[i] * activateDerivative(act, x[i]);
    }

    // ================================================================ 3. bias + activation epilogue

    /**
     * pre = c + bias (bias broadcast over rows; bias may be null), c = act(pre) in place.
     * c, pre [rows, n]; bias [n]. pre may be null when act == NONE.
     */
    public static void biasActivation(double[] c, int rows, int n, double[] bias, Activation act, double[] pre) {
        checkNotNull("act", act);
        checkSize("rows", rows);
        checkSize("n", n);
        long total = (long) rows * n;
        checkLen("c", c, total);
        if (bias != null) checkLen("bias", bias, n);
        if (pre != null) checkLen("pre", pre, total);
        else if (act != Activation.NONE) throw new IllegalArgumentException("pre must not be null when act is " + act);
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < n; j++) {
                int i = r * n + j;
                double p = c[i] + (bias != null ? bias[j] : 0.0);
                if (pre != null) pre[i] = p;
                c[i] = activate(act, p);
            }
        }
    }

    /**
     * dPre = dOut·act'(pre) (written, not accumulated), dBias += Σ_rows dPre (may be null).
     * dOut, pre, dPre [rows, n]; dBias [n]. dPre may be dOut; pre may be null when act == NONE.
     */
    public static void biasActivationBackward(double[] dOut, double[] pre, int rows, int n, Activation act,
                                              double[] dPre, double[] dBias) {
        checkNotNull("act", act);
        checkSize("rows", rows);
        checkSize("n", n);
        long total = (long) rows * n;
        checkLen("dOut", dOut, total);
        if (act != Activation.NONE) checkLen("pre", pre, total);
        checkLen("dPre", dPre, total);
        if (dBias != null) checkLen("dBias", dBias, n);
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < n; j++) {
                int i = r * n + j;
                double g = act == Activation.NONE ? dOut[i] : dOut[i] * activateDerivative(act, pre[i]);
                dPre[i] = g;
                if (dBias != null) dBias[j] += g;
            }
        }
    }

    // ================================================================ 4. rotary position embedding

    static void checkRotary(int rows, int heads, int headDim, int rot) {
        checkSize("rows", rows);
        checkSize("heads", heads);
        checkSize("headDim", headDim);
        checkSize("rot", rot);
        if ((rot & 1) != 0) throw new IllegalArgumentException("rot must be even, got " + rot);
        if (rot > headDim) throw new IllegalArgumentException("rot must be <= headDim " + headDim + ", got " + rot);
    }

    /**
     * Interleaved RoPE: in each head, pair (x[2i], x[2i+1]) for 2i &lt; rot rotates by
     * θ = positions[r]·invFreq[i]: (x0·cosθ − x1·sinθ, x1·cosθ + x0·sinθ); other channels copy.
     * x, out [rows, heads·headDim]; positions [rows]; invFreq [rot/2]. out may be x.
     */
    public static void rotary(double[] x, double[] out, int[] positions, double[] invFreq,
                              int rows, int heads, int headDim, int rot) {
        checkRotary(rows, heads, headDim, rot);
        int width = heads * headDim;
        long total = (long) rows * width;
        checkLen("x", x, total);
        checkLen("out", out, total);
        checkLen("positions", positions, rows);
        checkLen("invFreq", invFreq, rot / 2);
        for (int r = 0; r < rows; r++) {
            for (int h = 0; h < heads; h++) {
                int base = r * width + h * headDim;
                for (int i = 0; i < rot / 2; i++) {
                    double theta = positions[r] * invFreq[i];
                    double cs = Math.cos(theta), sn = Math.sin(theta);
                    double x0 = x[base + 2 * i], x1 = x[base + 2 * i + 1];
                    out[base + 2 * i] = x0 * cs - x1 * sn;
                    out[base + 2 * i + 1] = x1 * cs + x0 * sn;
                }
                for (int j = rot; j < headDim; j++) out[base + j] = x[base + j];
            }
        }
    }

    /** dx += dOut rotated by −θ (the transpose of the forward rotation); shapes as {@link #rotary}. */
    public static void rotaryBackward(double[] dOut, double[] dx, int[] positions, double[] invFreq,
                                      int rows, int heads, int headDim, int rot) {
        checkRotary(rows, heads, headDim, rot);
        int width = heads * headDim;
        long total = (long) rows * width;
        checkLen("dOut", dOut, total);
        checkLen("dx", dx, total);
        checkLen("positions", positions, rows);
        checkLen("invFreq", invFreq, rot / 2);
        for (int r = 0; r < rows; r++) {
            for (int h = 0; h < heads; h++) {
                int base = r * width + h * headDim;
                for (int i = 0; i < rot / 2; i++) {
                    double theta = positions[r] * invFreq[i];
                    double cs = Math.cos(theta), sn = Math.sin(theta);
                    double g0 = dOut[base + 2 * i], g1 = dOut[base + 2 * i + 1];
                    dx[base + 2 * i] += g0 * cs + g1 * sn;
                    dx[base + 2 * i + 1] += g1 * cs - g0 * sn;
                }
                for (int j = rot; j < headDim; j++) dx[base + j] += dOut[base + j];
            }
        }
    }

    // ================================================================ 5. embedding

    static void checkIds(int[] ids, int off, int n, int vocab) {
        for (int i = 0; i < n; i++) {
            int id = ids[off + i];
            if (id < 0 || id >= vocab)
                throw new IllegalArgumentException("token id " + id + " at position " + i
                        + " is outside the vocabulary [0, " + vocab + ")");
        }
    }

    /** out[i] = table[ids[i]]; table [vocab, d], ids [n], out [n, d]. */
    public static void embedding(double[] table, int[] ids, double[] out, int n, int vocab, int d) {
        checkSize("n", n);
        checkSize("vocab", vocab);
        checkSize("d", d);
        checkLen("table", table, (long) vocab * d);
        checkLen("ids", ids, n);
        checkLen("out", out, (long) n * d);
        checkIds(ids, 0, n, vocab);
        for (int i = 0; i < n; i++) System.arraycopy(table, ids[i] * d, out, i * d, d);
    }

    /** dTable[ids[i]] += dOut[i]; dOut [n, d], ids [n], dTable [vocab, d]. */
    public static void embeddingBackward(double[] dOut, int[] ids, double[] dTable, int n, int vocab, int d) {
        checkSize("n", n);
        checkSize("vocab", vocab);
        checkSize("d", d);
        checkLen("dOut", dOut, (long) n * d);
        checkLen("ids", ids, n);
        checkLen("dTable", dTable, (long) vocab * d);
        checkIds(ids, 0, n, vocab);
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < d; j++) dTable[ids[i] * d + j] += dOut[i * d + j];
        }
    }

    // ================================================================ 6. softmax cross-entropy

    static void checkTargets(int[] targets, int off, int rows, int vocab, int ignoreIndex) {
        for (int r = 0; r < rows; r++) {
            int t = targets[off + r];
            if (t != ignoreIndex && (t < 0 || t >= vocab))
                throw new IllegalArgumentException("target " + t + " at row " + r + " is outside [0, " + vocab
                        + ") and is not the ignore index " + ignoreIndex);
        }
    }

    /**
     * Mean over rows whose target is not ignoreIndex of (lse_r − logits[r, t_r]) + zLoss·lse_r²,
     * lse_r = log Σ_j exp(logits[r, j]); 0 when every row is ignored. logits [rows, vocab];
     * targets, lse [rows] (lse written for every row).
     */
    public static double crossEntropy(double[] logits, int[] targets, int rows, int vocab, int ignoreIndex,
                                      double zLoss, double[] lse) {
        checkSize("rows", rows);
        checkSize("vocab", vocab);
        checkLen("logits", logits, (long) rows * vocab);
        checkLen("targets", targets, rows);
        checkLen("lse", lse, rows);
        checkTargets(targets, 0, rows, vocab, ignoreIndex);
        double total = 0;
        int count = 0;
        for (int r = 0; r < rows; r++) {
            int base = r * vocab;
            double max = Double.NEGATIVE_INFINITY;
            for (int j = 0; j < vocab; j++) max = Math.max(max, logits[base + j]);
            double s = 0;
            for (int j = 0; j < vocab; j++) s += Math.exp(logits[base + j] - max);
            double l = max + Math.log(s);
            lse[r] = l;
            int t = targets[r];
            if (t == ignoreIndex) continue;
            total += l - logits[base + t] + zLoss * l * l;
            count++;
        }
        return count == 0 ? 0.0 : total / count;
    }

    /**
     * dLogits[r] += dLoss/count·(softmax_r·(1 + 2·zLoss·lse_r) − onehot(t_r)) for rows not ignored;
     * count = number of such rows. Shapes as {@link #crossEntropy}.
     */
    public static void crossEntropyBackward(double dLoss, double[] logits, int[] targets, double[] lse,
                                            int rows, int vocab, int ignoreIndex, double zLoss, double[] dLogits) {
        checkSize("rows", rows);
        checkSize("vocab", vocab);
        checkLen("logits", logits, (long) rows * vocab);
        checkLen("targets", targets, rows);
        checkLen("lse", lse, rows);
        checkLen("dLogits", dLogits, (long) rows * vocab);
        checkTargets(targets, 0, rows, vocab, ignoreIndex);
        int count = 0;
        for (int r = 0; r < rows; r++) if (targets[r] != ignoreIndex) count++;
        if (count == 0) return;
        double scale = dLoss / count;
        for (int r = 0; r < rows; r++) {
            int t = targets[r];
            if (t == ignoreIndex) continue;
            int base = r * vocab;
            double zFactor = 1.0 + 2.0 * zLoss * lse[r];
            for (int j = 0; j < vocab; j++) {
                double p = Math.exp(logits[base + j] - lse[r]);
                dLogits[base + j] += scale * (p * zFactor - (j == t ? 1.0 : 0.0));
            }
        }
    }

    // ================================================================ 7. softmax

    /** out[r] = softmax(x[r]) over the last dim; x, out [rows, n]; out may be x. */
    public static void softmax(double[] x, double[] out, int rows, int n) {
        checkSize("rows", rows);
        checkSize("n", n);
        checkLen("x", x, (long) rows * n);
        checkLen("out", out, (long) rows * n);
        for (int r = 0; r < rows; r++) {
            int base = r * n;
            double max = Double.NEGATIVE_INFINITY;
            for (int j = 0; j < n; j++) max = Math.max(max, x[base + j]);
            double s = 0;
            for (int j = 0; j < n; j++) {
                double e = Math.exp(x[base + j] - max);
                out[base + j] = e;
                s += e;
            }
            for (int j = 0; j < n; j++) out[base + j] /= s;
        }
    }

    /** dx += y·(dOut − Σ_j dOut·y) with y = softmax output; y, dOut, dx [rows, n]. */
    public static void softmaxBackward(double[] y, double[] dOut, double[] dx, int rows, int n) {
        checkSize("rows", rows);
        checkSize("n", n);
        long total = (long) rows * n;
        checkLen("y", y, total);
        checkLen("dOut", dOut, total);
        checkLen("dx", dx, total);
        for (int r = 0; r < rows; r++) {
            int base = r * n;
            double dot = 0;
            for (int j = 0; j < n; j++) dot += dOut[base + j] * y[base + j];
            for (int j = 0; j < n; j++) dx[base + j] += y[base + j] * (dOut[base + j] - dot);
        }
    }

    // ================================================================ 8. elementwise

    static void checkBroadcast(int n, int bLen) {
        checkSize("n", n);
        if (bLen <= 0) throw new IllegalArgumentException("bLen must be > 0, got " + bLen);
        if (n % bLen != 0) throw new IllegalArgumentException("bLen " + bLen + " must divide n " + n);
    }

    /** out[i] = a[i] + b[i mod bLen]; a, out [n]; b [bLen], bLen divides n. out may be a. */
    public static void add(double[] a, double[] b, double[] out, int n, int bLen) {
        checkBroadcast(n, bLen);
        checkLen("a", a, n);
        checkLen("b", b, bLen);
        checkLen("out", out, n);
        for (int i = 0; i < n; i++) out[i] = a[i] + b[i % bLen];
    }

    /** dA += dOut; dB[j] += Σ_k dOut[k·bLen + j]; either may be null. */
    public static void addBackward(double[] dOut, double[] dA, double[] dB, int n, int bLen) {
        checkBroadcast(n, bLen);
        checkLen("dOut", dOut, n);
        if (dA != null) checkLen("dA", dA, n);
        if (dB != null) checkLen("dB", dB, bLen);
        for (int i = 0; i < n; i++) {
            if (dA != null) dA[i] += dOut[i];
            if (dB != null) dB[i % bLen] += dOut[i];
        }
    }

    /** out[i] = a[i]·b[i mod bLen]; shapes as {@link #add}. out may be a. */
    public static void mul(double[] a, double[] b, double[] out, int n, int bLen) {
        checkBroadcast(n, bLen);
        checkLen("a", a, n);
        checkLen("b", b, bLen);
        checkLen("out", out, n);
        for (int i = 0; i < n; i++) out[i] = a[i] * b[i % bLen];
    }

    /** dA[i] += dOut[i]·b[i mod bLen]; dB[j] += Σ_k dOut[k·bLen + j]·a[k·bLen + j]; either may be null. */
    public static void mulBackward(double[] dOut, double[] a, double[] b, double[] dA, double[] dB, int n, int bLen) {
        checkBroadcast(n, bLen);
        checkLen("dOut", dOut, n);
        checkLen("a", a, n);
        checkLen("b", b, bLen);
        if (dA != null) checkLen("dA", dA, n);
        if (dB != null) checkLen("dB", dB, bLen);
        for (int i = 0; i < n; i++) {
            if (dA != null) dA[i] += dOut[i] * b[i % bLen];
            if (dB != null) dB[i % bLen] += dOut[i] * a[i];
        }
    }

    /** out = alpha·x; x, out [n]. */
    public static void scale(double[] x, double alpha, double[] out, int n) {
        checkSize("n", n);
        checkLen("x", x, n);
        checkLen("out", out, n);
        for (int i = 0; i < n; i++) out[i] = alpha * x[i];
    }

    /** y += alpha·x; x, y [n]. */
    public static void axpy(double alpha, double[] x, double[] y, int n) {
        checkSize("n", n);
        checkLen("x", x, n);
        checkLen("y", y, n);
        for (int i = 0; i < n; i++) y[i] += alpha * x[i];
    }

    /** x[i] = v; x [n]. */
    public static void fill(double[] x, double v, int n) {
        checkSize("n", n);
        checkLen("x", x, n);
        for (int i = 0; i < n; i++) x[i] = v;
    }

    /** Σ x[i]²; x [n]. */
    public static double sumSquares(double[] x, int n) {
        checkSize("n", n);
        checkLen("x", x, n);
        double s = 0;
        for (int i = 0; i < n; i++) s += x[i] * x[i];
        return s;
    }

    /** out[j] += Σ_r x[r, j]; x [rows, n], out [n]. */
    public static void sumRows(double[] x, int rows, int n, double[] out) {
        checkSize("rows", rows);
        checkSize("n", n);
        checkLen("x", x, (long) rows * n);
        checkLen("out", out, n);
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < n; j++) out[j] += x[r * n + j];
        }
    }

    // ================================================================ 9. AdamW

    /**
     * One AdamW step (PyTorch, decoupled decay): p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g;
     * v ← β2·v + (1−β2)·g²; p ← p − lr·(m/(1−β1^step)) / (√(v/(1−β2^step)) + eps). All arrays [n]; step ≥ 1.
     */
    public static void adamw(double[] param, double[] grad, double[] m, double[] v, int n, double lr,
                             double beta1, double beta2, double eps, double weightDecay, long step) {
        checkSize("n", n);
        if (step < 1) throw new IllegalArgumentException("step must be >= 1, got " + step);
        checkLen("param", param, n);
        checkLen("grad", grad, n);
        checkLen("m", m, n);
        checkLen("v", v, n);
        double bc1 = 1.0 - Math.pow(beta1, step);
        double bc2 = 1.0 - Math.pow(beta2, step);
        for (int i = 0; i < n; i++) {
            double g = grad[i];
            param[i] *= 1.0 - lr * weightDecay;
            m[i] = beta1 * m[i] + (1.0 - beta1) * g;
            v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
            param[i] -= lr * (m[i] / bc1) / (Math.sqrt(v[i] / bc2) + eps);
        }
    }

    // ================================================================ 10. casts

    /** bfloat16 bits of a float, round to nearest even; NaN stays (quiet) NaN, ±Inf kept. */
    public static short floatToBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if (Float.isNaN(f)) return (short) ((bits >>> 16) | 0x0040);
        int rounded = bits + 0x7FFF + ((bits >>> 16) & 1);
        return (short) (rounded >>> 16);
    }

    /** The float a bfloat16 bit pattern stands for (exact). */
    public static float bf16ToFloat(short b) {
        return Float.intBitsToFloat((b & 0xFFFF) << 16);
    }

    /** out[i] = bf16(x[i]): x is first rounded to float (exact for values that came from float). */
    public static void toBf16(double[] x, short[] out, int n) {
        checkSize("n", n);
        checkLen("x", x, n);
        checkLen("out", out, n);
        for (int i = 0; i < n; i++) out[i] = floatToBf16((float) x[i]);
    }

    /** out[i] = the value of bf16 bits x[i]. */
    public static void fromBf16(short[] x, double[] out, int n) {
        checkSize("n", n);
        checkLen("x", x, n);
        checkLen("out", out, n);
        for (int i = 0; i < n; i++) out[i] = bf16ToFloat(x[i]);
    }

    /** out[i] = (int) x[i], throwing on the first value outside the int range (naming its position). */
    public static void toInt32(long[] x, int[] out, int n) {
        checkSize("n", n);
        checkLen("x", x, n);
        checkLen("out", out, n);
        for (int i = 0; i < n; i++) {
            long v = x[i];
            if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE)
                throw new IllegalArgumentException("value " + v + " at position " + i + " does not fit in int32");
            out[i] = (int) v;
        }
    }

    // ================================================================ 11. dropout

    static void checkDropP(double p) {
        if (!(p >= 0 && p <= 1)) throw new IllegalArgumentException("p must be in [0, 1], got " + p);
    }

    /** out[i] = keep(i) ? x[i]/(1−p) : 0, keep(i) = Philox.keep(seed, stream, indexOffset + i, p); x, out [n]. */
    public static void dropout(double[] x, double[] out, int n, double p, long seed, long stream, long indexOffset) {
        checkSize("n", n);
        checkDropP(p);
        checkLen("x", x, n);
        checkLen("out", out, n);
        float pf = (float) p;
        for (int i = 0; i < n; i++) {
            boolean keep = p == 0 || Philox.keep(seed, stream, indexOffset + i, pf);
            out[i] = keep ? x[i] / (1.0 - p) : 0.0;
        }
    }

    /** dx[i] += keep(i) ? dOut[i]/(1−p) : 0, the same mask as {@link #dropout}. */
    public static void dropoutBackward(double[] dOut, double[] dx, int n, double p, long seed, long stream,
                                       long indexOffset) {
        checkSize("n", n);
        checkDropP(p);
        checkLen("dOut", dOut, n);
        checkLen("dx", dx, n);
        float pf = (float) p;
        for (int i = 0; i < n; i++) {
            boolean keep = p == 0 || Philox.keep(seed, stream, indexOffset + i, pf);
            if (keep) dx[i] += dOut[i] / (1.0 - p);
        }
    }
}
