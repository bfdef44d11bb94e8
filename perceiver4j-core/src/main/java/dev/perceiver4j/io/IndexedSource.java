package dev.perceiver4j.io;

import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What every {@link TensorSource} shares: the file it was opened from and its tensors by name, in
 * file order. {@code E} is the format's own per-tensor record (byte range, zip entry, shard).
 */
abstract class IndexedSource<E> implements TensorSource {
    private final Path path;
    private final Map<String, E> entries; // file order
    private final List<String> names;

    IndexedSource(Path path, Map<String, E> entries) {
        this.path = path;
        this.entries = Collections.unmodifiableMap(new LinkedHashMap<>(entries));
        this.names = List.copyOf(entries.keySet());
    }

    @Override
    public final Path path() {
        return path;
    }

    @Override
    public final List<String> names() {
        return names;
    }

    @Override
    public final boolean contains(String name) {
        return entries.containsKey(name);
    }

    /** The entry of {@code name}; an unknown name is an error naming the file and the tensor. */
    final E entry(String name) {
        E e = entries.get(name);
        if (e == null) {
            throw new IllegalArgumentException(path + ": no tensor '" + name + "' (file has " + entries.size() + " tensors)");
        }
        return e;
    }
}
