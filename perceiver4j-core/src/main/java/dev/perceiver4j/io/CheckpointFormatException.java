package dev.perceiver4j.io;

import java.io.IOException;

/**
 * A checkpoint file is malformed, truncated, inconsistent or hostile. The message always names the file and,
 * where there is one, the tensor (or pickle byte position) and what is wrong.
 */
public final class CheckpointFormatException extends IOException {
    private static final long serialVersionUID = 1L;

    public CheckpointFormatException(String message) {
        super(message);
    }

    public CheckpointFormatException(String message, Throwable cause) {
        super(message, cause);
    }
}
