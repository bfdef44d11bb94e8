package dev.perceiver4j.backend.cpu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.cpu.fast.FastOps;
import dev.perceiver4j.backend.cpu.ref.RefOps;
import dev.perceiver4j.random.Philox;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * FastOps (float, vectorised, threaded) against RefOps (double) on random inputs: sizes with
 * vector tails (1, 3, 17, 63, 64, 65, 1000) and sizes large enough to split over threads, nonzero
 * offsets (each array is padded with a sentinel before and after its region, and the padding must
 * stay untouched), and pools of 1, 2 and 3 threads. An element passes when
 * |fast − ref| ≤ atol + rtol·|ref|; each test states its tolerances.
 */
class FastOpsTest {
    private static final int[] SIZES = {1, 3, 17, 63, 64, 65, 1000, 70_001};
    private static final int[][] ROW_SHAPES = {{1, 1}, {3, 17}, {5, 63}, {2, 64}, {7, 65}, {4, 1000}, {1000, 65}, {300, 129}};
    private static final float SENTINEL = -12345.678f;
    private static final int PAD = 7;

    private static CpuPool[] pools;
    private final Random rnd = new Random(99);
    private int nextOffset;

    @BeforeAll
    static void createPools() {
        pools = new CpuPool[] {CpuPool.create(1), CpuPool.create(2), CpuPool.create(3)};
    }

    @AfterAll
    static void closePools() {
        for (CpuPool p : pools) p.close();
    }

    // ---------------------------------------------------------------- helpers

    /** A float slab: values in [off, off + n), sentinels around them; ref holds the same values in double. */
    private final class Slab {
        final float[] a;
        final int off, n;

        Slab(int n, double scale) {
            this.n = n;
            this.off = 1 + (nextOffset++ % 5);
            this.a = new float[off + n + PAD];
            Arrays.fill(a, SENTINEL);
            for (int i = 0; i < n; i++) a[off + i] = (float) (scale * (2 * rnd.nextDouble() - 1));
        }

        Slab filled(float v) {
            Arrays.fill(a, off, off + n, v);
            return this;
        }

        double[] ref() {
            double[] d = new double[n];
            for (int i = 0; i < n; i++) d[i] = a[off + i];
            return d;
        }

        Slab copy() {
            return new Slab(this);
        }

        private Slab(Slab src) {
            this.n = src.n;
            this.off = src.off;
            this.a = src.a.clone();
        }

        void assertClose(String what, double[] expected, double atol, double rtol) {
            for (int i = 0; i < n; i++) {
                double e = expected[i];
                assertThat((double) a[off + i]).as("%s[%d] (n=%d)", what, i, n).isCloseTo(e, within(atol + rtol * Math.abs(e)));
            }
            for (int i = 0; i < off; i++) assertThat(a[i]).as("%s guard before", what).isEqualTo(SENTINEL);
            for (int i = off + n; i < a.length; i++) assertThat(a[i]).as("%s guard after", what).isEqualTo(SENTINEL);
        }
    }

    private Slab slab(int n, double scale) {
        return new Slab(n, scale);
    }

    private int[] ints(int n, int bound, int off) {
        int[] a = new int[off + n + 2];
        Arrays.fill(a, -777);
        for (int i = 0; i < n; i++) a[off + i] = rnd.nextInt(bound);
        return a;
    }

    // ---------------------------------------------------------------- 1. layer norm

    @Test
    void layerNormForwardAndBackward() {
        for (int[] shape : ROW_SHAPES) {
            int rows = shape[0], d = shape[1];
            for (CpuPool pool : pools) {
                Slab x = slab(rows * d, 2), gamma = slab(d, 1.5), beta = slab(d, 1), out = slab(rows * d, 0);
                Slab mean = slab(rows, 0), rstd = slab(rows, 0);
                FastOps.layerNorm(pool, x.a, x.off, gamma.a, gamma.off, beta.a, beta.off, out.a, out.off,
                        mean.a, mean.off, rstd.a, rstd.off, rows, d, 1e-5f);
                double[] rOut = new double[rows * d], rMean = new double[rows], rRstd = new double[rows];
                RefOps.layerNorm(x.ref(), gamma.ref(), beta.ref(), rOut, rMean, rRstd, rows, d, 1e-5);
                out.assertClose("out", rOut, 2e-5, 2e-5);
                mean.assertClose("mean", rMean, 1e-5, 1e-5);
                rstd.assertClose("rstd", rRstd, 1e-5, 1e-5);

                Slab g = slab(rows * d, 1), dx = slab(rows * d, 1), dGamma = slab(d, 1), dBeta = slab(d, 1);
                double[] rDx = dx.ref(), rDGamma = dGamma.ref(), rDBeta = dBeta.ref();
                FastOps.layerNormBackward(pool, g.a, g.off, x.a, x.off, gamma.a, gamma.off, mean.a, mean.off,
                        rstd.a, rstd.off, dx.a, dx.off, dGamma.a, dGamma.off, dBeta.a, dBeta.off, rows, d);
                RefOps.layerNormBackward(g.ref(), x.ref(), gamma.ref(), mean.ref(), rstd.ref(), rDx, rDGamma, rDBeta, rows, d);
                dx.assertClose("dx", rDx, 1e-4, 1e-4);
                double sumTol = 2e-6 * Math.sqrt(rows) + 1e-5;
                dGamma.assertClose("dGamma", rDGamma, sumTol * 4, 1e-5);
                dBeta.assertClose("dBeta", rDBeta, sumTol, 1e-5);
            }
        }
    }

    // ---------------------------------------------------------------- 2. activations

    @ParameterizedTest
    @EnumSource(Activation.class)
    void activationForwardAndBackward(Activation act) {
        for (int n : SIZES) {
            for (CpuPool pool : pools) {
                Slab x = slab(n, 6), out = slab(n, 0);
                FastOps.activation(pool, act, x.a, x.off, out.a, out.off, n);
                double[] ref = new double[n];
                RefOps.activation(act, x.ref(), ref, n);
                out.assertClose("out " + act, ref, 1e-6, 1e-6);

                Slab inPlace = x.copy();
                FastOps.activation(pool, act, inPlace.a, inPlace.off, inPlace.a, inPlace.off, n);
                inPlace.assertClose("in place " + act, ref, 1e-6, 1e-6);

                Slab g = slab(n, 1), dx = slab(n, 1);
                double[] rDx = dx.ref();
                FastOps.activationBackward(pool, act, x.a, x.off, g.a, g.off, dx.a, dx.off, n);
                RefOps.activationBackward(act, x.ref(), g.ref(), rDx, n);
                dx.assertClose("dx " + act, rDx, 2e-6, 2e-6);
            }
        }
    }

    // ---------------------------------------------------------------- 3. bias + activation

    @ParameterizedTest
    @EnumSource(Activation.class)
    void biasActivationForwardAndBackward(Activation act) {
        for (int[] shape : ROW_SHAPES) {
            int rows = shape[0], n = shape[1];
            for (CpuPool pool : pools) {
                for (boolean withBias : new boolean[] {true, false}) {
                    Slab c = slab(rows * n, 4), bias = slab(n, 1), pre = slab(rows * n, 0);
                    double[] rc = c.ref(), rPre = new double[rows * n];
                    RefOps.biasActivation(rc, rows, n, withBias ? bias.ref() : null, act, rPre);
                    FastOps.biasActivation(pool, c.a, c.off, rows, n, withBias ? bias.a : null, bias.off, act, pre.a, pre.off);
                    c.assertClose("c " + act, rc, 1e-6, 1e-6);
                    pre.assertClose("pre " + act, rPre, 5e-7, 1.2e-7);

                    Slab g = slab(rows * n, 1), dPre = slab(rows * n, 1), dBias = slab(n, 1);
                    double[] rDPre = new double[rows * n], rDBias = dBias.ref();
                    FastOps.biasActivationBackward(pool, g.a, g.off, pre.a, pre.off, rows, n, act, dPre.a, dPre.off,
                            dBias.a, dBias.off);
                    RefOps.biasActivationBackward(g.ref(), rPre, rows, n, act, rDPre, rDBias);
                    dPre.assertClose("dPre " + act, rDPre, 2e-6, 2e-6);
                    dBias.assertClose("dBias " + act, rDBias, 5e-6 * Math.sqrt(rows) + 1e-5, 1e-5);
                }
            }
        }
    }

    @Test
    void biasResidualIsTheBiasPassThenTheAddPassInOne() {
        // The same bits as biasActivation (c + bias) followed by add (+ res); the padding around every region untouched.
        for (int[] shape : ROW_SHAPES) {
            int rows = shape[0], n = shape[1];
            for (CpuPool pool : pools) {
                for (boolean withBias : new boolean[] {true, false}) {
                    Slab c = slab(rows * n, 4), bias = slab(n, 1), res = slab(rows * n, 3);
                    float[] twoPasses = c.a.clone();
                    FastOps.biasActivation(pool, twoPasses, c.off, rows, n, withBias ? bias.a : null, bias.off, Activation.NONE, null, 0);
                    FastOps.add(pool, twoPasses, c.off, res.a, res.off, twoPasses, c.off, rows * n, rows * n);
                    double[] want = new double[rows * n];
                    for (int i = 0; i < want.length; i++) want[i] = twoPasses[c.off + i];
                    FastOps.biasResidual(pool, c.a, c.off, rows, n, withBias ? bias.a : null, bias.off, res.a, res.off);
                    c.assertClose("c + bias + res, " + rows + "x" + n, want, 0, 0);
                    assertThat(c.a).as("bits, padding included").isEqualTo(twoPasses);
                }
            }
        }
        assertThatThrownBy(() -> FastOps.biasResidual(pools[1], new float[12], 0, 3, 4, null, 0, new float[11], 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("res");
    }

    @Test
    void biasActivationBackwardNoneMayAliasDOut() {
        int rows = 9, n = 33;
        Slab g = slab(rows * n, 1), dBias = slab(n, 0).filled(0f);
        double[] rDPre = new double[rows * n], rDBias = new double[n];
        RefOps.biasActivationBackward(g.ref(), null, rows, n, Activation.NONE, rDPre, rDBias);
        FastOps.biasActivationBackward(pools[2], g.a, g.off, null, 0, rows, n, Activation.NONE, g.a, g.off, dBias.a, dBias.off);
        g.assertClose("dPre", rDPre, 0, 0);
        dBias.assertClose("dBias", rDBias, 1e-5, 1e-6);
    }

    // ---------------------------------------------------------------- 4. rotary

    @Test
    void rotaryForwardAndBackward() {
        int[][] shapes = {{1, 1, 2, 2}, {3, 2, 6, 4}, {5, 3, 17, 16}, {4, 2, 64, 64}, {7, 4, 65, 32}, {600, 8, 64, 32}, {2, 1, 66, 66}};
        for (int[] s : shapes) {
            int rows = s[0], heads = s[1], headDim = s[2], rot = s[3], width = heads * headDim;
            for (CpuPool pool : pools) {
                Slab x = slab(rows * width, 2), out = slab(rows * width, 0);
                int pOff = 2;
                int[] positions = ints(rows, 8192, pOff);
                Slab invFreq = slab(rot / 2, 0);
                for (int i = 0; i < rot / 2; i++) invFreq.a[invFreq.off + i] = (float) Math.pow(10000, -2.0 * i / rot);
                FastOps.rotary(pool, x.a, x.off, out.a, out.off, positions, pOff, invFreq.a, invFreq.off, rows, heads, headDim, rot);
                int[] pos0 = Arrays.copyOfRange(positions, pOff, pOff + rows);
                double[] rOut = new double[rows * width];
                RefOps.rotary(x.ref(), rOut, pos0, invFreq.ref(), rows, heads, headDim, rot);
                out.assertClose("out", rOut, 1e-6, 1e-6);

                Slab inPlace = x.copy();
                FastOps.rotary(pool, inPlace.a, inPlace.off, inPlace.a, inPlace.off, positions, pOff, invFreq.a, invFreq.off,
                        rows, heads, headDim, rot);
                inPlace.assertClose("in place", rOut, 1e-6, 1e-6);

                Slab g = slab(rows * width, 1), dx = slab(rows * width, 1);
                double[] rDx = dx.ref();
                FastOps.rotaryBackward(pool, g.a, g.off, dx.a, dx.off, positions, pOff, invFreq.a, invFreq.off, rows, heads, headDim, rot);
                RefOps.rotaryBackward(g.ref(), rDx, pos0, invFreq.ref(), rows, heads, headDim, rot);
                dx.assertClose("dx", rDx, 1e-6, 1e-6);
            }
        }
    }

    // ---------------------------------------------------------------- 5. embedding

    @Test
    void embeddingForwardAndBackward() {
        int[][] shapes = {{1, 1, 1}, {3, 5, 17}, {64, 7, 63}, {65, 300, 64}, {1000, 50, 65}, {2000, 97, 40}};
        for (int[] s : shapes) {
            int n = s[0], vocab = s[1], d = s[2];
            for (CpuPool pool : pools) {
                Slab table = slab(vocab * d, 1), out = slab(n * d, 0);
                int iOff = 3;
                int[] ids = ints(n, vocab, iOff);
                int[] ids0 = Arrays.copyOfRange(ids, iOff, iOff + n);
                FastOps.embedding(pool, table.a, table.off, ids, iOff, out.a, out.off, n, vocab, d);
                double[] rOut = new double[n * d];
                RefOps.embedding(table.ref(), ids0, rOut, n, vocab, d);
                out.assertClose("out", rOut, 0, 0);

                Slab g = slab(n * d, 1), dTable = slab(vocab * d, 1);
                double[] rDTable = dTable.ref();
                FastOps.embeddingBackward(pool, g.a, g.off, ids, iOff, dTable.a, dTable.off, n, vocab, d);
                RefOps.embeddingBackward(g.ref(), ids0, rDTable, n, vocab, d);
                dTable.assertClose("dTable", rDTable, 1e-5, 1e-5);
            }
        }
    }

    @Test
    void embeddingRejectsOutOfRangeIdNamingPosition() {
        int n = 20, vocab = 262, d = 4;
        int[] ids = new int[n];
        ids[17] = 300;
        float[] table = new float[vocab * d], out = new float[n * d];
        assertThatThrownBy(() -> FastOps.embedding(pools[0], table, 0, ids, 0, out, 0, n, vocab, d))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("token id 300 at position 17 is outside the vocabulary [0, 262)");
        assertThatThrownBy(() -> RefOps.embedding(new double[vocab * d], ids, new double[n * d], n, vocab, d))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("token id 300 at position 17 is outside the vocabulary [0, 262)");
    }

    // ---------------------------------------------------------------- 6. cross-entropy

    @Test
    void crossEntropyForwardAndBackward() {
        int[][] shapes = {{1, 1}, {3, 17}, {5, 63}, {2, 64}, {7, 65}, {4, 1000}, {300, 129}, {1000, 33}};
        int ignore = -100;
        for (int[] s : shapes) {
            int rows = s[0], vocab = s[1];
            for (CpuPool pool : pools) {
                for (float zLoss : new float[] {0f, 1e-3f}) {
                    Slab logits = slab(rows * vocab, 8), lse = slab(rows, 0);
                    int tOff = 1;
                    int[] targets = ints(rows, vocab, tOff);
                    for (int r = 0; r < rows; r += 3) targets[tOff + r] = ignore;
                    int[] t0 = Arrays.copyOfRange(targets, tOff, tOff + rows);
                    double loss = FastOps.crossEntropy(pool, logits.a, logits.off, targets, tOff, rows, vocab, ignore, zLoss,
                            lse.a, lse.off);
                    double[] rLse = new double[rows];
                    double rLoss = RefOps.crossEntropy(logits.ref(), t0, rows, vocab, ignore, zLoss, rLse);
                    assertThat(loss).isCloseTo(rLoss, within(1e-5 * Math.max(1, Math.abs(rLoss))));
                    lse.assertClose("lse", rLse, 1e-5, 1e-6);

                    Slab dLogits = slab(rows * vocab, 1);
                    double[] rD = dLogits.ref();
                    FastOps.crossEntropyBackward(pool, 1.5f, logits.a, logits.off, targets, tOff, lse.a, lse.off, rows, vocab,
                            ignore, zLoss, dLogits.a, dLogits.off);
                    RefOps.crossEntropyBackward(1.5, logits.ref(), t0, lse.ref(), rows, vocab, ignore, zLoss, rD);
                    dLogits.assertClose("dLogits", rD, 1e-6, 1e-5);
                }
            }
        }
    }

    @Test
    void crossEntropyAllIgnoredIsZeroAndBadTargetNamesRow() {
        float[] logits = new float[12], lse = new float[3];
        int[] all = {-1, -1, -1};
        assertThat(FastOps.crossEntropy(pools[0], logits, 0, all, 0, 3, 4, -1, 0f, lse, 0)).isEqualTo(0.0);
        float[] d = new float[12];
        FastOps.crossEntropyBackward(pools[0], 1f, logits, 0, all, 0, lse, 0, 3, 4, -1, 0f, d, 0);
        assertThat(d).containsOnly(0f);
        int[] bad = {0, 4, 1};
        assertThatThrownBy(() -> FastOps.crossEntropy(pools[0], logits, 0, bad, 0, 3, 4, -1, 0f, lse, 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("row 1").hasMessageContaining("target 4");
    }

    // ---------------------------------------------------------------- 7. softmax

    @Test
    void softmaxForwardAndBackward() {
        for (int[] shape : ROW_SHAPES) {
            int rows = shape[0], n = shape[1];
            for (CpuPool pool : pools) {
                Slab x = slab(rows * n, 10), y = slab(rows * n, 0);
                FastOps.softmax(pool, x.a, x.off, y.a, y.off, rows, n);
                double[] rY = new double[rows * n];
                RefOps.softmax(x.ref(), rY, rows, n);
                y.assertClose("y", rY, 1e-7, 1e-5);

                Slab g = slab(rows * n, 1), dx = slab(rows * n, 1);
                double[] rDx = dx.ref();
                FastOps.softmaxBackward(pool, y.a, y.off, g.a, g.off, dx.a, dx.off, rows, n);
                RefOps.softmaxBackward(y.ref(), g.ref(), rDx, rows, n);
                dx.assertClose("dx", rDx, 1e-6, 1e-5);
            }
        }
    }

    // ---------------------------------------------------------------- 8. elementwise

    @Test
    void addAndMulWithBroadcastForwardAndBackward() {
        for (int n : SIZES) {
            for (int bLen : new int[] {1, n, divisorNear(n, 17), divisorNear(n, 64)}) {
                for (CpuPool pool : pools) {
                    Slab a = slab(n, 2), b = slab(bLen, 2), out = slab(n, 0);
                    double[] ref = new double[n];
                    FastOps.add(pool, a.a, a.off, b.a, b.off, out.a, out.off, n, bLen);
                    RefOps.add(a.ref(), b.ref(), ref, n, bLen);
                    out.assertClose("add", ref, 0, 1e-7);
                    FastOps.mul(pool, a.a, a.off, b.a, b.off, out.a, out.off, n, bLen);
                    RefOps.mul(a.ref(), b.ref(), ref, n, bLen);
                    out.assertClose("mul", ref, 0, 1e-7);

                    Slab g = slab(n, 1), dA = slab(n, 1), dB = slab(bLen, 1);
                    double[] rDA = dA.ref(), rDB = dB.ref();
                    FastOps.addBackward(pool, g.a, g.off, dA.a, dA.off, dB.a, dB.off, n, bLen);
                    RefOps.addBackward(g.ref(), rDA, rDB, n, bLen);
                    double sumTol = 1e-6 * Math.sqrt((double) n / bLen) + 1e-6;
                    dA.assertClose("add dA", rDA, 1e-6, 1e-6);
                    dB.assertClose("add dB", rDB, sumTol * 10, 1e-6);
                    FastOps.mulBackward(pool, g.a, g.off, a.a, a.off, b.a, b.off, dA.a, dA.off, dB.a, dB.off, n, bLen);
                    RefOps.mulBackward(g.ref(), a.ref(), b.ref(), rDA, rDB, n, bLen);
                    dA.assertClose("mul dA", rDA, 1e-6, 1e-6);
                    dB.assertClose("mul dB", rDB, sumTol * 20, 1e-6);
                }
            }
        }
    }

    private static int divisorNear(int n, int target) {
        for (int k = target; k >= 1; k--) if (n % k == 0) return k;
        return 1;
    }

    @Test
    void scaleAxpyFillSumSquaresSumRows() {
        for (int n : SIZES) {
            for (CpuPool pool : pools) {
                Slab x = slab(n, 3), out = slab(n, 0), y = slab(n, 1);
                double[] ref = new double[n], rY = y.ref();
                FastOps.scale(pool, x.a, x.off, 0.37f, out.a, out.off, n);
                RefOps.scale(x.ref(), 0.37f, ref, n);
                out.assertClose("scale", ref, 0, 1e-7);
                FastOps.axpy(pool, -1.25f, x.a, x.off, y.a, y.off, n);
                RefOps.axpy(-1.25, x.ref(), rY, n);
                y.assertClose("axpy", rY, 1e-6, 1e-6);
                FastOps.fill(pool, out.a, out.off, 4.5f, n);
                RefOps.fill(ref, 4.5, n);
                out.assertClose("fill", ref, 0, 0);
                assertThat(FastOps.sumSquares(pool, x.a, x.off, n)).isCloseTo(RefOps.sumSquares(x.ref(), n),
                        within(1e-12 * n));
            }
        }
        for (int[] shape : ROW_SHAPES) {
            int rows = shape[0], n = shape[1];
            for (CpuPool pool : pools) {
                Slab x = slab(rows * n, 1), out = slab(n, 1);
                double[] rOut = out.ref();
                FastOps.sumRows(pool, x.a, x.off, rows, n, out.a, out.off);
                RefOps.sumRows(x.ref(), rows, n, rOut);
                out.assertClose("sumRows", rOut, 2e-6 * Math.sqrt(rows) + 1e-6, 1e-6);
            }
        }
    }

    // ---------------------------------------------------------------- 9. AdamW

    @Test
    void adamwMatchesHandWrittenLoopOverSeveralSteps() {
        float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
        for (int n : SIZES) {
            for (CpuPool pool : pools) {
                Slab p = slab(n, 1), m = slab(n, 0).filled(0f), v = slab(n, 0).filled(0f);
                double[] hp = p.ref(), hm = new double[n], hv = new double[n];
                double[] rp = p.ref(), rm = new double[n], rv = new double[n];
                for (long step = 1; step <= 5; step++) {
                    Slab g = slab(n, 1);
                    double[] gd = g.ref();
                    FastOps.adamw(pool, p.a, p.off, g.a, g.off, m.a, m.off, v.a, v.off, n, lr, b1, b2, eps, wd, step);
                    RefOps.adamw(rp, gd, rm, rv, n, lr, b1, b2, eps, wd, step);
                    for (int i = 0; i < n; i++) { // the formula, written out
                        hp[i] = hp[i] * (1 - (double) lr * wd);
                        hm[i] = b1 * hm[i] + (1 - (double) b1) * gd[i];
                        hv[i] = b2 * hv[i] + (1 - (double) b2) * gd[i] * gd[i];
                        double mHat = hm[i] / (1 - Math.pow(b1, step)), vHat = hv[i] / (1 - Math.pow(b2, step));
                        hp[i] -= lr * mHat / (Math.sqrt(vHat) + eps);
                    }
                }
                p.assertClose("param", hp, 1e-6, 1e-6);
                m.assertClose("m", hm, 1e-6, 1e-6);
                v.assertClose("v", hv, 1e-7, 1e-6);
                for (int i = 0; i < n; i++) assertThat(rp[i]).isCloseTo(hp[i], within(1e-12));
            }
        }
    }

    // ---------------------------------------------------------------- 10. casts

    @Test
    void bf16KnownBitPatterns() {
        assertThat(FastOps.floatToBf16(1.0f)).isEqualTo((short) 0x3F80);
        assertThat(FastOps.floatToBf16(Float.intBitsToFloat(0x3F808000))).isEqualTo((short) 0x3F80); // tie, even stays
        assertThat(FastOps.floatToBf16(Float.intBitsToFloat(0x3F818000))).isEqualTo((short) 0x3F82); // tie, odd rounds up
        assertThat(FastOps.floatToBf16(Float.intBitsToFloat(0x3F808001))).isEqualTo((short) 0x3F81);
        assertThat(FastOps.floatToBf16(Float.POSITIVE_INFINITY)).isEqualTo((short) 0x7F80);
        assertThat(FastOps.floatToBf16(Float.NEGATIVE_INFINITY)).isEqualTo((short) 0xFF80);
        assertThat(FastOps.floatToBf16(-2.0f)).isEqualTo((short) 0xC000);
        assertThat(Float.isNaN(Float.intBitsToFloat(FastOps.floatToBf16(Float.NaN) << 16))).isTrue();
        assertThat(Float.isNaN(Float.intBitsToFloat(FastOps.floatToBf16(Float.intBitsToFloat(0x7F800001)) << 16))).isTrue();
        assertThat(FastOps.floatToBf16(Float.MAX_VALUE)).isEqualTo((short) 0x7F80); // rounds up to +Inf
    }

    @Test
    void bf16VectorPathMatchesScalarAndRoundTrips() {
        int n = 70_001;
        float[] x = new float[n + 3];
        for (int i = 0; i < n; i++) x[3 + i] = Float.intBitsToFloat(rnd.nextInt());
        x[3 + 5] = Float.NaN;
        x[3 + 6] = Float.POSITIVE_INFINITY;
        x[3 + 7] = Float.intBitsToFloat(0x3F808000);
        for (CpuPool pool : pools) {
            short[] out = new short[n + 2];
            FastOps.toBf16(pool, x, 3, out, 2, n);
            short[] ref = new short[n];
            double[] xd = new double[n];
            for (int i = 0; i < n; i++) xd[i] = x[3 + i];
            RefOps.toBf16(xd, ref, n);
            for (int i = 0; i < n; i++) {
                assertThat(out[2 + i]).as("bits %08x", Float.floatToRawIntBits(x[3 + i])).isEqualTo(FastOps.floatToBf16(x[3 + i]));
                if (!Float.isNaN(x[3 + i])) assertThat(out[2 + i]).isEqualTo(ref[i]);
            }
        }
        // every bf16 pattern: fromBf16 is exact and toBf16 gives it back (NaNs stay NaN)
        short[] all = new short[65536];
        for (int i = 0; i < all.length; i++) all[i] = (short) i;
        for (CpuPool pool : pools) {
            float[] f = new float[65536 + 1];
            FastOps.fromBf16(pool, all, 0, f, 1, 65536);
            short[] back = new short[65536];
            FastOps.toBf16(pool, f, 1, back, 0, 65536);
            for (int i = 0; i < 65536; i++) {
                assertThat(Float.floatToRawIntBits(f[1 + i])).isEqualTo(i << 16);
                if (Float.isNaN(f[1 + i])) assertThat(Float.isNaN(Float.intBitsToFloat(back[i] << 16))).isTrue();
                else assertThat(back[i]).isEqualTo(all[i]);
            }
        }
    }

    @Test
    void toInt32ChecksRange() {
        long[] x = {0, -5, Integer.MAX_VALUE, Integer.MIN_VALUE, 1L << 31};
        int[] out = new int[6];
        FastOps.toInt32(pools[0], x, 0, out, 2, 4);
        assertThat(Arrays.copyOfRange(out, 2, 6)).containsExactly(0, -5, Integer.MAX_VALUE, Integer.MIN_VALUE);
        assertThatThrownBy(() -> FastOps.toInt32(pools[0], x, 1, new int[4], 0, 4))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("position 3");
        assertThatThrownBy(() -> RefOps.toInt32(x, new int[5], 5))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("position 4");
    }

    // ---------------------------------------------------------------- 11. dropout

    @Test
    void dropoutMatchesPhiloxMaskExactly() {
        for (int n : SIZES) {
            for (long indexOffset : new long[] {0, 6, 1L << 33}) {
                for (CpuPool pool : pools) {
                    float p = 0.3f;
                    Slab x = slab(n, 2), out = slab(n, 0);
                    FastOps.dropout(pool, x.a, x.off, out.a, out.off, n, p, 42, 9, indexOffset);
                    double[] ref = new double[n];
                    RefOps.dropout(x.ref(), ref, n, p, 42, 9, indexOffset);
                    for (int i = 0; i < n; i++) {
                        boolean keep = Philox.keep(42, 9, indexOffset + i, p);
                        assertThat(out.a[out.off + i] != 0f).as("mask at %d", i).isEqualTo(keep);
                    }
                    out.assertClose("out", ref, 0, 1e-6);

                    Slab g = slab(n, 1), dx = slab(n, 1);
                    double[] rDx = dx.ref();
                    FastOps.dropoutBackward(pool, g.a, g.off, dx.a, dx.off, n, p, 42, 9, indexOffset);
                    RefOps.dropoutBackward(g.ref(), rDx, n, p, 42, 9, indexOffset);
                    dx.assertClose("dx", rDx, 1e-6, 1e-6);
                }
            }
        }
    }

    @Test
    void dropoutWithZeroProbabilityCopies() {
        Slab x = slab(100, 1), out = slab(100, 0), dx = slab(100, 0).filled(1f);
        FastOps.dropout(pools[1], x.a, x.off, out.a, out.off, 100, 0f, 1, 2, 3);
        out.assertClose("copy", x.ref(), 0, 0);
        FastOps.dropoutBackward(pools[1], x.a, x.off, dx.a, dx.off, 100, 0f, 1, 2, 3);
        double[] expect = x.ref();
        for (int i = 0; i < 100; i++) expect[i] += 1;
        dx.assertClose("accumulate", expect, 0, 1e-7);
    }

    // ---------------------------------------------------------------- argument checks

    @Test
    void badArgumentsAreRejectedWithNamedMessages() {
        CpuPool pool = pools[0];
        assertThatThrownBy(() -> FastOps.scale(pool, new float[10], 2, 1f, new float[10], 0, 9))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("x needs 9").hasMessageContaining("length 10");
        assertThatThrownBy(() -> FastOps.fill(pool, new float[10], 0, 1f, -1))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("n must be >= 0");
        assertThatThrownBy(() -> FastOps.layerNorm(pool, new float[12], 0, new float[3], 0, new float[4], 0, new float[12], 0,
                null, 0, null, 0, 3, 4, 1e-5f))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("gamma");
        assertThatThrownBy(() -> FastOps.rotary(pool, new float[12], 0, new float[12], 0, new int[1], 0, new float[2], 0, 1, 2, 6, 5))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("rot must be even");
        assertThatThrownBy(() -> FastOps.add(pool, new float[12], 0, new float[5], 0, new float[12], 0, 12, 5))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("bLen 5 must divide n 12");
        assertThatThrownBy(() -> FastOps.dropout(pool, new float[4], 0, new float[4], 0, 4, 1.5f, 0, 0, 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("p must be in [0, 1]");
        assertThatThrownBy(() -> FastOps.adamw(pool, new float[4], 0, new float[4], 0, new float[4], 0, new float[4], 0, 4,
                1e-3f, 0.9f, 0.999f, 1e-8f, 0f, 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("step must be >= 1");
        assertThatThrownBy(() -> RefOps.sumRows(new double[5], 2, 3, new double[3]))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("x needs 6");
    }

    /** Loops split into shares of at least 16,384 elements up to 4 threads, that times ceil(threads / 4) beyond; the property fixes it. */
    @Test
    void grainGrowsWithTheThreadCountAndThePropertyFixesIt() {
        int[][] want = {{1, 16_384}, {2, 16_384}, {4, 16_384}, {5, 32_768}, {8, 32_768}, {16, 65_536}};
        if (System.getProperty(FastOps.GRAIN_PROPERTY) == null) {
            for (int[] w : want) {
                try (CpuPool pool = CpuPool.create(w[0])) {
                    assertThat(FastOps.grain(pool)).as("%d threads", w[0]).isEqualTo(w[1]);
                }
            }
        }
        assertThat(FastOps.fixedGrain(null)).isZero();
        assertThat(FastOps.fixedGrain(" ")).isZero();
        assertThat(FastOps.fixedGrain("65536")).isEqualTo(65_536);
        for (String bad : new String[] {"0", "-5", "lots"}) {
            assertThatThrownBy(() -> FastOps.fixedGrain(bad)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining(FastOps.GRAIN_PROPERTY).hasMessageContaining(bad);
        }
    }
}
