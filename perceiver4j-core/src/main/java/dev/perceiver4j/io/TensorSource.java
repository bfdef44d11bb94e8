package dev.perceiver4j.io;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * One opened checkpoint of any supported format. Implementations validate the whole file layout when opened;
 * reading a tensor copies its data into a fresh Java array.
 */
public interface TensorSource extends AutoCloseable {

    /** The file (or index file) this source was opened from. */
    Path path();

    /** Tensor names in file order. */
    List<String> names();

    /** True when the checkpoint holds a tensor of this name. */
    default boolean contains(String name) {
        return names().contains(name);
    }

    /** @throws IllegalArgumentException naming the file and the tensor when there is no such tensor */
    TensorInfo info(String name);

    /** The tensor's elements in row-major order converted to float32 (F16/BF16 exactly, wider types rounded). */
    float[] readFloats(String name) throws IOException;

    /** The elements of an integer or bool tensor widened to long; floating point tensors are an error. */
    long[] readLongs(String name) throws IOException;

    /** String metadata stored with the checkpoint (empty when there is none). */
    Map<String, String> metadata();

    @Override
    void close() throws IOException;
}
