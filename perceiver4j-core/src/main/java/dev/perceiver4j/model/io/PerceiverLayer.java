package dev.perceiver4j.model.io;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.nn.LayerNorm;
import dev.perceiver4j.nn.Linear;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Tensor;

/**
 * One Perceiver block, HF's {@code PerceiverLayer} with its parameter names:
 *
 * <pre>
 *   q = query(layernorm1(x))                       x: [B, N, qDim]      (the queries)
 *   k, v = key/value(layernorm2(kv))  (cross)      kv: [B, M, kvDim]    (self: kv = layernorm1(x);
 *                                                  q, k, v then one product where the backend packs them)
 *   a = output.dense(attention(q, k, v, mask)) (+ x if queryResidual)
 *   y = a + mlp(layernorm(a))                      mlp = dense2(gelu(dense1(·)))
 * </pre>
 * LayerNorm eps is 1e-5 throughout (HF never passes {@code layer_norm_eps} to these layers).
 */
public final class PerceiverLayer {
    static final float LN_EPS = 1e-5f;

    private final LayerNorm layernorm1;  // attention.self.layernorm1 [qDim]
    private final LayerNorm layernorm2;  // attention.self.layernorm2 [kvDim], cross-attention only
    private final Linear query, key, value, dense;
    private final LayerNorm layernorm;   // before the MLP [qDim]
    private final Linear dense1, dense2;
    private final int heads;
    private final boolean queryResidual;
    private final float dropout;

    /**
     * @param qk   query/key channels (total over heads)
     * @param v    value channels (total over heads)
     * @param out  output channels of attention.output.dense (qDim for cross, v for self in HF)
     */
    public PerceiverLayer(Params p, boolean cross, int qDim, int kvDim, int qk, int v, int out, int heads, int widening,
                          boolean queryResidual, float dropout) {
        if (qk % heads != 0 || v % heads != 0) {
            throw new IllegalArgumentException(p.name() + ": qk_channels " + qk + " and v_channels " + v + " must divide by " + heads + " heads");
        }
        if (out != qDim) throw new IllegalArgumentException(p.name() + ": attention output " + out + " must equal the query width " + qDim + " for the residuals");
        Params a = p.sub("attention");
        Params s = a.sub("self");
        this.layernorm1 = new LayerNorm(s.sub("layernorm1"), qDim, LN_EPS);
        this.layernorm2 = cross ? new LayerNorm(s.sub("layernorm2"), kvDim, LN_EPS) : null;
        this.query = new Linear(s.sub("query"), qDim, qk, true);
        this.key = new Linear(s.sub("key"), kvDim, qk, true);
        this.value = new Linear(s.sub("value"), kvDim, v, true);
        this.dense = new Linear(a.sub("output").sub("dense"), v, out, true);
        this.layernorm = new LayerNorm(p.sub("layernorm"), qDim, LN_EPS);
        Params m = p.sub("mlp");
        this.dense1 = new Linear(m.sub("dense1"), qDim, widening * qDim, true, Activation.GELU);
        this.dense2 = new Linear(m.sub("dense2"), widening * qDim, qDim, true);
        this.heads = heads;
        this.queryResidual = queryResidual;
        this.dropout = dropout;
    }

    /**
     * x: [B, N, qDim] queries; kv: [B, M, kvDim] for cross-attention or null for self-attention;
     * keyPad: BOOL [B, M] (true = padding) or null → [B, N, qDim].
     */
    public Tensor forward(Tensor x, Tensor kv, Tensor keyPad, boolean training, long seed, long stream) {
        if (Autograd.enabled()) return compute(x, kv, keyPad, training, seed, stream);
        // Inference: the layer's intermediates go back to the pool as soon as it returns, so the
        // next layer reuses the same (cache-warm) buffers instead of touching fresh memory.
        try (Scope layer = Scope.open()) {
            return layer.keep(compute(x, kv, keyPad, training, seed, stream));
        }
    }

    private Tensor compute(Tensor x, Tensor kv, Tensor keyPad, boolean training, long seed, long stream) {
        Tensor xn = layernorm1.forwardToProducts(x);                    // only q (and k, v) read the normed inputs
        Tensor ctx = kv == null ? packedSelfAttention(xn, training, seed, stream) : null;   // null: q, k, v as separate products
        if (ctx == null) ctx = projectAndAttend(xn, kv, keyPad, training, seed, stream);    // [B, N, v]
        F.bf16Gradient(ctx);                                            // the output projection is its one reader (so below)
        Tensor a = queryResidual ? dense.forwardAdd(ctx, x) : dense.forward(ctx);         // [B, N, qDim]: x + dense(ctx)
        Tensor an = layernorm.forwardToProducts(a);
        F.bf16Gradient(an);
        Tensor h = dense1.forwardToProducts(an);                        // [B, N, widening·qDim], GELU applied
        F.bf16Gradient(h);
        F.discard(an);
        Tensor y = dense2.forwardAdd(h, a);                             // a + dense2(h)
        F.discard(h);                                                   // rebuilt in backward as gelu(pre-activation)
        return y;
    }

    /**
     * Self-attention with q, k and v as one product into one packed tensor [B, N, 2·qk + v] read in place
     * by {@link F#attentionPacked}, where the backend asks for it ({@link F#packsSelfAttention}) and the three
     * weights and biases lie back to back (a packed parameter slab: {@link Tensor#adjacent}); else null.
     */
    private Tensor packedSelfAttention(Tensor xn, boolean training, long seed, long stream) {
        Tensor qkv = packedProduct(xn, query, key, value);             // [B, N, 2·qk + v]
        if (qkv == null) return null;
        F.discard(xn);
        return F.attentionPacked(qkv, query.weight.dim(0), value.weight.dim(0), heads, false, training ? dropout : 0f, seed, stream,
                xn.backend().matmulOperandType(xn.shape().rows()));
    }

    /**
     * The projections {@code layers} of x as one product over their weights and biases lying back to back
     * (a packed slab: {@link Tensor#adjacent}), written in the products' operand type, where the backend
     * packs ({@link F#packsSelfAttention}); else null. x then has this product as its one reader and the
     * result only the attention: both keep BF16 gradients where the backend takes them (F.bf16Gradient).
     */
    private static Tensor packedProduct(Tensor x, Linear... layers) {
        if (!F.packsSelfAttention(x.backend())) return null;
        Tensor[] ws = new Tensor[layers.length], bs = new Tensor[layers.length];
        for (int i = 0; i < layers.length; i++) {
            if (layers[i].bias == null) return null;
            ws[i] = layers[i].weight;
            bs[i] = layers[i].bias;
        }
        Tensor w = Tensor.adjacent(ws), b = Tensor.adjacent(bs);
        if (w == null || b == null) return null;
        F.bf16Gradient(x);
        Tensor out = F.linear(x, w, b, Activation.NONE, x.backend().matmulOperandType(x.shape().rows()));
        F.bf16Gradient(out);
        return out;
    }

    /**
     * Cross-attention with k and v as one product of the normed inputs kvn into one packed tensor [B, M, qk + v],
     * read in place by {@link F#attentionKvPacked}, where the backend packs ({@link F#packsSelfAttention}) and the
     * key and value weights and biases lie back to back (a packed slab); else null. kvn then has one reader.
     */
    private Tensor packedKeysAndValues(Tensor q, Tensor kvn, Tensor keyPad, boolean training, long seed, long stream) {
        Tensor kv = packedProduct(kvn, key, value);                    // [B, M, qk + v]
        if (kv == null) return null;
        return F.attentionKvPacked(q, kv, key.weight.dim(0), value.weight.dim(0), keyPad, heads, training ? dropout : 0f, seed, stream,
                kvn.backend().matmulOperandType(q.shape().rows()));
    }

    /** The attention block's q, k and v as separate products, and attention over them: [B, N, v]. */
    private Tensor projectAndAttend(Tensor xn, Tensor kv, Tensor keyPad, boolean training, long seed, long stream) {
        Tensor kvn = kv == null ? xn : layernorm2.forwardToProducts(kv);
        // Only attention reads q, k and v: on a bf16-product backend their products write them as bf16.
        Tensor q, k, v;                                                 // [B, N, qk], [B, M, qk], [B, M, v]
        if (kv == null) { // self-attention: three products of one input, one call (without autograd the CPU runs them as one)
            Tensor[] qkv = F.linears(xn, new Tensor[] {query.weight, key.weight, value.weight},
                    new Tensor[] {query.bias, key.bias, value.bias}, xn.backend().matmulOperandType(xn.shape().rows()));
            q = qkv[0];
            k = qkv[1];
            v = qkv[2];
        } else {
            F.bf16Gradient(xn);                                         // only q's product reads it
            q = query.forwardToProducts(xn);
            Tensor ctx = packedKeysAndValues(q, kvn, keyPad, training, seed, stream);
            if (ctx != null) {
                F.discard(xn);
                F.discard(kvn);
                return ctx;
            }
            k = key.forwardToProducts(kvn);
            v = value.forwardToProducts(kvn);
        }
        // The normed inputs are rebuilt in backward from what layer norm keeps (see F.discard).
        F.discard(xn);
        if (kvn != xn) F.discard(kvn);
        // Only the output projection reads ctx: stored in the products' operand type (bf16 in the bf16 mode).
        return F.attention(q, k, v, kv == null ? null : keyPad, heads, false, training ? dropout : 0f, seed, stream,
                xn.backend().matmulOperandType(q.shape().rows()));
    }
}
