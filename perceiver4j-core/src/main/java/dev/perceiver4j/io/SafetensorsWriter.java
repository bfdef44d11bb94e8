package dev.perceiver4j.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Writes safetensors files readable by Hugging Face's {@code safetensors}: header keys sorted by name with
 * {@code __metadata__} first, header padded with spaces to a multiple of 8 bytes, tensor data little-endian
 * in sorted-name order. Output is deterministic. The file is written to a temporary sibling, forced to disk
 * and atomically moved over the target.
 */
public final class SafetensorsWriter {
    private SafetensorsWriter() {}

    /** Writes {@code tensors} (names must be unique) and string metadata (may be empty) to {@code file}. */
    public static void write(Path file, List<NamedTensor> tensors, Map<String, String> metadata) throws IOException {
        List<NamedTensor> sorted = new ArrayList<>(tensors);
        sorted.sort(Comparator.comparing(NamedTensor::name));
        HashSet<String> seen = new HashSet<>();
        for (NamedTensor t : sorted) {
            if (!seen.add(t.name())) {
                throw new IllegalArgumentException("duplicate tensor name '" + t.name() + "'");
            }
        }
        byte[] header = header(sorted, metadata);
        Path dir = file.toAbsolutePath().getParent();
        Path tmp = dir.resolve(file.getFileName() + ".tmp-" + Long.toHexString(ThreadLocalRandom.current().nextLong()));
        boolean ok = false;
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                ByteBuffer buf = ByteBuffer.allocate(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
                buf.putLong(header.length);
                flush(ch, buf);
                writeFully(ch, ByteBuffer.wrap(header));
                for (NamedTensor t : sorted) {
                    writeData(ch, buf, t);
                }
                flush(ch, buf);
                ch.force(true);
            }
            try {
                Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING);
            }
            ok = true;
        } finally {
            if (!ok) {
                Files.deleteIfExists(tmp);
            }
        }
    }

    /** The padded JSON header for tensors already sorted by name. */
    static byte[] header(List<NamedTensor> sorted, Map<String, String> metadata) throws IOException {
        Map<String, Object> root = new LinkedHashMap<>();
        if (metadata != null && !metadata.isEmpty()) {
            root.put("__metadata__", new TreeMap<>(metadata));
        }
        long offset = 0;
        for (NamedTensor t : sorted) {
            long end = offset + t.byteSize();
            Map<String, Object> e = new LinkedHashMap<>();
            e.put("dtype", t.dtype().safetensorsName());
            e.put("shape", t.shape());
            e.put("data_offsets", new long[] {offset, end});
            root.put(t.name(), e);
            offset = end;
        }
        byte[] json = Json.MAPPER.writeValueAsString(root).getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) / 8 * 8;
        byte[] out = new byte[padded];
        System.arraycopy(json, 0, out, 0, json.length);
        for (int i = json.length; i < padded; i++) {
            out[i] = ' ';
        }
        return out;
    }

    private static void writeData(FileChannel ch, ByteBuffer buf, NamedTensor t) throws IOException {
        switch (t.dtype()) {
            case F32 -> {
                for (float v : t.f32()) {
                    room(ch, buf, 4).putFloat(v);
                }
            }
            case BF16 -> {
                for (float v : t.f32()) {
                    room(ch, buf, 2).putShort(TensorCodec.floatToBf16(v));
                }
            }
            case I64 -> {
                for (long v : t.i64()) {
                    room(ch, buf, 8).putLong(v);
                }
            }
            case I32 -> {
                for (int v : t.i32()) {
                    room(ch, buf, 4).putInt(v);
                }
            }
            default -> throw new IllegalArgumentException("unsupported dtype " + t.dtype());
        }
    }

    private static ByteBuffer room(FileChannel ch, ByteBuffer buf, int n) throws IOException {
        if (buf.remaining() < n) {
            flush(ch, buf);
        }
        return buf;
    }

    private static void flush(FileChannel ch, ByteBuffer buf) throws IOException {
        buf.flip();
        writeFully(ch, buf);
        buf.clear();
    }

    private static void writeFully(FileChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }
}
