package dev.perceiver4j.autograd;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Supplier;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The tape and the F ops wired to the CPU backend, checked end to end against central finite
 * differences of the whole graph (float32 forward, so h and the tolerance are float-sized; the
 * kernels' own backward passes are checked in double precision in RefOpsGradientTest and
 * RefAttentionGradientTest).
 */
class AutogradTest {
    static final CpuPool POOL = CpuPool.create(2);
    static final Backend BE = new CpuBackend(POOL, new JavaSgemm(POOL));

    static Tensor random(Shape s, SplittableRandom rng, double scale, boolean grad) {
        float[] a = new float[s.size()];
        for (int i = 0; i < a.length; i++) a[i] = (float) ((rng.nextDouble() * 2 - 1) * scale);
        Tensor t = BE.fromFloats(a, s);
        return grad ? t.requiresGrad(true) : t;
    }

    /** Checks d(loss)/d(p) for every p against central differences on up to 12 coordinates each. */
    static void checkGradients(Supplier<Tensor> loss, List<Tensor> params, double h, double tol) {
        for (Tensor p : params) p.setGrad(null);
        loss.get().backward();
        SplittableRandom rng = new SplittableRandom(7);
        for (Tensor p : params) {
            float[] g = p.grad().toFloatArray();
            float[] data = p.floats();
            for (int c = 0; c < Math.min(12, p.size()); c++) {
                int i = p.offset() + (p.size() <= 12 ? c : rng.nextInt(p.size()));
                float orig = data[i];
                double lp, lm;
                try (var ng = Autograd.noGrad()) {
                    data[i] = (float) (orig + h);
                    lp = loss.get().item();
                    data[i] = (float) (orig - h);
                    lm = loss.get().item();
                }
                data[i] = orig;
                double fd = (lp - lm) / (2 * h);
                double an = g[i - p.offset()];
                assertThat(Math.abs(fd - an))
                        .as("d loss / d %s[%d]: analytic %s vs finite difference %s", p.name(), i - p.offset(), an, fd)
                        .isLessThanOrEqualTo(tol * Math.max(1, Math.abs(fd)));
            }
        }
    }

    @Test
    void wholeGraphGradientsMatchFiniteDifferences() {
        SplittableRandom rng = new SplittableRandom(42);
        int b = 2, n = 5, d = 8, heads = 2, vocab = 11;
        Tensor table = random(Shape.of(vocab, d), rng, 1, true).name("table");
        Tensor pos = random(Shape.of(n, d), rng, 0.5, true).name("pos");
        Tensor gamma = random(Shape.of(d), rng, 1, true).name("gamma");
        Tensor beta = random(Shape.of(d), rng, 0.5, true).name("beta");
        Tensor w1 = random(Shape.of(3 * d, d), rng, 0.5, true).name("w1");
        Tensor b1 = random(Shape.of(3 * d), rng, 0.5, true).name("b1");
        Tensor w2 = random(Shape.of(vocab, d), rng, 0.5, true).name("w2");
        Tensor gate = random(Shape.of(d), rng, 1, true).name("gate");
        Tensor invFreq = BE.fromFloats(new float[] {1f, 0.1f}, Shape.of(2));
        int[] ids = {1, 4, 2, 10, 0, 3, 3, 7, 9, 5};
        int[] tg = {4, 2, 10, -100, 3, 3, 7, 9, 5, 1};
        int[] positions = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4};
        Tensor idT = BE.fromInts(ids, Shape.of(b, n));
        Tensor tgT = BE.fromInts(tg, Shape.of(b, n));
        Tensor posT = BE.fromInts(positions, Shape.of(b * n));
        byte[] pad = new byte[b * n];
        pad[5] = 1; // row 1 key 0 is padding
        Tensor keyPad = BE.zeros(Shape.of(b, n), DType.BOOL);
        System.arraycopy(pad, 0, keyPad.bools(), 0, pad.length);

        Supplier<Tensor> loss = () -> {
            Tensor x = F.add(F.embedding(table, idT), pos);                         // [B, N, D]
            Tensor h = F.layerNorm(x, gamma, beta, 1e-5f);
            Tensor qkv = F.linear(h, w1, b1, Activation.GELU);                       // [B, N, 3D]
            Tensor q = F.rotary(F.narrow(qkv, 2, 0, d), posT, invFreq, heads, 4);
            Tensor k = F.rotary(F.narrow(qkv, 2, d, d), posT, invFreq, heads, 4);
            Tensor v = F.narrow(qkv, 2, 2 * d, d);
            Tensor a = F.attention(q, k, v, keyPad, heads, true, 0f, 0L, 0L);        // [B, N, D]
            Tensor y = F.mul(F.add(a, x), gate);
            Tensor both = F.concat(1, F.narrow(y, 1, 0, 2), F.scale(F.narrow(y, 1, 2, n - 2), 0.5f));
            Tensor logits = F.linear(both.reshape(b * n, d), w2, null, Activation.NONE);
            return F.crossEntropy(logits, tgT, -100, 1e-3f);
        };
        checkGradients(loss, List.of(table, pos, gamma, beta, w1, b1, w2, gate), 1e-2, 2e-2);
    }

    @Test
    void squaredReluMatmulAndBatchedTransposes() {
        SplittableRandom rng = new SplittableRandom(3);
        Tensor a = random(Shape.of(2, 4, 3), rng, 1, true).name("a");  // [B, K, M] used transposed
        Tensor bm = random(Shape.of(2, 5, 4), rng, 1, true).name("b"); // [B, N, K] used transposed
        Tensor t = BE.fromInts(new int[] {0, 1, 2, 3, 4, 0}, Shape.of(6));
        Supplier<Tensor> loss = () -> {
            Tensor c = F.matmul(a, true, bm, true, null, Activation.SQUARED_RELU); // [B, M, N] = [2, 3, 5]
            return F.crossEntropy(c.reshape(6, 5), t, -1, 0f);
        };
        checkGradients(loss, List.of(a, bm), 1e-2, 2e-2);
    }

    @Test
    void aTensorUsedTwiceAccumulatesBothContributions() {
        Tensor x = BE.fromFloats(new float[] {1.5f, -2f}, Shape.of(2)).requiresGrad(true);
        Tensor y = F.mul(x, x);                    // x²
        Tensor t = BE.fromInts(new int[] {0}, Shape.of(1));
        // loss = CE over logits [x0², x1²]: d/dx_i = (softmax_i − onehot_i)·2x_i
        F.crossEntropy(y.reshape(1, 2), t, -1, 0f).backward();
        double e0 = Math.exp(2.25), e1 = Math.exp(4.0), s0 = e0 / (e0 + e1), s1 = e1 / (e0 + e1);
        float[] g = x.grad().toFloatArray();
        assertThat((double) g[0]).isCloseTo((s0 - 1) * 2 * 1.5, org.assertj.core.data.Offset.offset(1e-5));
        assertThat((double) g[1]).isCloseTo(s1 * 2 * -2, org.assertj.core.data.Offset.offset(1e-5));
    }

    @Test
    void repeatedBackwardAccumulatesUntilZeroed() {
        SplittableRandom rng = new SplittableRandom(5);
        Tensor w = random(Shape.of(3, 4), rng, 1, true);
        Tensor x = random(Shape.of(2, 4), rng, 1, false);
        Tensor t = BE.fromInts(new int[] {1, 2}, Shape.of(2));
        F.crossEntropy(F.linear(x, w, null, Activation.NONE), t, -1, 0f).backward();
        float[] once = w.grad().toFloatArray();
        F.crossEntropy(F.linear(x, w, null, Activation.NONE), t, -1, 0f).backward();
        float[] twice = w.grad().toFloatArray();
        for (int i = 0; i < once.length; i++) assertThat(twice[i]).isCloseTo(2 * once[i], org.assertj.core.data.Offset.offset(1e-6f));
    }

    @Test
    void reshapedViewsShareTheirBaseGradient() {
        Tensor w = BE.fromFloats(new float[] {1, 2, 3, 4, 5, 6}, Shape.of(6)).requiresGrad(true);
        Tensor t = BE.fromInts(new int[] {2, 0}, Shape.of(2));
        F.crossEntropy(F.scale(w.reshape(2, 3), 1f), t, -1, 0f).backward();
        assertThat(w.grad()).isNotNull();
        assertThat(w.grad().shape()).isEqualTo(Shape.of(6));
        assertThat(w.reshape(2, 3).grad().toFloatArray()).containsExactly(w.grad().toFloatArray());
        double sum = 0;
        for (float g : w.grad().toFloatArray()) sum += g;
        assertThat(sum).isCloseTo(0, org.assertj.core.data.Offset.offset(1e-6)); // softmax − onehot sums to 0 per row
    }

    @Test
    void noGradRecordsNothingAndScopesTruncateTheTape() {
        Tensor w = BE.fromFloats(new float[] {1, 2, 3, 4}, Shape.of(2, 2)).requiresGrad(true);
        int before = Autograd.tapeSize();
        try (var ng = Autograd.noGrad()) {
            Tensor y = F.scale(w, 2f);
            assertThat(y.requiresGrad()).isFalse();
        }
        assertThat(Autograd.tapeSize()).isEqualTo(before);
        try (Scope s = Scope.open()) {
            F.scale(F.scale(w, 2f), 3f);
            assertThat(Autograd.tapeSize()).isEqualTo(before + 2);
        }
        assertThat(Autograd.tapeSize()).isEqualTo(before);
    }

    @Test
    void backwardNeedsAScalarThatDependsOnParameters() {
        Tensor x = BE.fromFloats(new float[] {1, 2}, Shape.of(2));
        assertThatThrownBy(() -> F.scale(x, 2f).backward()).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("scalar");
        Tensor one = BE.fromFloats(new float[] {1}, Shape.of(1));
        assertThatThrownBy(one::backward).isInstanceOf(IllegalStateException.class).hasMessageContaining("does not depend");
    }

    @Test
    void scopesReuseBuffersAndLeafGradientsSurviveThem() {
        Tensor w = BE.fromFloats(new float[] {0.5f, -1f, 2f, 0f}, Shape.of(2, 2)).requiresGrad(true);
        Tensor t = BE.fromInts(new int[] {1, 0}, Shape.of(2));
        List<Object> firstStep = new ArrayList<>();
        for (int step = 0; step < 2; step++) {
            try (Scope s = Scope.open()) {
                Tensor y = F.scale(w, 3f);
                if (step == 0) firstStep.add(y.data());
                else assertThat(y.data()).as("second step reuses the first step's buffer").isSameAs(firstStep.get(0));
                F.crossEntropy(y, t, -1, 0f).backward();
                assertThat(s.buffersHeld()).isPositive();
            }
        }
        float[] g = w.grad().toFloatArray();
        assertThat(g).hasSize(4);
        assertThat(Math.abs(g[0]) + Math.abs(g[1])).isPositive(); // survived both scope closes and accumulated
    }

    /**
     * Backward hands each activation's gradient back to the step scope's pool right after the op
     * that produced the activation has used it: after a 12-layer chain the scope holds no more
     * buffers than before backward plus a few in flight (one per activation without the release),
     * activations report no gradient, and the parameter gradients equal a run that keeps them all.
     */
    @Test
    void activationGradientsGoBackToThePoolDuringBackward() {
        SplittableRandom rng = new SplittableRandom(5);
        Tensor w = random(Shape.of(16, 16), rng, 0.4, true), x = random(Shape.of(3, 16), rng, 1, false);
        Tensor t = BE.fromInts(new int[] {1, 0, 7}, Shape.of(3));
        float[] released, kept;
        int layers = 12;
        try (Scope s = Scope.open()) {
            List<Tensor> acts = new ArrayList<>();
            Tensor h = x;
            for (int i = 0; i < layers; i++) acts.add(h = F.linear(h, w, null, Activation.GELU));
            Tensor loss = F.crossEntropy(h, t, -1, 0f);
            int before = s.buffersHeld();
            loss.backward();
            for (Tensor a : acts) assertThat(a.grad()).as("activation gradient after backward").isNull();
            assertThat(s.buffersHeld() - before).as("buffers added by backward").isLessThanOrEqualTo(3);
            released = w.grad().toFloatArray();
        }
        // Outside a scope nothing is released (activation gradients are not scope buffers): the same
        // gradient, bit for bit, and it matches finite differences.
        w.setGrad(null);
        checkGradients(() -> {
            Tensor h = x;
            for (int i = 0; i < layers; i++) h = F.linear(h, w, null, Activation.GELU);
            return F.crossEntropy(h, t, -1, 0f);
        }, List.of(w), 1e-2, 2e-3);
        kept = w.grad().toFloatArray();
        assertThat(released).containsExactly(kept);
    }

    /**
     * F.discard hands an add-only intermediate back to the pool during forward: the scope holds one
     * buffer fewer, reading it fails loudly, and the gradients equal a run that keeps it.
     */
    @Test
    void discardedIntermediatesLeaveTheScopeAndGradientsStayExact() {
        SplittableRandom rng = new SplittableRandom(8);
        Tensor w = random(Shape.of(8, 8), rng, 0.5, true), x = random(Shape.of(3, 8), rng, 1, false);
        Tensor t = BE.fromInts(new int[] {2, 0, 5}, Shape.of(3));
        float[][] grads = new float[2][];
        for (int run = 0; run < 2; run++) {
            boolean discard = run == 1;
            w.setGrad(null);
            try (Scope s = Scope.open()) {
                Tensor h = F.linear(x, w, null, Activation.GELU);
                Tensor branch = F.linear(h, w, null, Activation.NONE);        // read only by the add below
                Tensor y = F.add(h, branch);
                int held = s.buffersHeld();
                if (discard) {
                    F.discard(branch);
                    assertThat(s.buffersHeld()).isEqualTo(held - 1);
                    assertThatThrownBy(branch::toFloatArray).isInstanceOf(RuntimeException.class);
                }
                F.crossEntropy(F.linear(y, w, null, Activation.NONE), t, -1, 0f).backward();
                grads[run] = w.grad().toFloatArray();
            }
        }
        assertThat(grads[1]).containsExactly(grads[0]);
        F.discard(w);   // a parameter: not a scope buffer, left alone
        assertThat(w.toFloatArray()).hasSize(64);
    }

    /**
     * A layer norm output and a GELU output read by matmuls' backward are discarded during forward
     * and rebuilt in backward: the scope holds two buffers fewer after forward, the gradients of
     * every input equal a run that keeps them (bit for bit), and the rebuilt buffers are handed
     * back after their producers' backward (the tensors hold no storage when backward returns).
     */
    @Test
    void recomputedActivationsGiveExactGradientsAndGoBackToThePool() {
        SplittableRandom rng = new SplittableRandom(9);
        Tensor x = random(Shape.of(2, 5, 16), rng, 1.5, true);
        Tensor gamma = random(Shape.of(16), rng, 1, true), beta = random(Shape.of(16), rng, 0.3, true);
        Tensor w1 = random(Shape.of(32, 16), rng, 0.4, true), b1 = random(Shape.of(32), rng, 0.2, true);
        Tensor w2 = random(Shape.of(7, 32), rng, 0.4, true);
        Tensor t = BE.fromInts(new int[] {1, 6, 0, 3, 3, 2, 5, 4, 0, 1}, Shape.of(2, 5));
        List<Tensor> inputs = List.of(x, gamma, beta, w1, b1, w2);
        float[][][] grads = new float[2][][];
        for (int run = 0; run < 2; run++) {
            boolean discard = run == 1;
            for (Tensor p : inputs) p.setGrad(null);
            try (Scope s = Scope.open()) {
                Tensor xn = F.layerNorm(x, gamma, beta, 1e-5f);
                Tensor h = F.linear(xn, w1, b1, Activation.GELU);        // [2, 5, 32]
                Tensor logits = F.linear(h, w2, null, Activation.NONE);  // [2, 5, 7]
                assertThat(xn.recomputable()).isTrue();
                assertThat(h.recomputable()).isTrue();
                if (discard) {
                    int held = s.buffersHeld();
                    F.discard(xn);
                    F.discard(h);
                    assertThat(s.buffersHeld()).isEqualTo(held - 2);
                    assertThat(xn.data()).isNull();
                    assertThat(h.reshape(10, 32).data()).isNull();       // a view sees its base's storage
                }
                F.crossEntropy(logits, t, -1, 1e-3f).backward();
                if (discard) {
                    assertThat(xn.data()).isNull();                     // rebuilt, then handed back
                    assertThat(h.data()).isNull();
                }
                grads[run] = new float[inputs.size()][];
                for (int i = 0; i < inputs.size(); i++) grads[run][i] = inputs.get(i).grad().toFloatArray();
            }
        }
        for (int i = 0; i < inputs.size(); i++) assertThat(grads[1][i]).as("gradient %d", i).containsExactly(grads[0][i]);
    }

    /** Rebuilding writes the same values the forward produced (layer norm and an activation epilogue). */
    @Test
    void materializeRebuildsTheForwardValues() {
        SplittableRandom rng = new SplittableRandom(10);
        Tensor x = random(Shape.of(6, 24), rng, 2, true);
        Tensor gamma = random(Shape.of(24), rng, 1, true), beta = random(Shape.of(24), rng, 0.5, true);
        Tensor w = random(Shape.of(40, 24), rng, 0.5, true);
        try (Scope s = Scope.open()) {
            Tensor xn = F.layerNorm(x, gamma, beta, 1e-5f);
            Tensor h = F.linear(xn, w, null, Activation.GELU);
            float[] xnBefore = xn.toFloatArray(), hBefore = h.toFloatArray();
            F.discard(h);
            F.discard(xn);
            assertThat(h.materialize().toFloatArray()).containsExactly(hBefore);
            assertThat(xn.materialize().toFloatArray()).containsExactly(xnBefore);
            assertThat(xn.releaseRecomputed()).isTrue();
            assertThat(xn.releaseRecomputed()).isFalse();              // nothing left to hand back
        }
    }

    /** A discarded tensor with no recipe that a backward still reads fails naming the tensor. */
    @Test
    void readingADiscardedTensorWithoutRecipeFailsNamingIt() {
        SplittableRandom rng = new SplittableRandom(11);
        Tensor a = random(Shape.of(3, 8), rng, 1, true), w = random(Shape.of(4, 8), rng, 0.5, true);
        Tensor t = BE.fromInts(new int[] {0, 3, 1}, Shape.of(3));
        try (Scope s = Scope.open()) {
            Tensor sum = F.add(a, a).name("sum");
            Tensor loss = F.crossEntropy(F.linear(sum, w, null, Activation.NONE), t, -1, 0f);
            assertThat(sum.recomputable()).isFalse();
            F.discard(sum);                                            // wrong: the matmul's backward reads it
            assertThatThrownBy(loss::backward).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("sum [3, 8] F32").hasMessageContaining("discarded");
        }
    }

    /**
     * handOverGrad moves an activation's gradient buffer to another activation with no gradient
     * yet, and refuses a tensor whose gradient must outlive the step (a leaf) or one that already
     * has a gradient; a residual chain's gradients still match finite differences.
     */
    @Test
    void gradientsAreHandedOverOnlyBetweenStepActivations() {
        SplittableRandom rng = new SplittableRandom(12);
        Tensor leaf = random(Shape.of(2, 6), rng, 1, true);
        try (Scope s = Scope.open()) {
            Tensor a = F.scale(leaf, 2f), b = F.scale(leaf, 3f);
            Tensor g = a.gradOrZeros();
            assertThat(Autograd.handOverGrad(a, b)).isTrue();
            assertThat(a.grad()).isNull();
            assertThat(b.grad().data()).isSameAs(g.data());
            assertThat(Autograd.handOverGrad(b, leaf)).isFalse();            // a leaf keeps its own persistent gradient
            Tensor c = F.scale(leaf, 4f);
            c.gradOrZeros();
            assertThat(Autograd.handOverGrad(b, c)).isFalse();               // c already accumulates elsewhere
            assertThat(b.grad().data()).isSameAs(g.data());
        }
        Tensor w = random(Shape.of(6, 6), rng, 0.4, true), x = random(Shape.of(3, 6), rng, 1, true);
        Tensor t = BE.fromInts(new int[] {1, 4, 2}, Shape.of(3));
        try (Scope s = Scope.open()) {   // activations in a step scope, so the adds hand their gradients over
            checkGradients(() -> {
                Tensor h = F.linear(x, w, null, Activation.NONE);
                for (int i = 0; i < 3; i++) h = F.add(h, F.linear(h, w, null, Activation.GELU));   // residual stream
                return F.crossEntropy(h, t, -1, 0f);
            }, List.of(w, x), 1e-2, 2e-3);
        }
    }

    /** F.linearAdd is F.add(residual, F.linear(x, w, b)) in one backend call: the same values and gradients, bit for bit on the CPU. */
    @Test
    void linearAddIsTheProductPlusTheResidual() {
        SplittableRandom rng = new SplittableRandom(21);
        Tensor x = random(Shape.of(2, 5, 12), rng, 1, true), w = random(Shape.of(9, 12), rng, 0.5, true);
        Tensor b = random(Shape.of(9), rng, 0.2, true), r = random(Shape.of(2, 5, 9), rng, 1, true);
        Tensor t = BE.fromInts(new int[] {1, 6, 0, 3, 3, 2, 5, 4, 0, 8}, Shape.of(2, 5));
        List<Tensor> inputs = List.of(x, w, b, r);
        float[][][] grads = new float[2][inputs.size()][];
        float[][] values = new float[2][];
        for (int run = 0; run < 2; run++) {
            for (Tensor p : inputs) p.setGrad(null);
            try (Scope s = Scope.open()) {
                Tensor rs = F.scale(r, 1f);                 // a step activation, as the residual stream is
                Tensor y = run == 0 ? F.add(rs, F.linear(x, w, b, Activation.NONE)) : F.linearAdd(x, w, b, rs);
                values[run] = y.toFloatArray();
                F.crossEntropy(y, t, -1, 1e-3f).backward();
                for (int i = 0; i < inputs.size(); i++) grads[run][i] = inputs.get(i).grad().toFloatArray();
            }
        }
        assertThat(values[1]).containsExactly(values[0]);
        for (int i = 0; i < inputs.size(); i++) assertThat(grads[1][i]).as("gradient %d", i).containsExactly(grads[0][i]);
        assertThatThrownBy(() -> F.linearAdd(x, w, b, BE.zeros(Shape.of(2, 5, 8), DType.F32)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("residual");
    }
}
