package dev.perceiver4j.model.demo;

import java.util.SplittableRandom;

/**
 * Synthetic sequence-copy task: {@code x1 … xL SEP x1 … xL}. The model reads the sequence left
 * to right and is scored only on the copy (positions after SEP), where the answer is fully
 * determined by the first half. Chance level is ln(symbols) nats per token.
 */
public record CopyTask(int symbols, int length) {
    public static final int IGNORE = -1;

    public CopyTask {
        if (symbols < 2 || length < 1) throw new IllegalArgumentException("copy task needs symbols >= 2 and length >= 1");
    }

    /** Vocabulary: the symbols plus the separator. */
    public int vocab() {
        return symbols + 1;
    }

    /** Model input length: the whole sequence minus its last token. */
    public int inputLength() {
        return 2 * length;
    }

    /** One batch: ids [B, 2L] and next-token targets [B, 2L] (IGNORE outside the copy). */
    public record Batch(int batch, int[] ids, int[] targets) {}

    public Batch sample(SplittableRandom rng, int batch) {
        int t = inputLength();
        int[] ids = new int[batch * t];
        int[] targets = new int[batch * t];
        int sep = symbols;
        for (int b = 0; b < batch; b++) {
            int[] seq = new int[2 * length + 1];
            for (int i = 0; i < length; i++) seq[i] = rng.nextInt(symbols);
            seq[length] = sep;
            System.arraycopy(seq, 0, seq, length + 1, length);
            for (int i = 0; i < t; i++) {
                ids[b * t + i] = seq[i];
                targets[b * t + i] = i >= length ? seq[i + 1] : IGNORE;
            }
        }
        return new Batch(batch, ids, targets);
    }
}
