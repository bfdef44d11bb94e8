package dev.perceiver4j.nn;

import dev.perceiver4j.autograd.F;
import dev.perceiver4j.tensor.Tensor;

/**
 * Multi-head attention with separate q/k/v/o projections (PyTorch names {@code q_proj},
 * {@code k_proj}, {@code v_proj}, {@code o_proj}). Queries and keys/values may come from
 * different sequences (cross-attention) and may have different widths.
 */
public final class MultiHeadAttention {
    public final Linear q, k, v, o;
    private final int heads;
    private final boolean causal;
    private final float dropout;

    /**
     * @param qIn   query input channels
     * @param kvIn  key/value input channels
     * @param qk    total query/key channels (heads × per-head)
     * @param vOut  total value channels
     * @param out   output channels
     */
    public MultiHeadAttention(Params p, int qIn, int kvIn, int qk, int vOut, int out, int heads, boolean causal, float dropout, boolean bias) {
        if (qk % heads != 0 || vOut % heads != 0) {
            throw new IllegalArgumentException("attention " + p.name() + ": channels qk=" + qk + ", v=" + vOut + " must divide by " + heads + " heads");
        }
        this.q = new Linear(p.sub("q_proj"), qIn, qk, bias);
        this.k = new Linear(p.sub("k_proj"), kvIn, qk, bias);
        this.v = new Linear(p.sub("v_proj"), kvIn, vOut, bias);
        this.o = new Linear(p.sub("o_proj"), vOut, out, bias);
        this.heads = heads;
        this.causal = causal;
        this.dropout = dropout;
    }

    /**
     * xq: [B, Nq, qIn], xkv: [B, Nk, kvIn], keyPad: BOOL [B, Nk] or null → [B, Nq, out].
     * {@code seed}/{@code stream} drive attention dropout (ignored when dropout is 0 or not training).
     */
    public Tensor forward(Tensor xq, Tensor xkv, Tensor keyPad, boolean training, long seed, long stream) {
        Tensor qh = q.forward(xq);  // [B, Nq, H·Dqk]
        Tensor kh = k.forward(xkv); // [B, Nk, H·Dqk]
        Tensor vh = v.forward(xkv); // [B, Nk, H·Dv]
        Tensor a = F.attention(qh, kh, vh, keyPad, heads, causal, training ? dropout : 0f, seed, stream); // [B, Nq, H·Dv]
        return o.forward(a);
    }
}
