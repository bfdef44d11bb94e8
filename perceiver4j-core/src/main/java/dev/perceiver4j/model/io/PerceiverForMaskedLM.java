package dev.perceiver4j.model.io;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.perceiver4j.autograd.F;
import dev.perceiver4j.io.Checkpoints;
import dev.perceiver4j.io.TensorSource;
import dev.perceiver4j.nn.Weights;
import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.nn.Embedding;
import dev.perceiver4j.nn.Init;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;

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
    private final Embedding embeddings;         // perceiver.input_preprocessor.embeddings.weight [V, dModel] (tied output)
    private final Tensor positionEmbeddings;    // perceiver.input_preprocessor.position_embeddings.weight [P, dModel]
    private final PerceiverEncoder encoder;
    private final Tensor decoderQueries;        // perceiver.decoder.output_position_encodings.position_embeddings [P, dModel]
    private final PerceiverLayer decoder;       // perceiver.decoder.decoding_cross_attention
    private final Tensor outputBias;            // embedding_decoder.bias [V]

    public PerceiverForMaskedLM(Backend backend, PerceiverConfig c, long seed) {
        this.config = c;
        this.params = Params.root(backend, seed);
        Params perceiver = params.sub("perceiver");
        Params pre = perceiver.sub("input_preprocessor");
        this.embeddings = new Embedding(pre.sub("embeddings"), c.vocabSize(), c.dModel(), 0.02);
        this.positionEmbeddings = pre.sub("position_embeddings").weight("weight", Shape.of(c.maxPositionEmbeddings(), c.dModel()), Init.normal(0.02));
        this.encoder = new PerceiverEncoder(perceiver.sub("embeddings"), perceiver.sub("encoder"), c, c.dModel());
        Params dec = perceiver.sub("decoder");
        this.decoderQueries = dec.sub("output_position_encodings").weight("position_embeddings",
                Shape.of(c.maxPositionEmbeddings(), c.dModel()), Init.normal(0.02));
        this.decoder = new PerceiverLayer(dec.sub("decoding_cross_attention"), true, c.dModel(), c.dLatents(), DECODER_QK, c.dModel(), c.dModel(),
                DECODER_HEADS, 1, false, c.attentionDropout());
        this.outputBias = params.sub("embedding_decoder").weight("bias", Shape.of(c.vocabSize()), Init.zeros());
    }

    /**
     * Loads an HF model directory ({@code config.json} + {@code model.safetensors} or
     * {@code pytorch_model.bin}, sharded or not) or a single weights file next to its config.json.
     */
    public static PerceiverForMaskedLM load(Backend backend, Path modelDirOrFile) throws IOException {
        Path dir = Files.isDirectory(modelDirOrFile) ? modelDirOrFile : modelDirOrFile.toAbsolutePath().getParent();
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
        Files.createDirectories(dir);
        Weights.save(params, dir.resolve("model.safetensors"), Map.of("format", "pt"));
        byte[] json = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsBytes(config.toHf());
        Path tmp = Files.createTempFile(dir, "config.json.", ".tmp");
        Files.write(tmp, json);
        Files.move(tmp, dir.resolve("config.json"), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
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
        Backend be = ids.backend();
        int b = ids.dim(0), n = ids.dim(1);
        if (n > config.maxPositionEmbeddings()) {
            throw new IllegalArgumentException("input of " + n + " tokens exceeds max_position_embeddings " + config.maxPositionEmbeddings());
        }
        Tensor x = F.add(embeddings.forward(ids), F.narrow(positionEmbeddings, 0, 0, n));  // [B, N, dModel]
        Tensor keyPad = attentionMask == null ? null : padMask(attentionMask);
        Tensor z = encoder.forward(x, keyPad, training, seed);                                // [B, L, dLatents]
        Tensor q = PerceiverEncoder.broadcast(decoderQueries, b);                             // [B, P, dModel]
        Tensor h = decoder.forward(q, z, null, training, seed, 1L << 32);                    // [B, P, dModel]
        int p = config.maxPositionEmbeddings();
        Tensor logits = F.matmul(h.reshape(b * p, config.dModel()), false, embeddings.weight, true, outputBias, Activation.NONE);
        return logits.reshape(b, p, config.vocabSize());                                      // [B, P, V]
    }

    /** BOOL [B, N], true where attentionMask is 0 (padding). */
    private static Tensor padMask(Tensor attentionMask) {
        float[] m = attentionMask.toFloatArray();
        Tensor pad = attentionMask.backend().empty(attentionMask.shape(), DType.BOOL);
        byte[] bits = pad.bools();
        for (int i = 0; i < m.length; i++) bits[pad.offset() + i] = (byte) (m[i] == 0f ? 1 : 0);
        return pad;
    }
}
