package dev.perceiver4j.autograd;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.ProfilingBackend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.fast.FastOps;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * F's bf16 product operands (Backend.matmulOperandType = BF16, as CUDA's bf16 mode): one copy per
 * activation shared by every product that reads it, kept or rebuilt for backward, its gradient
 * handed to the activation. Run on the CPU backend built with bf16 operands, which widens them
 * back exactly, against the same graph on the plain F32 backend.
 */
class ProductOperandTest {
    static final CpuPool POOL = CpuPool.create(2);

    static ProfilingBackend backend(DType operands) {
        return new ProfilingBackend(new CpuBackend(POOL, new JavaSgemm(POOL), operands));
    }

    /** The loss of one training step (its backward run too) on {@code be}, whose counts then cover that step alone. */
    static double profiledStep(ProfilingBackend be, java.util.function.Supplier<Tensor> lossOfStep) {
        be.reset();
        try (Scope s = Scope.open()) {
            Tensor loss = lossOfStep.get();
            loss.backward();
            return loss.item();
        }
    }

    /** Uniform values in ±scale; rounded to bf16 when {@code exact}, so that a bf16 copy holds them unchanged. */
    static Tensor random(Backend be, Shape s, long seed, double scale, boolean exact) {
        SplittableRandom rng = new SplittableRandom(seed);
        float[] a = new float[s.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = (float) ((rng.nextDouble() * 2 - 1) * scale);
            if (exact) a[i] = Float.intBitsToFloat((FastOps.floatToBf16(a[i]) & 0xFFFF) << 16);
        }
        return be.fromFloats(a, s).requiresGrad(true);
    }

    record Run(float loss, List<float[]> grads, long casts) {}

    /** Two products read one activation a = 0.5·x (exact in bf16 when x is): loss, gradients, casts. */
    static Run twoProducts(ProfilingBackend be) {
        Tensor x = random(be, Shape.of(3, 4, 16), 1, 2, true);
        Tensor w1 = random(be, Shape.of(8, 16), 2, 0.5, false), w2 = random(be, Shape.of(8, 16), 3, 0.5, false);
        Tensor b1 = random(be, Shape.of(8), 4, 0.2, false);
        Tensor t = be.fromInts(new int[] {1, 6, 0, 3, 3, 2, 5, 4, 0, 1, 7, 7}, Shape.of(3, 4));
        be.reset();
        try (Scope s = Scope.open()) {
            Tensor a = F.scale(x, 0.5f);
            Tensor logits = F.add(F.linear(a, w1, b1, Activation.NONE), F.linear(a, w2, null, Activation.NONE));
            Tensor loss = F.crossEntropy(logits, t, -1, 1e-3f);
            loss.backward();
            return new Run(loss.item(), List.of(x.grad().toFloatArray(), w1.grad().toFloatArray(), w2.grad().toFloatArray(),
                    b1.grad().toFloatArray()), be.calls("cast F32->BF16"));
        }
    }

    @Test
    void oneSharedCopyOfExactValuesGivesTheF32ResultsBitForBit() {
        Run f32 = twoProducts(backend(DType.F32)), bf16 = twoProducts(backend(DType.BF16));
        assertThat(f32.casts()).isZero();
        assertThat(bf16.casts()).as("one copy for both products, none for the weights on the CPU").isEqualTo(1);
        assertThat(bf16.loss()).isEqualTo(f32.loss());
        for (int i = 0; i < f32.grads().size(); i++) assertThat(bf16.grads().get(i)).as("gradient %d", i).containsExactly(f32.grads().get(i));
    }

    @Test
    void aDiscardedInputIsRebuiltOnceForBackwardAndHandedBack() {
        float[][] reference = null;
        for (DType operands : new DType[] {DType.F32, DType.BF16}) {
            ProfilingBackend be = backend(operands);
            Tensor x = random(be, Shape.of(2, 6, 32), 5, 1.5, false);
            Tensor gamma = random(be, Shape.of(32), 6, 1, false), beta = random(be, Shape.of(32), 7, 0.3, false);
            Tensor wq = random(be, Shape.of(16, 32), 8, 0.4, false), wk = random(be, Shape.of(16, 32), 9, 0.4, false);
            Tensor t = be.fromInts(new int[] {1, 6, 0, 3, 3, 2, 5, 4, 0, 1, 7, 9}, Shape.of(2, 6));
            List<Tensor> inputs = List.of(x, gamma, beta, wq, wk);
            be.reset();
            float[][] grads = new float[inputs.size()][];
            try (Scope s = Scope.open()) {
                Tensor xn = F.layerNorm(x, gamma, beta, 1e-5f);
                Tensor logits = F.add(F.linear(xn, wq, null, Activation.NONE), F.linear(xn, wk, null, Activation.GELU));
                Tensor copy = xn.productCopy();
                assertThat(copy == null).isEqualTo(operands == DType.F32);
                F.discard(xn);
                assertThat(xn.data()).isNull();
                if (copy != null) assertThat(copy.data()).as("the copy goes with its source").isNull();
                F.crossEntropy(logits, t, -1, 0f).backward();
                assertThat(xn.data()).isNull();                          // rebuilt, then handed back
                if (copy != null) assertThat(copy.data()).isNull();
                for (int i = 0; i < inputs.size(); i++) grads[i] = inputs.get(i).grad().toFloatArray();
            }
            assertThat(be.calls("layerNorm ")).as("forward, then one rebuild for both products' backward").isEqualTo(2);
            if (operands == DType.F32) {
                reference = grads;
                continue;
            }
            assertThat(be.calls("cast F32->BF16")).as("forward copy, then one rebuild").isEqualTo(2);
            for (int i = 0; i < inputs.size(); i++) {   // bf16 rounding of xn (8-bit mantissa): within 2 % of the largest entry
                double max = 0, err = 0;
                for (int j = 0; j < grads[i].length; j++) {
                    max = Math.max(max, Math.abs(reference[i][j]));
                    err = Math.max(err, Math.abs(grads[i][j] - reference[i][j]));
                }
                assertThat(err).as("gradient %d", i).isLessThanOrEqualTo(0.02 * max).isPositive();
            }
        }
    }

    @Test
    void copiesAreMadeOnlyForStepActivationsAndDieWithTheirScope() {
        ProfilingBackend be = backend(DType.BF16);
        Tensor w = random(be, Shape.of(8, 16), 2, 0.5, false);
        Tensor x = random(be, Shape.of(4, 16), 1, 1, false);
        be.reset();
        try (Scope outer = Scope.open()) {
            F.matmul(x, false, w, true, null, Activation.NONE);            // x is a leaf outside the scope: rounded by the backend, not copied
            assertThat(be.calls("cast")).isZero();
            Tensor a = F.scale(x, 2f);
            try (Scope inner = Scope.open()) {
                F.linear(a, w, null, Activation.NONE);
                F.linear(a.reshape(2, 2, 16), w, null, Activation.NONE);   // a view shares its base's copy
                assertThat(a.productCopy()).isNotNull();
                assertThat(be.calls("cast")).isEqualTo(1);
            }
            assertThat(a.productCopy()).as("its buffer went back with the inner scope").isNull();
            F.linear(a, w, null, Activation.NONE);
            assertThat(be.calls("cast")).isEqualTo(2);
        }
    }

    /** A copy made without gradients is not reused by a product that needs them: the gradient still reaches the source. */
    @Test
    void aCopyMadeWithoutGradientsIsNotReusedWhenGradientsAreNeeded() {
        ProfilingBackend be = backend(DType.BF16);
        Tensor w = random(be, Shape.of(8, 16), 2, 0.5, false);
        Tensor x = random(be, Shape.of(4, 16), 1, 1, true);
        try (Scope s = Scope.open()) {
            Tensor a = F.scale(x, 0.5f);
            try (var ng = Autograd.noGrad()) {
                F.linear(a, w, null, Activation.NONE);
            }
            Tensor y = F.linear(a, w, null, Activation.NONE);
            F.crossEntropy(y, be.fromInts(new int[] {1, 2, 3, 4}, Shape.of(4)), -1, 0f).backward();
            assertThat(x.grad()).isNotNull();
            float[] g = x.grad().toFloatArray();
            double norm = 0;
            for (float v : g) norm += v * v;
            assertThat(norm).isPositive();
        }
    }

    @Test
    void layerNormAndProductOutputsInBf16AreTheRoundedF32OutputsAndGeluReadsItsRoundedPreActivation() {
        for (Backend be : new Backend[] {backend(DType.F32), new dev.perceiver4j.backend.cpu.RefBackend(POOL)}) {
            Tensor x = random(be, Shape.of(6, 40), 11, 3, false), g = random(be, Shape.of(40), 12, 1, false), b = random(be, Shape.of(40), 13, 1, false);
            Tensor w = random(be, Shape.of(24, 40), 14, 0.5, false);
            try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
                Tensor[][] pairs = {
                        {F.layerNorm(x, g, b, 1e-5f), F.layerNorm(x, g, b, 1e-5f, DType.BF16)},
                        {F.linear(x, w, null, Activation.NONE), F.linear(x, w, null, Activation.NONE, DType.BF16)}};
                for (Tensor[] p : pairs) {
                    assertThat(p[1].dtype()).isEqualTo(DType.BF16);
                    Tensor rounded = be.empty(p[0].shape(), DType.BF16);
                    be.cast(p[0], rounded);
                    assertThat(p[1].toFloatArray()).as(be.name()).containsExactly(rounded.toFloatArray());
                }
                // with GELU the pre-activation is kept as bf16 too (as autocast keeps it): the output is
                // GELU of the rounded pre-activation, rounded
                Tensor pre16 = be.empty(Shape.of(6, 24), DType.BF16), act = be.empty(Shape.of(6, 24), DType.F32);
                Tensor expected = be.empty(Shape.of(6, 24), DType.BF16);
                be.cast(F.linear(x, w, null, Activation.NONE), pre16);
                be.activation(Activation.GELU, pre16, act);
                be.cast(act, expected);
                Tensor h = F.linear(x, w, null, Activation.GELU, DType.BF16);
                assertThat(h.dtype()).isEqualTo(DType.BF16);
                assertThat(h.toFloatArray()).as(be.name()).containsExactly(expected.toFloatArray());
            }
        }
    }

    /**
     * Attention reads bf16 projections (PerceiverLayer writes q, k, v as bf16 on a bf16-product backend):
     * every backend widens them, so for bf16-exact values output and gradients equal the F32 run's
     * bit for bit, and the gradients reach the bf16 tensors as F32.
     */
    @Test
    void attentionTakesBf16InputsAndGivesTheF32ResultsForExactValues() {
        for (Backend be : new Backend[] {backend(DType.F32), new dev.perceiver4j.backend.cpu.RefBackend(POOL)}) {
            Tensor[] f32 = {random(be, Shape.of(2, 5, 8), 21, 1.5, true), random(be, Shape.of(2, 7, 8), 22, 1.5, true),
                    random(be, Shape.of(2, 7, 12), 23, 2, true)};
            Tensor[] bf16 = new Tensor[3];
            for (int i = 0; i < 3; i++) {
                bf16[i] = be.empty(f32[i].shape(), DType.BF16);
                be.cast(f32[i], bf16[i]);
                bf16[i].requiresGrad(true);
            }
            Tensor targets = be.fromInts(new int[] {0, 3, 5, 1, 2, 4, 5, 0, 1, 3}, Shape.of(10));
            float[][] outs = new float[2][];
            for (int run = 0; run < 2; run++) {
                Tensor[] in = run == 0 ? f32 : bf16;
                try (Scope s = Scope.open()) {
                    Tensor out = F.attention(in[0], in[1], in[2], null, 2, true, 0f, 0L, 0L);   // [2, 5, 12]
                    outs[run] = out.toFloatArray();
                    F.crossEntropy(out.reshape(10, 12), targets, -1, 0f).backward();
                }
            }
            assertThat(outs[1]).as(be.name()).containsExactly(outs[0]);
            for (int i = 0; i < 3; i++) {
                assertThat(bf16[i].grad().dtype()).isEqualTo(DType.F32);
                assertThat(bf16[i].grad().toFloatArray()).as(be.name() + " gradient " + i).containsExactly(f32[i].grad().toFloatArray());
            }
        }
    }

    /**
     * One masked-LM step of a small Perceiver IO (encoder cross-attention, 2 latent layers, decoder) with
     * bf16 product operands: q, k and v reach attention as bf16 (written so by their products), attention
     * stores its 4 outputs as bf16 for the output projections (forward, and backward reads them so), the
     * only cast left is the logits' input, and the loss stays within bf16 rounding of the F32 run's;
     * with F32 operands nothing is cast.
     */
    @Test
    void aPerceiverIoStepWithBf16ProductInputsFeedsAttentionBf16Projections() {
        var c = new dev.perceiver4j.model.io.PerceiverConfig(32, 48, 8, 1, 2, 4, 2, null, null, "kv", 1, 1, true, 262, 24, "gelu", 0f);
        double[] losses = new double[2];
        long[] casts = new long[2], bf16Attentions = new long[2], bf16Outputs = new long[2];
        for (int run = 0; run < 2; run++) {
            ProfilingBackend be = backend(run == 0 ? DType.F32 : DType.BF16);
            var m = new dev.perceiver4j.model.io.PerceiverForMaskedLM(be, c, 3L);
            int[] ids = new SplittableRandom(5).ints(2L * 24, 6, 262).toArray();
            int[] labels = new SplittableRandom(6).ints(2L * 24, 6, 262).toArray();
            losses[run] = profiledStep(be, () -> F.crossEntropy(m.forward(be.fromInts(ids, Shape.of(2, 24)), null, true, 1L).reshape(48, 262),
                    be.fromInts(labels, Shape.of(48)), -1, 0f));
            casts[run] = be.calls("cast F32->BF16");
            bf16Attentions[run] = be.calls("attention bf16 ") + be.calls("attentionBackward bf16 ");
            bf16Outputs[run] = be.callsWhere(k -> k.startsWith("attention") && k.endsWith(" out bf16"));
        }
        assertThat(casts[0]).isZero();
        assertThat(casts[1]).isEqualTo(1);
        assertThat(bf16Attentions).containsExactly(0, 2 * 4);
        assertThat(bf16Outputs).containsExactly(0, 2 * 4);
        assertThat(Math.abs(losses[1] - losses[0])).isLessThanOrEqualTo(1e-2 * losses[0]).isPositive();
    }

    /**
     * One Perceiver AR training step (cross-attention and 4 self-attention layers): the 5 attention outputs are
     * stored as bf16 for their output projections (forward, and backward reads them so), the logits' input is
     * the only rounded copy; the 3 self-attention layers without rotary get q, k, v as bf16 from their products,
     * forward and backward.
     */
    @Test
    void aPerceiverArStepWithBf16ProductInputsCastsOnlyWhatNoKernelWritesAsBf16() {
        var c = dev.perceiver4j.model.ar.PerceiverArConfig.krasserm(2, 4, 1, 2, 0.5f, dev.perceiver4j.text.ByteTokenizer.VOCAB, 48, 16, 32, false, true);
        double[] losses = new double[2];
        long[] casts = new long[2], bf16Attentions = new long[2], bf16Outputs = new long[2];
        for (int run = 0; run < 2; run++) {
            ProfilingBackend be = backend(run == 0 ? DType.F32 : DType.BF16);
            var m = new dev.perceiver4j.model.ar.PerceiverAR(be, c, 3L);
            int[] ids = new SplittableRandom(5).ints(2L * 48, 6, 262).toArray();
            int[] targets = new SplittableRandom(6).ints(2L * 16, 6, 262).toArray();
            losses[run] = profiledStep(be, () -> F.crossEntropy(m.forwardTraining(ids, 2, 32, 1L), be.fromInts(targets, Shape.of(2, 16)), -1, 0f));
            casts[run] = be.calls("cast F32->BF16");
            bf16Attentions[run] = be.calls("attention bf16 ") + be.calls("attentionBackward bf16 ");
            bf16Outputs[run] = be.callsWhere(k -> k.startsWith("attention") && k.endsWith(" out bf16"));
        }
        assertThat(casts[0]).isZero();
        assertThat(casts[1]).isEqualTo(1);
        assertThat(bf16Attentions).containsExactly(0, 2 * 3);
        assertThat(bf16Outputs).containsExactly(0, 2 * 5);
        assertThat(Math.abs(losses[1] - losses[0])).isLessThanOrEqualTo(1e-2 * losses[0]).isPositive();
    }
}
