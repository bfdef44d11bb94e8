package dev.perceiver4j.data;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/** SHA-256 of files, and the check of a fetched file against its pinned checksum. */
final class Sha256 {
    private Sha256() {}

    /** Lower-case hex SHA-256 of the file's content. */
    static String of(Path file) throws IOException {
        MessageDigest digest = newDigest();
        byte[] buffer = new byte[1 << 16];
        try (InputStream in = Files.newInputStream(file)) {
            for (int n; (n = in.read(buffer)) > 0; ) {
                digest.update(buffer, 0, n);
            }
        }
        return HexFormat.of().formatHex(digest.digest());
    }

    /** Lower-case hex SHA-256 of {@code bytes}. */
    static String of(byte[] bytes) {
        return HexFormat.of().formatHex(newDigest().digest(bytes));
    }

    /** Throws an IOException naming the file, the expected and the actual checksum unless they agree. */
    static void verify(Path file, String expected) throws IOException {
        String actual = of(file);
        if (!actual.equalsIgnoreCase(expected)) {
            throw new IOException("checksum mismatch for " + file.getFileName() + ": expected sha256 " + expected
                    + ", got " + actual + " (" + Files.size(file) + " bytes); the download is corrupt or not the"
                    + " pinned version");
        }
    }

    private static MessageDigest newDigest() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every Java platform has SHA-256", e);
        }
    }
}
