package dev.perceiver4j.model.io;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * Perceiver IO hyper-parameters, read from a Hugging Face {@code config.json}
 * ({@code model_type: "perceiver"}). Field names follow HF's PerceiverConfig.
 */
public record PerceiverConfig(
        int dModel,                    // d_model: input (byte embedding) channels
        int dLatents,                  // d_latents: latent channels
        int numLatents,                // num_latents
        int numBlocks,                 // num_blocks: repeats of the shared self-attention block
        int numSelfAttendsPerBlock,    // num_self_attends_per_block
        int numSelfAttentionHeads,
        int numCrossAttentionHeads,
        Integer qkChannels,            // qk_channels (null = default per layer)
        Integer vChannels,             // v_channels (null = default per layer)
        String crossAttentionShapeForAttention, // "kv" or "q": qk width of the encoder cross-attention by default
        int selfAttentionWideningFactor,
        int crossAttentionWideningFactor,
        boolean useQueryResidual,      // encoder cross-attention query residual
        int vocabSize,
        int maxPositionEmbeddings,     // input length and number of decoder queries
        String hiddenAct,
        float attentionDropout) {

    public PerceiverConfig {
        positive("d_model", dModel);
        positive("d_latents", dLatents);
        positive("num_latents", numLatents);
        positive("num_blocks", numBlocks);
        positive("num_self_attends_per_block", numSelfAttendsPerBlock);
        positive("num_self_attention_heads", numSelfAttentionHeads);
        positive("num_cross_attention_heads", numCrossAttentionHeads);
        positive("self_attention_widening_factor", selfAttentionWideningFactor);
        positive("cross_attention_widening_factor", crossAttentionWideningFactor);
        positive("vocab_size", vocabSize);
        positive("max_position_embeddings", maxPositionEmbeddings);
        if (qkChannels != null) positive("qk_channels", qkChannels);
        if (vChannels != null) positive("v_channels", vChannels);
        if (!"kv".equals(crossAttentionShapeForAttention) && !"q".equals(crossAttentionShapeForAttention)) {
            throw new IllegalArgumentException("cross_attention_shape_for_attention must be \"kv\" or \"q\", got " + crossAttentionShapeForAttention);
        }
        if (!"gelu".equals(hiddenAct)) throw new IllegalArgumentException("hidden_act '" + hiddenAct + "' is not supported (only \"gelu\", exact)");
        if (!(attentionDropout >= 0 && attentionDropout < 1)) throw new IllegalArgumentException("attention_probs_dropout_prob must be in [0, 1)");
        if (dLatents % numSelfAttentionHeads != 0 || dLatents % numCrossAttentionHeads != 0) {
            throw new IllegalArgumentException("d_latents " + dLatents + " must divide by the self (" + numSelfAttentionHeads
                    + ") and cross (" + numCrossAttentionHeads + ") attention heads");
        }
    }

    private static void positive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + " must be >= 1, got " + v);
    }

    /** The deepmind/language-perceiver architecture (201M parameters). */
    public static PerceiverConfig languagePerceiver() {
        return new PerceiverConfig(768, 1280, 256, 1, 26, 8, 8, 256, 1280, "kv", 1, 1, true, 262, 2048, "gelu", 0.1f);
    }

    /** This configuration with another attention_probs_dropout_prob. */
    public PerceiverConfig withAttentionDropout(float p) {
        return new PerceiverConfig(dModel, dLatents, numLatents, numBlocks, numSelfAttendsPerBlock, numSelfAttentionHeads,
                numCrossAttentionHeads, qkChannels, vChannels, crossAttentionShapeForAttention, selfAttentionWideningFactor,
                crossAttentionWideningFactor, useQueryResidual, vocabSize, maxPositionEmbeddings, hiddenAct, p);
    }

    /** Reads the fields of an HF {@code config.json}; absent fields take HF's defaults. */
    public static PerceiverConfig fromHf(JsonNode c) {
        String type = text(c, "model_type", "perceiver");
        if (!"perceiver".equals(type)) throw new IllegalArgumentException("config.json: model_type is '" + type + "', expected 'perceiver'");
        return new PerceiverConfig(
                integer(c, "d_model", 768), integer(c, "d_latents", 1280), integer(c, "num_latents", 256),
                integer(c, "num_blocks", 1), integer(c, "num_self_attends_per_block", 26),
                integer(c, "num_self_attention_heads", 8), integer(c, "num_cross_attention_heads", 8),
                optionalInt(c, "qk_channels"), optionalInt(c, "v_channels"),
                text(c, "cross_attention_shape_for_attention", "kv"),
                integer(c, "self_attention_widening_factor", 1), integer(c, "cross_attention_widening_factor", 1),
                c.path("use_query_residual").asBoolean(true),
                integer(c, "vocab_size", 262), integer(c, "max_position_embeddings", 2048),
                text(c, "hidden_act", "gelu"), (float) c.path("attention_probs_dropout_prob").asDouble(0.1));
    }

    /** This configuration as an HF {@code config.json} object (loadable by transformers). */
    public com.fasterxml.jackson.databind.node.ObjectNode toHf() {
        var c = com.fasterxml.jackson.databind.node.JsonNodeFactory.instance.objectNode();
        c.put("model_type", "perceiver");
        c.putArray("architectures").add("PerceiverForMaskedLM");
        c.put("d_model", dModel);
        c.put("d_latents", dLatents);
        c.put("num_latents", numLatents);
        c.put("num_blocks", numBlocks);
        c.put("num_self_attends_per_block", numSelfAttendsPerBlock);
        c.put("num_self_attention_heads", numSelfAttentionHeads);
        c.put("num_cross_attention_heads", numCrossAttentionHeads);
        if (qkChannels != null) c.put("qk_channels", qkChannels); else c.putNull("qk_channels");
        if (vChannels != null) c.put("v_channels", vChannels); else c.putNull("v_channels");
        c.put("cross_attention_shape_for_attention", crossAttentionShapeForAttention);
        c.put("self_attention_widening_factor", selfAttentionWideningFactor);
        c.put("cross_attention_widening_factor", crossAttentionWideningFactor);
        c.put("use_query_residual", useQueryResidual);
        c.put("vocab_size", vocabSize);
        c.put("max_position_embeddings", maxPositionEmbeddings);
        c.put("hidden_act", hiddenAct);
        c.put("attention_probs_dropout_prob", attentionDropout);
        return c;
    }

    private static int integer(JsonNode c, String field, int dflt) {
        JsonNode n = c.get(field);
        if (n == null || n.isNull()) return dflt;
        if (!n.canConvertToInt() || !n.isIntegralNumber()) throw new IllegalArgumentException("config.json: " + field + " must be an integer, got " + n);
        return n.intValue();
    }

    private static Integer optionalInt(JsonNode c, String field) {
        JsonNode n = c.get(field);
        return n == null || n.isNull() ? null : integer(c, field, 0);
    }

    private static String text(JsonNode c, String field, String dflt) {
        JsonNode n = c.get(field);
        return n == null || n.isNull() ? dflt : n.asText();
    }
}
