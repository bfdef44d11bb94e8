package dev.perceiver4j.model.io;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.nn.LayerNorm;
import dev.perceiver4j.nn.Linear;
import dev.perceiver4j.nn.Params;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Tensor;

import java.util.function.Supplier;

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
        return inLayerScope(() -> {
            Tensor ctx = kv == null ? selfAttend(x, training, seed, stream)
                    : crossAttend(projectQueries(x), kv, keyPad, training, seed, stream);          // [B, N, v]
            return finish(ctx, x);
        });
    }

    /**
     * Cross-attention from queries already projected: q = {@link #projectQueries}(x) [B, N, qk] (made once
     * when x does not depend on the input: {@link FoldedQueries}); x [B, N, qDim] is read only for the
     * query residual (may be null without one); kv, keyPad as in {@link #forward} → [B, N, qDim].
     */
    public Tensor forwardProjected(Tensor q, Tensor x, Tensor kv, Tensor keyPad, boolean training, long seed, long stream) {
        if (kv == null) throw new IllegalArgumentException("forwardProjected is cross-attention: kv must not be null");
        if (queryResidual && x == null) throw new IllegalArgumentException("this layer adds its queries back (query residual): x must not be null");
        return inLayerScope(() -> finish(crossAttend(q, kv, keyPad, training, seed, stream), x));
    }

    /** The attention's queries of x: query(layernorm1(x)), [..., qDim] → [..., qk] in the products' operand type. */
    public Tensor projectQueries(Tensor x) {
        Tensor xn = layernorm1.forwardToProducts(x);
        F.bf16Gradient(xn);                                             // only q's product reads it
        Tensor q = query.forwardToProducts(xn);
        F.discard(xn);                                                  // rebuilt in backward from what layer norm keeps (see F.discard)
        return q;
    }

    /** The parameters {@link #projectQueries} reads besides x: layernorm1's and query's weights and biases. */
    public Tensor[] queryParameters() {
        return new Tensor[] {layernorm1.weight, layernorm1.bias, query.weight, query.bias};
    }

    /** Whether the attention output is added to the queries x (else x is read only through q). */
    public boolean queryResidual() {
        return queryResidual;
    }

    private static Tensor inLayerScope(Supplier<Tensor> body) {
        if (Autograd.enabled()) return body.get();
        // Inference: the layer's intermediates go back to the pool as soon as it returns, so the
        // next layer reuses the same (cache-warm) buffers instead of touching fresh memory.
        try (Scope layer = Scope.open()) {
            return layer.keep(body.get());
        }
    }

    /** ctx [B, N, v] from attention → the block's output: output projection (+ x), then the MLP with its residual. */
    private Tensor finish(Tensor ctx, Tensor x) {
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

    /** Self-attention of x [B, N, qDim] → ctx [B, N, v]: q, k, v packed as one product where the backend packs, else three. */
    private Tensor selfAttend(Tensor x, boolean training, long seed, long stream) {
        Tensor xn = layernorm1.forwardToProducts(x);                    // only q, k and v read the normed inputs
        Tensor ctx = packedSelfAttention(xn, training, seed, stream);
        if (ctx != null) return ctx;
        // Three products of one input, one call (without autograd the CPU runs them as one).
        Tensor[] qkv = F.linears(xn, new Tensor[] {query.weight, key.weight, value.weight},
                new Tensor[] {query.bias, key.bias, value.bias}, xn.backend().matmulOperandType(xn.shape().rows()));
        F.discard(xn);                                                  // rebuilt in backward from what layer norm keeps (see F.discard)
        // Only the output projection reads ctx: stored in the products' operand type (bf16 in the bf16 mode).
        return F.attention(qkv[0], qkv[1], qkv[2], null, heads, false, training ? dropout : 0f, seed, stream,
                xn.backend().matmulOperandType(xn.shape().rows()));
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

    /** Cross-attention of the queries q [B, N, qk] over kv [B, M, kvDim] → ctx [B, N, v]: k, v packed as one product where the backend packs. */
    private Tensor crossAttend(Tensor q, Tensor kv, Tensor keyPad, boolean training, long seed, long stream) {
        Tensor kvn = layernorm2.forwardToProducts(kv);
        Tensor ctx = packedKeysAndValues(q, kvn, keyPad, training, seed, stream);
        if (ctx != null) {
            F.discard(kvn);
            return ctx;
        }
        Tensor k = key.forwardToProducts(kvn), v = value.forwardToProducts(kvn);   // [B, M, qk], [B, M, v]
        F.discard(kvn);
        return F.attention(q, k, v, keyPad, heads, false, training ? dropout : 0f, seed, stream,
                kvn.backend().matmulOperandType(q.shape().rows()));
    }
}
