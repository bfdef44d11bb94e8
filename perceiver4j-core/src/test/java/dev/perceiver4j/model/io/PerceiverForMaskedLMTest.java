package dev.perceiver4j.model.io;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.RefBackend;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.io.SafetensorsReader;
import dev.perceiver4j.io.TensorSource;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** Parity with HF transformers' PerceiverForMaskedLM on the shared tiny fixture. */
class PerceiverForMaskedLMTest {
    static final CpuPool POOL = CpuPool.create(2);

    static Path fixture(String name) {
        try {
            return Path.of(PerceiverForMaskedLMTest.class.getResource("/fixtures/hf-perceiver-mlm-tiny/" + name).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    record Io(int b, int n, int[] ids, int[] mask, float[] logits, int v) {}

    static Io io() throws IOException {
        try (TensorSource io = SafetensorsReader.open(fixture("io.safetensors"))) {
            long[] ids = io.readLongs("input_ids"), mask = io.readLongs("attention_mask");
            int b = (int) io.info("input_ids").shape()[0], n = (int) io.info("input_ids").shape()[1];
            int[] i32 = new int[ids.length], m32 = new int[mask.length];
            for (int i = 0; i < ids.length; i++) {
                i32[i] = (int) ids[i];
                m32[i] = (int) mask[i];
            }
            return new Io(b, n, i32, m32, io.readFloats("logits"), (int) io.info("logits").shape()[2]);
        }
    }

    /** Max |ours − HF| over positions whose attention_mask is 1 (and, separately, over all). */
    static double[] maxDiff(Backend be, Path weights, Io io) throws IOException {
        PerceiverForMaskedLM m = PerceiverForMaskedLM.load(be, weights);
        float[] got;
        try (var ng = Autograd.noGrad()) {
            Tensor logits = m.forward(be.fromInts(io.ids(), Shape.of(io.b(), io.n())), be.fromInts(io.mask(), Shape.of(io.b(), io.n())), false, 0L);
            assertThat(logits.shape()).isEqualTo(Shape.of(io.b(), io.n(), io.v()));
            got = logits.toFloatArray();
        }
        double real = 0, all = 0;
        for (int r = 0; r < io.b() * io.n(); r++) {
            for (int j = 0; j < io.v(); j++) {
                double d = Math.abs(got[r * io.v() + j] - io.logits()[r * io.v() + j]);
                all = Math.max(all, d);
                if (io.mask()[r] == 1) real = Math.max(real, d);
            }
        }
        return new double[] {real, all};
    }

    @Test
    void reproducesHfLogitsFromSafetensorsAndPytorchBin() throws IOException {
        Io io = io();
        for (String weights : List.of("model.safetensors", "pytorch_model.bin")) {
            double[] d = maxDiff(new CpuBackend(POOL, new JavaSgemm(POOL)), fixture(weights), io);
            assertThat(d[0]).as("max |Δlogit| on real positions, " + weights).isLessThanOrEqualTo(1e-4);
            assertThat(d[1]).as("max |Δlogit| on all positions (HF computes padded ones the same way), " + weights).isLessThanOrEqualTo(1e-4);
        }
    }

    @Test
    void fineTuningLowersTheMaskedLmLoss() {
        // A small random model memorises one masked batch: the loss must fall below half its start
        // within 40 AdamW steps (the whole Perceiver IO backward path is exercised).
        Backend be = new CpuBackend(POOL, new JavaSgemm(POOL));
        PerceiverConfig c = new PerceiverConfig(32, 48, 8, 1, 2, 4, 2, null, null, "kv", 1, 1, true, 262, 24, "gelu", 0f);
        PerceiverForMaskedLM m = new PerceiverForMaskedLM(be, c, 3L);
        var opt = new dev.perceiver4j.train.AdamW(be, dev.perceiver4j.train.AdamW.Config.defaults(3e-3f), m.params().pack(), m.params().gradients());
        java.util.SplittableRandom rng = new java.util.SplittableRandom(5);
        int b = 4, n = 24;
        int[] ids = new int[b * n], labels = new int[b * n];
        for (int i = 0; i < ids.length; i++) {
            int tok = 6 + rng.nextInt(40);
            boolean masked = rng.nextInt(5) == 0;
            ids[i] = masked ? dev.perceiver4j.text.ByteTokenizer.MASK : tok;
            labels[i] = masked ? tok : -100;
        }
        double first = 0, last = 0;
        for (int step = 1; step <= 40; step++) {
            try (dev.perceiver4j.tensor.Scope s = dev.perceiver4j.tensor.Scope.open()) {
                opt.zeroGrad();
                Tensor logits = m.forward(be.fromInts(ids, Shape.of(b, n)), null, true, step);
                Tensor loss = dev.perceiver4j.autograd.F.crossEntropy(logits.reshape(b * n, 262), be.fromInts(labels, Shape.of(b * n)), -100, 0f);
                loss.backward();
                opt.clipGradNorm(1.0);
                opt.step(3e-3f);
                if (step == 1) first = loss.item();
                last = loss.item();
            }
        }
        assertThat(first).isGreaterThan(4.0); // ≈ ln 262 at initialisation
        assertThat(last).isLessThan(first / 2);
    }

    /**
     * Self-attention's q, k and v as one product over the packed slab's adjacent weights, read by
     * attentionPacked, and a cross-attention's k and v as one product read by attentionKvPacked
     * (-Dperceiver4j.packSelfAttention=true), give the same training step as separate products and
     * attention (false): loss and every gradient, within float rounding (the input gradient of one
     * product sums over all its columns in one pass instead of several).
     */
    @Test
    void packedSelfAttentionGivesTheSameStepAsSeparateProducts() {
        Backend be = new CpuBackend(POOL, new JavaSgemm(POOL));
        PerceiverConfig c = new PerceiverConfig(32, 48, 8, 1, 2, 4, 2, null, null, "kv", 1, 1, true, 262, 24, "gelu", 0.1f);
        int b = 3, n = 24;
        int[] ids = new int[b * n], labels = new int[b * n];
        java.util.SplittableRandom rng = new java.util.SplittableRandom(9);
        for (int i = 0; i < ids.length; i++) {
            ids[i] = 6 + rng.nextInt(250);
            labels[i] = rng.nextInt(4) == 0 ? ids[i] : -100;
        }
        float[][] separate = null;
        float separateLoss = 0;
        for (String pack : new String[] {"false", "true"}) {
            String before = System.setProperty("perceiver4j.packSelfAttention", pack);
            try {
                PerceiverForMaskedLM m = new PerceiverForMaskedLM(be, c, 3L);
                m.params().pack();
                var w = m.params().trainable();
                Tensor query = w.get("perceiver.encoder.self_attends.0.attention.self.query.weight");
                assertThat(Tensor.adjacent(query, w.get("perceiver.encoder.self_attends.0.attention.self.key.weight"),
                        w.get("perceiver.encoder.self_attends.0.attention.self.value.weight"))).as("the slab packs q, k, v weights back to back").isNotNull();
                assertThat(Tensor.adjacent(w.get("perceiver.encoder.cross_attention.attention.self.key.weight"),
                        w.get("perceiver.encoder.cross_attention.attention.self.value.weight"))).as("and a cross-attention's k, v weights").isNotNull();
                float loss;
                try (dev.perceiver4j.tensor.Scope s = dev.perceiver4j.tensor.Scope.open()) {
                    Tensor logits = m.forward(be.fromInts(ids, Shape.of(b, n)), null, true, 7L);   // attention dropout 0.1: the same masks both ways
                    Tensor l = dev.perceiver4j.autograd.F.crossEntropy(logits.reshape(b * n, 262), be.fromInts(labels, Shape.of(b * n)), -100, 0f);
                    l.backward();
                    loss = l.item();
                }
                float[][] grads = w.values().stream().map(t -> t.grad().toFloatArray()).toArray(float[][]::new);
                if (separate == null) {
                    separate = grads;
                    separateLoss = loss;
                } else {
                    assertThat(loss).isCloseTo(separateLoss, org.assertj.core.data.Offset.offset(1e-6f * Math.abs(separateLoss)));
                    String[] names = w.keySet().toArray(String[]::new);
                    for (int i = 0; i < grads.length; i++) {
                        double scale = 0, diff = 0;
                        for (int j = 0; j < grads[i].length; j++) {
                            scale = Math.max(scale, Math.abs(separate[i][j]));
                            diff = Math.max(diff, Math.abs(grads[i][j] - separate[i][j]));
                        }
                        assertThat(diff).as(names[i]).isLessThanOrEqualTo(1e-5 * Math.max(scale, 1e-3));
                    }
                }
            } finally {
                if (before == null) System.clearProperty("perceiver4j.packSelfAttention");
                else System.setProperty("perceiver4j.packSelfAttention", before);
            }
        }
    }

    /**
     * The recorded-pass runner (what predict and bench use) reproduces HF's logits, and a second
     * call with other inputs and no padding matches an ordinary forward of those inputs.
     */
    @Test
    void recordedPassRunnerMatchesHfAndTheOrdinaryForward() throws IOException {
        Io io = io();
        Backend be = new CpuBackend(POOL, new JavaSgemm(POOL));
        PerceiverForMaskedLM m = PerceiverForMaskedLM.load(be, fixture("model.safetensors"));
        try (RecordedMaskedLm pass = new RecordedMaskedLm(m, io.b(), io.n())) {
            float[] got = pass.forward(io.ids(), io.mask()).toFloatArray();
            double max = 0;
            for (int i = 0; i < got.length; i++) max = Math.max(max, Math.abs(got[i] - io.logits()[i]));
            assertThat(max).as("max |Δlogit| vs HF").isLessThanOrEqualTo(1e-4);

            int[] other = io.ids().clone();
            for (int i = 0; i < other.length; i++) other[i] = 6 + (other[i] * 7 + i) % 256;
            float[] again = pass.forward(other, null).toFloatArray(), want;
            try (var ng = Autograd.noGrad()) {
                want = m.forward(be.fromInts(other, Shape.of(io.b(), io.n())), null, false, 0L).toFloatArray();
            }
            for (int i = 0; i < want.length; i++) assertThat(again[i]).as("logit %d", i).isCloseTo(want[i], org.assertj.core.data.Offset.offset(1e-5f));
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> pass.forward(new int[3], null)).hasMessageContaining("3 token ids");
            int[] bad = io.ids().clone();
            bad[io.n() + 1] = 262;
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> pass.forward(bad, null)).hasMessageContaining("token id 262 at [1, 1]");
        }
    }

    @Test
    void referenceBackendAgreesToo() throws IOException {
        double[] d = maxDiff(new RefBackend(POOL), fixture("model.safetensors"), io());
        assertThat(d[1]).isLessThanOrEqualTo(1e-4);
    }

    @Test
    void savedModelReloadsBitIdenticallyWithHfNames(@TempDir Path tmp) throws IOException {
        Backend be = new CpuBackend(POOL, new JavaSgemm(POOL));
        PerceiverForMaskedLM m = PerceiverForMaskedLM.load(be, fixture("model.safetensors"));
        m.save(tmp);
        assertThat(tmp.resolve("config.json")).exists();
        try (TensorSource a = SafetensorsReader.open(fixture("model.safetensors")); TensorSource b = SafetensorsReader.open(tmp.resolve("model.safetensors"))) {
            assertThat(b.names()).containsExactlyInAnyOrderElementsOf(a.names());
            for (String n : a.names()) {
                assertThat(b.info(n).shape()).as(n).isEqualTo(a.info(n).shape());
                float[] x = a.readFloats(n), y = b.readFloats(n);
                for (int i = 0; i < x.length; i++) {
                    assertThat(Float.floatToRawIntBits(y[i])).as("%s[%d]", n, i).isEqualTo(Float.floatToRawIntBits(x[i]));
                }
            }
        }
        PerceiverForMaskedLM again = PerceiverForMaskedLM.load(be, tmp);
        assertThat(again.config()).isEqualTo(m.config());
    }
}
