package dev.perceiver4j.io;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(value = 60, unit = TimeUnit.SECONDS)
class CheckpointReadTest {

    @Test
    void safetensorsAndTorchZipHoldTheSameStateDict() throws IOException {
        try (TensorSource st = SafetensorsReader.open(Fixtures.hfSafetensors());
                TensorSource pt = TorchZipReader.open(Fixtures.hfBin())) {
            assertThat(st.names()).hasSize(73);
            assertThat(new HashSet<>(pt.names())).isEqualTo(new HashSet<>(st.names()));
            for (String n : st.names()) {
                TensorInfo a = st.info(n);
                TensorInfo b = pt.info(n);
                assertThat(b).isEqualTo(a);
                assertThat(a.dtype()).isEqualTo(StoredDType.F32);
                float[] x = st.readFloats(n);
                float[] y = pt.readFloats(n);
                assertThat(x).hasSize((int) a.numel());
                for (int i = 0; i < x.length; i++) {
                    if (Float.floatToRawIntBits(x[i]) != Float.floatToRawIntBits(y[i])) {
                        throw new AssertionError(n + "[" + i + "]: " + x[i] + " vs " + y[i]);
                    }
                }
            }
            assertThat(st.metadata()).containsEntry("format", "pt");
            assertThat(pt.metadata()).isEmpty();
            assertThat(st.info("embedding_decoder.bias").shape()).containsExactly(262);
        }
    }

    @Test
    void torchZipKeepsPickleOrder() throws IOException {
        try (TensorSource pt = TorchZipReader.open(Fixtures.hfBin())) {
            assertThat(pt.names().get(0)).isEqualTo("perceiver.input_preprocessor.embeddings.weight");
            assertThat(pt.info(pt.names().get(0)).shape()).containsExactly(262, 48);
        }
    }

    @Test
    void perceiverArSafetensorsReads() throws IOException {
        try (TensorSource src = Checkpoints.open(Fixtures.krSafetensors())) {
            assertThat(src).isInstanceOf(SafetensorsReader.class);
            assertThat(src.names()).hasSize(47)
                    .contains("cross_attention.0.module.attention.q_proj.weight", "output_adapter.bias",
                            "input_adapter.frq_pos_encoding.inv_freq");
            for (String n : src.names()) {
                float[] v = src.readFloats(n);
                assertThat(v).hasSize((int) src.info(n).numel());
            }
        }
    }

    @Test
    void unknownTensorAndWrongAccessorAreClearErrors() throws IOException {
        try (TensorSource src = SafetensorsReader.open(Fixtures.hfSafetensors())) {
            assertThatThrownBy(() -> src.info("nope.weight"))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("model.safetensors").hasMessageContaining("nope.weight");
            assertThatThrownBy(() -> src.readLongs("embedding_decoder.bias"))
                    .isInstanceOf(CheckpointFormatException.class)
                    .hasMessageContaining("embedding_decoder.bias").hasMessageContaining("F32");
        }
        try (TensorSource src = TorchZipReader.open(Fixtures.hfBin())) {
            assertThatThrownBy(() -> src.readFloats("nope"))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("pytorch_model.bin").hasMessageContaining("nope");
        }
    }

    @Test
    void tensorInfoCopiesShapes() {
        long[] shape = {2, 3};
        TensorInfo info = new TensorInfo("a", StoredDType.F32, shape);
        shape[0] = 99;
        assertThat(info.shape()).containsExactly(2, 3);
        info.shape()[1] = 77;
        assertThat(info.shape()).containsExactly(2, 3);
        assertThat(info.numel()).isEqualTo(6);
        assertThat(new TensorInfo("s", StoredDType.I8, new long[0]).numel()).isEqualTo(1);
        assertThat(StoredDType.BF16.byteSize()).isEqualTo(2);
        assertThat(StoredDType.fromSafetensorsName("I64")).contains(StoredDType.I64);
        assertThat(StoredDType.fromSafetensorsName("F8_E4M3")).isEmpty();
    }

    @Test
    void modelDirectoryPrefersSafetensorsThenBin(@TempDir Path dir) throws IOException {
        Path fixtureDir = Fixtures.hfSafetensors().getParent();
        try (TensorSource src = Checkpoints.open(fixtureDir)) {
            assertThat(src.path().getFileName().toString()).isEqualTo("model.safetensors");
        }
        Files.copy(Fixtures.hfBin(), dir.resolve("pytorch_model.bin"));
        try (TensorSource src = Checkpoints.open(dir)) {
            assertThat(src).isInstanceOf(TorchZipReader.class);
            assertThat(src.names()).hasSize(73);
        }
        Path empty = Files.createDirectory(dir.resolve("empty"));
        assertThatThrownBy(() -> Checkpoints.open(empty))
                .isInstanceOf(CheckpointFormatException.class)
                .hasMessageContaining("model.safetensors").hasMessageContaining("pytorch_model.bin")
                .hasMessageContaining("empty");
    }

    @Test
    void readsConfigWithLimits(@TempDir Path dir) throws IOException {
        JsonNode cfg = Checkpoints.readConfig(Fixtures.hfSafetensors().getParent());
        assertThat(cfg.get("d_model").asInt()).isEqualTo(48);
        assertThatThrownBy(() -> Checkpoints.readConfig(dir))
                .isInstanceOf(NoSuchFileException.class).hasMessageContaining("config.json");
        Files.writeString(dir.resolve("config.json"), "[".repeat(10_000));
        assertThatThrownBy(() -> Checkpoints.readConfig(dir))
                .isInstanceOf(CheckpointFormatException.class).hasMessageContaining("config.json");
        Files.writeString(dir.resolve("config.json"), "{\"a\":1,\"a\":2}");
        assertThatThrownBy(() -> Checkpoints.readConfig(dir))
                .isInstanceOf(CheckpointFormatException.class).hasMessageContaining("config.json");
    }

    @Test
    void stateDictReportListsEveryProblem() throws IOException {
        try (TensorSource src = SafetensorsReader.open(Fixtures.hfSafetensors())) {
            Map<String, long[]> expected = new LinkedHashMap<>();
            for (String n : src.names()) {
                expected.put(n, src.info(n).shape());
            }
            assertThat(StateDict.compare(src, expected).isClean()).isTrue();
            expected.remove("embedding_decoder.bias");
            expected.put("extra.weight", new long[] {4, 4});
            expected.put("perceiver.embeddings.latents", new long[] {13, 64});
            StateDict.LoadReport r = StateDict.compare(src, expected);
            assertThat(r.missing()).containsExactly("extra.weight [4, 4]");
            assertThat(r.unexpected()).containsExactly("embedding_decoder.bias [262]");
            assertThat(r.misshaped()).containsExactly(
                    "perceiver.embeddings.latents expected [13, 64] but file has [12, 64]");
            assertThatThrownBy(() -> r.throwIfAny(src.path()))
                    .isInstanceOf(CheckpointFormatException.class)
                    .hasMessageContaining("model.safetensors").hasMessageContaining("1 missing")
                    .hasMessageContaining("1 unexpected").hasMessageContaining("1 mis-shaped");
            assertThat(List.of(r.describe())).isNotEmpty();
        }
    }
}
