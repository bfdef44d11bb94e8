package dev.perceiver4j.nn;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.tensor.Tensor;

/** Two linear layers with an activation between them (fused into the first matmul). */
public final class Mlp {
    public final Linear fc1, fc2;

    public Mlp(Params p, int d, int hidden, Activation act, boolean bias) {
        this.fc1 = new Linear(p.sub("fc1"), d, hidden, bias, act);
        this.fc2 = new Linear(p.sub("fc2"), hidden, d, bias);
    }

    /** x: [..., d] → [..., d]. */
    public Tensor forward(Tensor x) {
        return fc2.forward(fc1.forward(x));
    }
}
