package dev.perceiver4j.data;

import java.io.BufferedInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.GZIPInputStream;
import java.util.zip.ZipException;

/**
 * A minimal reader of gzip-compressed tar archives (npm tarballs): 512-byte ustar headers with
 * octal (or GNU base-256) sizes, the ustar name prefix, GNU long names ({@code L}) and pax
 * {@code path} records; other entry types are skipped. Only regular-file entries that the caller
 * wants are written out, in bounded chunks.
 *
 * <p>Hostile input fails with an IOException naming the archive, the entry and its offset in the
 * tar stream: names that are absolute or contain a {@code ..} component, declared sizes above
 * {@link #MAX_ENTRY_BYTES}, sizes larger than what the stream still holds (truncation), bad header
 * checksums. Nothing is allocated by a declared size.
 */
final class TarGz {
    static final int BLOCK = 512;
    /** Largest entry written out (the largest built-in document is a few MB). */
    static final long MAX_ENTRY_BYTES = 256L << 20;
    /** Largest GNU long name or pax header. */
    static final int MAX_HEADER_BYTES = 1 << 20;

    /** Where a wanted entry goes: the destination file, or null to skip the entry. */
    @FunctionalInterface
    interface Target {
        Path pathFor(String entryName) throws IOException;
    }

    private final InputStream in;
    private final Path archive;
    private long position; // bytes of the uncompressed tar stream consumed so far

    private TarGz(InputStream in, Path archive) {
        this.in = in;
        this.archive = archive;
    }

    /** Extracts the regular-file entries for which {@code target} gives a path; returns how many. */
    static int extract(Path archive, Target target) throws IOException {
        try (InputStream raw = Files.newInputStream(archive)) {
            GZIPInputStream gz;
            try {
                gz = new GZIPInputStream(raw, 1 << 16);
            } catch (EOFException | ZipException e) {
                throw new IOException("archive " + archive + " is not a gzip file: " + e.getMessage(), e);
            }
            return new TarGz(new BufferedInputStream(gz, 1 << 16), archive).run(target);
        }
    }

    private int run(Target target) throws IOException {
        byte[] header = new byte[BLOCK];
        String nextName = null; // from a preceding GNU 'L' or pax 'x' entry
        int extracted = 0;
        while (true) {
            long at = position;
            int n = readUpTo(header, BLOCK);
            if (n == 0) {
                return extracted; // end of stream without the two zero blocks: accepted, as GNU tar does
            }
            if (n < BLOCK) {
                throw error("truncated header at offset " + at + " (" + n + " of 512 bytes)");
            }
            if (allZero(header)) {
                return extracted;
            }
            checkHeaderChecksum(header, at);
            char type = (char) header[156];
            long size = size(header, at);
            String name = nextName != null ? nextName : headerName(header);
            nextName = null;
            switch (type) {
                case 'L' -> nextName = longName(readSmall(size, "GNU long name", at));
                case 'x' -> nextName = paxPath(readSmall(size, "pax header", at), at);
                case '0', '\0', '7' -> {
                    checkName(name, at);
                    Path dest = target.pathFor(name);
                    if (dest != null) {
                        if (size > MAX_ENTRY_BYTES) {
                            throw error("entry '" + name + "' at offset " + at + " declares " + size
                                    + " bytes, more than the limit of " + MAX_ENTRY_BYTES);
                        }
                        copy(size, dest, name, at);
                        extracted++;
                    } else {
                        skip(size, name, at);
                    }
                }
                default -> {
                    checkName(name, at);
                    skip(size, name, at);
                }
            }
            skipPadding(size, name, at);
        }
    }

    private void copy(long size, Path dest, String name, long at) throws IOException {
        byte[] buffer = new byte[1 << 16];
        try (OutputStream out = Files.newOutputStream(dest)) {
            long remaining = size;
            while (remaining > 0) {
                int n = read(buffer, (int) Math.min(buffer.length, remaining));
                if (n < 0) {
                    throw truncated(name, at, size, size - remaining);
                }
                out.write(buffer, 0, n);
                remaining -= n;
            }
        }
    }

    private void skip(long size, String name, long at) throws IOException {
        byte[] buffer = new byte[1 << 16];
        long remaining = size;
        while (remaining > 0) {
            int n = read(buffer, (int) Math.min(buffer.length, remaining));
            if (n < 0) {
                throw truncated(name, at, size, size - remaining);
            }
            remaining -= n;
        }
    }

    private void skipPadding(long size, String name, long at) throws IOException {
        int padding = (int) ((BLOCK - size % BLOCK) % BLOCK);
        if (padding > 0 && readUpTo(new byte[padding], padding) < padding) {
            throw error("truncated padding after entry '" + name + "' (header at offset " + at + ")");
        }
    }

    private byte[] readSmall(long size, String what, long at) throws IOException {
        if (size > MAX_HEADER_BYTES) {
            throw error(what + " at offset " + at + " declares " + size + " bytes, more than the limit of "
                    + MAX_HEADER_BYTES);
        }
        byte[] data = new byte[(int) size];
        int n = readUpTo(data, data.length);
        if (n < data.length) {
            throw truncated(what, at, size, n);
        }
        return data;
    }

    private static boolean allZero(byte[] block) {
        for (byte b : block) {
            if (b != 0) {
                return false;
            }
        }
        return true;
    }

    private static String longName(byte[] data) {
        int end = 0;
        while (end < data.length && data[end] != 0) {
            end++;
        }
        return new String(data, 0, end, StandardCharsets.UTF_8);
    }

    /** The {@code path} record of a pax extended header ("LEN path=VALUE\n" records), or null. */
    private String paxPath(byte[] data, long at) throws IOException {
        String path = null;
        int i = 0;
        while (i < data.length && data[i] != 0) {
            int space = indexOf(data, (byte) ' ', i);
            int length;
            try {
                length = space < 0 ? -1 : Integer.parseInt(new String(data, i, space - i, StandardCharsets.US_ASCII));
            } catch (NumberFormatException e) {
                length = -1;
            }
            if (length <= space - i || i + length > data.length || data[i + length - 1] != '\n') {
                throw error("malformed pax header at offset " + at + " (record at byte " + i + ")");
            }
            String record = new String(data, space + 1, i + length - 1 - (space + 1), StandardCharsets.UTF_8);
            if (record.startsWith("path=")) {
                path = record.substring(5);
            }
            i += length;
        }
        return path;
    }

    private static int indexOf(byte[] data, byte b, int from) {
        for (int i = from; i < data.length; i++) {
            if (data[i] == b) {
                return i;
            }
        }
        return -1;
    }

    private String headerName(byte[] header) {
        String name = field(header, 0, 100);
        boolean ustar = header[257] == 'u' && header[258] == 's' && header[259] == 't' && header[260] == 'a'
                && header[261] == 'r';
        String prefix = ustar ? field(header, 345, 155) : "";
        return prefix.isEmpty() ? name : prefix + "/" + name;
    }

    private static String field(byte[] header, int offset, int length) {
        int end = offset;
        while (end < offset + length && header[end] != 0) {
            end++;
        }
        return new String(header, offset, end - offset, StandardCharsets.UTF_8);
    }

    /** Rejects absolute names, {@code ..} components, backslashes and control characters. */
    private void checkName(String name, long at) throws IOException {
        boolean bad = name.isEmpty() || name.startsWith("/") || name.contains("\\")
                || (name.length() >= 2 && name.charAt(1) == ':');
        for (String part : name.split("/")) {
            bad |= part.equals("..");
        }
        for (char c : name.toCharArray()) {
            bad |= c < 0x20 || c == 0x7F;
        }
        if (bad) {
            throw error("unsafe entry name '" + name.replace("\n", "\\n") + "' at offset " + at
                    + " (absolute, '..', backslash or control character)");
        }
    }

    private long size(byte[] header, long at) throws IOException {
        if ((header[124] & 0x80) != 0) { // GNU base-256: big-endian two's complement
            if ((header[124] & 0x40) != 0) {
                throw error("negative size in header at offset " + at);
            }
            long value = header[124] & 0x3F;
            for (int i = 125; i < 136; i++) {
                if (value > (Long.MAX_VALUE >>> 8)) {
                    return Long.MAX_VALUE;
                }
                value = (value << 8) | (header[i] & 0xFF);
            }
            return value;
        }
        return octal(header, 124, 12, "size", at);
    }

    private void checkHeaderChecksum(byte[] header, long at) throws IOException {
        long stored = octal(header, 148, 8, "checksum", at);
        long unsigned = 0, signed = 0;
        for (int i = 0; i < BLOCK; i++) {
            int b = i >= 148 && i < 156 ? ' ' : header[i];
            unsigned += b & 0xFF;
            signed += b;
        }
        if (stored != unsigned && stored != signed) {
            throw error("bad header checksum at offset " + at + " (stored " + stored + ", computed " + unsigned
                    + "): not a tar archive, or corrupt");
        }
    }

    private long octal(byte[] header, int offset, int length, String what, long at) throws IOException {
        int i = offset, end = offset + length;
        while (i < end && (header[i] == ' ' || header[i] == 0)) {
            i++;
        }
        long value = 0;
        int digits = 0;
        for (; i < end && header[i] != ' ' && header[i] != 0; i++) {
            int d = header[i] - '0';
            if (d < 0 || d > 7 || ++digits > 21) {
                throw error("bad " + what + " field in header at offset " + at);
            }
            value = value * 8 + d;
        }
        return value;
    }

    /** Reads up to {@code max} bytes; returns -1 at end of stream. */
    private int read(byte[] buffer, int max) throws IOException {
        int n;
        try {
            n = in.read(buffer, 0, max);
        } catch (EOFException | ZipException e) {
            throw error("corrupt or truncated gzip stream after " + position + " bytes of tar: " + e.getMessage());
        }
        if (n > 0) {
            position += n;
        }
        return n;
    }

    /** Reads until {@code length} bytes or end of stream; returns the count read. */
    private int readUpTo(byte[] buffer, int length) throws IOException {
        int total = 0;
        while (total < length) {
            int n;
            try {
                n = in.read(buffer, total, length - total);
            } catch (EOFException | ZipException e) {
                throw error("corrupt or truncated gzip stream after " + (position + total) + " bytes of tar: "
                        + e.getMessage());
            }
            if (n < 0) {
                break;
            }
            total += n;
        }
        position += total;
        return total;
    }

    private IOException truncated(String name, long at, long size, long got) {
        return error("truncated archive: entry '" + name + "' (header at offset " + at + ") declares " + size
                + " bytes but the stream ends after " + got);
    }

    private IOException error(String message) {
        return new IOException("archive " + archive + ": " + message);
    }
}
