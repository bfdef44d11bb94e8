package dev.perceiver4j.nn;

import dev.perceiver4j.autograd.F;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Tensor;

/** Layer norm over the last dim with affine {@code weight} (γ) and {@code bias} (β). */
public final class LayerNorm {
    public final Tensor weight; // [d] γ
    public final Tensor bias;   // [d] β
    private final float eps;

    public LayerNorm(Params p, int d, float eps) {
        this.weight = p.weight("weight", Shape.of(d), Init.ones());
        this.bias = p.weight("bias", Shape.of(d), Init.zeros());
        this.eps = eps;
    }

    /** x: [..., d] → [..., d]. */
    public Tensor forward(Tensor x) {
        return F.layerNorm(x, weight, bias, eps);
    }

    /** x: [..., d] → [..., d] stored as {@code outType} (F32, or BF16 for readers that are all bf16 products). */
    public Tensor forward(Tensor x, DType outType) {
        return F.layerNorm(x, weight, bias, eps, outType);
    }

    /**
     * x: [..., d] → [..., d] for readers that are all matrix products: stored in the backend's
     * product operand dtype for x's rows ({@code Backend.matmulOperandType}: BF16 in CUDA's bf16 mode,
     * except for skinny products; else F32).
     */
    public Tensor forwardToProducts(Tensor x) {
        return forward(x, x.backend().matmulOperandType(x.shape().rows()));
    }
}
