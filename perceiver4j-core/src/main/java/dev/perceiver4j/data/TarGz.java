package dev.perceiver4j.data;

import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Predicate;
import java.util.zip.GZIPInputStream;

/**
 * A minimal reader of gzip-compressed ustar archives (npm package tarballs): regular files only,
 * GNU long names, everything else skipped. Entry sizes are checked against a cap before anything is
 * allocated, names that could escape a folder are rejected, and a truncated archive is an error.
 */
final class TarGz {
    /** No single entry we extract is anywhere near this; a larger header is forged or corrupt. */
    static final long MAX_ENTRY = 256L << 20;

    private TarGz() {}

    /** Contents of the regular files whose names {@code want} accepts, by entry name, in archive order. */
    static Map<String, byte[]> read(Path archive, Predicate<String> want) throws IOException {
        Map<String, byte[]> out = new LinkedHashMap<>();
        try (InputStream in = new GZIPInputStream(new BufferedInputStream(Files.newInputStream(archive)))) {
            byte[] header = new byte[512];
            String longName = null;
            while (true) {
                if (!readFully(in, header)) return out;               // clean end without the two zero blocks
                if (allZero(header)) return out;
                String name = longName != null ? longName : entryName(header);
                longName = null;
                long size = octal(header, 124, 12, archive);
                if (size < 0 || size > MAX_ENTRY) throw new IOException(archive + ": entry '" + name + "' claims " + size + " bytes (limit " + MAX_ENTRY + ")");
                char type = (char) header[156];
                long padded = (size + 511) & ~511L;
                if (type == 'L') {                                    // GNU long name for the next entry
                    byte[] n = readBytes(in, size, archive, name);
                    skip(in, padded - size, archive, name);
                    longName = cString(n, 0, n.length);
                    continue;
                }
                if ((type == '0' || type == 0) && want.test(checkName(name, archive))) {
                    out.put(name, readBytes(in, size, archive, name));
                    skip(in, padded - size, archive, name);
                } else {
                    skip(in, padded, archive, name);
                }
            }
        } catch (java.util.zip.ZipException e) {
            throw new IOException(archive + ": not a valid gzip stream (" + e.getMessage() + ")", e);
        }
    }

    private static String entryName(byte[] h) {
        String name = cString(h, 0, 100);
        String magic = cString(h, 257, 6);
        if (magic.startsWith("ustar")) {
            String prefix = cString(h, 345, 155);
            if (!prefix.isEmpty()) name = prefix + "/" + name;
        }
        return name;
    }

    private static String checkName(String name, Path archive) throws IOException {
        if (name.startsWith("/") || name.contains("\\") || ("/" + name + "/").contains("/../")) {
            throw new IOException(archive + ": entry name '" + name + "' points outside the archive's folder");
        }
        return name;
    }

    private static String cString(byte[] b, int off, int len) {
        int end = off;
        while (end < off + len && b[end] != 0) end++;
        return new String(b, off, end - off, StandardCharsets.UTF_8);
    }

    private static long octal(byte[] h, int off, int len, Path archive) throws IOException {
        long v = 0;
        boolean any = false;
        for (int i = off; i < off + len; i++) {
            int c = h[i] & 0xFF;
            if (c == 0 || c == ' ') {
                if (any) break;
                continue;
            }
            if (c < '0' || c > '7') throw new IOException(archive + ": corrupt tar header (size field is not octal)");
            v = v * 8 + (c - '0');
            any = true;
            if (v > (1L << 40)) return Long.MAX_VALUE;
        }
        return v;
    }

    private static boolean allZero(byte[] b) {
        for (byte x : b) if (x != 0) return false;
        return true;
    }

    /** Reads exactly b.length bytes; false at a clean end of stream before the first byte. */
    private static boolean readFully(InputStream in, byte[] b) throws IOException {
        int n = 0;
        while (n < b.length) {
            int r = in.read(b, n, b.length - n);
            if (r < 0) {
                if (n == 0) return false;
                throw new EOFException("truncated tar header");
            }
            n += r;
        }
        return true;
    }

    private static byte[] readBytes(InputStream in, long size, Path archive, String name) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream((int) Math.min(size, 1 << 20));
        byte[] buf = new byte[64 << 10];
        long left = size;
        while (left > 0) {
            int r = in.read(buf, 0, (int) Math.min(buf.length, left));
            if (r < 0) throw new IOException(archive + ": truncated in entry '" + name + "' (" + left + " of " + size + " bytes missing)");
            out.write(buf, 0, r);
            left -= r;
        }
        return out.toByteArray();
    }

    private static void skip(InputStream in, long n, Path archive, String name) throws IOException {
        byte[] buf = new byte[64 << 10];
        long left = n;
        while (left > 0) {
            int r = in.read(buf, 0, (int) Math.min(buf.length, left));
            if (r < 0) throw new IOException(archive + ": truncated after entry '" + name + "'");
            left -= r;
        }
    }
}
