package dev.perceiver4j.backend.cpu;

import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.backend.cpu.ref.RefAttention;
import org.assertj.core.data.Offset;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.Random;
import java.util.function.DoubleSupplier;
import java.util.stream.Stream;

import static dev.perceiver4j.backend.cpu.AttentionTestSupport.leftPadding;
import static dev.perceiver4j.backend.cpu.AttentionTestSupport.random;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Checks the double-precision reference: its backward against central finite differences of its
 * forward, and the invariants of the masks (rows sum to 1, causal rows ignore future keys, padded
 * keys never matter).
 */
class RefAttentionGradientTest {

    /** Central-difference step; truncation error ~ h^2 = 1e-10, rounding ~ 1e-16/h = 1e-11. */
    private static final double H = 1e-5;
    /** Allowed |fd - analytic| relative to max(1, max |analytic|) of the checked array. */
    private static final double TOL = 1e-6;

    static Stream<Arguments> gradientCases() {
        return Stream.of(
                Arguments.of("plain", shape(2, 2, 3, 5, 3, 4, false, 0f), false),
                Arguments.of("single", shape(1, 1, 1, 1, 1, 1, false, 0f), false),
                Arguments.of("causal square", shape(1, 2, 4, 4, 3, 2, true, 0f), false),
                Arguments.of("causal nq<nk", shape(2, 1, 3, 6, 2, 3, true, 0f), false),
                Arguments.of("key padding, one row fully padded", shape(3, 2, 3, 5, 3, 2, false, 0f), true),
                Arguments.of("dropout 0.3", shape(1, 2, 4, 5, 3, 3, false, 0.3f), false),
                Arguments.of("causal + padding + dropout", shape(3, 2, 4, 6, 2, 3, true, 0.25f), true));
    }

    private static AttentionShape shape(int b, int h, int nq, int nk, int dqk, int dv, boolean causal, float p) {
        return new AttentionShape(b, h, nq, nk, dqk, dv, 0.7f, causal, p, 1234L, 7L);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("gradientCases")
    void backwardMatchesFiniteDifferences(String name, AttentionShape s, boolean padded) {
        Random rnd = new Random(name.hashCode());
        double[] q = random(rnd, s.qSize(), 1.5);
        double[] k = random(rnd, s.kSize(), 1.5);
        double[] v = random(rnd, s.vSize(), 1.0);
        double[] g = random(rnd, s.outSize(), 1.0);
        boolean[] pad = padded ? leftPadding(s.batch(), s.nk()) : null;

        double[] out = new double[s.outSize()];
        double[] lse = new double[s.lseSize()];
        RefAttention.forward(s, q, k, v, pad, out, lse);
        double[] dq = new double[s.qSize()], dk = new double[s.kSize()], dv = new double[s.vSize()];
        RefAttention.backward(s, q, k, v, pad, out, lse, g, dq, dk, dv);

        for (double x : out) assertThat(x).isFinite();
        assertMatchesFd("dq", q, dq, () -> loss(s, q, k, v, pad, g));
        assertMatchesFd("dk", k, dk, () -> loss(s, q, k, v, pad, g));
        assertMatchesFd("dv", v, dv, () -> loss(s, q, k, v, pad, g));
    }

    @Test
    void backwardAccumulates() {
        AttentionShape s = shape(1, 2, 3, 4, 2, 3, true, 0.2f);
        Random rnd = new Random(5);
        double[] q = random(rnd, s.qSize(), 1), k = random(rnd, s.kSize(), 1), v = random(rnd, s.vSize(), 1);
        double[] g = random(rnd, s.outSize(), 1);
        double[] out = new double[s.outSize()], lse = new double[s.lseSize()];
        RefAttention.forward(s, q, k, v, null, out, lse);
        double[] dq1 = new double[s.qSize()], dk1 = new double[s.kSize()], dv1 = new double[s.vSize()];
        RefAttention.backward(s, q, k, v, null, out, lse, g, dq1, dk1, dv1);
        double[] dq2 = new double[s.qSize()], dk2 = new double[s.kSize()], dv2 = new double[s.vSize()];
        RefAttention.backward(s, q, k, v, null, out, lse, g, dq2, dk2, dv2);
        RefAttention.backward(s, q, k, v, null, out, lse, g, dq2, dk2, dv2);
        for (int i = 0; i < dq1.length; i++) assertThat(dq2[i]).isCloseTo(2 * dq1[i], within(dq1[i]));
        for (int i = 0; i < dk1.length; i++) assertThat(dk2[i]).isCloseTo(2 * dk1[i], within(dk1[i]));
        for (int i = 0; i < dv1.length; i++) assertThat(dv2[i]).isCloseTo(2 * dv1[i], within(dv1[i]));
    }

    private static Offset<Double> within(double x) {
        return Offset.offset(1e-12 * Math.max(1, Math.abs(x)));
    }

    /**
     * With one-hot values (Dv = Nk, v_j = e_j) the output row is the probability row itself:
     * each row with an allowed key sums to 1 and is 0 exactly on masked keys; a fully masked row is 0.
     */
    @Test
    void probabilityRowsSumToOneAndVanishOnMaskedKeys() {
        int nk = 7;
        AttentionShape s = new AttentionShape(3, 2, 5, nk, 4, nk, 0.5f, true, 0f, 0, 0);
        Random rnd = new Random(11);
        double[] q = random(rnd, s.qSize(), 2), k = random(rnd, s.kSize(), 2);
        double[] v = new double[s.vSize()];
        for (int b = 0; b < s.batch(); b++)
            for (int j = 0; j < nk; j++)
                for (int h = 0; h < s.heads(); h++) v[(b * nk + j) * s.heads() * nk + h * nk + j] = 1;
        boolean[] pad = leftPadding(s.batch(), nk);
        double[] out = new double[s.outSize()], lse = new double[s.lseSize()];
        RefAttention.forward(s, q, k, v, pad, out, lse);

        for (int b = 0; b < s.batch(); b++) {
            for (int h = 0; h < s.heads(); h++) {
                for (int i = 0; i < s.nq(); i++) {
                    int row = (b * s.nq() + i) * s.heads() * nk + h * nk;
                    boolean any = false;
                    double sum = 0;
                    for (int j = 0; j < nk; j++) {
                        double p = out[row + j];
                        boolean allowed = RefAttention.allowed(s, pad, b, i, j);
                        any |= allowed;
                        if (!allowed) assertThat(p).isZero();
                        else assertThat(p).isPositive();
                        sum += p;
                    }
                    double rowLse = lse[(b * s.heads() + h) * s.nq() + i];
                    if (any) {
                        assertThat(sum).isCloseTo(1.0, Offset.offset(1e-12));
                        assertThat(rowLse).isFinite();
                    } else {
                        assertThat(sum).isZero();
                        assertThat(rowLse).isEqualTo(Double.NEGATIVE_INFINITY);
                    }
                }
            }
        }
    }

    @Test
    void causalQueriesIgnoreFutureKeys() {
        AttentionShape s = shape(1, 2, 4, 9, 3, 3, true, 0.2f);
        Random rnd = new Random(3);
        double[] q = random(rnd, s.qSize(), 1), k = random(rnd, s.kSize(), 1), v = random(rnd, s.vSize(), 1);
        double[] base = forwardOut(s, q, k, v, null);
        int shift = s.nk() - s.nq();
        for (int j = 0; j < s.nk(); j++) {
            double[] k2 = k.clone(), v2 = v.clone();
            perturbKey(s, k2, v2, 0, j, rnd);
            double[] moved = forwardOut(s, q, k2, v2, null);
            for (int i = 0; i < s.nq(); i++) {
                boolean future = j > i + shift;
                for (int c = 0; c < s.heads() * s.dv(); c++) {
                    int idx = i * s.heads() * s.dv() + c;
                    if (future) assertThat(moved[idx]).as("query %d, future key %d", i, j).isEqualTo(base[idx]);
                }
            }
            if (j <= shift) assertThat(moved).isNotEqualTo(base); // a visible key does matter
        }
    }

    @Test
    void paddedKeysNeverMatter() {
        AttentionShape s = shape(3, 2, 4, 6, 3, 2, false, 0.1f);
        Random rnd = new Random(9);
        double[] q = random(rnd, s.qSize(), 1), k = random(rnd, s.kSize(), 1), v = random(rnd, s.vSize(), 1);
        boolean[] pad = leftPadding(s.batch(), s.nk());
        double[] base = forwardOut(s, q, k, v, pad);
        double[] k2 = k.clone(), v2 = v.clone();
        for (int b = 0; b < s.batch(); b++)
            for (int j = 0; j < s.nk(); j++)
                if (pad[b * s.nk() + j]) perturbKey(s, k2, v2, b, j, rnd);
        assertThat(forwardOut(s, q, k2, v2, pad)).isEqualTo(base);
        // the fully padded row 1 gives zeros
        int rowLen = s.nq() * s.heads() * s.dv();
        for (int t = rowLen; t < 2 * rowLen; t++) assertThat(base[t]).isZero();
    }

    @Test
    void shapeValidation() {
        assertThatThrownBy(() -> new AttentionShape(1, 1, 5, 4, 1, 1, 1f, true, 0f, 0, 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("nq <= nk");
        assertThatThrownBy(() -> new AttentionShape(1, 0, 1, 1, 1, 1, 1f, false, 0f, 0, 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("heads");
        assertThatThrownBy(() -> new AttentionShape(1, 1, 1, 1, 1, 1, 1f, false, 1f, 0, 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("dropout");
        assertThatThrownBy(() -> RefAttention.forward(AttentionShape.of(1, 1, 2, 2, 2, 2), new double[3],
                new double[4], new double[4], null, new double[4], new double[2]))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("q: required length 4, actual 3");
        AttentionShape s = AttentionShape.of(2, 3, 4, 5, 6, 7);
        assertThat(s.qSize()).isEqualTo(2 * 4 * 3 * 6);
        assertThat(s.kSize()).isEqualTo(2 * 5 * 3 * 6);
        assertThat(s.vSize()).isEqualTo(2 * 5 * 3 * 7);
        assertThat(s.outSize()).isEqualTo(2 * 4 * 3 * 7);
        assertThat(s.lseSize()).isEqualTo(2 * 3 * 4);
    }

    // ------------------------------------------------------------------------------------------

    private static void perturbKey(AttentionShape s, double[] k, double[] v, int b, int j, Random rnd) {
        for (int c = 0; c < s.heads() * s.dqk(); c++) k[(b * s.nk() + j) * s.heads() * s.dqk() + c] += 1 + rnd.nextDouble();
        for (int c = 0; c < s.heads() * s.dv(); c++) v[(b * s.nk() + j) * s.heads() * s.dv() + c] -= 1 + rnd.nextDouble();
    }

    private static double[] forwardOut(AttentionShape s, double[] q, double[] k, double[] v, boolean[] pad) {
        double[] out = new double[s.outSize()];
        RefAttention.forward(s, q, k, v, pad, out, new double[s.lseSize()]);
        return out;
    }

    private static double loss(AttentionShape s, double[] q, double[] k, double[] v, boolean[] pad, double[] g) {
        double[] out = forwardOut(s, q, k, v, pad);
        double l = 0;
        for (int i = 0; i < out.length; i++) l += out[i] * g[i];
        return l;
    }

    private static void assertMatchesFd(String name, double[] x, double[] analytic,
                                        DoubleSupplier loss) {
        double scale = Math.max(1, AttentionTestSupport.maxAbs(analytic));
        double worst = 0;
        for (int i = 0; i < x.length; i++) {
            double orig = x[i];
            x[i] = orig + H;
            double up = loss.getAsDouble();
            x[i] = orig - H;
            double down = loss.getAsDouble();
            x[i] = orig;
            double fd = (up - down) / (2 * H);
            worst = Math.max(worst, Math.abs(fd - analytic[i]) / scale);
        }
        assertThat(worst).as("%s: max |fd - analytic| / max(1, max|analytic|)", name).isLessThan(TOL);
    }
}
