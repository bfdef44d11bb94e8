package dev.perceiver4j.data;

import java.util.Arrays;
import java.util.Objects;

/**
 * One text document: a name (file path or archive entry) and its raw bytes. The array is shared,
 * not copied; nothing in this package modifies it. Equality compares the bytes' content.
 */
public record Document(String name, byte[] bytes) {
    public Document {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(bytes, "bytes");
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Document d && name.equals(d.name) && Arrays.equals(bytes, d.bytes);
    }

    @Override
    public int hashCode() {
        return 31 * name.hashCode() + Arrays.hashCode(bytes);
    }

    @Override
    public String toString() {
        return "Document[" + name + ", " + bytes.length + " bytes]";
    }
}
