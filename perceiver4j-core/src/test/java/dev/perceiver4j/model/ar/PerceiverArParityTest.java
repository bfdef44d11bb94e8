package dev.perceiver4j.model.ar;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.RefBackend;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.io.NamedTensor;
import dev.perceiver4j.io.SafetensorsReader;
import dev.perceiver4j.io.SafetensorsWriter;
import dev.perceiver4j.io.TensorSource;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Parity with krasserm/perceiver-io 0.11.1 {@code CausalSequenceModel} (Perceiver AR) on the shared
 * tiny fixture {@code fixtures/kr-perceiver-ar}: logits for prefix lengths 48, 20 and 0 over the
 * same left-padded batch, and 12 greedy tokens decoded with the prefix held at 24 positions.
 */
class PerceiverArParityTest {
    static final CpuPool POOL = CpuPool.create(2);
    static final int[] PREFIXES = {48, 20, 0};

    static Path fixture(String name) {
        try {
            return Path.of(PerceiverArParityTest.class.getResource("/fixtures/kr-perceiver-ar/" + name).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static int[] ints(long[] a) {
        int[] r = new int[a.length];
        for (int i = 0; i < a.length; i++) r[i] = Math.toIntExact(a[i]);
        return r;
    }

    record Io(int b, int n, int v, int[] ids, int[] pad, Map<Integer, float[]> logits, int[] prompt, int[] greedy) {}

    static Io io() throws IOException {
        try (TensorSource io = SafetensorsReader.open(fixture("io.safetensors"))) {
            int b = (int) io.info("input_ids").shape()[0], n = (int) io.info("input_ids").shape()[1];
            int v = (int) io.info("logits_prefix0").shape()[2];
            Map<Integer, float[]> logits = new java.util.HashMap<>();
            for (int p : PREFIXES) {
                long[] s = io.info("logits_prefix" + p).shape();
                assertThat(s).containsExactly(b, n - p, v);
                logits.put(p, io.readFloats("logits_prefix" + p));
            }
            return new Io(b, n, v, ints(io.readLongs("input_ids")), ints(io.readLongs("pad_mask")), logits,
                    ints(io.readLongs("greedy_prompt")), ints(io.readLongs("greedy_tokens")));
        }
    }

    /**
     * Max |ours − reference| for prefix length p over the latent positions t ∈ [p, N) whose token is
     * not padding (pad_mask[b, t] == 0), every vocabulary entry.
     */
    static double maxDiff(PerceiverAR m, Io io, int p) {
        Backend be = m.params().backend();
        int lat = io.n() - p;
        float[] got;
        try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
            Tensor logits = m.forward(be.fromInts(io.ids(), Shape.of(io.b(), io.n())), be.fromInts(io.pad(), Shape.of(io.b(), io.n())), p);
            assertThat(logits.shape()).isEqualTo(Shape.of(io.b(), lat, io.v()));
            got = logits.toFloatArray();
        }
        float[] want = io.logits().get(p);
        double max = 0;
        int compared = 0;
        for (int r = 0; r < io.b(); r++) {
            for (int i = 0; i < lat; i++) {
                if (io.pad()[r * io.n() + p + i] != 0) continue;
                compared++;
                for (int j = 0; j < io.v(); j++) {
                    int at = (r * lat + i) * io.v() + j;
                    max = Math.max(max, Math.abs(got[at] - want[at]));
                }
            }
        }
        assertThat(compared).isPositive();
        return max;
    }

    static Backend fast() {
        return new CpuBackend(POOL, new JavaSgemm(POOL));
    }

    @Test
    void configParsesTheFixture() throws IOException {
        PerceiverArConfig c = PerceiverArConfig.fromJson(dev.perceiver4j.io.Checkpoints.readConfig(fixture("config.json").getParent()));
        assertThat(c.numHeads()).isEqualTo(4);
        assertThat(c.numChannels()).isEqualTo(64);
        assertThat(c.numSelfAttentionLayers()).isEqualTo(3);
        assertThat(c.numSelfAttentionRotaryLayers()).isEqualTo(1);
        assertThat(c.maxLatents()).isEqualTo(16);
        assertThat(c.rotatedChannelsPerHead()).isEqualTo(8);
        assertThat(PerceiverArConfig.fromJson(c.toJson())).isEqualTo(c);
    }

    @Test
    void reproducesReferenceLogitsForEachPrefixLength() throws IOException {
        Io io = io();
        PerceiverAR m = PerceiverAR.load(fast(), fixture("model.safetensors"));
        for (int p : PREFIXES) {
            double d = maxDiff(m, io, p);
            System.out.printf("kr-perceiver-ar prefix %d: max |Δlogit| on non-pad latent positions = %.3g%n", p, d);
            assertThat(d).as("max |Δlogit| for prefix " + p).isLessThanOrEqualTo(1e-4);
        }
    }

    @Test
    void referenceBackendAgreesToo() throws IOException {
        Io io = io();
        PerceiverAR m = PerceiverAR.load(new RefBackend(POOL), fixture("model.safetensors"));
        for (int p : PREFIXES) assertThat(maxDiff(m, io, p)).as("prefix " + p).isLessThanOrEqualTo(1e-4);
    }

    @Test
    void greedyDecodingMatchesTheReference() throws IOException {
        Io io = io();
        PerceiverAR m = PerceiverAR.load(fast(), fixture("model.safetensors"));
        // 40-token prompt, 16 latents → prefix 24, held there while each step appends one latent.
        int prefix = io.prompt().length - m.config().maxLatents();
        assertThat(prefix).isEqualTo(24);
        int[] got;
        try (var ng = Autograd.noGrad()) {
            got = m.generateGreedy(io.prompt(), io.greedy().length, prefix);
        }
        assertThat(got).containsExactly(io.greedy());
    }

    @Test
    void loadsHuggingFacePrefixedNames(@TempDir Path dir) throws IOException {
        List<NamedTensor> renamed = new ArrayList<>();
        try (TensorSource src = SafetensorsReader.open(fixture("model.safetensors"))) {
            for (String name : src.names()) {
                renamed.add(NamedTensor.f32(PerceiverAR.HF_PREFIX + name, src.info(name).shape(), src.readFloats(name)));
            }
        }
        SafetensorsWriter.write(dir.resolve("model.safetensors"), renamed, Map.of("format", "pt"));
        Files.copy(fixture("config.json"), dir.resolve("config.json"));
        PerceiverAR m = PerceiverAR.load(fast(), dir);
        assertThat(maxDiff(m, io(), 48)).isLessThanOrEqualTo(1e-4);
    }

    @Test
    void saveAndReloadRoundTrips(@TempDir Path dir) throws IOException {
        PerceiverAR m = PerceiverAR.load(fast(), fixture("model.safetensors"));
        m.save(dir);
        assertThat(maxDiff(PerceiverAR.load(fast(), dir), io(), 20)).isLessThanOrEqualTo(1e-4);
    }
}
