package dev.perceiver4j.io;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import java.io.IOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Path;

final class Fixtures {
    private Fixtures() {}

    static Path path(String relative) {
        URL url = Fixtures.class.getResource("/fixtures/" + relative);
        if (url == null) {
            throw new IllegalStateException("missing test fixture " + relative);
        }
        try {
            return Path.of(url.toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static Path hfSafetensors() {
        return path("hf-perceiver-mlm-tiny/model.safetensors");
    }

    static Path hfBin() {
        return path("hf-perceiver-mlm-tiny/pytorch_model.bin");
    }

    static Path krSafetensors() {
        return path("kr-perceiver-ar/model.safetensors");
    }

    /**
     * Opens {@code file} with {@link Checkpoints#open} and reads every tensor. Returns null when everything
     * worked, or the IOException; any other throwable fails the test. IOExceptions must name the file.
     */
    static IOException openAndReadAll(Path file) {
        try (TensorSource src = Checkpoints.open(file)) {
            for (String n : src.names()) {
                TensorInfo info = src.info(n);
                if (info.dtype().isFloatingPoint()) {
                    src.readFloats(n);
                } else {
                    src.readLongs(n);
                }
            }
            return null;
        } catch (IOException e) {
            assertThat(e.getMessage()).as("message of %s", e).contains(file.getFileName().toString());
            return e;
        } catch (Throwable t) {
            fail("expected IOException or success for " + file + " but got " + t, t);
            return null;
        }
    }

    /** Asserts that opening/reading {@code file} fails with a CheckpointFormatException naming it; returns it. */
    static CheckpointFormatException rejected(Path file) {
        IOException e = openAndReadAll(file);
        assertThat(e).as("expected %s to be rejected", file).isNotNull();
        assertThat(e).isInstanceOf(CheckpointFormatException.class);
        return (CheckpointFormatException) e;
    }
}
