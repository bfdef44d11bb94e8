package dev.perceiver4j.model.io;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Recording;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

/**
 * Inference passes of a {@link PerceiverForMaskedLM} at one batch shape [B, N], recorded once and
 * replayed where the backend records ({@link Backend#record}: a CUDA graph, so a pass costs one
 * launch instead of one per op, which is most of a batch-1 pass on a GPU). Each call writes the ids
 * and the padding into persistent input tensors, replays, and hands back a persistent logits tensor.
 * Where the backend does not record (the CPU) the pass runs op by op, with the same numbers.
 *
 * <p>The recording reads the model's weights where they are, so it follows weight updates. It holds
 * one pass's intermediate buffers until {@link #close()}.
 */
public final class RecordedMaskedLm implements AutoCloseable {
    private final PerceiverForMaskedLM model;
    private final Backend be;
    private final int batch, length;
    private final Tensor ids;       // I32 [B, N]
    private final Tensor keyPad;    // BOOL [B, N], true = padding
    private final Tensor logits;    // F32 [B, P, V]
    private final Recording recording;

    /** Records the pass for inputs of {@code batch} × {@code length} tokens (or prepares the op-by-op pass). */
    public RecordedMaskedLm(PerceiverForMaskedLM model, int batch, int length) {
        PerceiverConfig c = model.config();
        if (batch < 1 || length < 1 || length > c.maxPositionEmbeddings()) {
            throw new IllegalArgumentException("batch " + batch + " × length " + length + ": need batch ≥ 1 and 1 ≤ length ≤ " + c.maxPositionEmbeddings());
        }
        this.model = model;
        this.be = model.params().backend();
        this.batch = batch;
        this.length = length;
        this.ids = be.persistentZeros(Shape.of(batch, length), DType.I32);
        this.keyPad = be.persistentZeros(Shape.of(batch, length), DType.BOOL);
        this.logits = be.persistentZeros(Shape.of(batch, c.maxPositionEmbeddings(), c.vocabSize()), DType.F32);
        // With bf16 products, one pass first: the GPU backend makes the weights' bf16 copies on their first
        // use outside a recording, so the recording then reads them instead of rounding every weight again
        // at every replay (the pass only reads the zeroed inputs and writes logits).
        if (be.matmulOperandType() == DType.BF16) pass();
        this.recording = Recording.recordOrNull(be, this::pass, "masked LM (the inference pass)");
    }

    /**
     * ids [B·N] (row-major) and attentionMask [B·N] (1 = token, 0 = padding; null = no padding) →
     * logits [B, P, V], a tensor this object owns and overwrites at the next call.
     */
    public Tensor forward(int[] tokenIds, int[] attentionMask) {
        int n = batch * length;
        if (tokenIds.length != n) throw new IllegalArgumentException(tokenIds.length + " token ids for a recorded batch of " + batch + " × " + length);
        if (attentionMask != null && attentionMask.length != n) {
            throw new IllegalArgumentException(attentionMask.length + " mask values for a recorded batch of " + batch + " × " + length);
        }
        int vocab = model.config().vocabSize();
        for (int i = 0; i < n; i++) {
            if (tokenIds[i] < 0 || tokenIds[i] >= vocab) {
                throw new IllegalArgumentException("token id " + tokenIds[i] + " at [" + i / length + ", " + i % length + "] is outside the vocabulary [0, " + vocab + ")");
            }
        }
        boolean[] pad = new boolean[n];
        if (attentionMask != null) for (int i = 0; i < n; i++) pad[i] = attentionMask[i] == 0;
        be.writeInts(tokenIds, ids);
        be.writeBools(pad, keyPad);
        if (recording != null) recording.replay();
        else pass();
        return logits;
    }

    /** Whether passes replay a recording (false: op by op). */
    public boolean recorded() {
        return recording != null;
    }

    /** Ops in the recording (0 when passes run op by op). */
    public int recordedOps() {
        return recording == null ? 0 : recording.ops();
    }

    private void pass() {
        try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
            be.copy(model.forwardWithKeyPad(ids, keyPad, false, 0L), logits);
        }
    }

    @Override
    public void close() {
        if (recording != null) recording.close();
    }
}
