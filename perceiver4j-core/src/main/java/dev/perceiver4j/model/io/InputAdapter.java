package dev.perceiver4j.model.io;

import dev.perceiver4j.tensor.Tensor;

/**
 * Turns a task's raw inputs into the sequence the encoder cross-attends to (HF: the "input
 * preprocessor"). One implementation per modality: {@link TextInputAdapter} for bytes.
 */
public interface InputAdapter {
    /** Channels of the adapted sequence (the encoder's key/value width). */
    int channels();

    /**
     * inputs: the raw batch (e.g. I32 token ids [B, N]); attentionMask: [B, N] with 1 for real
     * elements and 0 for padding, or null → the sequence [B, M, channels] and its key-padding mask.
     */
    Adapted adapt(Tensor inputs, Tensor attentionMask);

    /**
     * As {@link #adapt}, with the key-padding mask given as the encoder takes it (BOOL [B, M], true =
     * padding, or null): no host round trip, so the call can be recorded ({@code Backend.record}).
     */
    Adapted adaptWithKeyPad(Tensor inputs, Tensor keyPad);

    /** x: [B, M, C]; keyPad: BOOL [B, M] (true = padding) or null. */
    record Adapted(Tensor x, Tensor keyPad) {}
}
