package dev.perceiver4j.model.io;

import dev.perceiver4j.autograd.F;
import dev.perceiver4j.nn.Init;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * The Perceiver IO encoder: learned latents cross-attend to the inputs once, then a block of
 * latent self-attention layers runs {@code num_blocks} times with shared weights.
 *
 * <pre>
 *   z0 = latents                                  [B, L, dLatents]   (perceiver.embeddings.latents)
 *   z  = cross_attention(z0, inputs, mask)        inputs [B, M, kvDim]
 *   repeat num_blocks: for each self_attends[i]: z = self_attends[i](z)
 * </pre>
 */
public final class PerceiverEncoder {
    private final Tensor latents;                  // [L, dLatents]
    private final PerceiverLayer crossAttention;
    private final List<PerceiverLayer> selfAttends = new ArrayList<>();
    private final int numBlocks;
    private final FoldedQueries latentQueries;    // the cross-attention's queries of the latents, kept between inference passes

    /**
     * @param latentsScope where the latents are registered ({@code perceiver.embeddings})
     * @param p            the encoder's scope ({@code perceiver.encoder})
     * @param kvDim        channels of the adapted inputs
     */
    public PerceiverEncoder(Params latentsScope, Params p, PerceiverConfig c, int kvDim) {
        this.latents = latentsScope.weight("latents", Shape.of(c.numLatents(), c.dLatents()), Init.normal(0.02));
        int crossQk = c.qkChannels() != null ? c.qkChannels() : ("kv".equals(c.crossAttentionShapeForAttention()) ? kvDim : c.dLatents());
        int crossV = c.vChannels() != null ? c.vChannels() : crossQk;
        this.crossAttention = new PerceiverLayer(p.sub("cross_attention"), true, c.dLatents(), kvDim, crossQk, crossV, c.dLatents(),
                c.numCrossAttentionHeads(), c.crossAttentionWideningFactor(), c.useQueryResidual(), c.attentionDropout());
        int selfQk = c.qkChannels() != null ? c.qkChannels() : c.dLatents();
        int selfV = c.vChannels() != null ? c.vChannels() : selfQk;
        for (int i = 0; i < c.numSelfAttendsPerBlock(); i++) {
            selfAttends.add(new PerceiverLayer(p.sub("self_attends").sub(i), false, c.dLatents(), c.dLatents(), selfQk, selfV, selfV,
                    c.numSelfAttentionHeads(), c.selfAttentionWideningFactor(), true, c.attentionDropout()));
        }
        this.numBlocks = c.numBlocks();
        this.latentQueries = new FoldedQueries(crossAttention, latents);
    }

    /** inputs: [B, M, kvDim]; keyPad: BOOL [B, M] or null → latents [B, L, dLatents]. */
    public Tensor forward(Tensor inputs, Tensor keyPad, boolean training, long seed) {
        int b = inputs.dim(0);
        long stream = 0;
        Tensor z = latentQueries.forward(b, inputs, keyPad, training, seed, stream);        // [B, L, dLatents], or null: not folded
        if (z == null) z = crossAttention.forward(broadcast(latents, b), inputs, keyPad, training, seed, stream);
        stream++;
        for (int block = 0; block < numBlocks; block++) {
            for (PerceiverLayer layer : selfAttends) z = layer.forward(z, null, null, training, seed, stream++);
        }
        return z;
    }

    /** x [N, D] repeated over a new leading batch axis → [B, N, D] (gradients sum back into x). */
    static Tensor broadcast(Tensor x, int batch) {
        Tensor zeros = x.backend().zeros(Shape.of(batch, x.dim(0), x.dim(1)), DType.F32);
        return F.add(zeros, x);
    }
}
