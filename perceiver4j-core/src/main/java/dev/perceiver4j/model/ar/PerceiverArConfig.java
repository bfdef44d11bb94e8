package dev.perceiver4j.model.ar;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The {@code model_config} of a krasserm/perceiver-io (0.11.x) {@code CausalSequenceModel}
 * (Perceiver AR), with that project's field names in {@code config.json}:
 * <pre>
 *   {"model_type": "perceiver-ar-causal-language-model", "model_config": {"num_heads": 4, ...}}
 * </pre>
 * {@code maxHeadsParallel} (null = all heads) only affects memory use there and is kept for
 * round-tripping; dropouts are training-time settings (this model's forward is deterministic).
 */
public record PerceiverArConfig(
        int numHeads,
        Integer maxHeadsParallel,
        int numSelfAttentionLayers,
        int numSelfAttentionRotaryLayers,   // -1 = every self-attention layer
        int selfAttentionWideningFactor,
        int crossAttentionWideningFactor,
        float crossAttentionDropout,
        float postAttentionDropout,
        float residualDropout,
        boolean activationCheckpointing,
        boolean activationOffloading,
        int vocabSize,
        int maxSeqLen,
        int maxLatents,
        int numChannels,
        boolean outputNorm,
        boolean outputBias,
        boolean absPosEmb,
        float initScale) {

    public static final String MODEL_TYPE = "perceiver-ar-causal-language-model";

    public PerceiverArConfig {
        if (numHeads <= 0 || numChannels % numHeads != 0) {
            throw new IllegalArgumentException("num_channels " + numChannels + " must divide by num_heads " + numHeads);
        }
        int perHead = numChannels / numHeads;
        if (perHead % 2 != 0 || (absPosEmb && perHead % 4 != 0)) {
            throw new IllegalArgumentException("channels per head " + perHead + " must leave an even number of rotated channels");
        }
        if (numSelfAttentionLayers < 0 || numSelfAttentionRotaryLayers < -1) {
            throw new IllegalArgumentException("bad layer counts: " + numSelfAttentionLayers + " self-attention, " + numSelfAttentionRotaryLayers + " rotary");
        }
        if (vocabSize <= 0 || maxSeqLen <= 0 || maxLatents <= 0 || maxLatents > maxSeqLen) {
            throw new IllegalArgumentException("bad sizes: vocab " + vocabSize + ", max_seq_len " + maxSeqLen + ", max_latents " + maxLatents);
        }
    }

    /** Channels per head that rotary embeddings rotate: half of each head with absolute positions, else all. */
    public int rotatedChannelsPerHead() {
        int perHead = numChannels / numHeads;
        return absPosEmb ? perHead / 2 : perHead;
    }

    /** Parses a whole {@code config.json} (with {@code model_config}) or the {@code model_config} object itself. */
    public static PerceiverArConfig fromJson(JsonNode root) {
        JsonNode c = root.has("model_config") ? root.get("model_config") : root;
        if (root.has("model_type") && !MODEL_TYPE.equals(root.get("model_type").asText())) {
            throw new IllegalArgumentException("model_type " + root.get("model_type") + " is not " + MODEL_TYPE);
        }
        JsonNode mhp = c.get("max_heads_parallel");
        return new PerceiverArConfig(
                req(c, "num_heads").asInt(),
                mhp == null || mhp.isNull() ? null : mhp.asInt(),
                c.path("num_self_attention_layers").asInt(6),
                c.path("num_self_attention_rotary_layers").asInt(1),
                c.path("self_attention_widening_factor").asInt(4),
                c.path("cross_attention_widening_factor").asInt(4),
                (float) c.path("cross_attention_dropout").asDouble(0.5),
                (float) c.path("post_attention_dropout").asDouble(0.0),
                (float) c.path("residual_dropout").asDouble(0.0),
                c.path("activation_checkpointing").asBoolean(false),
                c.path("activation_offloading").asBoolean(false),
                req(c, "vocab_size").asInt(),
                req(c, "max_seq_len").asInt(),
                req(c, "max_latents").asInt(),
                req(c, "num_channels").asInt(),
                c.path("output_norm").asBoolean(false),
                c.path("output_bias").asBoolean(true),
                c.path("abs_pos_emb").asBoolean(true),
                (float) c.path("init_scale").asDouble(0.02));
    }

    private static JsonNode req(JsonNode c, String field) {
        JsonNode v = c.get(field);
        if (v == null || v.isNull()) throw new IllegalArgumentException("model_config." + field + " is missing");
        return v;
    }

    /** The {@code config.json} layout {@link #fromJson} reads. */
    public ObjectNode toJson() {
        JsonNodeFactory f = JsonNodeFactory.instance;
        ObjectNode c = f.objectNode();
        c.put("num_heads", numHeads);
        if (maxHeadsParallel == null) c.putNull("max_heads_parallel"); else c.put("max_heads_parallel", maxHeadsParallel);
        c.put("num_self_attention_layers", numSelfAttentionLayers);
        c.put("num_self_attention_rotary_layers", numSelfAttentionRotaryLayers);
        c.put("self_attention_widening_factor", selfAttentionWideningFactor);
        c.put("cross_attention_widening_factor", crossAttentionWideningFactor);
        c.put("cross_attention_dropout", crossAttentionDropout);
        c.put("post_attention_dropout", postAttentionDropout);
        c.put("residual_dropout", residualDropout);
        c.put("activation_checkpointing", activationCheckpointing);
        c.put("activation_offloading", activationOffloading);
        c.put("vocab_size", vocabSize);
        c.put("max_seq_len", maxSeqLen);
        c.put("max_latents", maxLatents);
        c.put("num_channels", numChannels);
        c.put("output_norm", outputNorm);
        c.put("output_bias", outputBias);
        c.put("abs_pos_emb", absPosEmb);
        c.put("init_scale", initScale);
        ObjectNode root = f.objectNode();
        root.put("model_type", MODEL_TYPE);
        root.set("model_config", c);
        return root;
    }
}
