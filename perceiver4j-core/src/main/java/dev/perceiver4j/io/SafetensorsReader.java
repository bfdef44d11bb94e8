package dev.perceiver4j.io;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads a safetensors file: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data section.
 * The file is memory-mapped read-only (no 2 GB limit); the header is validated completely before any tensor
 * can be read: dtypes, shapes, byte sizes, offsets within the data section and non-overlapping ranges.
 */
public final class SafetensorsReader extends IndexedSource<SafetensorsReader.Entry> {
    /** Largest accepted JSON header. */
    public static final long MAX_HEADER_BYTES = 100L << 20;

    record Entry(TensorInfo info, long begin, long end) {}

    private final Arena arena;
    private final MemorySegment data;
    private final Map<String, String> metadata;
    private volatile boolean closed;

    private SafetensorsReader(Path path, Arena arena, MemorySegment data, Map<String, Entry> entries,
            Map<String, String> metadata) {
        super(path, entries);
        this.arena = arena;
        this.data = data;
        this.metadata = metadata;
    }

    /** Opens and validates a safetensors file. */
    public static SafetensorsReader open(Path file) throws IOException {
        String where = file.toString();
        Arena arena = Arena.ofShared();
        boolean ok = false;
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) {
                throw new CheckpointFormatException(where + ": file is " + size
                        + " bytes, too short for the 8-byte header length");
            }
            MemorySegment all = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long n = all.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
            if (n <= 0) {
                throw new CheckpointFormatException(where + ": header length " + Long.toUnsignedString(n)
                        + " is invalid (must be between 1 and the file size minus 8)");
            }
            if (n > size - 8) {
                throw new CheckpointFormatException(where + ": header length " + n + " exceeds the file ("
                        + size + " bytes, at most " + (size - 8) + " available): truncated or corrupt");
            }
            if (n > MAX_HEADER_BYTES) {
                throw new CheckpointFormatException(where + ": header length " + n + " exceeds the limit of "
                        + MAX_HEADER_BYTES + " bytes");
            }
            byte[] header = new byte[(int) n];
            MemorySegment.copy(all, ValueLayout.JAVA_BYTE, 8, header, 0, (int) n);
            MemorySegment data = all.asSlice(8 + n);
            JsonNode root = Json.parse(header, where + ": header");
            Map<String, String> metadata = new LinkedHashMap<>();
            Map<String, Entry> entries = parseHeader(where, root, data.byteSize(), metadata);
            SafetensorsReader r = new SafetensorsReader(file, arena, data, entries, Collections.unmodifiableMap(metadata));
            ok = true;
            return r;
        } catch (CheckpointFormatException e) {
            throw e;
        } catch (IOException e) {
            throw e;
        } catch (RuntimeException e) {
            throw new CheckpointFormatException(where + ": cannot read: " + e, e);
        } finally {
            if (!ok) {
                arena.close();
            }
        }
    }

    /** Validates the header; returns entries ordered by data offset (ties by name). */
    static Map<String, Entry> parseHeader(String where, JsonNode root, long dataSize, Map<String, String> metadata)
            throws CheckpointFormatException {
        if (!root.isObject()) {
            throw new CheckpointFormatException(where + ": header is a JSON " + root.getNodeType()
                    + ", expected an object");
        }
        List<Entry> list = new ArrayList<>();
        Iterator<Map.Entry<String, JsonNode>> it = root.properties().iterator();
        while (it.hasNext()) {
            Map.Entry<String, JsonNode> e = it.next();
            String name = e.getKey();
            JsonNode v = e.getValue();
            if (name.equals("__metadata__")) {
                if (!v.isObject()) {
                    throw new CheckpointFormatException(where + ": __metadata__ must be an object of strings, got "
                            + v.getNodeType());
                }
                for (Map.Entry<String, JsonNode> m : v.properties()) {
                    if (!m.getValue().isTextual()) {
                        throw new CheckpointFormatException(where + ": __metadata__ value '" + clip(m.getKey())
                                + "' must be a string, got " + m.getValue().getNodeType());
                    }
                    metadata.put(m.getKey(), m.getValue().textValue());
                }
                continue;
            }
            list.add(parseEntry(where, name, v, dataSize));
        }
        list.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end)
                .thenComparing(x -> x.info().name()));
        Entry prev = null;
        for (Entry x : list) {
            if (prev != null && x.begin() < prev.end() && x.end() > x.begin()) {
                throw new CheckpointFormatException(where + ": tensor '" + clip(x.info().name()) + "' bytes ["
                        + x.begin() + ", " + x.end() + ") overlap tensor '" + clip(prev.info().name()) + "' bytes ["
                        + prev.begin() + ", " + prev.end() + ")");
            }
            if (x.end() > x.begin() || prev == null) {
                prev = x;
            }
        }
        Map<String, Entry> out = new LinkedHashMap<>();
        for (Entry x : list) {
            out.put(x.info().name(), x);
        }
        return out;
    }

    private static Entry parseEntry(String where, String name, JsonNode v, long dataSize)
            throws CheckpointFormatException {
        String t = where + ": tensor '" + clip(name) + "'";
        if (name.isEmpty()) {
            throw new CheckpointFormatException(where + ": empty tensor name");
        }
        if (!v.isObject()) {
            throw new CheckpointFormatException(t + ": entry must be an object, got " + v.getNodeType());
        }
        for (Map.Entry<String, JsonNode> f : v.properties()) {
            String k = f.getKey();
            if (!k.equals("dtype") && !k.equals("shape") && !k.equals("data_offsets")) {
                throw new CheckpointFormatException(t + ": unknown field '" + clip(k) + "'");
            }
        }
        JsonNode dt = v.get("dtype");
        if (dt == null || !dt.isTextual()) {
            throw new CheckpointFormatException(t + ": missing or non-string dtype");
        }
        StoredDType dtype = StoredDType.fromSafetensorsName(dt.textValue()).orElseThrow(() ->
                new CheckpointFormatException(t + ": unknown dtype '" + clip(dt.textValue()) + "' (known: "
                        + Arrays.stream(StoredDType.values()).map(StoredDType::safetensorsName).toList() + ")"));
        JsonNode sh = v.get("shape");
        if (sh == null || !sh.isArray()) {
            throw new CheckpointFormatException(t + ": missing or non-array shape");
        }
        if (sh.size() > 64) {
            throw new CheckpointFormatException(t + ": shape has " + sh.size() + " dimensions (limit 64)");
        }
        long[] shape = new long[sh.size()];
        for (int i = 0; i < shape.length; i++) {
            JsonNode d = sh.get(i);
            if (!d.isIntegralNumber() || !d.canConvertToLong() || d.longValue() < 0) {
                throw new CheckpointFormatException(t + ": shape entry " + i + " is " + clip(d.toString())
                        + ", expected a non-negative integer");
            }
            shape[i] = d.longValue();
        }
        JsonNode off = v.get("data_offsets");
        if (off == null || !off.isArray() || off.size() != 2) {
            throw new CheckpointFormatException(t + ": data_offsets must be an array [begin, end]");
        }
        long[] be = new long[2];
        for (int i = 0; i < 2; i++) {
            JsonNode d = off.get(i);
            if (!d.isIntegralNumber() || !d.canConvertToLong() || d.longValue() < 0) {
                throw new CheckpointFormatException(t + ": data_offsets entry " + i + " is " + clip(d.toString())
                        + ", expected a non-negative integer");
            }
            be[i] = d.longValue();
        }
        long begin = be[0];
        long end = be[1];
        if (end < begin) {
            throw new CheckpointFormatException(t + ": data_offsets [" + begin + ", " + end + ") end before begin");
        }
        if (end > dataSize) {
            throw new CheckpointFormatException(t + ": data_offsets [" + begin + ", " + end
                    + ") lie outside the data section of " + dataSize + " bytes");
        }
        long bytes;
        try {
            long numel = 1;
            for (long d : shape) {
                numel = Math.multiplyExact(numel, d);
            }
            bytes = Math.multiplyExact(numel, (long) dtype.byteSize());
        } catch (ArithmeticException e) {
            throw new CheckpointFormatException(t + ": shape " + Arrays.toString(shape) + " × " + dtype
                    + " overflows a 64-bit byte count");
        }
        if (bytes != end - begin) {
            throw new CheckpointFormatException(t + ": shape " + Arrays.toString(shape) + " × " + dtype + " needs "
                    + bytes + " bytes but offsets [" + begin + ", " + end + ") give " + (end - begin));
        }
        return new Entry(new TensorInfo(name, dtype, shape), begin, end);
    }

    static String clip(String s) {
        return s.length() > 200 ? s.substring(0, 200) + "…" : s;
    }




    @Override
    public TensorInfo info(String name) {
        return entry(name).info();
    }


    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException(path() + ": reader is closed");
        }
    }

    @Override
    public float[] readFloats(String name) throws IOException {
        Entry e = entry(name);
        checkOpen();
        float[] out = new float[TensorCodec.arrayLength(path().toString(), e.info())];
        TensorCodec.decodeFloats(data, e.begin(), e.info().dtype(), out, 0, out.length);
        return out;
    }

    @Override
    public long[] readLongs(String name) throws IOException {
        Entry e = entry(name);
        checkOpen();
        TensorCodec.requireIntegral(path().toString(), e.info());
        long[] out = new long[TensorCodec.arrayLength(path().toString(), e.info())];
        TensorCodec.decodeLongs(data, e.begin(), e.info().dtype(), out, 0, out.length);
        return out;
    }

    /** The raw little-endian bytes of a tensor as a read-only slice of the mapping (valid until close). */
    public MemorySegment rawBytes(String name) {
        Entry e = entry(name);
        checkOpen();
        return data.asSlice(e.begin(), e.end() - e.begin()).asReadOnly();
    }

    @Override
    public Map<String, String> metadata() {
        return metadata;
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            arena.close();
        }
    }
}
