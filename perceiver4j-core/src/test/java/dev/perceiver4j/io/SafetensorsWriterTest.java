package dev.perceiver4j.io;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SafetensorsWriterTest {

    static List<NamedTensor> fixtureTensors() throws IOException {
        List<NamedTensor> out = new ArrayList<>();
        try (TensorSource src = SafetensorsReader.open(Fixtures.hfSafetensors())) {
            for (String n : src.names()) {
                out.add(NamedTensor.f32(n, src.info(n).shape(), src.readFloats(n)));
            }
        }
        return out;
    }

    @Test
    void roundTripIsBitExactAlignedSortedAndDeterministic(@TempDir Path dir) throws IOException {
        List<NamedTensor> tensors = fixtureTensors();
        Path a = dir.resolve("a.safetensors");
        Path b = dir.resolve("b.safetensors");
        SafetensorsWriter.write(a, tensors, Map.of("format", "pt", "note", "perceiver4j"));
        SafetensorsWriter.write(b, tensors.reversed(), Map.of("note", "perceiver4j", "format", "pt"));
        assertThat(Files.readAllBytes(a)).isEqualTo(Files.readAllBytes(b));
        try (var files = Files.list(dir)) {
            assertThat(files.map(p -> p.getFileName().toString()).toList())
                    .containsExactlyInAnyOrder("a.safetensors", "b.safetensors");
        }

        try (TensorSource src = SafetensorsReader.open(a)) {
            assertThat(src.names()).hasSize(tensors.size());
            assertThat(src.metadata()).containsEntry("format", "pt").containsEntry("note", "perceiver4j");
            for (NamedTensor t : tensors) {
                assertThat(src.info(t.name()).shape()).containsExactly(t.shape());
                float[] back = src.readFloats(t.name());
                for (int i = 0; i < back.length; i++) {
                    assertThat(Float.floatToRawIntBits(back[i])).isEqualTo(Float.floatToRawIntBits(t.f32()[i]));
                }
            }
        }

        // Layout as the safetensors library writes/expects it (checked independently of the reader).
        byte[] bytes = Files.readAllBytes(a);
        long n = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).getLong();
        assertThat(n % 8).isZero();
        String header = new String(bytes, 8, (int) n, StandardCharsets.UTF_8);
        assertThat(header.stripTrailing()).endsWith("}");
        assertThat(header.substring(header.stripTrailing().length())).matches(" *");
        JsonNode root = new ObjectMapper().readTree(header);
        List<String> keys = new ArrayList<>();
        root.fieldNames().forEachRemaining(keys::add);
        assertThat(keys.get(0)).isEqualTo("__metadata__");
        assertThat(keys.subList(1, keys.size())).isSorted();
        long expectBegin = 0;
        for (Iterator<String> it = keys.listIterator(1); it.hasNext(); ) {
            JsonNode e = root.get(it.next());
            assertThat(e.get("data_offsets").get(0).asLong()).isEqualTo(expectBegin);
            expectBegin = e.get("data_offsets").get(1).asLong();
        }
        assertThat(8 + n + expectBegin).isEqualTo(bytes.length);
    }

    @Test
    void integerAndBf16Tensors(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("mixed.safetensors");
        float one = 1f;
        float halfwayEven = Float.intBitsToFloat(0x3F808000); // ties to 0x3F80
        float halfwayOdd = Float.intBitsToFloat(0x3F818000); // ties to 0x3F82
        float above = Float.intBitsToFloat(0x3F808001); // rounds up to 0x3F81
        SafetensorsWriter.write(f, List.of(
                NamedTensor.bf16("b", new long[] {5}, new float[] {one, halfwayEven, halfwayOdd, above, Float.NaN}),
                NamedTensor.i64("ids", new long[] {2, 2}, new long[] {Long.MIN_VALUE, -1, 0, Long.MAX_VALUE}),
                NamedTensor.i32("mask", new long[] {3}, new int[] {1, 0, -7}),
                NamedTensor.f32("scalar", new long[0], new float[] {3.5f}),
                NamedTensor.f32("empty", new long[] {0, 4}, new float[0])), Map.of());
        try (TensorSource src = SafetensorsReader.open(f)) {
            assertThat(src.metadata()).isEmpty();
            assertThat(src.info("b").dtype()).isEqualTo(StoredDType.BF16);
            float[] b = src.readFloats("b");
            assertThat(Float.floatToRawIntBits(b[0])).isEqualTo(0x3F800000);
            assertThat(Float.floatToRawIntBits(b[1])).isEqualTo(0x3F800000);
            assertThat(Float.floatToRawIntBits(b[2])).isEqualTo(0x3F820000);
            assertThat(Float.floatToRawIntBits(b[3])).isEqualTo(0x3F810000);
            assertThat(b[4]).isNaN();
            assertThat(src.readLongs("ids")).containsExactly(Long.MIN_VALUE, -1, 0, Long.MAX_VALUE);
            assertThat(src.readLongs("mask")).containsExactly(1, 0, -7);
            assertThat(src.readFloats("mask")).containsExactly(1f, 0f, -7f);
            assertThat(src.readFloats("scalar")).containsExactly(3.5f);
            assertThat(src.info("scalar").shape()).isEmpty();
            assertThat(src.readFloats("empty")).isEmpty();
            assertThatThrownBy(() -> src.readLongs("b")).isInstanceOf(CheckpointFormatException.class);
        }
    }

    @Test
    void f16AndOtherStoredTypesDecodeExactly(@TempDir Path dir) throws IOException {
        // Hand-built file with every F16 bit pattern, plus U8, I8, BOOL, I16, F64.
        int n16 = 65536;
        String json = "{\"h\":{\"dtype\":\"F16\",\"shape\":[65536],\"data_offsets\":[0,131072]},"
                + "\"u\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[131072,131074]},"
                + "\"s\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[131074,131076]},"
                + "\"t\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[131076,131078]},"
                + "\"w\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[131078,131080]},"
                + "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[131080,131088]}}";
        byte[] h = json.getBytes(StandardCharsets.UTF_8);
        ByteBuffer bb = ByteBuffer.allocate(8 + h.length + 131088).order(ByteOrder.LITTLE_ENDIAN);
        bb.putLong(h.length).put(h);
        for (int i = 0; i < n16; i++) {
            bb.putShort((short) i);
        }
        bb.put((byte) 200).put((byte) 3).put((byte) -5).put((byte) 7).put((byte) 0).put((byte) 1);
        bb.putShort((short) -300).putDouble(0.1);
        Path f = dir.resolve("types.safetensors");
        Files.write(f, bb.array());
        try (TensorSource src = Checkpoints.open(f)) {
            float[] h16 = src.readFloats("h");
            for (int i = 0; i < n16; i++) {
                float want = Float.float16ToFloat((short) i);
                if (Float.isNaN(want)) {
                    assertThat(h16[i]).isNaN();
                } else {
                    assertThat(Float.floatToRawIntBits(h16[i])).isEqualTo(Float.floatToRawIntBits(want));
                }
            }
            assertThat(src.readLongs("u")).containsExactly(200, 3);
            assertThat(src.readLongs("s")).containsExactly(-5, 7);
            assertThat(src.readLongs("t")).containsExactly(0, 1);
            assertThat(src.readLongs("w")).containsExactly(-300);
            assertThat(src.readFloats("d")).containsExactly(0.1f);
            assertThatThrownBy(() -> src.readLongs("h")).isInstanceOf(CheckpointFormatException.class);
        }
    }

    @Test
    void rejectsInvalidTensorsToWrite(@TempDir Path dir) {
        assertThatThrownBy(() -> NamedTensor.f32("x", new long[] {2, 2}, new float[3]))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("x");
        assertThatThrownBy(() -> SafetensorsWriter.write(dir.resolve("d.safetensors"), List.of(
                NamedTensor.f32("x", new long[] {1}, new float[1]),
                NamedTensor.f32("x", new long[] {1}, new float[1])), Map.of()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("duplicate");
    }

    @Test
    void shardedIndexOpensEachShardOnceAndRejectsEscapes(@TempDir Path dir) throws IOException {
        List<NamedTensor> tensors = fixtureTensors();
        List<NamedTensor> first = tensors.subList(0, 30);
        List<NamedTensor> second = tensors.subList(30, tensors.size());
        SafetensorsWriter.write(dir.resolve("model-00001-of-00002.safetensors"), first, Map.of("format", "pt"));
        SafetensorsWriter.write(dir.resolve("model-00002-of-00002.safetensors"), second, Map.of("format", "pt"));
        StringBuilder wm = new StringBuilder();
        for (NamedTensor t : tensors) {
            if (!wm.isEmpty()) {
                wm.append(',');
            }
            wm.append('"').append(t.name()).append("\":\"model-0000").append(first.contains(t) ? 1 : 2)
                    .append("-of-00002.safetensors\"");
        }
        Path index = dir.resolve("model.safetensors.index.json");
        Files.writeString(index, "{\"metadata\":{\"total_size\":12345},\"weight_map\":{" + wm + "}}");
        try (TensorSource src = Checkpoints.open(dir)) {
            assertThat(src).isInstanceOf(ShardedSafetensors.class);
            assertThat(((ShardedSafetensors) src).shardCount()).isEqualTo(2);
            assertThat(src.names()).hasSize(73);
            assertThat(src.metadata()).containsEntry("total_size", "12345");
            NamedTensor last = tensors.getLast();
            assertThat(src.readFloats(last.name())).isEqualTo(last.f32());
        }
        for (String evil : List.of("../model-00001-of-00002.safetensors", "/etc/passwd", "sub/x.safetensors",
                "..", "")) {
            Files.writeString(index, "{\"weight_map\":{\"a\":" + new ObjectMapper().writeValueAsString(evil) + "}}");
            assertThatThrownBy(() -> ShardedSafetensors.open(index))
                    .isInstanceOf(CheckpointFormatException.class)
                    .hasMessageContaining("model.safetensors.index.json").hasMessageContaining("plain file name");
        }
        Files.writeString(index, "{\"weight_map\":{\"not.there\":\"model-00001-of-00002.safetensors\"}}");
        assertThatThrownBy(() -> ShardedSafetensors.open(index))
                .isInstanceOf(CheckpointFormatException.class).hasMessageContaining("not.there");
        Files.writeString(index, "{\"weight_map\":{\"a\":\"missing.safetensors\"}}");
        assertThatThrownBy(() -> ShardedSafetensors.open(index)).isInstanceOf(IOException.class)
                .hasMessageContaining("missing.safetensors");
    }
}
