package dev.perceiver4j.cuda;

import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.RefBackend;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;

import java.nio.file.Path;
import java.util.List;

/**
 * Op-by-op parity of {@link CudaBackend} against the CPU oracle ({@code RefBackend}), without JUnit
 * or Maven, for the GPU machine:
 *
 * <pre>
 * java --enable-native-access=ALL-UNNAMED --add-modules jdk.incubator.vector \
 *      -jar perceiver4j-cuda-&lt;version&gt;-selftest.jar [--seed N] [--no-tf32] [--fixtures DIR]
 * </pre>
 * Prints the device, then one line per check (op, max error, tolerance, PASS/FAIL), then the
 * allocator's memory report; exits 0 when every check passes, 1 when one fails, 2 when CUDA could
 * not start. The op checks are {@link OpParity}'s (with the TF32 matmul and tensor-core attention
 * checks and the bf16 matmul checks unless {@code --no-tf32}); then {@link ModelParity}'s: a Perceiver AR
 * trained 3 steps on the GPU and on the CPU from the same weights (always), and with
 * {@code --fixtures DIR} (DIR holding the folders {@code hf-perceiver-mlm-tiny} and
 * {@code kr-perceiver-ar}, copies of perceiver4j-core/src/test/resources/fixtures/*) both reference
 * models' logits and greedy tokens on the GPU.
 */
public final class GpuSelfTest {
    /**
     * bf16 matmul tolerance (error relative to max(1, |reference|)): rounding both inputs to bf16
     * (unit roundoff 2⁻⁹) moves each product by at most 2⁻⁸ of its size, so a K-term dot product of
     * the checks' unit-variance Gaussian inputs moves by at most 2⁻⁸·Σ|a·b| ≈ 2⁻⁸·0.64·K: 0.32 at
     * the largest K (129). Typical errors are a few 1e-2 (they add like a random walk); a wrong
     * operand, layout, bias or missing term gives errors of order |C| ≈ √K ≈ 11.
     */
    static final double BF16_TOLERANCE = 0.35;

    /**
     * Loss and parameter tolerance (relative to max(1, |cpu|)) of the bf16 training check against
     * the fp32 CPU run: rounding every product's operands to bf16 (2⁻⁹ relative each) moves a
     * cross-entropy of ≈ 5.6 by a few 1e-3 in this small model; a wrong gradient (missing term,
     * wrong copy) moves the losses of steps 2 and 3 by far more. Parameters move at most 3 · lr =
     * 3e-3 in three AdamW steps, so at this tolerance only the losses can fail.
     */
    static final double BF16_TRAINING = 1e-2;

    /**
     * bf16 masked-LM gradients against the CPU's fp32 ones, as a fraction of each tensor's largest: bf16
     * operands and rounded activation gradients put about 2⁻⁸ relative on each product's terms; measured
     * 6.7e-3 with BF16 gradients and 6.1e-3 without on the H100 (docs/benchmarks.md, session 23), so 3e-2.
     */
    static final double BF16_GRADIENTS = 3e-2;

    /**
     * bf16 attention tolerance (error relative to max(1, |reference|)): rounding q and k to bf16 moves a
     * score by at most 2⁻⁸·scale·Σ|q·k|, about 0.014 for unit Gaussians at Dqk 32 (0.64·32/√32 · 2⁻⁸ ≈ 0.014),
     * so probabilities move by ≈ 1.5 %, and rounding P and V adds 2⁻⁸: outputs of |v| ≤ 3 move by
     * ≈ 0.05 at worst; the backward rounds dOut, P and dS to bf16 as well (2⁻⁹ relative each) and
     * recomputes P against the forward's lse. A wrong fragment layout or mask gives errors of order 1.
     */
    static final double BF16_ATTENTION = 0.1;

    private GpuSelfTest() {}

    public static void main(String[] args) {
        long seed = 1234;
        boolean tf32 = true;
        Path fixtures = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--seed" -> seed = Long.parseLong(args[++i]);
                case "--no-tf32" -> tf32 = false;
                case "--fixtures" -> fixtures = Path.of(args[++i]);
                default -> {
                    System.err.println("usage: GpuSelfTest [--seed N] [--no-tf32] [--fixtures DIR]");
                    System.exit(2);
                }
            }
        }
        CudaBackend cuda;
        long t0 = System.nanoTime();
        try {
            cuda = new CudaBackend(CudaContext.create(0), false);
        } catch (RuntimeException | LinkageError e) {
            System.out.println("CUDA did not start: " + e);
            if (!(e instanceof dev.perceiver4j.cuda.ffm.CudaException)) e.printStackTrace(System.out);
            System.exit(2);
            return;
        }
        System.out.printf("device: %s%n", cuda.name());
        System.out.printf("start-up (driver, context, NVRTC %d ms, cuBLASLt): %d ms%n", cuda.kernels().compileMillis(),
                (System.nanoTime() - t0) / 1_000_000);
        RefBackend ref = new RefBackend(CpuPool.common());

        List<OpParity.Check> checks = new java.util.ArrayList<>(OpParity.checks(cuda, ref, seed));
        checks.addAll(OpParity.bf16OutputChecks(cuda, ref, seed));
        if (tf32) {
            CudaBackend tf = new CudaBackend(cuda.context(), true);
            checks.addAll(OpParity.matmulChecks(tf, ref, seed, 1e-2));
            checks.addAll(OpParity.tensorCoreAttentionChecks(tf, ref, seed, 1e-2));
            checks.addAll(ModelParity.generationChecks(tf, 1e-2, "tf32"));
            CudaBackend bf = new CudaBackend(cuda.context(), MatmulPrecision.BF16);
            checks.addAll(OpParity.matmulChecks(bf, ref, seed, BF16_TOLERANCE, "bf16"));
            checks.addAll(OpParity.bf16OperandChecks(bf, ref, seed, BF16_TOLERANCE));
            checks.addAll(OpParity.bf16ProductOutputChecks(bf, seed));
            checks.addAll(OpParity.bf16CopyChecks(bf, seed));
            checks.addAll(OpParity.bf16AttentionChecks(bf, ref, seed, BF16_ATTENTION));
            checks.addAll(OpParity.bf16InputAttentionChecks(bf, seed));
            checks.addAll(OpParity.bf16OutputAttentionChecks(bf, seed));
            checks.addAll(OpParity.packedAttentionChecks(bf, seed));
            checks.addAll(ModelParity.generationChecks(bf, 1e-2, "bf16"));
            checks.addAll(ModelParity.trainingChecks(bf, new CpuBackend(CpuPool.common(), new JavaSgemm(CpuPool.common())), BF16_TRAINING, "bf16"));
            checks.addAll(ModelParity.recordedTrainingChecks(bf, "bf16"));
        }
        checks.addAll(ModelParity.generationChecks(cuda, ModelParity.LOGITS, "fp32"));
        checks.addAll(ModelParity.trainingChecks(cuda, new CpuBackend(CpuPool.common(), new JavaSgemm(CpuPool.common()))));
        checks.addAll(ModelParity.recordedTrainingChecks(cuda, "fp32"));
        if (fixtures != null) {
            checks.addAll(ModelParity.fixtureChecks(cuda, fixtures));
            Path mlm = fixtures.resolve("hf-perceiver-mlm-tiny");
            CpuBackend cpu = new CpuBackend(CpuPool.common(), new JavaSgemm(CpuPool.common()));
            checks.addAll(ModelParity.maskedLmGradientChecks(cuda, cpu, mlm, ModelParity.TRAINING, "fp32"));
            if (tf32) checks.addAll(ModelParity.maskedLmGradientChecks(new CudaBackend(cuda.context(), MatmulPrecision.BF16), cpu, mlm,
                    BF16_GRADIENTS, "bf16"));
        }
        int failed = 0;
        for (OpParity.Check c : checks) {
            OpParity.Result r = c.run();
            System.out.println(r);
            if (!r.pass()) failed++;
        }
        System.gc(); // lets untracked buffers come back before the report
        System.out.println(cuda.allocator().report());
        System.out.printf("%d checks, %d failed: %s%n", checks.size(), failed, failed == 0 ? "PASS" : "FAIL");
        System.exit(failed == 0 ? 0 : 1);
    }
}
