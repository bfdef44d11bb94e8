package dev.perceiver4j.model.ar;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.perceiver4j.backend.Activation;

/**
 * The {@code model_config} of a krasserm/perceiver-io (0.11.x) {@code CausalSequenceModel}
 * (Perceiver AR), with that project's field names in {@code config.json}:
 * <pre>
 *   {"model_type": "perceiver-ar-causal-language-model", "model_config": {"num_heads": 4, ...}}
 * </pre>
 * {@code maxHeadsParallel} (null = all heads) only affects memory use there and is kept for
 * round-tripping. The three dropouts are training-time settings: {@code cross_attention_dropout} is
 * the prefix dropout, {@code post_attention_dropout} acts on attention probabilities and
 * {@code residual_dropout} on each residual branch.
 *
 * <p>Options of the paper's own implementation (google-research/perceiver-ar), written to
 * config.json only when they differ from the krasserm defaults, so krasserm configs round-trip:
 * <ul>
 *   <li>{@code mlp_activation}: "gelu" (default) or "squared_relu";</li>
 *   <li>{@code tied_output}: true (default: logits = h·txt_embeddingᵀ + bias) or false (an untied,
 *       zero-initialised {@code output_adapter.linear} head; pair it with {@code output_norm});</li>
 *   <li>{@code cross_attention_dropout_mode}: "subset" (default: keep exactly P − ⌊P·p⌋ random prefix
 *       positions, which removes their compute) or "bernoulli" (mask each input position of the
 *       cross-attention independently with probability p);</li>
 *   <li>{@code rotary_fraction}: the fraction of each head's channels that rotary rotates (default:
 *       half with absolute position embeddings, all without); combine with
 *       {@code num_self_attention_rotary_layers: -1} for rotary in every layer.</li>
 * </ul>
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
        float initScale,
        Activation mlpActivation,
        boolean tiedOutput,
        PrefixDropoutMode crossAttentionDropoutMode,
        Float rotaryFraction) {

    /** How {@code cross_attention_dropout} drops input positions during training. */
    public enum PrefixDropoutMode {
        /** krasserm: a random subset of exactly P − ⌊P·p⌋ prefix positions is kept (the rest is not computed). */
        SUBSET,
        /** Paper implementation: each input position is masked out of the cross-attention with probability p. */
        BERNOULLI
    }

    public static final String MODEL_TYPE = "perceiver-ar-causal-language-model";

    public PerceiverArConfig {
        if (numHeads <= 0 || numChannels % numHeads != 0) {
            throw new IllegalArgumentException("num_channels " + numChannels + " must divide by num_heads " + numHeads);
        }
        int perHead = numChannels / numHeads;
        if (rotaryFraction != null && !(rotaryFraction > 0 && rotaryFraction <= 1)) {
            throw new IllegalArgumentException("rotary_fraction must be in (0, 1], got " + rotaryFraction);
        }
        if (perHead % 2 != 0 || (rotaryFraction == null && absPosEmb && perHead % 4 != 0)) {
            throw new IllegalArgumentException("channels per head " + perHead + " must leave an even number of rotated channels");
        }
        if (mlpActivation != Activation.GELU && mlpActivation != Activation.SQUARED_RELU) {
            throw new IllegalArgumentException("mlp_activation must be gelu or squared_relu, got " + mlpActivation);
        }
        if (crossAttentionDropoutMode == null) throw new IllegalArgumentException("cross_attention_dropout_mode is null");
        for (float p : new float[] {crossAttentionDropout, postAttentionDropout, residualDropout}) {
            if (!(p >= 0 && p < 1)) throw new IllegalArgumentException("dropout rates must be in [0, 1), got " + p);
        }
        if (numSelfAttentionLayers < 0 || numSelfAttentionRotaryLayers < -1) {
            throw new IllegalArgumentException("bad layer counts: " + numSelfAttentionLayers + " self-attention, " + numSelfAttentionRotaryLayers + " rotary");
        }
        if (vocabSize <= 0 || maxSeqLen <= 0 || maxLatents <= 0 || maxLatents > maxSeqLen) {
            throw new IllegalArgumentException("bad sizes: vocab " + vocabSize + ", max_seq_len " + maxSeqLen + ", max_latents " + maxLatents);
        }
    }

    /** The krasserm model_config fields with the paper's options at their defaults (GELU, tied output, subset prefix dropout). */
    public static PerceiverArConfig krasserm(int numHeads, int numSelfAttentionLayers, int numSelfAttentionRotaryLayers, int wideningFactor,
                                             float crossAttentionDropout, int vocabSize, int maxSeqLen, int maxLatents, int numChannels,
                                             boolean outputNorm, boolean absPosEmb) {
        return new PerceiverArConfig(numHeads, null, numSelfAttentionLayers, numSelfAttentionRotaryLayers, wideningFactor, wideningFactor,
                crossAttentionDropout, 0f, 0f, false, false, vocabSize, maxSeqLen, maxLatents, numChannels, outputNorm, true, absPosEmb,
                0.02f, Activation.GELU, true, PrefixDropoutMode.SUBSET, null);
    }

    /** Channels per head that rotary embeddings rotate: {@code rotary_fraction} of each head (rounded down to even, at least 2), else half with absolute positions and all without. */
    public int rotatedChannelsPerHead() {
        int perHead = numChannels / numHeads;
        if (rotaryFraction != null) return Math.max(2, (int) Math.floor(perHead * rotaryFraction / 2.0) * 2);
        return absPosEmb ? perHead / 2 : perHead;
    }

    /** The same configuration with another sequence length and number of latents (training and generation resize these). */
    public PerceiverArConfig withSizes(int newMaxSeqLen, int newMaxLatents) {
        return new PerceiverArConfig(numHeads, maxHeadsParallel, numSelfAttentionLayers, numSelfAttentionRotaryLayers, selfAttentionWideningFactor,
                crossAttentionWideningFactor, crossAttentionDropout, postAttentionDropout, residualDropout, activationCheckpointing,
                activationOffloading, vocabSize, newMaxSeqLen, newMaxLatents, numChannels, outputNorm, outputBias, absPosEmb, initScale,
                mlpActivation, tiedOutput, crossAttentionDropoutMode, rotaryFraction);
    }

    /** The same configuration with other training dropouts (prefix, attention probabilities, residual). */
    public PerceiverArConfig withDropouts(float prefix, PrefixDropoutMode mode, float attention, float residual) {
        return new PerceiverArConfig(numHeads, maxHeadsParallel, numSelfAttentionLayers, numSelfAttentionRotaryLayers, selfAttentionWideningFactor,
                crossAttentionWideningFactor, prefix, attention, residual, activationCheckpointing,
                activationOffloading, vocabSize, maxSeqLen, maxLatents, numChannels, outputNorm, outputBias, absPosEmb, initScale,
                mlpActivation, tiedOutput, mode, rotaryFraction);
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
                (float) c.path("init_scale").asDouble(0.02),
                activation(c.path("mlp_activation").asText("gelu")),
                c.path("tied_output").asBoolean(true),
                dropoutMode(c.path("cross_attention_dropout_mode").asText("subset")),
                c.hasNonNull("rotary_fraction") ? (float) c.get("rotary_fraction").asDouble() : null);
    }

    /** "gelu" or "squared_relu" → the MLP activation. */
    public static Activation activation(String name) {
        return switch (name) {
            case "gelu" -> Activation.GELU;
            case "squared_relu" -> Activation.SQUARED_RELU;
            default -> throw new IllegalArgumentException("mlp_activation must be \"gelu\" or \"squared_relu\", got \"" + name + "\"");
        };
    }

    /** "subset" or "bernoulli" → the prefix-dropout mode. */
    public static PrefixDropoutMode dropoutMode(String name) {
        return switch (name) {
            case "subset" -> PrefixDropoutMode.SUBSET;
            case "bernoulli" -> PrefixDropoutMode.BERNOULLI;
            default -> throw new IllegalArgumentException("cross_attention_dropout_mode must be \"subset\" or \"bernoulli\", got \"" + name + "\"");
        };
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
        if (mlpActivation != Activation.GELU) c.put("mlp_activation", "squared_relu");
        if (!tiedOutput) c.put("tied_output", false);
        if (crossAttentionDropoutMode != PrefixDropoutMode.SUBSET) c.put("cross_attention_dropout_mode", "bernoulli");
        if (rotaryFraction != null) c.put("rotary_fraction", rotaryFraction);
        ObjectNode root = f.objectNode();
        root.put("model_type", MODEL_TYPE);
        root.set("model_config", c);
        return root;
    }
}
