package dev.perceiver4j.model.demo;

import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.nn.Embedding;
import dev.perceiver4j.nn.Init;
import dev.perceiver4j.nn.LayerNorm;
import dev.perceiver4j.nn.Linear;
import dev.perceiver4j.nn.Mlp;
import dev.perceiver4j.nn.MultiHeadAttention;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * A small decoder-only transformer (pre-LayerNorm blocks of causal attention + GELU MLP) used by
 * the end-to-end demo and tests of the foundation: token + learned position embeddings →
 * {@code layers} × [x += attn(ln1(x)); x += mlp(ln2(x))] → ln_f → head.
 *
 * <p>Letters: B batch, T sequence, D channels, V vocabulary.
 */
public final class TinyTransformer {
    /** Model size. */
    public record Config(int vocab, int maxLen, int channels, int heads, int layers, int mlpRatio) {
        public Config {
            if (vocab < 2 || maxLen < 1 || channels < 1 || layers < 1 || mlpRatio < 1) throw new IllegalArgumentException("bad config " + vocab + "/" + maxLen + "/" + channels + "/" + layers);
            if (heads < 1 || channels % heads != 0) throw new IllegalArgumentException("channels " + channels + " must divide by heads " + heads);
        }
    }

    private record Block(LayerNorm ln1, MultiHeadAttention attn, LayerNorm ln2, Mlp mlp) {}

    private final Config config;
    private final Embedding tokens;   // [V, D]
    private final Tensor positions;   // [T, D]
    private final List<Block> blocks = new ArrayList<>();
    private final LayerNorm lnF;
    private final Linear head;        // D → V

    public TinyTransformer(Params p, Config c) {
        this.config = c;
        int d = c.channels();
        this.tokens = new Embedding(p.sub("tok_emb"), c.vocab(), d, 0.02);
        this.positions = p.weight("pos_emb", Shape.of(c.maxLen(), d), Init.normal(0.02));
        for (int i = 0; i < c.layers(); i++) {
            Params b = p.sub("blocks").sub(i);
            blocks.add(new Block(
                    new LayerNorm(b.sub("ln1"), d, 1e-5f),
                    new MultiHeadAttention(b.sub("attn"), d, d, d, d, d, c.heads(), true, 0f, true),
                    new LayerNorm(b.sub("ln2"), d, 1e-5f),
                    new Mlp(b.sub("mlp"), d, c.mlpRatio() * d, Activation.GELU, true)));
        }
        this.lnF = new LayerNorm(p.sub("ln_f"), d, 1e-5f);
        this.head = new Linear(p.sub("head"), d, c.vocab(), true);
    }

    public Config config() {
        return config;
    }

    /** ids: I32 [B, T] (T ≤ maxLen) → logits [B, T, V]. */
    public Tensor forward(Tensor ids) {
        int t = ids.dim(1);
        if (t > config.maxLen()) throw new IllegalArgumentException("sequence of " + t + " tokens exceeds maxLen " + config.maxLen());
        Tensor x = tokens.forward(ids);                           // [B, T, D]
        x = F.add(x, F.narrow(positions, 0, 0, t));              // + pos [T, D]
        for (Block b : blocks) {
            Tensor h = b.ln1().forward(x);
            x = F.add(x, b.attn().forward(h, h, null, true, 0L, 0L));
            x = F.add(x, b.mlp().forward(b.ln2().forward(x)));
        }
        return head.forward(lnF.forward(x));                      // [B, T, V]
    }
}
