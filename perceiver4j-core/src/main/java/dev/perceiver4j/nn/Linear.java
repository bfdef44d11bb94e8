package dev.perceiver4j.nn;

import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

/** y = act(x · Wᵀ + b), PyTorch layout and names ({@code weight}, {@code bias}). */
public final class Linear {
    public final Tensor weight; // [out, in]
    public final Tensor bias;   // [out] or null
    private final Activation act;

    public Linear(Params p, int in, int out, boolean bias) {
        this(p, in, out, bias, Activation.NONE);
    }

    /** A linear layer with its activation fused into the matmul epilogue. */
    public Linear(Params p, int in, int out, boolean bias, Activation act) {
        this.weight = p.weight("weight", Shape.of(out, in), Init.linear(in));
        this.bias = bias ? p.weight("bias", Shape.of(out), Init.linear(in)) : null;
        this.act = act;
    }

    /** x: [..., in] → [..., out]. */
    public Tensor forward(Tensor x) {
        return F.linear(x, weight, bias, act);
    }

    /** residual + this layer's output (no activation): x [..., in], residual [..., out] → [..., out], one fused call. */
    public Tensor forwardAdd(Tensor x, Tensor residual) {
        if (act != Activation.NONE) throw new IllegalStateException("forwardAdd needs a linear layer without activation, this one has " + act);
        return F.linearAdd(x, weight, bias, residual);
    }

    /** x: [..., in] → [..., out] for readers that are all matrix products or attention kernels: stored in the backend's product operand dtype. */
    public Tensor forwardToProducts(Tensor x) {
        return F.linear(x, weight, bias, act, x.backend().matmulOperandType(x.shape().rows()));
    }
}
