package dev.perceiver4j.backend.cpu;

import static org.assertj.core.api.Assertions.assertThat;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.cpu.ref.RefOps;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Every RefOps backward against central finite differences in double precision: the scalar loss is
 * Σ out∘G with a random G, h = 1e-6, and each gradient element must satisfy
 * |analytic − numeric| ≤ 1e-6·max(1, |numeric|). Gradient arrays start at {@link #PRE} and the
 * test subtracts it afterwards, which also checks that backward accumulates.
 */
class RefOpsGradientTest {
    private static final double H = 1e-6;
    private static final double TOL = 1e-6;
    private static final double PRE = 0.25;

    private final Random rnd = new Random(1234);

    /** Re-runs the forward pass on the current (perturbed) inputs and returns its output. */
    private interface Forward {
        double[] run();
    }

    private double[] random(int n, double scale) {
        double[] a = new double[n];
        for (int i = 0; i < n; i++) a[i] = scale * (2 * rnd.nextDouble() - 1);
        return a;
    }

    private static double[] filled(int n, double v) {
        double[] a = new double[n];
        java.util.Arrays.fill(a, v);
        return a;
    }

    private static double dot(double[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < b.length; i++) s += a[i] * b[i];
        return s;
    }

    /** Checks analytic (still holding the PRE offset unless accumulated == false) against central differences. */
    private static void check(String name, double[] input, double[] analytic, boolean accumulated, Forward f, double[] g) {
        for (int k = 0; k < input.length; k++) {
            double save = input[k];
            input[k] = save + H;
            double lp = dot(f.run(), g);
            input[k] = save - H;
            double lm = dot(f.run(), g);
            input[k] = save;
            double numeric = (lp - lm) / (2 * H);
            double a = analytic[k] - (accumulated ? PRE : 0.0);
            assertThat(Math.abs(a - numeric))
                    .as("%s[%d]: analytic %s numeric %s", name, k, a, numeric)
                    .isLessThanOrEqualTo(TOL * Math.max(1.0, Math.abs(numeric)));
        }
    }

    @Test
    void layerNorm() {
        int rows = 3, d = 7;
        double[] x = random(rows * d, 2), gamma = random(d, 1.5), beta = random(d, 1), g = random(rows * d, 1);
        double[] mean = new double[rows], rstd = new double[rows];
        Forward f = () -> {
            double[] out = new double[rows * d];
            RefOps.layerNorm(x, gamma, beta, out, null, null, rows, d, 1e-5);
            return out;
        };
        RefOps.layerNorm(x, gamma, beta, new double[rows * d], mean, rstd, rows, d, 1e-5);
        double[] dx = filled(rows * d, PRE), dGamma = filled(d, PRE), dBeta = filled(d, PRE);
        RefOps.layerNormBackward(g, x, gamma, mean, rstd, dx, dGamma, dBeta, rows, d);
        check("dx", x, dx, true, f, g);
        check("dGamma", gamma, dGamma, true, f, g);
        check("dBeta", beta, dBeta, true, f, g);
    }

    private double[] activationInput(int n) {
        double[] x = random(n, 3);
        for (int i = 0; i < n; i++) if (Math.abs(x[i]) < 0.01) x[i] = 0.5; // away from the kink at 0
        return x;
    }

    @ParameterizedTest
    @EnumSource(Activation.class)
    void activation(Activation act) {
        int n = 23;
        double[] x = activationInput(n), g = random(n, 1);
        Forward f = () -> {
            double[] out = new double[n];
            RefOps.activation(act, x, out, n);
            return out;
        };
        double[] dx = filled(n, PRE);
        RefOps.activationBackward(act, x, g, dx, n);
        check("dx " + act, x, dx, true, f, g);
    }

    @ParameterizedTest
    @EnumSource(Activation.class)
    void biasActivation(Activation act) {
        int rows = 4, n = 5;
        double[] c0 = activationInput(rows * n), bias = random(n, 0.005), g = random(rows * n, 1);
        Forward f = () -> {
            double[] c = c0.clone();
            RefOps.biasActivation(c, rows, n, bias, act, new double[rows * n]);
            return c;
        };
        double[] c = c0.clone(), pre = new double[rows * n];
        RefOps.biasActivation(c, rows, n, bias, act, pre);
        double[] dPre = filled(rows * n, 99), dBias = filled(n, PRE);
        RefOps.biasActivationBackward(g, pre, rows, n, act, dPre, dBias);
        check("dPre " + act, c0, dPre, false, f, g);
        check("dBias " + act, bias, dBias, true, f, g);
    }

    @Test
    void rotary() {
        int rows = 4, heads = 2, headDim = 6, rot = 4;
        int width = heads * headDim;
        int[] positions = {0, 5, 17, 1000};
        double[] invFreq = {1.0, Math.pow(10000, -0.5)};
        double[] x = random(rows * width, 2), g = random(rows * width, 1);
        Forward f = () -> {
            double[] out = new double[rows * width];
            RefOps.rotary(x, out, positions, invFreq, rows, heads, headDim, rot);
            return out;
        };
        double[] dx = filled(rows * width, PRE);
        RefOps.rotaryBackward(g, dx, positions, invFreq, rows, heads, headDim, rot);
        check("dx", x, dx, true, f, g);
    }

    @Test
    void embedding() {
        int n = 6, vocab = 5, d = 3;
        int[] ids = {0, 3, 3, 4, 1, 3};
        double[] table = random(vocab * d, 1), g = random(n * d, 1);
        Forward f = () -> {
            double[] out = new double[n * d];
            RefOps.embedding(table, ids, out, n, vocab, d);
            return out;
        };
        double[] dTable = filled(vocab * d, PRE);
        RefOps.embeddingBackward(g, ids, dTable, n, vocab, d);
        check("dTable", table, dTable, true, f, g);
    }

    @Test
    void crossEntropyWithIgnoreIndexAndZLoss() {
        int rows = 5, vocab = 7, ignore = -100;
        double zLoss = 0.05;
        int[] targets = {2, ignore, 6, 0, 2};
        double[] logits = random(rows * vocab, 3), lse = new double[rows];
        double[] g = {1.7};
        Forward f = () -> new double[] {RefOps.crossEntropy(logits, targets, rows, vocab, ignore, zLoss, new double[rows])};
        RefOps.crossEntropy(logits, targets, rows, vocab, ignore, zLoss, lse);
        double[] dLogits = filled(rows * vocab, PRE);
        RefOps.crossEntropyBackward(g[0], logits, targets, lse, rows, vocab, ignore, zLoss, dLogits);
        check("dLogits", logits, dLogits, true, f, g);
        for (int j = 0; j < vocab; j++) assertThat(dLogits[vocab + j]).isEqualTo(PRE); // the ignored row
    }

    @Test
    void softmax() {
        int rows = 3, n = 6;
        double[] x = random(rows * n, 3), g = random(rows * n, 1), y = new double[rows * n];
        Forward f = () -> {
            double[] out = new double[rows * n];
            RefOps.softmax(x, out, rows, n);
            return out;
        };
        RefOps.softmax(x, y, rows, n);
        double[] dx = filled(rows * n, PRE);
        RefOps.softmaxBackward(y, g, dx, rows, n);
        check("dx", x, dx, true, f, g);
    }

    @Test
    void dropout() {
        int n = 41;
        double p = 0.3;
        double[] x = random(n, 2), g = random(n, 1);
        Forward f = () -> {
            double[] out = new double[n];
            RefOps.dropout(x, out, n, p, 7, 11, 5);
            return out;
        };
        double[] dx = filled(n, PRE);
        RefOps.dropoutBackward(g, dx, n, p, 7, 11, 5);
        check("dx", x, dx, true, f, g);
    }

    @Test
    void addAndMulWithBroadcast() {
        int n = 12, bLen = 4;
        double[] a = random(n, 2), b = random(bLen, 2), g = random(n, 1);
        Forward fAdd = () -> {
            double[] out = new double[n];
            RefOps.add(a, b, out, n, bLen);
            return out;
        };
        double[] dA = filled(n, PRE), dB = filled(bLen, PRE);
        RefOps.addBackward(g, dA, dB, n, bLen);
        check("add dA", a, dA, true, fAdd, g);
        check("add dB", b, dB, true, fAdd, g);

        Forward fMul = () -> {
            double[] out = new double[n];
            RefOps.mul(a, b, out, n, bLen);
            return out;
        };
        dA = filled(n, PRE);
        dB = filled(bLen, PRE);
        RefOps.mulBackward(g, a, b, dA, dB, n, bLen);
        check("mul dA", a, dA, true, fMul, g);
        check("mul dB", b, dB, true, fMul, g);
    }

    @Test
    void scaleAndAxpy() {
        int n = 9;
        double[] x = random(n, 2), g = random(n, 1);
        Forward f = () -> {
            double[] out = new double[n];
            RefOps.scale(x, 1.7, out, n);
            return out;
        };
        double[] dx = filled(n, PRE);
        RefOps.axpy(1.7, g, dx, n); // backward of scale is axpy with the same alpha
        check("scale dx", x, dx, true, f, g);
    }
}
