package dev.perceiver4j.model.io;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.Arrays;
import java.util.Map;

import static dev.perceiver4j.model.io.PerceiverForMaskedLMTest.POOL;
import static dev.perceiver4j.model.io.PerceiverForMaskedLMTest.fixture;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Inference passes keep the queries of the encoder's latents and of the decoder's learned output
 * queries between passes (FoldedQueries): they must give the bits of the forward that projects them
 * in every pass (the one run while gradients are recorded), and see any change to the weights.
 */
class FoldedQueriesTest {
    final Backend be = new CpuBackend(POOL, new JavaSgemm(POOL));

    /** The forward that projects the queries itself: gradients on (nothing is folded), eval mode. */
    float[] unfolded(PerceiverForMaskedLM m, int[] ids, int[] mask, int b, int n) {
        try (Scope s = Scope.open()) {
            return m.forward(be.fromInts(ids, Shape.of(b, n)), be.fromInts(mask, Shape.of(b, n)), false, 0L).toFloatArray();
        }
    }

    float[] folded(PerceiverForMaskedLM m, int[] ids, int[] mask, int b, int n) {
        try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
            return m.forward(be.fromInts(ids, Shape.of(b, n)), be.fromInts(mask, Shape.of(b, n)), false, 0L).toFloatArray();
        }
    }

    @Test
    void foldedPassesGiveTheBitsOfTheUnfoldedForwardAndFollowWeightChanges() throws IOException {
        PerceiverForMaskedLMTest.Io io = PerceiverForMaskedLMTest.io();
        PerceiverForMaskedLM m = PerceiverForMaskedLM.load(be, fixture("model.safetensors"));
        int n = io.n();
        for (int b : new int[] {1, io.b()}) {                   // one row: the kept queries read in place; more: repeated
            int[] ids = Arrays.copyOf(io.ids(), b * n), mask = Arrays.copyOf(io.mask(), b * n);
            float[] want = unfolded(m, ids, mask, b, n);
            assertThat(folded(m, ids, mask, b, n)).as("first inference pass (computes the folded queries), batch %d", b).containsExactly(want);
            assertThat(folded(m, ids, mask, b, n)).as("second inference pass (reuses them), batch %d", b).containsExactly(want);
        }
        // A write into any weight the folded queries are made of is seen by the next pass.
        Map<String, Tensor> w = m.params().trainable();
        int[] ids = Arrays.copyOf(io.ids(), n), mask = Arrays.copyOf(io.mask(), n);
        for (String name : new String[] {
                "perceiver.embeddings.latents",
                "perceiver.encoder.cross_attention.attention.self.layernorm1.weight",
                "perceiver.encoder.cross_attention.attention.self.query.bias",
                "perceiver.decoder.output_position_encodings.position_embeddings",
                "perceiver.decoder.decoding_cross_attention.attention.self.layernorm1.bias",
                "perceiver.decoder.decoding_cross_attention.attention.self.query.weight"}) {
            Tensor t = w.get(name);
            assertThat(t).as(name).isNotNull();
            float[] before = folded(m, ids, mask, 1, n);
            t.floats()[t.offset() + t.size() - 1] += 0.5f;       // the last element: the comparison must reach it
            float[] after = folded(m, ids, mask, 1, n);
            assertThat(after).as("after a write into %s", name).containsExactly(unfolded(m, ids, mask, 1, n));
            assertThat(after).as("the write changes the logits (%s)", name).isNotEqualTo(before);
        }
    }
}
