package dev.perceiver4j.backend;

/** Pointwise activations that matmul epilogues and MLPs use. */
public enum Activation {
    /** Identity. */
    NONE,
    /** Exact GELU: 0.5·x·(1 + erf(x/√2)) (HF Perceiver, krasserm Perceiver AR). */
    GELU,
    /** relu(x)² (the Perceiver AR paper's MLP). */
    SQUARED_RELU,
    /** max(x, 0). */
    RELU
}
