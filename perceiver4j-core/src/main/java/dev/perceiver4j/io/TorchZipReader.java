package dev.perceiver4j.io;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Enumeration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/**
 * Reads the zip format written by {@code torch.save} (PyTorch ≥ 1.6): {@code <archive>/data.pkl} (the pickled
 * state dict, interpreted by {@link RestrictedUnpickler}), {@code <archive>/data/<key>} (raw little-endian
 * storages), {@code <archive>/byteorder} (must be "little" when present) and {@code <archive>/version}.
 * Entry sizes from the central directory are checked against limits and the file size before anything is
 * read; storages are streamed into the destination array and must hold exactly the bytes the pickle declares.
 */
public final class TorchZipReader extends IndexedSource<TorchZipReader.Entry> {
    /** Largest accepted data.pkl. */
    public static final long MAX_PICKLE_BYTES = 64L << 20;
    /** Largest plausible deflate expansion (deflate cannot exceed ~1032:1). */
    private static final long MAX_DEFLATE_RATIO = 1040;

    record Entry(TensorInfo info, RestrictedUnpickler.TensorRef ref, ZipEntry zipEntry) {}

    private final ZipFile zip;
    private volatile boolean closed;

    private TorchZipReader(Path path, ZipFile zip, Map<String, Entry> entries) {
        super(path, entries);
        this.zip = zip;
    }

    /** Opens and validates a torch.save zip checkpoint. */
    public static TorchZipReader open(Path file) throws IOException {
        String where = file.toString();
        long fileSize = Files.size(file);
        ZipFile zip;
        try {
            zip = new ZipFile(file.toFile());
        } catch (IOException | RuntimeException e) {
            throw new CheckpointFormatException(where + ": not a readable zip archive (" + e.getMessage()
                    + "); torch.save files from PyTorch < 1.6 (plain pickle) are not supported", e);
        }
        boolean ok = false;
        try {
            TorchZipReader r = read(file, where, fileSize, zip);
            ok = true;
            return r;
        } catch (CheckpointFormatException e) {
            throw e;
        } catch (IOException | RuntimeException e) {
            throw new CheckpointFormatException(where + ": corrupt zip archive: " + e, e);
        } finally {
            if (!ok) {
                zip.close();
            }
        }
    }

    private static TorchZipReader read(Path file, String where, long fileSize, ZipFile zip) throws IOException {
        String prefix = null;
        Map<String, ZipEntry> byName = new HashMap<>();
        Enumeration<? extends ZipEntry> en = zip.entries();
        while (en.hasMoreElements()) {
            ZipEntry ze = en.nextElement();
            byName.put(ze.getName(), ze);
            String n = ze.getName();
            if (n.endsWith("/data.pkl") && n.indexOf('/') == n.length() - "/data.pkl".length()) {
                if (prefix != null) {
                    throw new CheckpointFormatException(where + ": more than one data.pkl in the archive");
                }
                prefix = n.substring(0, n.length() - "data.pkl".length());
            } else if (n.equals("data.pkl")) {
                if (prefix != null) {
                    throw new CheckpointFormatException(where + ": more than one data.pkl in the archive");
                }
                prefix = "";
            }
        }
        if (prefix == null) {
            throw new CheckpointFormatException(where + ": no <archive>/data.pkl entry (not a torch.save zip)");
        }
        ZipEntry bo = byName.get(prefix + "byteorder");
        if (bo != null) {
            String order = new String(readBounded(where, zip, bo, 64, fileSize), StandardCharsets.US_ASCII).trim();
            if (!order.equals("little")) {
                throw new CheckpointFormatException(where + ": byteorder is '" + SafetensorsReader.clip(order)
                        + "', only 'little' is supported");
            }
        }
        byte[] pkl = readBounded(where, zip, byName.get(prefix + "data.pkl"), MAX_PICKLE_BYTES, fileSize);
        Object root = RestrictedUnpickler.load(where + ": data.pkl", pkl);
        Map<?, ?> dict = stateDict(where, root);
        Map<String, Entry> entries = new LinkedHashMap<>();
        Map<String, RestrictedUnpickler.StorageRef> storages = new HashMap<>();
        for (Map.Entry<?, ?> e : dict.entrySet()) {
            if (!(e.getValue() instanceof RestrictedUnpickler.TensorRef ref)) {
                continue;
            }
            if (!(e.getKey() instanceof String name)) {
                throw new CheckpointFormatException(where + ": tensor under a non-string key ("
                        + RestrictedUnpickler.typeName(e.getKey()) + ")");
            }
            RestrictedUnpickler.StorageRef st = ref.storage();
            String t = where + ": tensor '" + SafetensorsReader.clip(name) + "'";
            RestrictedUnpickler.StorageRef prev = storages.putIfAbsent(st.key(), st);
            if (prev != null && (prev.dtype() != st.dtype() || prev.numel() != st.numel())) {
                throw new CheckpointFormatException(t + ": storage '" + st.key()
                        + "' declared with two different types or sizes");
            }
            ZipEntry ze = byName.get(prefix + "data/" + st.key());
            if (ze == null) {
                throw new CheckpointFormatException(t + ": storage '" + st.key() + "' (entry " + prefix + "data/"
                        + st.key() + ") is missing from the archive");
            }
            long declared;
            try {
                declared = Math.multiplyExact(st.numel(), (long) st.dtype().byteSize());
            } catch (ArithmeticException ex) {
                throw new CheckpointFormatException(t + ": storage '" + st.key() + "' size overflows");
            }
            checkSizes(where, ze, fileSize);
            if (ze.getSize() != declared) {
                throw new CheckpointFormatException(t + ": storage '" + st.key() + "' has " + ze.getSize()
                        + " bytes in the archive but the pickle declares " + st.numel() + " × " + st.dtype()
                        + " = " + declared + " bytes");
            }
            entries.put(name, new Entry(new TensorInfo(name, st.dtype(), ref.shape()), ref, ze));
        }
        return new TorchZipReader(file, zip, Collections.unmodifiableMap(entries));
    }

    /** The dict of tensors: the top-level dict, or the only nested dict holding tensors (e.g. {"state_dict": …}). */
    private static Map<?, ?> stateDict(String where, Object root) throws CheckpointFormatException {
        if (!(root instanceof Map<?, ?> m)) {
            throw new CheckpointFormatException(where + ": data.pkl holds a " + RestrictedUnpickler.typeName(root)
                    + ", expected a state dict");
        }
        for (int depth = 0; depth < 4; depth++) {
            if (m.values().stream().anyMatch(v -> v instanceof RestrictedUnpickler.TensorRef)) {
                return m;
            }
            List<Map<?, ?>> nested = new ArrayList<>();
            for (Object v : m.values()) {
                if (v instanceof Map<?, ?> sub && sub != m) {
                    nested.add(sub);
                }
            }
            if (nested.size() != 1) {
                break;
            }
            m = nested.get(0);
        }
        if (m.values().stream().anyMatch(v -> v instanceof RestrictedUnpickler.TensorRef)) {
            return m;
        }
        if (m.isEmpty()) {
            return m;
        }
        throw new CheckpointFormatException(where + ": data.pkl holds no dict of tensors");
    }

    private static void checkSizes(String where, ZipEntry ze, long fileSize) throws CheckpointFormatException {
        long size = ze.getSize();
        long csize = ze.getCompressedSize();
        if (size < 0 || csize < 0) {
            throw new CheckpointFormatException(where + ": entry '" + ze.getName() + "' has no size in the central directory");
        }
        if (csize > fileSize) {
            throw new CheckpointFormatException(where + ": entry '" + ze.getName() + "' claims " + csize
                    + " compressed bytes, more than the file's " + fileSize);
        }
        if (ze.getMethod() == ZipEntry.STORED ? size != csize : size / MAX_DEFLATE_RATIO > csize + 1) {
            throw new CheckpointFormatException(where + ": entry '" + ze.getName() + "' claims " + size
                    + " bytes from " + csize + " compressed bytes (forged size)");
        }
    }

    /** Reads a small entry, checking its declared size and that the stream holds exactly that many bytes. */
    private static byte[] readBounded(String where, ZipFile zip, ZipEntry ze, long max, long fileSize)
            throws IOException {
        checkSizes(where, ze, fileSize);
        if (ze.getSize() > max) {
            throw new CheckpointFormatException(where + ": entry '" + ze.getName() + "' is " + ze.getSize()
                    + " bytes, more than the limit of " + max);
        }
        byte[] b;
        try (InputStream in = zip.getInputStream(ze)) {
            b = in.readNBytes((int) ze.getSize());
            if (b.length != ze.getSize() || in.read() != -1) {
                throw new CheckpointFormatException(where + ": entry '" + ze.getName() + "' holds "
                        + (b.length != ze.getSize() ? b.length : "more") + " bytes but the directory says "
                        + ze.getSize());
            }
        }
        return b;
    }




    @Override
    public TensorInfo info(String name) {
        return entry(name).info();
    }


    @FunctionalInterface
    private interface ChunkSink {
        void accept(MemorySegment chunk, int dstOff, int count);
    }

    /** Streams the tensor's bytes from its storage entry, decoding chunk by chunk. */
    private void stream(Entry e, int count, ChunkSink sink) throws IOException {
        if (closed) {
            throw new IllegalStateException(path() + ": reader is closed");
        }
        StoredDType t = e.info().dtype();
        int es = t.byteSize();
        String where = path() + ": tensor '" + e.info().name() + "'";
        byte[] buf = new byte[Math.max(es, (1 << 16) / es * es)];
        try (InputStream in = zip.getInputStream(e.zipEntry())) {
            in.skipNBytes(e.ref().storageOffset() * es);
            int done = 0;
            while (done < count) {
                int n = Math.min(count - done, buf.length / es);
                int bytes = n * es;
                int got = in.readNBytes(buf, 0, bytes);
                if (got != bytes) {
                    throw new CheckpointFormatException(where + ": storage entry '" + e.zipEntry().getName()
                            + "' ends early (truncated archive)");
                }
                sink.accept(MemorySegment.ofArray(buf), done, n);
                done += n;
            }
        } catch (EOFException ex) {
            throw new CheckpointFormatException(where + ": storage entry '" + e.zipEntry().getName()
                    + "' ends early (truncated archive)", ex);
        } catch (CheckpointFormatException ex) {
            throw ex;
        } catch (IOException | RuntimeException ex) {
            throw new CheckpointFormatException(where + ": cannot read storage '" + e.zipEntry().getName() + "': "
                    + ex, ex);
        }
    }

    @Override
    public float[] readFloats(String name) throws IOException {
        Entry e = entry(name);
        float[] out = new float[TensorCodec.arrayLength(path().toString(), e.info())];
        StoredDType t = e.info().dtype();
        stream(e, out.length, (chunk, off, n) -> TensorCodec.decodeFloats(chunk, 0, t, out, off, n));
        return out;
    }

    @Override
    public long[] readLongs(String name) throws IOException {
        Entry e = entry(name);
        TensorCodec.requireIntegral(path().toString(), e.info());
        long[] out = new long[TensorCodec.arrayLength(path().toString(), e.info())];
        StoredDType t = e.info().dtype();
        stream(e, out.length, (chunk, off, n) -> TensorCodec.decodeLongs(chunk, 0, t, out, off, n));
        return out;
    }

    @Override
    public Map<String, String> metadata() {
        return Map.of();
    }

    @Override
    public synchronized void close() throws IOException {
        if (!closed) {
            closed = true;
            zip.close();
        }
    }
}
