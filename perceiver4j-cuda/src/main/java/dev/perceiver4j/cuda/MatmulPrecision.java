package dev.perceiver4j.cuda;

import java.util.Locale;

/**
 * How the CUDA backend's matrix products compute (storage stays fp32 in every mode).
 * <ul>
 *   <li>{@link #FP32}: exact fp32 (cuBLASLt {@code CUBLAS_COMPUTE_32F}); attention in fp32 kernels. For parity.</li>
 *   <li>{@link #TF32}: tensor cores with TF32 inputs (10-bit mantissa), fp32 accumulation; attention on
 *       tensor cores in TF32.</li>
 *   <li>{@link #BF16}: tensor cores with bf16 inputs (8-bit mantissa; both operands rounded to nearest
 *       even per product), fp32 accumulation and fp32 output; attention as in TF32. Master weights,
 *       activations and gradients stay fp32.</li>
 * </ul>
 */
public enum MatmulPrecision {
    FP32, TF32, BF16;

    /** Property naming the mode: {@code -Dperceiver4j.cuda.precision=fp32|tf32|bf16}. */
    public static final String PROPERTY = "perceiver4j.cuda.precision";

    /** Whether products may use tensor cores at reduced input precision (TF32 or BF16). */
    public boolean reduced() {
        return this != FP32;
    }

    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** Parses fp32, tf32 or bf16 (any case); anything else is an error naming the choices. */
    public static MatmulPrecision parse(String s) {
        for (MatmulPrecision p : values()) {
            if (p.label().equals(s.trim().toLowerCase(Locale.ROOT))) return p;
        }
        throw new IllegalArgumentException("unknown matmul precision '" + s + "' (-D" + PROPERTY + "): use fp32, tf32 or bf16");
    }

    /**
     * From the system properties: {@value #PROPERTY} if set, else TF32 when the older
     * {@code -Dperceiver4j.cuda.tf32=true} is set, else FP32.
     */
    public static MatmulPrecision fromSystemProperties() {
        String p = System.getProperty(PROPERTY);
        if (p != null && !p.isBlank()) return parse(p);
        return Boolean.getBoolean("perceiver4j.cuda.tf32") ? TF32 : FP32;
    }
}
