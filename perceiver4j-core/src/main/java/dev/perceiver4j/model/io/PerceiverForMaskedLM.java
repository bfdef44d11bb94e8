package dev.perceiver4j.model.io;

import dev.perceiver4j.autograd.F;
import dev.perceiver4j.io.Checkpoints;
import dev.perceiver4j.io.TensorSource;
import dev.perceiver4j.nn.Weights;
import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.nn.Init;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Path;

/**
 * Perceiver IO masked language model over UTF-8 bytes, HF {@code PerceiverForMaskedLM} exactly,
 * with HF's parameter names (so HF checkpoints load and saved checkpoints load in HF).
 *
 * <pre>
 *   ids [B, N] ─ text preprocessor: embeddings(ids) + position_embeddings[0:N] ─► x [B, N, dModel]
 *   x, mask ─ encoder (cross-attention into latents, num_blocks × self-attention) ─► z [B, L, dLatents]
 *   queries = output_position_encodings [P, dModel] (P = max_position_embeddings, no residual)
 *   queries, z ─ decoding_cross_attention (8 heads, qk 256, v dModel; mask ignored) ─► h [B, P, dModel]
 *   logits = h · embeddings.weightᵀ + embedding_decoder.bias                         [B, P, V]
 * </pre>
 */
public final class PerceiverForMaskedLM {
    /** The decoder's fixed head count and query/key width in HF's PerceiverForMaskedLM. */
    public static final int DECODER_HEADS = 8, DECODER_QK = 8 * 32;

    private final PerceiverConfig config;
    private final Params params;
    private final TextInputAdapter text;        // perceiver.input_preprocessor: embeddings [V, dModel] (tied output), positions [P, dModel]
    private final PerceiverIO perceiver;        // encoder (perceiver.embeddings, perceiver.encoder) + decoder (perceiver.decoder)
    private final Tensor outputBias;            // embedding_decoder.bias [V]

    public PerceiverForMaskedLM(Backend backend, PerceiverConfig c, long seed) {
        this.config = c;
        this.params = Params.root(backend, seed);
        Params p = params.sub("perceiver");
        this.text = new TextInputAdapter(p.sub("input_preprocessor"), c.vocabSize(), c.dModel(), c.maxPositionEmbeddings());
        PerceiverEncoder encoder = new PerceiverEncoder(p.sub("embeddings"), p.sub("encoder"), c, text.channels());
        Params dec = p.sub("decoder");
        QueryProvider queries = new TrainableQueries(dec.sub("output_position_encodings"), c.maxPositionEmbeddings(), c.dModel());
        PerceiverLayer decoder = new PerceiverLayer(dec.sub("decoding_cross_attention"), true, c.dModel(), c.dLatents(), DECODER_QK,
                c.dModel(), c.dModel(), DECODER_HEADS, 1, false, c.attentionDropout());
        this.perceiver = new PerceiverIO(text, encoder, queries, decoder);
        this.outputBias = params.sub("embedding_decoder").weight("bias", Shape.of(c.vocabSize()), Init.zeros());
    }

    /**
     * Loads an HF model directory ({@code config.json} + {@code model.safetensors} or
     * {@code pytorch_model.bin}, sharded or not) or a single weights file next to its config.json.
     */
    public static PerceiverForMaskedLM load(Backend backend, Path modelDirOrFile) throws IOException {
        Path dir = Weights.modelDir(modelDirOrFile);
        PerceiverConfig c;
        try {
            c = PerceiverConfig.fromHf(Checkpoints.readConfig(dir));
        } catch (IllegalArgumentException e) {
            throw new IOException(dir.resolve("config.json") + ": " + e.getMessage(), e);
        }
        PerceiverForMaskedLM m = new PerceiverForMaskedLM(backend, c, 0L);
        try (TensorSource src = Checkpoints.open(modelDirOrFile)) {
            Weights.load(m.params, src);
        }
        return m;
    }

    /** Writes {@code config.json} and {@code model.safetensors} (HF names, atomically) into {@code dir}. */
    public void save(Path dir) throws IOException {
        Weights.saveModelDir(params, config.toHf(), dir);
    }

    public PerceiverConfig config() {
        return config;
    }

    /** Every parameter, under HF's names. */
    public Params params() {
        return params;
    }

    /**
     * ids: I32 [B, N] (N ≤ max_position_embeddings); attentionMask: I32/F32 [B, N] with 1 for real
     * tokens and 0 for padding, or null → logits [B, P, V] for all P = max_position_embeddings
     * decoder positions (HF always decodes all of them).
     */
    public Tensor forward(Tensor ids, Tensor attentionMask, boolean training, long seed) {
        return logits(ids.dim(0), perceiver.forward(ids, attentionMask, training, seed));
    }

    /**
     * As {@link #forward}, the padding given as a key-padding mask (BOOL [B, N], true = padding, or
     * null): every op stays on the backend, so the pass can be recorded ({@link RecordedMaskedLm}).
     */
    public Tensor forwardWithKeyPad(Tensor ids, Tensor keyPad, boolean training, long seed) {
        return logits(ids.dim(0), perceiver.forwardWithKeyPad(ids, keyPad, training, seed));
    }

    /** h [B, P, dModel] → tied output logits [B, P, V]. */
    private Tensor logits(int b, Tensor h) {
        int p = config.maxPositionEmbeddings();
        Tensor logits = F.matmul(h.reshape(b * p, config.dModel()), false, text.embeddingTable(), true, outputBias, Activation.NONE);
        return logits.reshape(b, p, config.vocabSize());                                      // [B, P, V]
    }
}
