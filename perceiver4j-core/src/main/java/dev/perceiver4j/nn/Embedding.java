package dev.perceiver4j.nn;

import dev.perceiver4j.autograd.F;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

/** A lookup table of {@code vocab} rows of {@code d} channels ({@code weight}). */
public final class Embedding {
    public final Tensor weight; // [V, D]

    public Embedding(Params p, int vocab, int d, double std) {
        this.weight = p.weight("weight", Shape.of(vocab, d), Init.normal(std));
    }

    /** ids: I32 [...] → [..., D]. */
    public Tensor forward(Tensor ids) {
        return F.embedding(weight, ids);
    }
}
