package dev.perceiver4j.io;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Hand-built malicious pickles inside otherwise valid torch.save zips, and zip-level corruption. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class TorchZipHostileTest {
    @TempDir
    Path dir;

    /** Minimal pickle writer (protocol 2 opcodes). */
    static final class Pkl {
        final ByteArrayOutputStream out = new ByteArrayOutputStream();

        Pkl op(int b) {
            out.write(b);
            return this;
        }

        Pkl bytes(byte[] b) {
            out.writeBytes(b);
            return this;
        }

        Pkl proto() {
            return op(0x80).op(2);
        }

        Pkl global(String module, String name) {
            return op('c').bytes((module + "\n" + name + "\n").getBytes(StandardCharsets.US_ASCII));
        }

        Pkl str(String s) {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            op('X').bytes(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(b.length).array());
            return bytes(b);
        }

        Pkl integer(int v) {
            return op('J').bytes(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(v).array());
        }

        Pkl tuple(int... dims) {
            op('(');
            for (int d : dims) {
                integer(d);
            }
            return op('t');
        }

        /** A _rebuild_tensor_v2 call for storage (type, key, numel) with the given offset, size, stride. */
        Pkl tensor(String storageType, String key, int storageNumel, int offset, int[] size, int[] stride) {
            global("torch._utils", "_rebuild_tensor_v2").op('(');
            op('(').str("storage").global("torch", storageType).str(key).str("cpu").integer(storageNumel).op('t')
                    .op('Q');
            integer(offset).tuple(size).tuple(stride).op(0x89);
            global("collections", "OrderedDict").op(')').op('R');
            return op('t').op('R');
        }

        byte[] done() {
            return out.toByteArray();
        }
    }

    static byte[] validPickle() {
        Pkl p = new Pkl().proto().global("collections", "OrderedDict").op(')').op('R').op('(');
        p.str("w").tensor("FloatStorage", "0", 6, 0, new int[] {2, 3}, new int[] {3, 1});
        p.str("b").tensor("FloatStorage", "0", 6, 4, new int[] {2}, new int[] {1});
        p.str("ids").tensor("LongStorage", "1", 3, 0, new int[] {3}, new int[] {1});
        return p.op('u').op('.').done();
    }

    static byte[] floats(float... v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : v) b.putFloat(f);
        return b.array();
    }

    static byte[] longs(long... v) {
        ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (long f : v) b.putLong(f);
        return b.array();
    }

    static Map<String, byte[]> storages() {
        Map<String, byte[]> m = new LinkedHashMap<>();
        m.put("0", floats(1, 2, 3, 4, 5, 6));
        m.put("1", longs(7, -8, 9));
        return m;
    }

    /** Writes a torch.save-like zip: archive/data.pkl, archive/byteorder, archive/data/<key>, archive/version. */
    Path zip(String name, byte[] pkl, Map<String, byte[]> storages, String byteorder) throws IOException {
        Path p = dir.resolve(name);
        try (OutputStream os = Files.newOutputStream(p); ZipOutputStream z = new ZipOutputStream(os)) {
            stored(z, "archive/data.pkl", pkl);
            if (byteorder != null) {
                stored(z, "archive/byteorder", byteorder.getBytes(StandardCharsets.US_ASCII));
            }
            for (Map.Entry<String, byte[]> e : storages.entrySet()) {
                stored(z, "archive/data/" + e.getKey(), e.getValue());
            }
            stored(z, "archive/version", "3\n".getBytes(StandardCharsets.US_ASCII));
        }
        return p;
    }

    static void stored(ZipOutputStream z, String name, byte[] data) throws IOException {
        ZipEntry e = new ZipEntry(name);
        e.setMethod(ZipEntry.STORED);
        e.setSize(data.length);
        e.setCompressedSize(data.length);
        CRC32 crc = new CRC32();
        crc.update(data);
        e.setCrc(crc.getValue());
        z.putNextEntry(e);
        z.write(data);
        z.closeEntry();
    }

    private CheckpointFormatException rejectPickle(String name, byte[] pkl) throws IOException {
        Path p = zip(name + ".pt", pkl, storages(), "little");
        CheckpointFormatException e = Fixtures.rejected(p);
        assertThat(e.getMessage()).contains(name + ".pt").contains("data.pkl");
        return e;
    }

    @Test
    void handBuiltValidCheckpointReads() throws IOException {
        Path p = zip("ok.pt", validPickle(), storages(), "little");
        try (TensorSource src = Checkpoints.open(p)) {
            assertThat(src.names()).containsExactly("w", "b", "ids");
            assertThat(src.info("w").shape()).containsExactly(2, 3);
            assertThat(src.readFloats("w")).containsExactly(1, 2, 3, 4, 5, 6);
            assertThat(src.readFloats("b")).containsExactly(5, 6);
            assertThat(src.readLongs("ids")).containsExactly(7, -8, 9);
            assertThat(src.info("ids").dtype()).isEqualTo(StoredDType.I64);
            assertThatThrownBy(() -> src.readLongs("w")).isInstanceOf(CheckpointFormatException.class);
        }
        // Wrapped in {"state_dict": {...}}: unwrapped.
        byte[] inner = validPickle();
        Pkl wrapped = new Pkl().proto().op('}').str("state_dict")
                .bytes(Arrays.copyOfRange(inner, 2, inner.length - 1)).op('s').op('.');
        try (TensorSource src = Checkpoints.open(zip("wrapped.pt", wrapped.done(), storages(), null))) {
            assertThat(src.names()).containsExactly("w", "b", "ids");
        }
    }

    @Test
    void maliciousGlobalsNeverRun() throws IOException {
        Path marker = dir.resolve("pwned");
        byte[] system = new Pkl().proto().global("posix", "system").op('(').str("touch " + marker).op('t').op('R')
                .op('.').done();
        CheckpointFormatException e = rejectPickle("system", system);
        assertThat(e.getMessage()).contains("data.pkl byte 2: global 'posix.system' is not allowed in a state dict");
        assertThat(marker).doesNotExist();

        byte[] eval = new Pkl().proto().global("builtins", "eval").op('(').str("1+1").op('t').op('R').op('.').done();
        assertThat(rejectPickle("eval", eval).getMessage()).contains("'builtins.eval'");

        byte[] getattr = new Pkl().proto().str("__builtin__").str("getattr").op(0x93).op('.').done();
        assertThat(rejectPickle("getattr", getattr).getMessage()).contains("'__builtin__.getattr'");

        byte[] os = new Pkl().proto().global("os", "system").op('.').done();
        assertThat(rejectPickle("os", os).getMessage()).contains("'os.system'");

        // Allowed global, but not callable (storage class called directly).
        byte[] call = new Pkl().proto().global("torch", "FloatStorage").op(')').op('R').op('.').done();
        assertThat(rejectPickle("call", call).getMessage()).contains("cannot be called");
    }

    @Test
    void disallowedOpcodes() throws IOException {
        byte[] inst = new Pkl().proto().op('(').op('i').bytes("os\nsystem\n".getBytes(StandardCharsets.US_ASCII))
                .op('.').done();
        assertThat(rejectPickle("inst", inst).getMessage()).contains("byte 3").contains("INST");
        byte[] obj = new Pkl().proto().op('(').op('o').op('.').done();
        assertThat(rejectPickle("obj", obj).getMessage()).contains("OBJ");
        byte[] newobj = new Pkl().proto().op(')').op(')').op(0x81).op('.').done();
        assertThat(rejectPickle("newobj", newobj).getMessage()).contains("NEWOBJ");
        byte[] ext = new Pkl().proto().op(0x82).op(1).op('.').done();
        assertThat(rejectPickle("ext", ext).getMessage()).contains("EXT1");
        byte[] unknown = new Pkl().proto().op(0xff).op('.').done();
        assertThat(rejectPickle("unknown", unknown).getMessage()).contains("unknown opcode 0xff");
        byte[] build = new Pkl().proto().op(']').op('}').op('b').op('.').done();
        assertThat(rejectPickle("build", build).getMessage()).contains("BUILD");
    }

    @Test
    void forgedLengthsAndDeepNesting() throws IOException {
        byte[] hugeStr = new Pkl().proto().op('X').bytes(new byte[] {(byte) 0xf0, (byte) 0xff, (byte) 0xff, (byte) 0xff})
                .bytes("abc".getBytes(StandardCharsets.US_ASCII)).done();
        assertThat(rejectPickle("hugeStr", hugeStr).getMessage()).contains("forged length");
        byte[] hugeStr8 = new Pkl().proto().op(0x8d).bytes(longs(1L << 62)).op('.').done();
        assertThat(rejectPickle("hugeStr8", hugeStr8).getMessage()).contains("forged length");
        byte[] frame = new Pkl().proto().op(0x95).bytes(longs(Long.MAX_VALUE)).op('.').done();
        assertThat(rejectPickle("frame", frame).getMessage()).contains("FRAME");
        Pkl deep = new Pkl().proto();
        for (int i = 0; i < 100_000; i++) {
            deep.op('(');
        }
        assertThat(rejectPickle("deepMark", deep.op('.').done()).getMessage()).contains("MARK nesting");
        Pkl tuples = new Pkl().proto().op('N');
        for (int i = 0; i < 200_000; i++) {
            tuples.op(0x85);
        }
        // Deeply nested tuples are inert data: no recursion, rejected only because it is not a state dict.
        assertThat(rejectPickle("deepTuple", tuples.op('.').done()).getMessage()).contains("expected a state dict");
        byte[] memo = new Pkl().proto().op('h').op(7).op('.').done();
        assertThat(rejectPickle("memo", memo).getMessage()).contains("memo index 7");
        byte[] underflow = new Pkl().proto().op('s').op('.').done();
        assertThat(rejectPickle("underflow", underflow).getMessage()).contains("stack");
    }

    @Test
    void truncatedPickleAtEveryCut() throws IOException {
        byte[] ok = validPickle();
        for (int cut = 0; cut < ok.length; cut += 3) {
            CheckpointFormatException e = rejectPickle("cut" + cut, Arrays.copyOf(ok, cut));
            assertThat(e.getMessage()).contains("cut" + cut);
        }
    }

    @Test
    void storageProblems() throws IOException {
        Map<String, byte[]> missing = storages();
        missing.remove("1");
        CheckpointFormatException e = Fixtures.rejected(zip("missing.pt", validPickle(), missing, "little"));
        assertThat(e.getMessage()).contains("tensor 'ids'").contains("storage '1'").contains("missing");

        byte[] tooBig = new Pkl().proto().op('}').str("w")
                .tensor("FloatStorage", "0", 6, 0, new int[] {4, 3}, new int[] {3, 1}).op('s').op('.').done();
        assertThat(rejectPickle("tooBig", tooBig).getMessage()).contains("exceeds storage '0'");

        byte[] offset = new Pkl().proto().op('}').str("w")
                .tensor("FloatStorage", "0", 6, 5, new int[] {2}, new int[] {1}).op('s').op('.').done();
        assertThat(rejectPickle("offset", offset).getMessage()).contains("exceeds storage");

        byte[] strided = new Pkl().proto().op('}').str("w")
                .tensor("FloatStorage", "0", 6, 0, new int[] {2, 3}, new int[] {1, 2}).op('s').op('.').done();
        assertThat(rejectPickle("strided", strided).getMessage()).contains("not contiguous");

        byte[] declared = new Pkl().proto().op('}').str("w")
                .tensor("FloatStorage", "0", 5, 0, new int[] {5}, new int[] {1}).op('s').op('.').done();
        assertThat(Fixtures.rejected(zip("declared.pt", declared, storages(), "little")).getMessage())
                .contains("tensor 'w'").contains("24 bytes in the archive");

        byte[] badType = new Pkl().proto().op('}').str("w")
                .tensor("UntypedStorage", "0", 6, 0, new int[] {6}, new int[] {1}).op('s').op('.').done();
        assertThat(rejectPickle("badType", badType).getMessage()).contains("torch.UntypedStorage");

        assertThat(Fixtures.rejected(zip("bigendian.pt", validPickle(), storages(), "big")).getMessage())
                .contains("byteorder");
    }

    @Test
    void zipLevelCorruption() throws IOException {
        byte[] bin = Files.readAllBytes(Fixtures.hfBin());
        Random r = new Random(7);
        for (int i = 0; i < 30; i++) {
            int cut = i < 5 ? i * 7 : r.nextInt(bin.length);
            Path p = dir.resolve("trunc" + i + ".bin");
            Files.write(p, Arrays.copyOf(bin, cut));
            Fixtures.rejected(p);
        }
        // data.pkl larger than the limit (highly compressible, so the file itself stays small).
        Path big = dir.resolve("bigpkl.pt");
        try (OutputStream os = Files.newOutputStream(big); ZipOutputStream z = new ZipOutputStream(os)) {
            z.putNextEntry(new ZipEntry("archive/data.pkl"));
            byte[] chunk = new byte[1 << 20];
            for (long w = 0; w <= TorchZipReader.MAX_PICKLE_BYTES; w += chunk.length) {
                z.write(chunk);
            }
            z.closeEntry();
        }
        assertThat(Fixtures.rejected(big).getMessage()).contains("data.pkl");
        // No data.pkl at all.
        Path none = dir.resolve("nopkl.pt");
        try (OutputStream os = Files.newOutputStream(none); ZipOutputStream z = new ZipOutputStream(os)) {
            stored(z, "archive/version", "3\n".getBytes(StandardCharsets.US_ASCII));
        }
        assertThat(Fixtures.rejected(none).getMessage()).contains("data.pkl");
    }

    @Test
    void byteFlipsInFixtureArchive() throws IOException {
        byte[] bin = Files.readAllBytes(Fixtures.hfBin());
        int pklEnd;
        try (ZipFile z = new ZipFile(Fixtures.hfBin().toFile())) {
            pklEnd = (int) z.getEntry("pytorch_model/data.pkl").getSize() + 200;
        }
        Random r = new Random(11);
        int rejected = 0;
        for (int i = 0; i < 150; i++) {
            byte[] m = bin.clone();
            int at = i % 5 == 0 ? r.nextInt(m.length) : r.nextInt(pklEnd);
            m[at] ^= (byte) (1 << r.nextInt(8));
            Path p = dir.resolve("flip" + i + ".bin");
            Files.write(p, m);
            if (Fixtures.openAndReadAll(p) != null) {
                rejected++;
            }
        }
        assertThat(rejected).isGreaterThan(10);
    }

    @Test
    void unpicklerFuzzOnlyEverThrowsCheckpointFormatException() throws IOException {
        byte[] pkl;
        try (ZipFile z = new ZipFile(Fixtures.hfBin().toFile())) {
            pkl = z.getInputStream(z.getEntry("pytorch_model/data.pkl")).readAllBytes();
        }
        assertThat(RestrictedUnpickler.load("x", pkl)).isInstanceOf(Map.class);
        Random r = new Random(3);
        for (int i = 0; i < 3000; i++) {
            byte[] m = pkl.clone();
            int flips = 1 + r.nextInt(4);
            for (int k = 0; k < flips; k++) {
                m[r.nextInt(m.length)] = (byte) r.nextInt(256);
            }
            try {
                RestrictedUnpickler.load("fuzz", m);
            } catch (CheckpointFormatException e) {
                assertThat(e.getMessage()).startsWith("fuzz byte ");
            }
        }
    }
}
