package dev.perceiver4j.io;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Mutants of real safetensors files: every one must end in a CheckpointFormatException naming the file. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SafetensorsHostileTest {
    static byte[] original;
    static String header;
    static byte[] data;
    static byte[] small;

    @TempDir
    Path dir;

    @BeforeAll
    static void load(@TempDir Path tmp) throws IOException {
        original = Files.readAllBytes(Fixtures.krSafetensors());
        int n = (int) ByteBuffer.wrap(original).order(ByteOrder.LITTLE_ENDIAN).getLong();
        header = new String(original, 8, n, StandardCharsets.UTF_8);
        data = Arrays.copyOfRange(original, 8 + n, original.length);
        // A small valid file (5 tensors) for byte-flip fuzzing.
        Path s = tmp.resolve("small.safetensors");
        try (TensorSource src = SafetensorsReader.open(Fixtures.krSafetensors())) {
            List<NamedTensor> few = src.names().stream().limit(5).map(name -> {
                try {
                    return NamedTensor.f32(name, src.info(name).shape(), src.readFloats(name));
                } catch (IOException e) {
                    throw new IllegalStateException(e);
                }
            }).toList();
            SafetensorsWriter.write(s, few, Map.of("format", "pt"));
        }
        small = Files.readAllBytes(s);
    }

    private Path file(String name, byte[] bytes) throws IOException {
        Path p = dir.resolve(name);
        Files.write(p, bytes);
        return p;
    }

    private static byte[] withHeaderLength(long length, byte[] headerBytes, byte[] dataBytes) {
        ByteBuffer bb = ByteBuffer.allocate(8 + headerBytes.length + dataBytes.length).order(ByteOrder.LITTLE_ENDIAN);
        bb.putLong(length).put(headerBytes).put(dataBytes);
        return bb.array();
    }

    private static byte[] withHeader(String json) {
        byte[] h = json.getBytes(StandardCharsets.UTF_8);
        return withHeaderLength(h.length, h, data);
    }

    private CheckpointFormatException rejectHeader(String name, String json) throws IOException {
        return Fixtures.rejected(file(name + ".safetensors", withHeader(json)));
    }

    @Test
    void originalIsValid() throws IOException {
        assertThat(Fixtures.openAndReadAll(file("ok.safetensors", original))).isNull();
        assertThat(Fixtures.openAndReadAll(file("small.safetensors", small))).isNull();
        assertThat(Fixtures.openAndReadAll(file("same.safetensors", withHeader(header)))).isNull();
    }

    @Test
    void truncatedAtManyCutPoints() throws IOException {
        int headerEnd = 8 + header.length();
        java.util.TreeSet<Integer> cuts = new java.util.TreeSet<>();
        for (int i = 0; i <= 16; i++) cuts.add(i);
        for (int i = 16; i < headerEnd + 8; i += 97) cuts.add(i);
        for (int i = headerEnd - 4; i <= headerEnd + 4; i++) cuts.add(i);
        Random r = new Random(1);
        for (int i = 0; i < 40; i++) cuts.add(headerEnd + 1 + r.nextInt(original.length - headerEnd - 1));
        cuts.add(original.length - 1);
        for (int cut : cuts) {
            CheckpointFormatException e = Fixtures.rejected(file("cut" + cut + ".safetensors",
                    Arrays.copyOf(original, cut)));
            assertThat(e.getMessage()).contains("cut" + cut + ".safetensors");
        }
        assertThat(cuts.size()).isGreaterThan(60);
    }

    @Test
    void forgedHeaderLengths() throws IOException {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        assertThat(Fixtures.rejected(file("zero.safetensors", withHeaderLength(0, h, data))).getMessage())
                .contains("header length 0");
        assertThat(Fixtures.rejected(file("big.safetensors", withHeaderLength(original.length, h, data)))
                .getMessage()).contains("exceeds the file");
        assertThat(Fixtures.rejected(file("huge.safetensors", withHeaderLength(1L << 62, h, data))).getMessage())
                .contains(String.valueOf(1L << 62));
        assertThat(Fixtures.rejected(file("neg.safetensors", withHeaderLength(-8, h, data))).getMessage())
                .contains("header length");
        // Shorter than the real header: JSON cut short.
        Fixtures.rejected(file("short.safetensors", withHeaderLength(h.length - 10, h, data)));
        // Longer than the limit in a (sparse) file big enough to hold it: rejected before allocating.
        Path sparse = dir.resolve("sparse.safetensors");
        try (RandomAccessFile raf = new RandomAccessFile(sparse.toFile(), "rw")) {
            raf.setLength(SafetensorsReader.MAX_HEADER_BYTES + 64);
            byte[] len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN)
                    .putLong(SafetensorsReader.MAX_HEADER_BYTES + 1).array();
            raf.write(len);
        }
        assertThat(Fixtures.rejected(sparse).getMessage()).contains("limit");
        Fixtures.rejected(file("tiny.safetensors", new byte[] {1, 2, 3}));
        Fixtures.rejected(file("empty.safetensors", new byte[0]));
    }

    @Test
    void inconsistentEntries() throws IOException {
        String first = "\"cross_attention.0.module.attention.k_proj.weight\":{\"dtype\":\"F32\",\"shape\":[64,64],"
                + "\"data_offsets\":[0,16384]}";
        assertThat(header).contains(first);
        String name = "cross_attention.0.module.attention.k_proj.weight";
        Map<String, String> cases = new java.util.LinkedHashMap<>();
        cases.put("outOfRange", first.replace("[0,16384]", "[" + data.length + "," + (data.length + 16384) + "]")
                .replace("[64,64]", "[64,64]"));
        cases.put("endBeforeBegin", first.replace("[0,16384]", "[16384,0]"));
        cases.put("unknownDtype", first.replace("\"F32\"", "\"F8_E9M9\""));
        cases.put("sizeMismatch", first.replace("[64,64]", "[64,63]"));
        cases.put("negativeDim", first.replace("[64,64]", "[-64,-64]"));
        cases.put("fractionalDim", first.replace("[64,64]", "[64.5,64]"));
        cases.put("stringDim", first.replace("[64,64]", "[\"64\",64]"));
        cases.put("hugeDim", first.replace("[64,64]", "[99999999999999999999999,1]"));
        cases.put("overflow", first.replace("[64,64]", "[4294967296,4294967296,4294967296]"));
        cases.put("offsetsNotPair", first.replace("[0,16384]", "[0,8192,16384]"));
        cases.put("missingDtype", first.replace("\"dtype\":\"F32\",", ""));
        cases.put("extraField", first.replace("\"dtype\"", "\"evil\":1,\"dtype\""));
        cases.put("entryNotObject", "\"" + name + "\":[1,2]");
        for (Map.Entry<String, String> c : cases.entrySet()) {
            CheckpointFormatException e = rejectHeader(c.getKey(), header.replace(first, c.getValue()));
            assertThat(e.getMessage()).as(c.getKey()).contains(name);
        }
        assertThat(rejectHeader("mismatch", header.replace(first, cases.get("sizeMismatch"))).getMessage())
                .contains("shape [64, 63] × F32 needs 16128 bytes but offsets [0, 16384) give 16384");
        // Overlap: a second tensor pointing into the first one's bytes.
        String overlap = header.replaceFirst("\\{", "{\"evil.overlap\":{\"dtype\":\"F32\",\"shape\":[2],"
                + "\"data_offsets\":[100,108]},");
        assertThat(rejectHeader("overlap", overlap).getMessage()).contains("overlap");
        // Duplicate key.
        String dup = header.replaceFirst("\\{", "{" + first + ",");
        assertThat(rejectHeader("dup", dup).getMessage()).containsIgnoringCase("duplicate");
        // Metadata must be string→string.
        rejectHeader("meta1", header.replaceFirst("\\{", "{\"__metadata__\":{\"a\":1},"));
        rejectHeader("meta2", header.replaceFirst("\\{", "{\"__metadata__\":[\"a\"],"));
        rejectHeader("notObject", "[1,2,3]");
        rejectHeader("trailing", header + "{}");
        rejectHeader("nullHeader", "null");
    }

    @Test
    void hostileJson() throws IOException {
        rejectHeader("deep", "{\"a\":" + "[".repeat(100_000));
        rejectHeader("deepObj", "{\"a\":" + "{\"a\":".repeat(10_000));
        String bigString = "x".repeat(Json.MAX_STRING_LENGTH + 10);
        rejectHeader("bigString", "{\"__metadata__\":{\"a\":\"" + bigString + "\"}}");
        rejectHeader("bigName", "{\"" + "n".repeat(Json.MAX_NAME_LENGTH + 10) + "\":{}}");
        rejectHeader("bigNumber", header.replace("[64,64]", "[" + "9".repeat(5000) + ",64]"));
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        byte[] badUtf8 = h.clone();
        badUtf8[3] = (byte) 0xC3;
        badUtf8[4] = (byte) 0x28;
        Fixtures.rejected(file("utf8.safetensors", withHeaderLength(badUtf8.length, badUtf8, data)));
        rejectHeader("garbage", "\0\0\0\0");
    }

    @Test
    void randomByteFlipsInHeaderAndEverywhere() throws IOException {
        Random r = new Random(42);
        int n = (int) ByteBuffer.wrap(small).order(ByteOrder.LITTLE_ENDIAN).getLong();
        int rejected = 0;
        for (int i = 0; i < 400; i++) {
            byte[] m = small.clone();
            int flips = 1 + r.nextInt(3);
            for (int k = 0; k < flips; k++) {
                // Mostly the header (where structure lives), sometimes anywhere.
                int at = r.nextInt(4) == 0 ? r.nextInt(m.length) : r.nextInt(8 + n);
                m[at] ^= (byte) (1 << r.nextInt(8));
            }
            if (Fixtures.openAndReadAll(file("flip" + i + ".safetensors", m)) != null) {
                rejected++;
            }
        }
        assertThat(rejected).isGreaterThan(100);
    }
}
