package dev.perceiver4j.data;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.GZIPOutputStream;

/** Writes small ustar archives for tests, including forged ones (wrong sizes, hostile names). */
final class TarBuilder {
    private final ByteArrayOutputStream tar = new ByteArrayOutputStream();

    /** A regular file; names longer than 100 bytes use the ustar prefix field. */
    TarBuilder file(String name, String content) {
        return file(name, content.getBytes(StandardCharsets.UTF_8));
    }

    TarBuilder file(String name, byte[] content) {
        String prefix = "";
        if (name.length() > 100) {
            int slash = name.lastIndexOf('/', name.length() - 2);
            prefix = name.substring(0, slash);
            name = name.substring(slash + 1);
        }
        return entry(name, prefix, '0', content, octalSize(content.length));
    }

    /** An entry of any type whose header declares {@code declaredSize} (octal) but holds {@code content}. */
    TarBuilder forged(String name, char type, byte[] content, long declaredSize) {
        return entry(name, "", type, content, octalSize(declaredSize));
    }

    /** A regular file whose size field is GNU base-256 with the given 11 value bytes' first byte high. */
    TarBuilder base256Size(String name, byte[] content, long declaredSize) {
        byte[] field = new byte[12];
        field[0] = (byte) 0x80;
        for (int i = 11; i >= 4; i--) {
            field[i] = (byte) declaredSize;
            declaredSize >>>= 8;
        }
        return entry(name, "", '0', content, field);
    }

    /** A GNU long-name entry followed by the file it names. */
    TarBuilder gnuLongName(String name, String content) {
        byte[] nameBytes = (name + "\0").getBytes(StandardCharsets.UTF_8);
        entry("././@LongLink", "", 'L', nameBytes, octalSize(nameBytes.length));
        return entry(name.substring(0, 50), "", '0', content.getBytes(StandardCharsets.UTF_8),
                octalSize(content.length()));
    }

    /** A pax extended header with a path record, followed by the file it names. */
    TarBuilder paxPath(String name, String content) {
        String rest = " path=" + name + "\n"; // record = LENGTH + rest, LENGTH counting its own digits
        int length = rest.length();
        while (String.valueOf(length).length() + rest.length() != length) {
            length = String.valueOf(length).length() + rest.length();
        }
        byte[] pax = (length + rest).getBytes(StandardCharsets.UTF_8);
        entry("PaxHeader/x", "", 'x', pax, octalSize(pax.length));
        return entry("short-name", "", '0', content.getBytes(StandardCharsets.UTF_8), octalSize(content.length()));
    }

    TarBuilder directory(String name) {
        return entry(name, "", '5', new byte[0], octalSize(0));
    }

    /** The archive with the two zero blocks at its end. */
    byte[] tar() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes(tar.toByteArray());
        out.writeBytes(new byte[1024]);
        return out.toByteArray();
    }

    byte[] tarGz() {
        return gzip(tar());
    }

    Path write(Path file) {
        try {
            Files.write(file, tarGz());
            return file;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static byte[] gzip(byte[] data) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (GZIPOutputStream gz = new GZIPOutputStream(out)) {
            gz.write(data);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    private TarBuilder entry(String name, String prefix, char type, byte[] content, byte[] sizeField) {
        byte[] h = new byte[512];
        put(h, 0, name, 100);
        put(h, 100, "0000644", 8);
        put(h, 108, "0000000", 8);
        put(h, 116, "0000000", 8);
        System.arraycopy(sizeField, 0, h, 124, 12);
        put(h, 136, "00000000000", 12);
        h[156] = (byte) type;
        put(h, 257, "ustar", 6);
        put(h, 263, "00", 2);
        put(h, 345, prefix, 155);
        for (int i = 148; i < 156; i++) {
            h[i] = ' ';
        }
        int sum = 0;
        for (byte b : h) {
            sum += b & 0xFF;
        }
        put(h, 148, String.format("%06o", sum), 7); // six digits, NUL, then the space already there
        tar.writeBytes(h);
        tar.writeBytes(content);
        tar.writeBytes(new byte[(512 - content.length % 512) % 512]);
        return this;
    }

    private static byte[] octalSize(long size) {
        byte[] field = new byte[12];
        byte[] digits = String.format("%011o", size).getBytes(StandardCharsets.US_ASCII);
        if (digits.length > 11) {
            throw new IllegalArgumentException("size " + size + " needs more than 11 octal digits");
        }
        System.arraycopy(digits, 0, field, 0, digits.length);
        return field;
    }

    private static void put(byte[] h, int offset, String value, int length) {
        byte[] b = value.getBytes(StandardCharsets.UTF_8);
        if (b.length > length) {
            throw new IllegalArgumentException("'" + value + "' does not fit " + length + " bytes");
        }
        System.arraycopy(b, 0, h, offset, b.length);
    }
}
