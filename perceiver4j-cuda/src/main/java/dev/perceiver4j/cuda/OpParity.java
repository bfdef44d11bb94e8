package dev.perceiver4j.cuda;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Recording;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Op-by-op parity of a backend under test (the GPU) against the double-precision oracle
 * ({@code RefBackend}) on random inputs of odd shapes. Shared by {@link GpuSelfTest} (no JUnit, for
 * the GPU machine) and the JUnit {@code CudaBackendTest}.
 *
 * <p>Error measure, per output: max over elements of |gpu − ref| / max(1, |ref|) (absolute near
 * zero, relative for large values); a check's error is the largest over its outputs. Backward
 * checks start every gradient buffer at random values, so they also test that gradients
 * accumulate. Tolerances: 1e-5 for fp32 kernels and exact-fp32 matmuls, 0 for copies and casts
 * (bit-exact), 1e-9 (relative) for the double-precision Σx². Dropout masks (plain and on attention
 * probabilities) must match the CPU's exactly: a check fails outright when the GPU zeroes an
 * element the CPU keeps or the other way round.
 */
public final class OpParity {
    /** fp32 kernels against the double oracle. */
    public static final double FP32 = 1e-5;

    /** One named check; {@link #run()} returns its largest error. */
    public record Check(String op, double tolerance, ErrorFn body) {
        public Result run() {
            try {
                double e = body.error();
                return new Result(op, e, tolerance, null);
            } catch (RuntimeException | AssertionError e) {
                return new Result(op, Double.NaN, tolerance, e.getClass().getSimpleName() + ": " + e.getMessage());
            }
        }
    }

    @FunctionalInterface
    public interface ErrorFn {
        double error();
    }

    /** Outcome of one check. */
    public record Result(String op, double maxError, double tolerance, String failure) {
        public boolean pass() {
            return failure == null && maxError <= tolerance;
        }

        @Override
        public String toString() {
            return String.format("%-58s max error %-10s tolerance %-8.1e %s", op,
                    failure == null ? String.format("%.2e", maxError) : "-", tolerance,
                    pass() ? "PASS" : "FAIL" + (failure == null ? "" : "  " + failure));
        }
    }

    private final Backend gpu, ref;
    private final SplittableRandom rnd;

    private OpParity(Backend gpu, Backend ref, long seed) {
        this.gpu = gpu;
        this.ref = ref;
        this.rnd = new SplittableRandom(seed);
    }

    /** Every check of the implemented ops (forward and backward), plus the allocator and error-path checks. */
    public static List<Check> checks(Backend gpu, Backend ref, long seed) {
        OpParity p = new OpParity(gpu, ref, seed);
        List<Check> c = new ArrayList<>();
        p.memory(c);
        p.matmuls(c);
        p.layerNorms(c);
        p.pointwise(c);
        p.reductions(c);
        p.axisCopies(c);
        p.scatters(c);
        p.lazyZeros(c);
        p.embeddings(c);
        p.losses(c);
        p.optimizer(c);
        p.dropouts(c);
        p.rotaries(c);
        p.attentions(c);
        if (gpu instanceof CudaBackend cuda) p.cudaSpecific(c, cuda);
        return c;
    }

    /** Only the matmul checks, at a given tolerance, labelled [tf32] (for a TF32 backend). */
    public static List<Check> matmulChecks(Backend gpu, Backend ref, long seed, double tolerance) {
        return matmulChecks(gpu, ref, seed, tolerance, "tf32");
    }

    /** Only the matmul checks, at a given tolerance, labelled [label] (for a reduced-precision backend). */
    public static List<Check> matmulChecks(Backend gpu, Backend ref, long seed, double tolerance, String label) {
        OpParity p = new OpParity(gpu, ref, seed);
        List<Check> c = new ArrayList<>();
        p.matmuls(c);
        return c.stream().map(k -> new Check(k.op() + " [" + label + "]", tolerance, k.body())).toList();
    }

    /**
     * Products whose activation operand a is stored as bf16 (F's shared copies in the bf16 mode):
     * the same bf16 values on both backends (the reference widens them exactly), b fp32 (the GPU
     * rounds it), forward and backward, labelled [bf16 operand].
     */
    public static List<Check> bf16OperandChecks(Backend gpu, Backend ref, long seed, double tolerance) {
        OpParity p = new OpParity(gpu, ref, seed);
        List<Check> c = new ArrayList<>();
        // above Gemm.SKINNY rows and columns (bf16 products), then a skinny one (the bf16 operand widened, TF32)
        p.bf16OperandCase(c, new int[] {3, 40, 17}, false, new int[] {17, 36}, false, Activation.GELU, tolerance);
        p.bf16OperandCase(c, new int[] {2, 33, 129}, false, new int[] {65, 129}, true, Activation.NONE, tolerance);
        p.bf16OperandCase(c, new int[] {2, 40, 35}, true, new int[] {2, 40, 48}, false, Activation.NONE, tolerance);
        p.bf16OperandCase(c, new int[] {3, 5, 7}, false, new int[] {7, 9}, false, Activation.GELU, tolerance);
        return c;
    }

    /** Layer norm, activation and products writing bf16 outputs, on a backend with exact fp32 products; see {@link #BF16_OUTPUT}. */
    public static List<Check> bf16OutputChecks(Backend gpu, Backend ref, long seed) {
        OpParity p = new OpParity(gpu, ref, seed);
        List<Check> c = new ArrayList<>();
        p.bf16Outputs(c);
        return c;
    }

    /**
     * bf16 outputs (normed inputs and hidden states only products read): the GPU rounds its fp32
     * result, the reference its double result via float. Both round values that agree to fp32
     * precision, so they differ by at most one bf16 unit in the last place: 2⁻⁷ of the value.
     */
    static final double BF16_OUTPUT = 0x1p-7;

    private void bf16Outputs(List<Check> c) {
        for (int[] dims : new int[][] {{7, 45}, {33, 1280}, {5, 1031}}) {   // warp-per-row kernel (d % 4 == 0) and block-per-row
            int rows = dims[0], d = dims[1];
            c.add(new Check("layerNorm → BF16 " + Arrays.toString(dims), BF16_OUTPUT, () -> {
                Pair x = randPair(2, rows, d), gamma = randPair(1, d), beta = randPair(1, d);
                Pair out = emptyPair(DType.BF16, rows, d), mean = emptyPair(DType.F32, rows), rstd = emptyPair(DType.F32, rows);
                gpu.layerNorm(x.g(), gamma.g(), beta.g(), 1e-5f, out.g(), mean.g(), rstd.g());
                ref.layerNorm(x.r(), gamma.r(), beta.r(), 1e-5f, out.r(), mean.r(), rstd.r());
                return Math.max(err(out), Math.max(err(mean), err(rstd)));
            }));
        }
        c.add(new Check("activation GELU → BF16 [1001]", BF16_OUTPUT, () -> {
            Pair x = randPair(2, 1001), out = emptyPair(DType.BF16, 1001);
            gpu.activation(Activation.GELU, x.g(), out.g());
            ref.activation(Activation.GELU, x.r(), out.r());
            return err(out);
        }));
        for (Activation act : new Activation[] {Activation.GELU, Activation.NONE}) {
            c.add(new Check("matmul [2, 9, 33]·[40, 33]ᵀ +bias " + act + " → BF16", BF16_OUTPUT, () -> {
                Pair a = randPair(1, 2, 9, 33), b = randPair(1, 40, 33), bias = randPair(1, 40);
                Pair out = emptyPair(DType.BF16, 2, 9, 40), pre = act == Activation.NONE ? null : emptyPair(DType.F32, 2, 9, 40);
                gpu.matmul(a.g(), false, b.g(), true, bias.g(), act, out.g(), g(pre));
                ref.matmul(a.r(), false, b.r(), true, bias.r(), act, out.r(), r(pre));
                return Math.max(err(out), pre == null ? 0 : err(pre));
            }));
        }
    }

    /**
     * Products writing bf16 outputs on a bf16-mode backend (rounded in cuBLASLt's epilogue, or for a
     * skinny product from an fp32 temporary) against the same product written as F32 and then cast,
     * on one backend: both sum the same bf16 operands in fp32, perhaps in another order, so the two
     * roundings differ by one bf16 unit at most; a bias added by a bf16 epilogue is itself rounded to
     * bf16 first (cuBLASLt takes a bias of the output's type), which moves the sum by at most 2⁻⁹ of
     * the bias: drawn at a quarter of unit scale (below 1), less than one bf16 unit of any result of
     * magnitude 1 or more, so the roundings still differ by one unit at most and {@link #BF16_OUTPUT}
     * (2⁻⁷) bounds the difference. Cases: the bias fused into the epilogue, no bias, a batch of
     * products, and a skinny product (5 rows).
     */
    public static List<Check> bf16ProductOutputChecks(Backend gpu, long seed) {
        OpParity p = new OpParity(gpu, gpu, seed);
        List<Check> c = new ArrayList<>();
        c.add(p.roundedProductCheck(new int[] {2, 50, 96}, new int[] {72, 96}, new int[] {2, 50, 72}, true));
        c.add(p.roundedProductCheck(new int[] {2, 50, 96}, new int[] {72, 96}, new int[] {2, 50, 72}, false));
        c.add(p.roundedProductCheck(new int[] {3, 40, 64}, new int[] {3, 48, 64}, new int[] {3, 40, 48}, false));
        c.add(p.roundedProductCheck(new int[] {5, 64}, new int[] {40, 64}, new int[] {5, 40}, true));
        c.add(new Check("matmul [2, 50, 96]·[72, 96]ᵀ +bias → BF16, weight and bias at odd offsets (rounded per call) = the F32 result rounded "
                + "[bf16 mode]", BF16_OUTPUT, p::oddOffsetProductError));
        c.add(new Check("matmul [2, 50, 96]·[72, 96]ᵀ GELU with a BF16 pre-activation: pre = the F32 product rounded, out = GELU of it, "
                + "backward (with and without a bias gradient) = with those values as F32 [bf16 mode]", BF16_OUTPUT, p::bf16PreActivationError));
        return c;
    }

    /**
     * The pre-activation stored as bf16 is the F32 product rounded (one bf16 unit at most, as above); the
     * output is exactly the activation of the stored values, and backward with it exactly the backward
     * with an F32 pre-activation holding the same values (a mismatch there counts as an error of 1).
     */
    private double bf16PreActivationError() {
        Shape as = Shape.of(2, 50, 96), bs = Shape.of(72, 96), os = Shape.of(2, 50, 72);
        Tensor a = gpu.fromFloats(randn(as.size(), 1), as), b = gpu.fromFloats(randn(bs.size(), 0.3), bs);
        Tensor out16 = gpu.zeros(os, DType.BF16), pre16 = gpu.zeros(os, DType.BF16);
        gpu.matmul(a, false, b, true, null, Activation.GELU, out16, pre16);
        Tensor product = gpu.zeros(os, DType.F32), rounded = gpu.zeros(os, DType.BF16);
        gpu.matmul(a, false, b, true, null, Activation.NONE, product, null);
        gpu.cast(product, rounded);
        double worst = err(gpu.toFloatArray(pre16), gpu.toFloatArray(rounded));
        Tensor again = gpu.zeros(os, DType.BF16);
        gpu.activation(Activation.GELU, pre16, again);
        boolean exact = Arrays.equals(gpu.toFloatArray(out16), gpu.toFloatArray(again));
        Tensor pre32 = gpu.zeros(os, DType.F32), dOut = gpu.fromFloats(randn(os.size(), 1), os);
        gpu.cast(pre16, pre32);
        Tensor[] dA = {gpu.zeros(as, DType.F32), gpu.zeros(as, DType.F32)}, dB = {gpu.zeros(bs, DType.F32), gpu.zeros(bs, DType.F32)};
        gpu.matmulBackward(dOut, a, false, b, true, null, Activation.GELU, pre16, dA[0], dB[0], null);
        gpu.matmulBackward(dOut, a, false, b, true, null, Activation.GELU, pre32, dA[1], dB[1], null);
        Tensor dX16 = gpu.zeros(os, DType.F32), dX32 = gpu.zeros(os, DType.F32);
        gpu.activationBackward(Activation.GELU, pre16, dOut, dX16);
        gpu.activationBackward(Activation.GELU, pre32, dOut, dX32);
        exact &= Arrays.equals(gpu.toFloatArray(dA[0]), gpu.toFloatArray(dA[1])) && Arrays.equals(gpu.toFloatArray(dB[0]), gpu.toFloatArray(dB[1]))
                && Arrays.equals(gpu.toFloatArray(dX16), gpu.toFloatArray(dX32));
        // with a bias gradient too (the bias sums and bf16 dC from dOut and the pre-activation in one pass)
        Tensor[] dBias = {gpu.zeros(Shape.of(72), DType.F32), gpu.zeros(Shape.of(72), DType.F32)};
        Tensor bias = gpu.fromFloats(randn(72, 1), Shape.of(72));
        gpu.matmulBackward(dOut, a, false, b, true, bias, Activation.GELU, pre16, dA[0], dB[0], dBias[0]);
        gpu.matmulBackward(dOut, a, false, b, true, bias, Activation.GELU, pre32, dA[1], dB[1], dBias[1]);
        exact &= Arrays.equals(gpu.toFloatArray(dA[0]), gpu.toFloatArray(dA[1])) && Arrays.equals(gpu.toFloatArray(dB[0]), gpu.toFloatArray(dB[1]))
                && Arrays.equals(gpu.toFloatArray(dBias[0]), gpu.toFloatArray(dBias[1]));
        return exact ? worst : Math.max(worst, 1.0);
    }

    /**
     * The bf16 copies a bf16-mode backend keeps of persistent product operands (CudaBackend's mirrors)
     * follow every write to them: after each of copy, fill, scale, axpy, a cast into the weight, AdamW
     * and a fill of the bias, a product reading the weight (a view into a larger buffer) and the bias
     * equals, bit for bit, the same product on a fresh tensor holding their current values, eagerly
     * and as a replay of a graph recorded before the writes.
     */
    public static List<Check> bf16CopyChecks(Backend gpu, long seed) {
        OpParity p = new OpParity(gpu, gpu, seed);
        return List.of(new Check("bf16 copies of persistent operands follow copy, fill, scale, axpy, cast, AdamW (eager and in a graph)",
                0, p::bf16CopyError));
    }

    private double bf16CopyError() {
        Shape ws = Shape.of(72, 96), xs = Shape.of(2, 50, 96), os = Shape.of(2, 50, 72);
        int n = ws.size();
        Tensor packed = gpu.fromFloats(randn(2 * n, 1), Shape.of(2 * n));
        Tensor w = new Tensor(gpu, ws, DType.F32, packed.data(), packed.offset() + n);   // the second half, as in packed parameters
        Tensor x = gpu.fromFloats(randn(xs.size(), 1), xs), bias = gpu.fromFloats(randn(72, 0.25), Shape.of(72));
        Tensor other = gpu.fromFloats(randn(n, 1), ws), grad = gpu.fromFloats(randn(n, 1), ws);
        Tensor m = gpu.persistentZeros(ws, DType.F32), v = gpu.persistentZeros(ws, DType.F32);
        Tensor half = gpu.persistentZeros(ws, DType.BF16);
        gpu.cast(gpu.fromFloats(randn(n, 1), ws), half);
        Tensor recorded = gpu.persistentZeros(os, DType.BF16);
        gpu.matmul(x, false, w, true, bias, Activation.NONE, recorded, null);   // the copies exist before the recording
        Recording graph = gpu.record(() -> gpu.matmul(x, false, w, true, bias, Activation.NONE, recorded, null));
        Runnable[] writes = {
                () -> gpu.copy(other, w), () -> gpu.fill(w, 0.37f), () -> gpu.scale(w, -1.5f, w), () -> gpu.axpy(0.3f, other, w),
                () -> gpu.cast(half, w), () -> gpu.adamw(w, grad, m, v, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, 1), () -> gpu.fill(bias, 0.11f)};
        double worst = 0;
        try {
            for (Runnable write : writes) {
                write.run();
                Tensor freshW = gpu.fromFloats(gpu.toFloatArray(w), ws), freshB = gpu.fromFloats(gpu.toFloatArray(bias), Shape.of(72));
                Tensor now = gpu.persistentZeros(os, DType.BF16), want = gpu.persistentZeros(os, DType.BF16);
                gpu.matmul(x, false, w, true, bias, Activation.NONE, now, null);
                gpu.matmul(x, false, freshW, true, freshB, Activation.NONE, want, null);
                float[] expected = gpu.toFloatArray(want);
                worst = Math.max(worst, bitError(gpu.toFloatArray(now), expected));
                if (graph != null) {
                    graph.replay();
                    worst = Math.max(worst, bitError(gpu.toFloatArray(recorded), expected));
                }
            }
        } finally {
            if (graph != null) graph.close();
        }
        return worst;
    }

    /**
     * As {@link #roundedProductCheck} with the weight and the bias as views 3 elements into larger
     * persistent buffers (a packed parameter after one of odd size): the backend then rounds them
     * per call, the bias into a bf16 copy for cuBLASLt's bf16 epilogue, instead of reading mirrors.
     */
    private double oddOffsetProductError() {
        Shape as = Shape.of(2, 50, 96), ws = Shape.of(72, 96), os = Shape.of(2, 50, 72);
        Tensor a = gpu.fromFloats(randn(as.size(), 1), as);
        Tensor wBuf = gpu.fromFloats(randn(3 + ws.size(), 1), Shape.of(3 + ws.size())), bBuf = gpu.fromFloats(randn(3 + 72, 0.25), Shape.of(3 + 72));
        Tensor w = new Tensor(gpu, ws, DType.F32, wBuf.data(), wBuf.offset() + 3), bias = new Tensor(gpu, Shape.of(72), DType.F32, bBuf.data(), bBuf.offset() + 3);
        Tensor out16 = gpu.zeros(os, DType.BF16), out32 = gpu.zeros(os, DType.F32), rounded = gpu.zeros(os, DType.BF16);
        gpu.matmul(a, false, w, true, bias, Activation.NONE, out16, null);
        gpu.matmul(a, false, w, true, bias, Activation.NONE, out32, null);
        gpu.cast(out32, rounded);
        return err(gpu.toFloatArray(out16), gpu.toFloatArray(rounded));
    }

    /** a·bᵀ (+ bias) written as BF16 against the F32 result cast to BF16. */
    private Check roundedProductCheck(int[] aDims, int[] bDims, int[] outDims, boolean withBias) {
        int n = outDims[outDims.length - 1];
        String name = "matmul " + Arrays.toString(aDims) + "·" + Arrays.toString(bDims) + "ᵀ" + (withBias ? " +bias" : "")
                + " → BF16 = the F32 result rounded [bf16 mode]";
        return new Check(name, BF16_OUTPUT, () -> {
            Tensor a = gpu.fromFloats(randn(Shape.of(aDims).size(), 1), Shape.of(aDims));
            Tensor b = gpu.fromFloats(randn(Shape.of(bDims).size(), 1), Shape.of(bDims));
            Tensor bias = withBias ? gpu.fromFloats(randn(n, 0.25), Shape.of(n)) : null;
            Tensor out16 = gpu.zeros(Shape.of(outDims), DType.BF16), out32 = gpu.zeros(Shape.of(outDims), DType.F32);
            Tensor rounded = gpu.zeros(Shape.of(outDims), DType.BF16);
            gpu.matmul(a, false, b, true, bias, Activation.NONE, out16, null);
            gpu.matmul(a, false, b, true, bias, Activation.NONE, out32, null);
            gpu.cast(out32, rounded);
            return err(gpu.toFloatArray(out16), gpu.toFloatArray(rounded));
        });
    }

    private Pair bf16Pair(double scale, int... dims) {
        Pair f = randPair(scale, dims), h = emptyPair(DType.BF16, dims);
        gpu.cast(f.g(), h.g());
        ref.cast(f.r(), h.r());
        return h;
    }

    private void bf16OperandCase(List<Check> c, int[] aDims, boolean tA, int[] bDims, boolean tB, Activation act, double tolerance) {
        String name = Arrays.toString(aDims) + (tA ? "ᵀ" : "") + "·" + Arrays.toString(bDims) + (tB ? "ᵀ" : "") + " " + act + " [bf16 operand]";
        matmulCase(c, name, aDims, tA, bDims, tB, true, act, true, tolerance);
    }

    /**
     * Attention forward and backward at the head dims that have tensor-core (TF32) kernels, labelled
     * [tf32 tensor cores], at a TF32 tolerance (for a backend whose matrix products run in TF32).
     */
    public static List<Check> tensorCoreAttentionChecks(Backend gpu, Backend ref, long seed, double tolerance) {
        return attentionKernelChecks(gpu, ref, seed, tolerance, "tf32 tensor cores", "tensor-core",
                (cb, s, q, v) -> cb.tensorCoreAttention(s, q, q, v, v), new int[][] {
                        {2, 1, 16, 45, 32, 160, 0, 1, 0}, {2, 8, 256, 256, 32, 160, 0, 0, 0}, {2, 8, 256, 256, 32, 160, 0, 0, 1},
                        {2, 8, 300, 64, 32, 96, 0, 0, 0}, {2, 4, 37, 37, 64, 64, 1, 0, 0}, {2, 4, 130, 600, 64, 64, 1, 1, 1},
                        {2, 4, 13, 50, 16, 16, 1, 1, 0}, {2, 3, 40, 40, 16, 16, 1, 1, 5}, {1, 2, 130, 300, 32, 160, 1, 1, 1},
                        {3, 2, 33, 71, 8, 8, 0, 2, 2}, {2, 2, 20, 29, 32, 32, 1, 2, 0}, {2, 2, 70, 200, 32, 96, 1, 2, 3}});
    }

    /**
     * Attention in the bf16 mode, labelled [bf16 tensor cores]: forward and backward on the bf16 kernels
     * (checked to be the ones taken), the backward from that forward's output and lse. The shapes cover
     * unmasked key tiles (the kernels' fast path), padding, causal masks, a partial last tile, dropout
     * with and without the quad-shared Philox blocks (nk % 4), dropout with a causal mask over whole
     * 64-key tiles and a partial query tile, and every (Dqk, Dv) specialisation.
     */
    public static List<Check> bf16AttentionChecks(Backend gpu, Backend ref, long seed, double tolerance) {
        return attentionKernelChecks(gpu, ref, seed, tolerance, "bf16 tensor cores", "bf16",
                (cb, s, q, v) -> cb.bf16Attention(s, q, q, v), new int[][] {
                        {2, 1, 16, 45, 32, 160, 0, 1, 0}, {2, 8, 256, 256, 32, 160, 0, 0, 0}, {2, 8, 256, 256, 32, 160, 0, 0, 1},
                        {2, 8, 300, 64, 32, 96, 0, 0, 0}, {2, 4, 37, 37, 64, 64, 1, 0, 0}, {2, 4, 130, 600, 64, 64, 1, 1, 1},
                        {1, 4, 200, 333, 64, 64, 0, 0, 0}, {2, 4, 13, 50, 16, 16, 1, 1, 0}, {2, 2, 20, 29, 32, 32, 1, 2, 0},
                        {2, 2, 45, 37, 32, 32, 0, 1, 2}, {2, 2, 70, 200, 32, 96, 1, 2, 3}, {2, 4, 130, 256, 64, 64, 1, 1, 1}});
    }

    /**
     * Attention with bf16 q, k, v (as the Perceiver IO projections write them in the bf16 mode) against the
     * same call with F32 tensors holding the same (bf16-exact) values, on one backend: the bf16 kernels
     * round F32 operands to exactly those values and the other kernels widen bf16 ones exactly, so
     * outputs, lse and gradients must agree bit for bit (tolerance 0). Shapes with bf16 kernels, one
     * causal with dropout, and one (Dqk 8) that falls back to the fp32-input kernels.
     */
    public static List<Check> bf16InputAttentionChecks(Backend gpu, long seed) {
        OpParity p = new OpParity(gpu, gpu, seed);
        List<Check> c = new ArrayList<>();
        for (int[] a : new int[][] {{2, 8, 256, 256, 32, 160, 0, 0}, {2, 4, 130, 600, 64, 64, 1, 1}, {2, 3, 40, 50, 8, 8, 0, 0}}) {
            c.add(new Check("attention with bf16 q, k, v = with their F32 values " + attentionLabel(a[0], a[1], a[2], a[3], a[4], a[5],
                    a[6] == 1, 0, a[7] / 10f), 0, () -> p.bf16InputError(a[0], a[1], a[2], a[3], a[4], a[5], a[6] == 1, a[7] / 10f)));
        }
        return c;
    }

    /**
     * Attention storing its output as BF16 (for the output projection) against the same call with an F32
     * output rounded afterwards, on one backend: the kernels round the same fp32 values to nearest even,
     * and backward reads the output as stored, which an F32 output holding the rounded values gives exactly;
     * so output, lse and gradients must agree bit for bit. Shapes: bf16 kernels without and with dropout
     * (causal), one (Dqk 8) on the fp32 kernels, and one query (the decode kernels), both through an fp32 output.
     */
    public static List<Check> bf16OutputAttentionChecks(Backend gpu, long seed) {
        OpParity p = new OpParity(gpu, gpu, seed);
        List<Check> c = new ArrayList<>();
        for (int[] a : new int[][] {{2, 8, 256, 256, 32, 160, 0, 0}, {2, 4, 130, 600, 64, 64, 1, 1}, {2, 3, 40, 50, 8, 8, 0, 0},
                {2, 4, 1, 300, 32, 32, 1, 0}}) {
            c.add(new Check("attention with a BF16 out = the F32 out rounded " + attentionLabel(a[0], a[1], a[2], a[3], a[4], a[5],
                    a[6] == 1, 0, a[7] / 10f), 0, () -> p.bf16OutputError(a[0], a[1], a[2], a[3], a[4], a[5], a[6] == 1, a[7] / 10f)));
        }
        return c;
    }

    /**
     * Self-attention over q, k, v packed in one bf16 tensor (attentionPacked, read in place) against the same
     * attention over the three copied out (attention): the same kernels on the same values with other row
     * widths, so output, lse and gradients must agree bit for bit (tolerance 0), the gradients both written
     * into fresh zeros and added to random ones. Latent self-attention shapes, without and with dropout.
     */
    public static List<Check> packedAttentionChecks(Backend gpu, long seed) {
        OpParity p = new OpParity(gpu, gpu, seed);
        List<Check> c = new ArrayList<>();
        for (int[] a : new int[][] {{2, 8, 256, 32, 160, 0}, {2, 8, 200, 32, 160, 1}, {2, 4, 130, 64, 64, 1}}) {
            c.add(new Check("attention over packed q, k, v = over the three copied out (and BF16 gradients = F32 ones rounded) " + attentionLabel(a[0], a[1], a[2], a[2], a[3], a[4],
                    false, 0, a[5] / 10f), 0, () -> p.packedError(a[0], a[1], a[2], a[3], a[4], a[5] / 10f)));
        }
        // cross-attention shapes: the encoder's (256 latents over more keys, key padding) and the decoder's (Dv 96)
        for (int[] a : new int[][] {{2, 8, 256, 300, 32, 160, 1, 1}, {2, 8, 300, 256, 32, 96, 1, 0}}) {
            c.add(new Check("attention over packed k, v = over the two copied out (and a BF16 dKv = the F32 one rounded) " + attentionLabel(a[0], a[1],
                    a[2], a[3], a[4], a[5], false, a[7], a[6] / 10f), 0, () -> p.kvPackedError(a[0], a[1], a[2], a[3], a[4], a[5], a[6] / 10f, a[7] == 1)));
        }
        return c;
    }

    private double packedError(int batch, int heads, int n, int dqk, int dv, float drop) {
        AttentionShape s = attentionShape(batch, heads, n, n, dqk, dv, false, drop);
        int qk = heads * dqk, width = 2 * qk + heads * dv;
        Tensor qkv = gpu.empty(Shape.of(batch, n, width), DType.BF16);
        gpu.cast(gpu.fromFloats(randn(batch * n * width, 1), Shape.of(batch, n, width)), qkv);
        if (!(gpu instanceof CudaBackend cb) || !cb.packedInPlace(s, qkv, gpu.empty(Shape.of(batch, n, heads * dv), DType.BF16))) {
            throw new AssertionError("the backend does not read packed q, k, v in place for " + s);
        }
        Tensor[] parts = new Tensor[3];
        for (int i = 0; i < 3; i++) {
            parts[i] = gpu.empty(Shape.of(batch, n, i < 2 ? qk : heads * dv), DType.BF16);
            gpu.narrow(qkv, 2, i * qk, parts[i], false);
        }
        Tensor dOut = gpu.fromFloats(randn(batch * n * heads * dv, 1), Shape.of(batch, n, heads * dv));
        Tensor outP = gpu.empty(Shape.of(batch, n, heads * dv), DType.BF16), lseP = gpu.empty(Shape.of(batch, heads, n), DType.F32);
        Tensor outS = gpu.empty(Shape.of(batch, n, heads * dv), DType.BF16), lseS = gpu.empty(Shape.of(batch, heads, n), DType.F32);
        gpu.attentionPacked(s, qkv, outP, lseP);
        gpu.attention(s, parts[0], parts[1], parts[2], null, outS, lseS);
        double worst = bitError(new float[][] {gpu.toFloatArray(outP), gpu.toFloatArray(lseP)}, new float[][] {gpu.toFloatArray(outS), gpu.toFloatArray(lseS)});
        for (boolean fresh : new boolean[] {true, false}) {
            Tensor dQkv = fresh ? gpu.zeros(Shape.of(batch, n, width), DType.F32) : gpu.fromFloats(randn(batch * n * width, 1), Shape.of(batch, n, width));
            Tensor[] d = new Tensor[3];
            for (int i = 0; i < 3; i++) {
                d[i] = fresh ? gpu.zeros(parts[i].shape(), DType.F32) : gpu.empty(parts[i].shape(), DType.F32);
                if (!fresh) gpu.narrow(dQkv, 2, i * qk, d[i], false);
            }
            gpu.attentionPackedBackward(s, qkv, outP, lseP, dOut, dQkv);
            gpu.attentionBackward(s, parts[0], parts[1], parts[2], null, outS, lseS, dOut, d[0], d[1], d[2]);
            for (int i = 0; i < 3; i++) {
                Tensor got = gpu.empty(parts[i].shape(), DType.F32);
                gpu.narrow(dQkv, 2, i * qk, got, false);
                worst = Math.max(worst, bitError(gpu.toFloatArray(got), gpu.toFloatArray(d[i])));
            }
        }
        // BF16 gradients (F.bf16Gradient): dOut as BF16 and a fresh BF16 dQkv = the F32 path on the same values, rounded
        Tensor dOut16 = gpu.empty(dOut.shape(), DType.BF16), dOut32 = gpu.empty(dOut.shape(), DType.F32);
        gpu.cast(dOut, dOut16);
        gpu.cast(dOut16, dOut32);
        Tensor wide = gpu.zeros(Shape.of(batch, n, width), DType.F32), want = gpu.empty(Shape.of(batch, n, width), DType.BF16);
        Tensor got16 = gpu.zeros(Shape.of(batch, n, width), DType.BF16);
        gpu.attentionPackedBackward(s, qkv, outP, lseP, dOut32, wide);
        gpu.cast(wide, want);
        gpu.attentionPackedBackward(s, qkv, outP, lseP, dOut16, got16);
        return Math.max(worst, bitError(gpu.toFloatArray(got16), gpu.toFloatArray(want)));
    }

    private double kvPackedError(int batch, int heads, int nq, int nk, int dqk, int dv, float drop, boolean padded) {
        AttentionShape s = attentionShape(batch, heads, nq, nk, dqk, dv, false, drop);
        int qk = heads * dqk, width = qk + heads * dv;
        Tensor q = gpu.empty(Shape.of(batch, nq, qk), DType.BF16), kv = gpu.empty(Shape.of(batch, nk, width), DType.BF16);
        gpu.cast(gpu.fromFloats(randn(batch * nq * qk, 1), Shape.of(batch, nq, qk)), q);
        gpu.cast(gpu.fromFloats(randn(batch * nk * width, 1), Shape.of(batch, nk, width)), kv);
        Tensor outP = gpu.empty(Shape.of(batch, nq, heads * dv), DType.BF16), lseP = gpu.empty(Shape.of(batch, heads, nq), DType.F32);
        if (!(gpu instanceof CudaBackend cb) || !cb.kvPackedInPlace(s, q, kv, outP)) {
            throw new AssertionError("the backend does not read packed k, v in place for " + s);
        }
        boolean[] pad = new boolean[batch * nk];
        for (int i = 0; i < pad.length && padded; i++) pad[i] = i % nk >= nk - 5 - 40 * (i / nk);   // the last 5 and 45 keys
        Tensor keyPad = padded ? gpu.fromBools(pad, Shape.of(batch, nk)) : null;
        Tensor k = gpu.empty(Shape.of(batch, nk, qk), DType.BF16), v = gpu.empty(Shape.of(batch, nk, heads * dv), DType.BF16);
        gpu.narrow(kv, 2, 0, k, false);
        gpu.narrow(kv, 2, qk, v, false);
        Tensor dOut = gpu.fromFloats(randn(batch * nq * heads * dv, 1), Shape.of(batch, nq, heads * dv));
        Tensor outS = gpu.empty(Shape.of(batch, nq, heads * dv), DType.BF16), lseS = gpu.empty(Shape.of(batch, heads, nq), DType.F32);
        gpu.attentionKvPacked(s, q, kv, keyPad, outP, lseP);
        gpu.attention(s, q, k, v, keyPad, outS, lseS);
        double worst = bitError(new float[][] {gpu.toFloatArray(outP), gpu.toFloatArray(lseP)}, new float[][] {gpu.toFloatArray(outS), gpu.toFloatArray(lseS)});
        Tensor dQp = gpu.zeros(q.shape(), DType.F32), dKv = gpu.zeros(kv.shape(), DType.F32);
        Tensor dQs = gpu.zeros(q.shape(), DType.F32), dK = gpu.zeros(k.shape(), DType.F32), dV = gpu.zeros(v.shape(), DType.F32);
        gpu.attentionKvPackedBackward(s, q, kv, keyPad, outP, lseP, dOut, dQp, dKv);
        gpu.attentionBackward(s, q, k, v, keyPad, outS, lseS, dOut, dQs, dK, dV);
        Tensor gotK = gpu.empty(k.shape(), DType.F32), gotV = gpu.empty(v.shape(), DType.F32);
        gpu.narrow(dKv, 2, 0, gotK, false);
        gpu.narrow(dKv, 2, qk, gotV, false);
        worst = Math.max(worst, bitError(new float[][] {gpu.toFloatArray(dQp), gpu.toFloatArray(gotK), gpu.toFloatArray(gotV)},
                new float[][] {gpu.toFloatArray(dQs), gpu.toFloatArray(dK), gpu.toFloatArray(dV)}));
        // a BF16 dKv (F.bf16Gradient) = the F32 one rounded
        Tensor want = gpu.empty(kv.shape(), DType.BF16), got16 = gpu.zeros(kv.shape(), DType.BF16);
        gpu.cast(dKv, want);
        gpu.attentionKvPackedBackward(s, q, kv, keyPad, outP, lseP, dOut, gpu.zeros(q.shape(), DType.F32), got16);
        return Math.max(worst, bitError(gpu.toFloatArray(got16), gpu.toFloatArray(want)));
    }

    private double bf16OutputError(int batch, int heads, int nq, int nk, int dqk, int dv, boolean causal, float drop) {
        AttentionShape s = attentionShape(batch, heads, nq, nk, dqk, dv, causal, drop);
        int[][] dims = {{batch, nq, heads * dqk}, {batch, nk, heads * dqk}, {batch, nk, heads * dv}, {batch, nq, heads * dv}};
        Tensor[] in = new Tensor[3];
        for (int i = 0; i < 3; i++) in[i] = gpu.fromFloats(randn(Shape.of(dims[i]).size(), 1), Shape.of(dims[i]));
        Tensor dOut = gpu.fromFloats(randn(Shape.of(dims[3]).size(), 1), Shape.of(dims[3]));
        float[][][] results = new float[2][][];   // [run][out, lse, dQ, dK, dV]
        for (int run = 0; run < 2; run++) {
            Tensor out16 = gpu.empty(Shape.of(dims[3]), DType.BF16), lse = gpu.empty(Shape.of(batch, heads, nq), DType.F32);
            Tensor out = out16;
            if (run == 0) {   // F32 out, rounded; backward then reads an F32 out holding the rounded values
                Tensor wide = gpu.empty(Shape.of(dims[3]), DType.F32);
                gpu.attention(s, in[0], in[1], in[2], null, wide, lse);
                gpu.cast(wide, out16);
                out = gpu.empty(Shape.of(dims[3]), DType.F32);
                gpu.cast(out16, out);
            } else {
                gpu.attention(s, in[0], in[1], in[2], null, out16, lse);
            }
            Tensor dQ = gpu.zeros(Shape.of(dims[0]), DType.F32), dK = gpu.zeros(Shape.of(dims[1]), DType.F32), dV = gpu.zeros(Shape.of(dims[2]), DType.F32);
            gpu.attentionBackward(s, in[0], in[1], in[2], null, out, lse, dOut, dQ, dK, dV);
            results[run] = new float[][] {gpu.toFloatArray(out16), gpu.toFloatArray(lse), gpu.toFloatArray(dQ), gpu.toFloatArray(dK),
                    gpu.toFloatArray(dV)};
        }
        return bitError(results[1], results[0]);
    }

    private double bf16InputError(int batch, int heads, int nq, int nk, int dqk, int dv, boolean causal, float drop) {
        AttentionShape s = attentionShape(batch, heads, nq, nk, dqk, dv, causal, drop);
        Tensor[] f32 = new Tensor[3], b16 = new Tensor[3];
        int[][] dims = {{batch, nq, heads * dqk}, {batch, nk, heads * dqk}, {batch, nk, heads * dv}};
        for (int i = 0; i < 3; i++) {
            b16[i] = gpu.empty(Shape.of(dims[i]), DType.BF16);
            gpu.cast(gpu.fromFloats(randn(Shape.of(dims[i]).size(), 1), Shape.of(dims[i])), b16[i]);
            f32[i] = gpu.empty(Shape.of(dims[i]), DType.F32);
            gpu.cast(b16[i], f32[i]);   // the bf16 values, exactly
        }
        Tensor dOut = gpu.fromFloats(randn(batch * nq * heads * dv, 1), Shape.of(batch, nq, heads * dv));
        float[][][] results = new float[2][][];   // [run][out, lse, dQ, dK, dV]
        for (int run = 0; run < 2; run++) {
            Tensor[] in = run == 0 ? f32 : b16;
            Tensor out = gpu.empty(Shape.of(batch, nq, heads * dv), DType.F32), lse = gpu.empty(Shape.of(batch, heads, nq), DType.F32);
            Tensor dQ = gpu.zeros(Shape.of(dims[0]), DType.F32), dK = gpu.zeros(Shape.of(dims[1]), DType.F32), dV = gpu.zeros(Shape.of(dims[2]), DType.F32);
            gpu.attention(s, in[0], in[1], in[2], null, out, lse);
            gpu.attentionBackward(s, in[0], in[1], in[2], null, out, lse, dOut, dQ, dK, dV);
            results[run] = new float[][] {gpu.toFloatArray(out), gpu.toFloatArray(lse), gpu.toFloatArray(dQ), gpu.toFloatArray(dK),
                    gpu.toFloatArray(dV)};
        }
        return bitError(results[1], results[0]);
    }

    /** 0 when {@code got} equals {@code want} bit for bit; else their error, at least the smallest positive one (even ±0 counts). */
    private static double bitError(float[] got, float[] want) {
        return Arrays.equals(got, want) ? 0 : Math.max(Double.MIN_VALUE, err(got, want));
    }

    /** The largest {@link #bitError} over pairs of arrays. */
    private static double bitError(float[][] got, float[][] want) {
        double worst = 0;
        for (int i = 0; i < got.length; i++) worst = Math.max(worst, bitError(got[i], want[i]));
        return worst;
    }

    /** Whether a CUDA backend picks some attention kernels for shape s and fresh tensors q (also as k) and v. */
    private interface KernelPick {
        boolean picks(CudaBackend cb, AttentionShape s, Tensor q, Tensor v);
    }

    /**
     * A check that the backend picks the kernels under test for fresh tensors (else the rest would test
     * others), then forward and backward at each shape {batch, heads, nq, nk, dqk, dv, causal, padMode,
     * dropout ×10}, labelled [label].
     */
    private static List<Check> attentionKernelChecks(Backend gpu, Backend ref, long seed, double tolerance, String label, String kernels,
                                                     KernelPick pick, int[][] shapes) {
        OpParity p = new OpParity(gpu, ref, seed);
        List<Check> c = new ArrayList<>();
        String tc = " [" + label + "]";
        c.add(new Check("attention takes the " + kernels + " kernels" + tc, 0, () -> {
            AttentionShape s = attentionShape(2, 8, 256, 256, 32, 160, false, 0f);
            Tensor q = gpu.zeros(Shape.of(2, 256, 8 * 32), DType.F32), v = gpu.zeros(Shape.of(2, 256, 8 * 160), DType.F32);
            if (!(gpu instanceof CudaBackend cb) || !pick.picks(cb, s, q, v)) {
                throw new AssertionError("the backend does not pick the " + kernels + " attention kernels");
            }
            return 0;
        }));
        for (int[] a : shapes) {
            p.attentionForward(c, a[0], a[1], a[2], a[3], a[4], a[5], a[6] == 1, a[7], a[8] / 10f, tolerance, tc);
            p.attentionBackward(c, a[0], a[1], a[2], a[3], a[4], a[5], a[6] == 1, a[7], a[8] / 10f, tolerance, tc);
        }
        for (int n : new int[] {32, 96}) {   // one keep word per row, and three
            for (boolean causal : new boolean[] {false, true}) {
                c.add(new Check("attention dropout 0.3 mask exact, forward (v = I) and dV (dOut = I), B2 H2 Nq" + n + " Nk" + n + " Dqk32 Dv" + n
                        + (causal ? " causal" : "") + tc, tolerance, () -> p.dropoutMaskError(n, causal, pick, kernels)));
            }
        }
        return c;
    }

    /**
     * The dropout mask of the tensor-core kernels, exactly (nk % 4 == 0: the TF32 kernels' quad-shared keep
     * bits, the bf16 kernels' words from p4j_attention_keep_bits): with v = I (Dv = Nk = n) the output is
     * P∘M / (1 − p), and with dOut = I (Dv = Nq) dV is its transpose, so both zero patterns must equal the
     * reference's (maskedErr throws otherwise); the forward and the dQ kernel read the mask by rows
     * (att_keep_rows, att_keep_word_rows), the dK/dV kernel by keys (att_keep_keys, att_keep_word_keys).
     * A second backward, which draws the bits itself where the first took its forward's, must repeat the
     * first bit for bit. Returns the larger value error.
     */
    private double dropoutMaskError(int n, boolean causal, KernelPick pick, String kernels) {
        int batch = 2, heads = 2, dqk = 32;
        AttentionShape s = new AttentionShape(batch, heads, n, n, dqk, n, 0.35f, causal, 0.3f, 0x5EED_0123_4567L, 7L);
        float[] eye = perHeadIdentity(batch, n, heads);
        Pair q = randPair(1, batch, n, heads * dqk), k = randPair(1, batch, n, heads * dqk), v = both(eye, batch, n, heads * n);
        if (!(gpu instanceof CudaBackend cb) || !pick.picks(cb, s, q.g(), v.g())) {
            throw new AssertionError("the backend does not pick the " + kernels + " attention kernels for this shape");
        }
        Pair out = emptyPair(DType.F32, batch, n, heads * n), lse = emptyPair(DType.F32, batch, heads, n);
        gpu.attention(s, q.g(), k.g(), v.g(), null, out.g(), lse.g());
        ref.attention(s, q.r(), k.r(), v.r(), null, out.r(), lse.r());
        double e = maskedErr(out);
        Pair dOut = both(eye, batch, n, heads * n);
        Pair dQ = emptyPair(DType.F32, batch, n, heads * dqk), dK = emptyPair(DType.F32, batch, n, heads * dqk);
        Pair dV = emptyPair(DType.F32, batch, n, heads * n);
        gpu.attentionBackward(s, q.g(), k.g(), v.g(), null, out.g(), lse.g(), dOut.g(), dQ.g(), dK.g(), dV.g());
        ref.attentionBackward(s, q.r(), k.r(), v.r(), null, out.r(), lse.r(), dOut.r(), dQ.r(), dK.r(), dV.r());
        // once more: the bf16 kernels' backward took the bits its forward drew; now nothing is held, so it draws them itself
        Tensor dQ2 = gpu.zeros(dQ.g().shape(), DType.F32), dK2 = gpu.zeros(dK.g().shape(), DType.F32), dV2 = gpu.zeros(dV.g().shape(), DType.F32);
        gpu.attentionBackward(s, q.g(), k.g(), v.g(), null, out.g(), lse.g(), dOut.g(), dQ2, dK2, dV2);
        double again = bitError(new float[][] {gpu.toFloatArray(dQ2), gpu.toFloatArray(dK2), gpu.toFloatArray(dV2)},
                new float[][] {gpu.toFloatArray(dQ.g()), gpu.toFloatArray(dK.g()), gpu.toFloatArray(dV.g())});
        if (again != 0) throw new AssertionError("a second backward (bits drawn again) differs from the first by " + again);
        return Math.max(e, maskedErr(dV));
    }

    // ---- helpers -----------------------------------------------------------------------------

    /** [batch, n, heads·n] holding the n × n identity in every head of every batch item (v = I, dOut = I). */
    private static float[] perHeadIdentity(int batch, int n, int heads) {
        float[] eye = new float[batch * n * heads * n];
        for (int b = 0; b < batch; b++) for (int j = 0; j < n; j++) for (int h = 0; h < heads; h++) eye[((b * n + j) * heads + h) * n + j] = 1f;
        return eye;
    }

    /** The same values on both backends. */
    private record Pair(Tensor g, Tensor r) {}

    private float[] randn(int n, double scale) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            // Box-Muller
            double u1 = 1.0 - rnd.nextDouble(), u2 = rnd.nextDouble();
            v[i] = (float) (scale * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2));
        }
        return v;
    }

    private float[] uniform(int n, double lo, double hi) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) (lo + (hi - lo) * rnd.nextDouble());
        return v;
    }

    private Pair both(float[] v, int... dims) {
        return new Pair(gpu.fromFloats(v, Shape.of(dims)), ref.fromFloats(v, Shape.of(dims)));
    }

    private Pair bothInts(int[] v, int... dims) {
        return new Pair(gpu.fromInts(v, Shape.of(dims)), ref.fromInts(v, Shape.of(dims)));
    }

    private Pair randPair(double scale, int... dims) {
        return both(randn(Shape.of(dims).size(), scale), dims);
    }

    private Pair emptyPair(DType dtype, int... dims) {
        return new Pair(gpu.zeros(Shape.of(dims), dtype), ref.zeros(Shape.of(dims), dtype));
    }

    private static double err(float[] g, float[] r) {
        if (g.length != r.length) throw new AssertionError("length " + g.length + " vs " + r.length);
        double m = 0;
        for (int i = 0; i < g.length; i++) {
            if (g[i] == r[i] || (Float.isNaN(g[i]) && Float.isNaN(r[i]))) continue; // equal, incl. ±Inf and NaN
            double e = Math.abs((double) g[i] - r[i]) / Math.max(1.0, Math.abs(r[i]));
            if (!(e <= m)) m = Double.isNaN(e) ? Double.POSITIVE_INFINITY : e;
        }
        return m;
    }

    private double err(Pair p) {
        return err(gpu.toFloatArray(p.g()), ref.toFloatArray(p.r()));
    }

    /**
     * Tolerance for fp32 column sums over {@code rows} unit-scale terms against the double reference:
     * FP32 up to 1,000 rows; beyond, rounding grows with the partial sums (about rows · 2⁻²⁴ relative
     * to the largest of them, 3e-4 at 5,000 rows for a sequential sum; the kernels' two-stage sums do
     * better), so 1e-4 (the 5,000-row sumRows measured 1.2e-5 on the H100).
     */
    private static double sumTolerance(int rows) {
        return rows <= 1000 ? FP32 : 1e-4;
    }

    private static double relErr(double g, double r) {
        return Math.abs(g - r) / Math.max(1e-30, Math.abs(r));
    }

    private static Tensor g(Pair p) {
        return p == null ? null : p.g();
    }

    private static Tensor r(Pair p) {
        return p == null ? null : p.r();
    }

    // ---- memory, copies, casts ----------------------------------------------------------------

    private void memory(List<Check> c) {
        c.add(new Check("fromFloats/toFloatArray [3,7,5]", 0, () -> err(randPair(1, 3, 7, 5))));
        c.add(new Check("fromInts/toFloatArray I32 [37]", 0, () -> {
            int[] v = rnd.ints(37, -1000, 1000).toArray();
            return err(bothInts(v, 37));
        }));
        c.add(new Check("zeros F32 [1000] / persistentZeros BF16 [33]", 0, () -> {
            float[] a = gpu.toFloatArray(gpu.zeros(Shape.of(1000), DType.F32));
            float[] b = gpu.toFloatArray(gpu.persistentZeros(Shape.of(33), DType.BF16));
            return err(a, new float[1000]) + err(b, new float[33]);
        }));
        c.add(new Check("copy F32 [5,9] (into a view at offset 7)", 0, () -> {
            Pair src = randPair(1, 5, 9);
            Pair dst = emptyPair(DType.F32, 60);
            gpu.copy(src.g(), dst.g().alias(7, Shape.of(5, 9)));
            ref.copy(src.r(), dst.r().alias(7, Shape.of(5, 9)));
            return err(dst);
        }));
        c.add(new Check("cast F32->BF16->F32 [1001]", 0, () -> {
            float[] v = randn(1001, 100);
            v[0] = Float.NaN;
            v[1] = Float.POSITIVE_INFINITY;
            v[2] = -0f;
            v[3] = 1.00390625f; // a tie: rounds to even
            Pair x = both(v, 1001);
            Pair h = emptyPair(DType.BF16, 1001), y = emptyPair(DType.F32, 1001);
            gpu.cast(x.g(), h.g());
            ref.cast(x.r(), h.r());
            gpu.cast(h.g(), y.g());
            ref.cast(h.r(), y.r());
            float[] gy = gpu.toFloatArray(y.g()), ry = ref.toFloatArray(y.r());
            double e = 0;
            for (int i = 0; i < gy.length; i++) {
                if (Float.floatToIntBits(gy[i]) != Float.floatToIntBits(ry[i])) e = Math.max(e, 1);
            }
            return e + err(h);
        }));
        c.add(new Check("cast I32->F32 [77], I32->I64->I32", 0, () -> {
            int[] v = rnd.ints(77, -100000, 100000).toArray();
            Pair x = bothInts(v, 77);
            Pair f = emptyPair(DType.F32, 77), l = emptyPair(DType.I64, 77), i = emptyPair(DType.I32, 77);
            gpu.cast(x.g(), f.g());
            ref.cast(x.r(), f.r());
            gpu.cast(x.g(), l.g());
            ref.cast(x.r(), l.r());
            gpu.cast(l.g(), i.g());
            ref.cast(l.r(), i.r());
            return err(f) + err(l) + err(i);
        }));
        c.add(new Check("cast I64->F32 [301] (values beyond 2^24 round), BOOL->F32 [45] (fromBools)", 0, () -> {
            int[] v = rnd.ints(301, -2_000_000_000, 2_000_000_000).toArray();
            Pair x = bothInts(v, 301), l = emptyPair(DType.I64, 301), f = emptyPair(DType.F32, 301);
            gpu.cast(x.g(), l.g());
            ref.cast(x.r(), l.r());
            gpu.cast(l.g(), f.g());
            ref.cast(l.r(), f.r());
            boolean[] bv = new boolean[45];
            for (int i = 0; i < bv.length; i++) bv[i] = rnd.nextBoolean();
            Pair bb = new Pair(gpu.fromBools(bv, Shape.of(5, 9)), ref.fromBools(bv, Shape.of(5, 9)));
            Pair bf = emptyPair(DType.F32, 5, 9);
            gpu.cast(bb.g(), bf.g());
            ref.cast(bb.r(), bf.r());
            return err(f) + err(bf) + err(bb);
        }));
    }

    // ---- matmul --------------------------------------------------------------------------------

    private void matmuls(List<Check> c) {
        // label, a dims, transA, b dims, transB, bias, activation
        matmulCase(c, "shared b, bias (cuBLASLt BIAS epilogue), GELU", new int[] {3, 5, 7}, false, new int[] {7, 9}, false, true, Activation.GELU);
        matmulCase(c, "shared bᵀ, no bias", new int[] {2, 3, 33}, false, new int[] {17, 33}, true, false, Activation.NONE);
        matmulCase(c, "batched, aᵀ, bias, SQUARED_RELU", new int[] {2, 7, 5}, true, new int[] {2, 7, 9}, false, true, Activation.SQUARED_RELU);
        matmulCase(c, "batched, aᵀ bᵀ, RELU", new int[] {3, 11, 6}, true, new int[] {3, 13, 11}, true, false, Activation.RELU);
        matmulCase(c, "batched, bᵀ, bias", new int[] {4, 6, 10}, false, new int[] {4, 5, 10}, true, true, Activation.NONE);
        matmulCase(c, "shared b with aᵀ (loop over batch), bias, GELU", new int[] {3, 7, 5}, true, new int[] {7, 9}, false, true, Activation.GELU);
        matmulCase(c, "2-D 33x129 · 129x65, bias", new int[] {33, 129}, false, new int[] {129, 65}, false, true, Activation.NONE);
        matmulCase(c, "batched, aᵀ, 35x48 (not skinny), GELU", new int[] {2, 40, 35}, true, new int[] {2, 40, 48}, false, true, Activation.GELU);
        matmulCase(c, "2-D 40x36 (not skinny), GELU, no bias", new int[] {40, 17}, false, new int[] {17, 36}, false, false, Activation.GELU);
        matmulAdds(c);
    }

    /** out = residual + a·bᵀ + bias in one cuBLASLt call, against the reference's product then add. */
    private void matmulAdds(List<Check> c) {
        for (boolean withBias : new boolean[] {true, false}) {
            c.add(new Check("matmulAdd [3, 37, 45]·[50, 45]ᵀ " + (withBias ? "+bias " : "") + "+ residual", FP32, () -> {
                Pair a = randPair(1, 3, 37, 45), b = randPair(1, 50, 45), bias = withBias ? randPair(1, 50) : null;
                Pair res = randPair(2, 3, 37, 50), out = emptyPair(DType.F32, 3, 37, 50);
                gpu.matmulAdd(a.g(), false, b.g(), true, g(bias), res.g(), out.g());
                ref.matmulAdd(a.r(), false, b.r(), true, r(bias), res.r(), out.r());
                return err(out);
            }));
        }
    }

    private void matmulCase(List<Check> c, String label, int[] aDims, boolean tA, int[] bDims, boolean tB, boolean withBias, Activation act) {
        String shape = Arrays.toString(aDims) + (tA ? "ᵀ" : "") + "·" + Arrays.toString(bDims) + (tB ? "ᵀ" : "");
        matmulCase(c, label + " " + shape, aDims, tA, bDims, tB, withBias, act, false, FP32);
    }

    /** matmul and matmulBackward on random inputs, a stored as BF16 on both sides when aBf16 (the reference widens it exactly). */
    private void matmulCase(List<Check> c, String name, int[] aDims, boolean tA, int[] bDims, boolean tB, boolean withBias, Activation act,
                            boolean aBf16, double tolerance) {
        int m = tA ? aDims[aDims.length - 1] : aDims[aDims.length - 2];
        int n = tB ? bDims[bDims.length - 2] : bDims[bDims.length - 1];
        int[] outDims = aDims.clone();
        outDims[outDims.length - 2] = m;
        outDims[outDims.length - 1] = n;
        c.add(new Check("matmul " + name, tolerance, () -> {
            Pair a = aBf16 ? bf16Pair(1, aDims) : randPair(1, aDims), b = randPair(1, bDims), bias = withBias ? randPair(1, n) : null;
            Pair out = emptyPair(DType.F32, outDims), pre = act == Activation.NONE ? null : emptyPair(DType.F32, outDims);
            gpu.matmul(a.g(), tA, b.g(), tB, g(bias), act, out.g(), g(pre));
            ref.matmul(a.r(), tA, b.r(), tB, r(bias), act, out.r(), r(pre));
            return Math.max(err(out), pre == null ? 0 : err(pre));
        }));
        c.add(new Check("matmulBackward " + name, tolerance, () -> {
            Pair a = aBf16 ? bf16Pair(1, aDims) : randPair(1, aDims), b = randPair(1, bDims), bias = withBias ? randPair(1, n) : null;
            Pair pre = act == Activation.NONE ? null : randPair(1.5, outDims);
            Pair dOut = randPair(1, outDims);
            Pair dA = randPair(1, aDims), dB = randPair(1, bDims), dBias = withBias ? randPair(1, n) : null;
            gpu.matmulBackward(dOut.g(), a.g(), tA, b.g(), tB, g(bias), act, g(pre), dA.g(), dB.g(), g(dBias));
            ref.matmulBackward(dOut.r(), a.r(), tA, b.r(), tB, r(bias), act, r(pre), dA.r(), dB.r(), r(dBias));
            return Math.max(Math.max(err(dA), err(dB)), dBias == null ? 0 : err(dBias));
        }));
    }

    // ---- layer norm ----------------------------------------------------------------------------

    private void layerNorms(List<Check> c) {
        // one block per row (d 45, 1031, 1540) and one warp per row (d % 4 == 0, up to 1536: 64, 1280, 512, 1536, 520).
        // The backward of the one-block-per-row shapes takes the partial-sum kernels for dGamma and dBeta: 1100 rows of
        // 1540 are 18 chunks of 64 (more than the 16 row groups that add them), 25 column blocks of 64, the last partial.
        // The backward of the warp shapes runs fused (p4j_layernorm_backward_warp*: chunks of CudaBackend.lnRowsPerChunk
        // rows, then p4j_column_finish_rows adds the chunks): 130 rows are 17 chunks of 8, the last chunk 2 rows (warps
        // without rows); 33 rows fewer chunks than the finish's 16 row groups; 4100 rows 513 chunks, d 520 a partial
        // last float4 column of lanes.
        for (int[] dims : new int[][] {{7, 45}, {3, 1031}, {130, 64}, {33, 1280}, {70, 512}, {9, 1536}, {1100, 1540}, {4100, 520}}) {
            int rows = dims[0], d = dims[1];
            String shape = Arrays.toString(dims);
            c.add(new Check("layerNorm " + shape, FP32, () -> {
                float[] xv = randn(rows * d, 2);
                for (int i = 0; i < xv.length; i++) xv[i] += 3; // a mean far from 0
                Pair x = both(xv, rows, d), gamma = randPair(1, d), beta = randPair(1, d);
                Pair out = emptyPair(DType.F32, rows, d), mean = emptyPair(DType.F32, rows), rstd = emptyPair(DType.F32, rows);
                gpu.layerNorm(x.g(), gamma.g(), beta.g(), 1e-5f, out.g(), mean.g(), rstd.g());
                ref.layerNorm(x.r(), gamma.r(), beta.r(), 1e-5f, out.r(), mean.r(), rstd.r());
                return Math.max(err(out), Math.max(err(mean), err(rstd)));
            }));
            layerNormBackward(c, rows, d, true, true, false);
        }
        // Backward only, fused: the masked-LM latents (512 chunks of 8 rows, one a warp); the AR model's rows (768
        // chunks of 16, 2 a warp); d 768 (8 float4s a lane, 38 chunks, the last 4 rows); d 1000 (a partial last
        // float4 column of lanes; 257 chunks, the last 5 rows); dX written into fresh zeros; dGamma or dBeta alone.
        layerNormBackward(c, 4096, 1280, true, true, false);
        layerNormBackward(c, 12288, 512, true, true, false);
        layerNormBackward(c, 300, 768, true, true, false);
        layerNormBackward(c, 2053, 1000, true, true, false);
        layerNormBackward(c, 2053, 1000, true, true, true);
        layerNormBackward(c, 300, 768, true, false, false);
        layerNormBackward(c, 300, 768, false, true, false);
        layerNormBackward(c, 7, 45, true, false, false);   // one block per row: the partial-sum kernels
    }

    /** layerNormBackward of [rows, d] with dGamma and / or dBeta; dX into fresh zeros (written) or random values (added to). */
    private void layerNormBackward(List<Check> c, int rows, int d, boolean withGamma, boolean withBeta, boolean freshDX) {
        String what = (withGamma && withBeta ? "" : withGamma ? ", dGamma only" : ", dBeta only") + (freshDX ? ", dX into fresh zeros" : "");
        c.add(new Check("layerNormBackward " + Arrays.toString(new int[] {rows, d}) + what, sumTolerance(rows), () -> {
            Pair x = randPair(2, rows, d), gamma = randPair(1, d), beta = randPair(1, d);
            Pair out = emptyPair(DType.F32, rows, d), mean = emptyPair(DType.F32, rows), rstd = emptyPair(DType.F32, rows);
            ref.layerNorm(x.r(), gamma.r(), beta.r(), 1e-5f, out.r(), mean.r(), rstd.r());
            // the same saved statistics on both sides
            Pair mu = both(ref.toFloatArray(mean.r()), rows), rs = both(ref.toFloatArray(rstd.r()), rows);
            Pair dOut = randPair(1, rows, d), dX = freshDX ? zerosPair(rows, d) : randPair(1, rows, d);
            Pair dG = withGamma ? randPair(1, d) : null, dB = withBeta ? randPair(1, d) : null;
            gpu.layerNormBackward(dOut.g(), x.g(), gamma.g(), mu.g(), rs.g(), dX.g(), g(dG), g(dB));
            ref.layerNormBackward(dOut.r(), x.r(), gamma.r(), mu.r(), rs.r(), dX.r(), r(dG), r(dB));
            return Math.max(err(dX), Math.max(dG == null ? 0 : err(dG), dB == null ? 0 : err(dB)));
        }));
    }

    // ---- pointwise -----------------------------------------------------------------------------

    private void pointwise(List<Check> c) {
        for (Activation act : Activation.values()) {
            c.add(new Check("activation " + act + " [5,37]", FP32, () -> {
                Pair x = both(uniform(5 * 37, -4, 4), 5, 37), out = emptyPair(DType.F32, 5, 37);
                gpu.activation(act, x.g(), out.g());
                ref.activation(act, x.r(), out.r());
                return err(out);
            }));
            c.add(new Check("activationBackward " + act + " [5,37]", FP32, () -> {
                Pair x = both(uniform(5 * 37, -4, 4), 5, 37), dOut = randPair(1, 5, 37), dX = randPair(1, 5, 37);
                gpu.activationBackward(act, x.g(), dOut.g(), dX.g());
                ref.activationBackward(act, x.r(), dOut.r(), dX.r());
                return err(dX);
            }));
        }
        // the 4-per-thread kernels' element-by-element path: every operand a view one element past an aligned start
        c.add(new Check("activation GELU, activationBackward GELU, cast F32->BF16 on views at offset 1 [183]", FP32, () -> {
            Shape s = Shape.of(183);
            Pair x = both(uniform(184, -4, 4), 184), dOut = randPair(1, 184), dX = randPair(1, 184), out = emptyPair(DType.F32, 184);
            Pair h = emptyPair(DType.BF16, 184);
            gpu.activation(Activation.GELU, x.g().alias(1, s), out.g().alias(1, s));
            ref.activation(Activation.GELU, x.r().alias(1, s), out.r().alias(1, s));
            gpu.activationBackward(Activation.GELU, x.g().alias(1, s), dOut.g().alias(1, s), dX.g().alias(1, s));
            ref.activationBackward(Activation.GELU, x.r().alias(1, s), dOut.r().alias(1, s), dX.r().alias(1, s));
            gpu.cast(x.g().alias(1, s), h.g().alias(1, s));
            ref.cast(x.r().alias(1, s), h.r().alias(1, s));
            return Math.max(Math.max(err(out), err(dX)), err(h));
        }));
        // a [4,3,10] with b of 10 or 30 elements: the scalar kernels; a [4,3,12] (b of 12, 36, 144): the float4 ones
        for (int[][] ab : new int[][][] {{{4, 3, 10}, {10}}, {{4, 3, 10}, {3, 10}}, {{4, 3, 10}, {4, 3, 10}},
                {{4, 3, 12}, {12}}, {{4, 3, 12}, {3, 12}}, {{4, 3, 12}, {4, 3, 12}}}) {
            int[] aDims = ab[0], bDims = ab[1];
            String shapes = Arrays.toString(aDims) + " %s " + Arrays.toString(bDims);
            c.add(new Check("add " + shapes.formatted("+"), FP32, () -> {
                Pair a = randPair(1, aDims), b = randPair(1, bDims), out = emptyPair(DType.F32, aDims);
                gpu.add(a.g(), b.g(), out.g());
                ref.add(a.r(), b.r(), out.r());
                return err(out);
            }));
            c.add(new Check("add " + shapes.formatted("+") + " to fresh zeros (b repeated), into a new tensor and in place", 0, () -> {
                Pair b = randPair(1, bDims), zeros = emptyPair(DType.F32, aDims), out = emptyPair(DType.F32, aDims);
                gpu.add(zeros.g(), b.g(), out.g());
                ref.add(zeros.r(), b.r(), out.r());
                Pair inPlace = emptyPair(DType.F32, aDims);
                gpu.add(inPlace.g(), b.g(), inPlace.g());
                ref.add(inPlace.r(), b.r(), inPlace.r());
                return Math.max(Math.max(err(out), err(zeros)), err(inPlace));   // the zeros read back as zeros
            }));
            c.add(new Check("mul " + shapes.formatted("*"), FP32, () -> {
                Pair a = randPair(1, aDims), b = randPair(1, bDims), out = emptyPair(DType.F32, aDims);
                gpu.mul(a.g(), b.g(), out.g());
                ref.mul(a.r(), b.r(), out.r());
                return err(out);
            }));
        }
        c.add(new Check("scale [999] by -0.37", FP32, () -> {
            Pair x = randPair(1, 999), out = emptyPair(DType.F32, 999);
            gpu.scale(x.g(), -0.37f, out.g());
            ref.scale(x.r(), -0.37f, out.r());
            return err(out);
        }));
        c.add(new Check("axpy [999] alpha 1.7", FP32, () -> {
            Pair x = randPair(1, 999), y = randPair(1, 999);
            gpu.axpy(1.7f, x.g(), y.g());
            ref.axpy(1.7f, x.r(), y.r());
            return err(y);
        }));
        c.add(new Check("fill [7,13] (a view at offset 3) with 2.5", 0, () -> {
            Pair x = randPair(1, 100);
            gpu.fill(x.g().alias(3, Shape.of(7, 13)), 2.5f);
            ref.fill(x.r().alias(3, Shape.of(7, 13)), 2.5f);
            return err(x);
        }));
        for (int[] dims : new int[][] {{6, 300}, {4, 2000}, {9, 1}}) {
            c.add(new Check("softmax " + Arrays.toString(dims), FP32, () -> {
                Pair x = randPair(5, dims), out = emptyPair(DType.F32, dims);
                gpu.softmax(x.g(), out.g());
                ref.softmax(x.r(), out.r());
                return err(out);
            }));
        }
    }

    // ---- reductions ----------------------------------------------------------------------------

    private void reductions(List<Check> c) {
        for (int n : new int[] {1, 10007, 1 << 20}) {
            c.add(new Check("l2Norm [" + n + "] (relative; both rounded to float)", 2e-7, () -> {
                Pair x = randPair(3, n), norm = emptyPair(DType.F32, 1);
                gpu.l2Norm(x.g(), norm.g());
                ref.l2Norm(x.r(), norm.r());
                return relErr(norm.g().item(), norm.r().item());
            }));
        }
        for (float maxNorm : new float[] {0.5f, 1e6f}) {
            c.add(new Check("clipByNorm [10007] at max norm " + maxNorm + (maxNorm > 1 ? " (no clipping: unchanged)" : ""), FP32, () -> {
                Pair x = randPair(3, 10007), norm = emptyPair(DType.F32, 1);
                gpu.l2Norm(x.g(), norm.g());
                Pair normBoth = both(gpu.toFloatArray(norm.g()), 1);   // the same norm on both sides
                gpu.clipByNorm(x.g(), normBoth.g(), maxNorm);
                ref.clipByNorm(x.r(), normBoth.r(), maxNorm);
                return err(x);
            }));
        }
        for (int[] dims : new int[][] {{1000, 13}, {3, 5, 7}, {130, 300}, {5000, 300}}) {
            c.add(new Check("sumRows " + Arrays.toString(dims) + " into its last dim", sumTolerance(dims[0]), () -> {
                int n = dims[dims.length - 1];
                Pair x = randPair(1, dims), out = randPair(1, n);
                gpu.sumRows(x.g(), out.g());
                ref.sumRows(x.r(), out.r());
                return err(out);
            }));
        }
    }

    // ---- axis copies ---------------------------------------------------------------------------

    private void axisCopies(List<Check> c) {
        for (boolean acc : new boolean[] {false, true}) {
            c.add(new Check("narrow [3,10,4] axis 1 [2,7)" + (acc ? " accumulate" : ""), FP32, () -> {
                Pair full = randPair(1, 3, 10, 4), part = randPair(1, 3, 5, 4);
                gpu.narrow(full.g(), 1, 2, part.g(), acc);
                ref.narrow(full.r(), 1, 2, part.r(), acc);
                return err(part);
            }));
            c.add(new Check("unnarrow [3,5,4] into [3,10,4] axis -2 at 5" + (acc ? " accumulate" : ""), FP32, () -> {
                Pair full = randPair(1, 3, 10, 4), part = randPair(1, 3, 5, 4);
                gpu.unnarrow(part.g(), -2, 5, full.g(), acc);
                ref.unnarrow(part.r(), -2, 5, full.r(), acc);
                return err(full);
            }));
        }
    }

    // ---- gradients into zeros not yet written ------------------------------------------------

    /** Zeros on both sides, the GPU's from zeros() (written lazily: the first whole write replaces the add). */
    private Pair zerosPair(int... dims) {
        return new Pair(gpu.zeros(Shape.of(dims), DType.F32), ref.zeros(Shape.of(dims), DType.F32));
    }

    private void lazyZeros(List<Check> c) {
        c.add(new Check("matmulBackward [64,96]x[80,96]^T with GELU into fresh zeros (dA, dB written, not added)", FP32, () -> {
            Pair a = randPair(1, 64, 96), b = randPair(1, 80, 96), pre = emptyPair(DType.F32, 64, 80), out = emptyPair(DType.F32, 64, 80);
            gpu.matmul(a.g(), false, b.g(), true, null, Activation.GELU, out.g(), pre.g());
            ref.matmul(a.r(), false, b.r(), true, null, Activation.GELU, out.r(), pre.r());
            Pair dOut = randPair(1, 64, 80), dA = zerosPair(64, 96), dB = zerosPair(80, 96);
            Pair preBoth = both(ref.toFloatArray(pre.r()), 64, 80);
            gpu.matmulBackward(dOut.g(), a.g(), false, b.g(), true, null, Activation.GELU, preBoth.g(), dA.g(), dB.g(), null);
            ref.matmulBackward(dOut.r(), a.r(), false, b.r(), true, null, Activation.GELU, preBoth.r(), dA.r(), dB.r(), null);
            return Math.max(err(dA), err(dB));
        }));
        c.add(new Check("activationBackward GELU, layerNormBackward dX, rotaryBackward into fresh zeros", FP32, () -> {
            Pair x = randPair(1, 33, 64), dOut = randPair(1, 33, 64), dAct = zerosPair(33, 64), dLn = zerosPair(33, 64), dRot = zerosPair(33, 64);
            gpu.activationBackward(Activation.GELU, x.g(), dOut.g(), dAct.g());
            ref.activationBackward(Activation.GELU, x.r(), dOut.r(), dAct.r());
            Pair gamma = randPair(1, 64), beta = randPair(1, 64), y = emptyPair(DType.F32, 33, 64);
            Pair mean = emptyPair(DType.F32, 33), rstd = emptyPair(DType.F32, 33);
            ref.layerNorm(x.r(), gamma.r(), beta.r(), 1e-5f, y.r(), mean.r(), rstd.r());
            Pair mu = both(ref.toFloatArray(mean.r()), 33), rs = both(ref.toFloatArray(rstd.r()), 33);
            gpu.layerNormBackward(dOut.g(), x.g(), gamma.g(), mu.g(), rs.g(), dLn.g(), null, null);
            ref.layerNormBackward(dOut.r(), x.r(), gamma.r(), mu.r(), rs.r(), dLn.r(), null, null);
            int[] pos = rnd.ints(33, 0, 4096).toArray();
            Pair positions = bothInts(pos, 33), invFreq = randPair(0.5, 8);
            gpu.rotaryBackward(dOut.g(), positions.g(), invFreq.g(), 2, 16, dRot.g());
            ref.rotaryBackward(dOut.r(), positions.r(), invFreq.r(), 2, 16, dRot.r());
            return Math.max(err(dAct), Math.max(err(dLn), err(dRot)));
        }));
        c.add(new Check("gradients in a slab zeroed by fill(0) (lazy on the GPU): written by their first contributions (product dB and "
                + "bias sums, layer-norm dGamma/dBeta, embedding, sumRows), added to by a second, the unwritten rest zero, the slab's head kept",
                FP32, () -> lazySlabError(false)));
        c.add(new Check("the same recorded (fill and contributions in one CUDA graph, replayed twice over an overwritten slab)",
                FP32, () -> lazySlabError(true)));
        c.add(new Check("axpy into fresh zeros (alpha 1 and 0.5), and into half of them (the rest zeroed first)", 0, () -> {
            Pair x = randPair(1, 2, 50), y1 = zerosPair(2, 50), y2 = zerosPair(2, 50), half = zerosPair(2, 50);
            for (Backend be : List.of(gpu, ref)) {
                boolean g = be == gpu;
                Tensor xs = g ? x.g() : x.r();
                be.axpy(1f, xs, g ? y1.g() : y1.r());
                be.axpy(0.5f, xs, g ? y2.g() : y2.r());
                be.axpy(1f, xs.alias(50, Shape.of(50)), (g ? half.g() : half.r()).alias(50, Shape.of(50)));
            }
            return Math.max(err(y1), Math.max(err(y2), err(half)));
        }));
    }

    /**
     * A gradient slab as AdamW's: [3 kept | dW 40×24 | dBias 40 | dGamma 64 | dBeta 64 | dTable 11×64 | sum 40 | 7 never
     * written]; fill(0) over all but the head, then the backward ops of a product with GELU and bias, a second product
     * into the same dW and dBias, a layer norm, an embedding (ids 0–8 used, 9 and 10 not) and sumRows. On the GPU the
     * fill is lazy and the first writer of each range writes instead of adding; {@code recorded}: the fill and the
     * ops are one CUDA graph, replayed twice, the slab overwritten with other values before each replay.
     */
    private double lazySlabError(boolean recorded) {
        int rows = 37, k = 24, n = 40, d = 64, vocab = 11, tokens = 29;
        int oW = 3, oBias = oW + n * k, oGamma = oBias + n, oBeta = oGamma + d, oTable = oBeta + d, oSum = oTable + vocab * d, size = oSum + n + 7;
        Pair slab = randPair(1, size), a = randPair(1, rows, k), w = randPair(1, n, k), dOut = randPair(1, rows, n), pre = randPair(1.5, rows, n);
        Pair a2 = randPair(1, rows, k), dOut2 = randPair(1, rows, n), x = randPair(1, rows, d), gamma = randPair(1, d), dOutLn = randPair(1, rows, d);
        Pair dOutE = randPair(1, tokens, d), sumIn = randPair(1, 3, n);
        int[] idv = rnd.ints(tokens, 0, vocab - 2).toArray();
        Pair ids = bothInts(idv, tokens);
        Pair mean = emptyPair(DType.F32, rows), rstd = emptyPair(DType.F32, rows), y = emptyPair(DType.F32, rows, d);
        ref.layerNorm(x.r(), gamma.r(), gamma.r(), 1e-5f, y.r(), mean.r(), rstd.r());
        Pair mu = both(ref.toFloatArray(mean.r()), rows), rs = both(ref.toFloatArray(rstd.r()), rows);
        java.util.function.BiConsumer<Backend, java.util.function.Function<Pair, Tensor>> ops = (be, t) -> {
            Tensor sl = t.apply(slab);
            java.util.function.BiFunction<Integer, Shape, Tensor> view = (off, sh) -> sl.alias(off, sh);
            be.fill(view.apply(oW, Shape.of(size - oW)), 0f);
            Tensor dW = view.apply(oW, Shape.of(n, k)), dBias = view.apply(oBias, Shape.of(n));
            be.matmulBackward(t.apply(dOut), t.apply(a), false, t.apply(w), true, null, Activation.GELU, t.apply(pre),
                    be.zeros(Shape.of(rows, k), DType.F32), dW, dBias);
            be.matmulBackward(t.apply(dOut2), t.apply(a2), false, t.apply(w), true, null, Activation.NONE, null,
                    be.zeros(Shape.of(rows, k), DType.F32), dW, dBias);
            be.layerNormBackward(t.apply(dOutLn), t.apply(x), t.apply(gamma), t.apply(mu), t.apply(rs), be.zeros(Shape.of(rows, d), DType.F32),
                    view.apply(oGamma, Shape.of(d)), view.apply(oBeta, Shape.of(d)));
            be.embeddingBackward(t.apply(dOutE), t.apply(ids), view.apply(oTable, Shape.of(vocab, d)));
            be.sumRows(t.apply(sumIn), view.apply(oSum, Shape.of(n)));
        };
        ops.accept(ref, Pair::r);
        if (!recorded) {
            ops.accept(gpu, Pair::g);
            return err(slab);
        }
        Recording graph = gpu.record(() -> ops.accept(gpu, Pair::g));
        if (graph == null) {   // graphs switched off: op by op
            ops.accept(gpu, Pair::g);
            return err(slab);
        }
        double worst = 0;
        try {
            for (int round = 0; round < 2; round++) {
                gpu.copy(gpu.fromFloats(randn(size - oW, 3), Shape.of(size - oW)), slab.g().alias(oW, Shape.of(size - oW)));
                graph.replay();
                worst = Math.max(worst, err(slab));
            }
        } finally {
            graph.close();
        }
        return worst;
    }

    private void scatters(List<Check> c) {
        c.add(new Check("writeInts into an I32 view, writeBools into a BOOL tensor", 0, () -> {
            Pair idx = emptyPair(DType.I32, 2, 3), mask = emptyPair(DType.BOOL, 5);
            for (Backend be : List.of(gpu, ref)) {
                Tensor i = be == gpu ? idx.g() : idx.r(), m = be == gpu ? mask.g() : mask.r();
                be.writeInts(new int[] {4, -2, 9}, i.alias(3, Shape.of(3)));
                be.writeBools(new boolean[] {false, true, true, false, true}, m);
            }
            return Math.max(err(idx), err(mask));
        }));
        c.add(new Check("queued uploads: 200 × 256 KiB through one I32 tensor (3 laps of the staging ring), each copied on before the next", 0, () -> {
            int n = 1 << 16, rounds = 200;
            Tensor staged = gpu.persistentZeros(Shape.of(n), DType.I32), all = gpu.persistentZeros(Shape.of(rounds, n), DType.I32);
            int[][] sent = new int[rounds][];
            for (int r = 0; r < rounds; r++) {
                sent[r] = rnd.ints(n, 0, 1 << 20).toArray();
                gpu.writeInts(sent[r], staged);                          // queued; the host does not wait
                gpu.copy(staged, all.alias(r * n, Shape.of(n)));        // reads it in stream order
            }
            float[] got = gpu.toFloatArray(all);
            double worst = 0;
            for (int r = 0; r < rounds; r++) for (int i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[r * n + i] - sent[r][i]));
            return worst;
        }));
        c.add(new Check("an upload while recording a CUDA graph is refused, naming the upload", 0, () -> {
            try {
                Recording r = gpu.record(() -> gpu.fromInts(new int[] {1, 2, 3}, Shape.of(3)));
                if (r == null) return 0;   // graphs switched off: nothing is recorded
                r.close();
                return 1;
            } catch (IllegalStateException e) {
                return e.getMessage().contains("upload of 12 host bytes while recording") ? 0 : 1;
            }
        }));
        c.add(new Check("scatterRows F32 [5,37] into [11,37], permuted rows", 0, () -> {
            Pair dst = randPair(1, 11, 37), src = randPair(1, 5, 37), rows = bothInts(new int[] {9, 0, 4, 10, 3}, 5);
            gpu.scatterRows(src.g(), rows.g(), dst.g());
            ref.scatterRows(src.r(), rows.r(), dst.r());
            return err(dst);
        }));
        c.add(new Check("scatterRows BOOL [2,1] into a [1,9] mask viewed as [9,1]", 0, () -> {
            boolean[] m = {true, true, true, false, true, true, true, true, true};
            Pair dst = new Pair(gpu.fromBools(m, Shape.of(1, 9)), ref.fromBools(m, Shape.of(1, 9)));
            Pair src = new Pair(gpu.fromBools(new boolean[] {false, true}, Shape.of(2, 1)), ref.fromBools(new boolean[] {false, true}, Shape.of(2, 1)));
            Pair rows = bothInts(new int[] {7, 3}, 2);
            gpu.scatterRows(src.g(), rows.g(), dst.g().reshape(9, 1));
            ref.scatterRows(src.r(), rows.r(), dst.r().reshape(9, 1));
            return err(dst);
        }));
    }

    // ---- embedding -----------------------------------------------------------------------------

    private void embeddings(List<Check> c) {
        c.add(new Check("embedding table [11,19], ids [23]", 0, () -> {
            Pair table = randPair(1, 11, 19), ids = bothInts(rnd.ints(23, 0, 11).toArray(), 23);
            Pair out = emptyPair(DType.F32, 23, 19);
            gpu.embedding(table.g(), ids.g(), out.g());
            ref.embedding(table.r(), ids.r(), out.r());
            return err(out);
        }));
        for (int[] s : new int[][] {{11, 19, 23}, {262, 300, 2500}, {2100, 40, 5000}}) {
            c.add(new Check("embeddingBackward dTable [" + s[0] + "," + s[1] + "], ids [" + s[2] + "] (repeats)", FP32, () -> {
                int vocab = s[0], d = s[1], n = s[2];
                Pair ids = bothInts(rnd.ints(n, 0, vocab).toArray(), n);
                Pair dOut = randPair(1, n, d), dTable = randPair(1, vocab, d);
                gpu.embeddingBackward(dOut.g(), ids.g(), dTable.g());
                ref.embeddingBackward(dOut.r(), ids.r(), dTable.r());
                return err(dTable);
            }));
        }
    }

    // ---- losses --------------------------------------------------------------------------------

    private void losses(List<Check> c) {
        for (int[] s : new int[][] {{17, 29}, {40, 1500}}) {
            for (float z : new float[] {0f, 1e-3f}) {
                int rows = s[0], vocab = s[1];
                String label = "[" + rows + "," + vocab + "] zLoss " + z + ", 3 rows ignored";
                c.add(new Check("crossEntropy " + label + " (loss relative, lse)", FP32, () -> {
                    Pair logits = randPair(3, rows, vocab), targets = bothInts(targets(rows, vocab), rows);
                    Pair lse = emptyPair(DType.F32, rows), loss = emptyPair(DType.F32, 1);
                    gpu.crossEntropy(logits.g(), targets.g(), -100, z, lse.g(), loss.g());
                    ref.crossEntropy(logits.r(), targets.r(), -100, z, lse.r(), loss.r());
                    return Math.max(relErr(loss.g().item(), loss.r().item()), err(lse));
                }));
                c.add(new Check("crossEntropyBackward " + label, FP32, () -> {
                    Pair logits = randPair(3, rows, vocab), targets = bothInts(targets(rows, vocab), rows);
                    Pair lse = emptyPair(DType.F32, rows);
                    ref.crossEntropy(logits.r(), targets.r(), -100, z, lse.r(), emptyPair(DType.F32, 1).r());
                    Pair lseBoth = both(ref.toFloatArray(lse.r()), rows);
                    Pair dLogits = randPair(0.01, rows, vocab), dLoss = both(new float[] {1.3f}, 1);
                    gpu.crossEntropyBackward(dLoss.g(), logits.g(), targets.g(), -100, z, lseBoth.g(), dLogits.g());
                    ref.crossEntropyBackward(dLoss.r(), logits.r(), targets.r(), -100, z, lseBoth.r(), dLogits.r());
                    Pair fresh = emptyPair(DType.F32, rows, vocab);   // lazy zeros: written, ignored rows 0
                    gpu.crossEntropyBackward(dLoss.g(), logits.g(), targets.g(), -100, z, lseBoth.g(), fresh.g());
                    ref.crossEntropyBackward(dLoss.r(), logits.r(), targets.r(), -100, z, lseBoth.r(), fresh.r());
                    return Math.max(err(dLogits), err(fresh));
                }));
            }
        }
        c.add(new Check("crossEntropy every row ignored -> 0", 0, () -> {
            Pair logits = randPair(1, 4, 7), targets = bothInts(new int[] {-100, -100, -100, -100}, 4);
            Pair lse = emptyPair(DType.F32, 4), loss = both(new float[] {7f}, 1);
            gpu.crossEntropy(logits.g(), targets.g(), -100, 0f, lse.g(), loss.g());
            return Math.abs(loss.g().item());
        }));
    }

    private int[] targets(int rows, int vocab) {
        int[] t = rnd.ints(rows, 0, vocab).toArray();
        t[0] = -100;
        t[rows / 2] = -100;
        t[rows - 1] = -100;
        return t;
    }

    // ---- optimizer -----------------------------------------------------------------------------

    private void optimizer(List<Check> c) {
        c.add(new Check("adamw [1001] step 3 (param, m, v)", FP32, () -> {
            Pair p = randPair(1, 1001), grad = randPair(1, 1001), m = randPair(0.1, 1001);
            float[] vv = randn(1001, 0.1);
            for (int i = 0; i < vv.length; i++) vv[i] = vv[i] * vv[i];
            Pair v = both(vv, 1001);
            gpu.adamw(p.g(), grad.g(), m.g(), v.g(), 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 3);
            ref.adamw(p.r(), grad.r(), m.r(), v.r(), 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 3);
            return Math.max(err(p), Math.max(err(m), err(v)));
        }));
    }

    // ---- dropout -------------------------------------------------------------------------------

    /** Number of elements zero on one side and not on the other (inputs have no zeros). */
    private static int maskMismatches(float[] g, float[] r) {
        if (g.length != r.length) throw new AssertionError("length " + g.length + " vs " + r.length);
        int bad = 0;
        for (int i = 0; i < g.length; i++) if ((g[i] == 0f) != (r[i] == 0f)) bad++;
        return bad;
    }

    /** err(p), or infinity when the zero patterns differ at all. */
    private double maskedErr(Pair p) {
        float[] gv = gpu.toFloatArray(p.g()), rv = ref.toFloatArray(p.r());
        int bad = maskMismatches(gv, rv);
        if (bad > 0) throw new AssertionError(bad + " elements dropped on one backend and kept on the other");
        return err(gv, rv);
    }

    private float[] nonZero(int n) {
        float[] v = randn(n, 1);
        for (int i = 0; i < n; i++) if (v[i] == 0f) v[i] = 1f;
        return v;
    }

    private void dropouts(List<Check> c) {
        long seed = 0x0123_4567_89AB_CDEFL, stream = 0xFEDC_BA98_7654_3210L;
        for (float p : new float[] {0.1f, 0.5f, 0.9f}) {
            c.add(new Check("dropout p " + p + " [7,1001], 64-bit seed/stream (mask exact)", FP32, () -> {
                Pair x = both(nonZero(7 * 1001), 7, 1001), out = emptyPair(DType.F32, 7, 1001);
                gpu.dropout(x.g(), p, seed, stream, out.g());
                ref.dropout(x.r(), p, seed, stream, out.r());
                return maskedErr(out);
            }));
        }
        c.add(new Check("dropout p 0.3 in place [3,333] (mask exact)", FP32, () -> {
            Pair x = both(nonZero(999), 3, 333);
            gpu.dropout(x.g(), 0.3f, 5, 1003, x.g());
            ref.dropout(x.r(), 0.3f, 5, 1003, x.r());
            return maskedErr(x);
        }));
        c.add(new Check("dropout p 0 (copy) and p 1 (all zero) [37]", 0, () -> {
            Pair x = both(nonZero(37), 37), a = emptyPair(DType.F32, 37), b = randPair(1, 37);
            gpu.dropout(x.g(), 0f, 1, 2, a.g());
            ref.dropout(x.r(), 0f, 1, 2, a.r());
            gpu.dropout(x.g(), 1f, 1, 2, b.g());
            ref.dropout(x.r(), 1f, 1, 2, b.r());
            return err(a) + err(b);
        }));
        for (float p : new float[] {0f, 0.25f}) {
            c.add(new Check("dropoutBackward p " + p + " [5,77] (accumulates; mask exact)", FP32, () -> {
                Pair dOut = both(nonZero(385), 5, 77), dX = randPair(1, 5, 77);
                gpu.dropoutBackward(dOut.g(), p, 99, 7, dX.g());
                ref.dropoutBackward(dOut.r(), p, 99, 7, dX.r());
                // mask: dX − dX0 is 0 exactly where dropped; compare the increments' zero patterns
                Pair d0 = new Pair(gpu.zeros(Shape.of(5, 77), DType.F32), ref.zeros(Shape.of(5, 77), DType.F32));
                gpu.dropoutBackward(dOut.g(), p, 99, 7, d0.g());
                ref.dropoutBackward(dOut.r(), p, 99, 7, d0.r());
                return Math.max(err(dX), maskedErr(d0));
            }));
        }
    }

    // ---- rotary --------------------------------------------------------------------------------

    private static float[] invFreq(int rot) {
        float[] f = new float[rot / 2];
        for (int i = 0; i < f.length; i++) f[i] = (float) (1.0 / Math.pow(10000.0, (2.0 * i) / rot));
        return f;
    }

    private void rotaries(List<Check> c) {
        // rows, heads, headDim, rot
        for (int[] s : new int[][] {{18, 3, 10, 6}, {33, 4, 16, 16}, {7, 2, 160, 80}, {5, 1, 9, 4}}) {
            int rows = s[0], heads = s[1], hd = s[2], rot = s[3];
            String label = "[" + rows + "," + heads + "x" + hd + "] rot " + rot + ", positions < 5000";
            c.add(new Check("rotary " + label, FP32, () -> {
                Pair x = randPair(1, rows, heads * hd), pos = bothInts(rnd.ints(rows, 0, 5000).toArray(), rows);
                Pair f = both(invFreq(rot), rot / 2), out = emptyPair(DType.F32, rows, heads * hd);
                gpu.rotary(x.g(), pos.g(), f.g(), heads, rot, out.g());
                ref.rotary(x.r(), pos.r(), f.r(), heads, rot, out.r());
                gpu.rotary(x.g(), pos.g(), f.g(), heads, rot, x.g()); // in place
                ref.rotary(x.r(), pos.r(), f.r(), heads, rot, x.r());
                return Math.max(err(out), err(x));
            }));
            c.add(new Check("rotaryBackward " + label, FP32, () -> {
                Pair dOut = randPair(1, rows, heads * hd), pos = bothInts(rnd.ints(rows, 0, 5000).toArray(), rows);
                Pair f = both(invFreq(rot), rot / 2), dX = randPair(1, rows, heads * hd);
                gpu.rotaryBackward(dOut.g(), pos.g(), f.g(), heads, rot, dX.g());
                ref.rotaryBackward(dOut.r(), pos.r(), f.r(), heads, rot, dX.r());
                return err(dX);
            }));
        }
    }

    // ---- attention -----------------------------------------------------------------------------

    /** Key padding for the attention checks: mode 0 none, 1 random ~20%, 2 random plus one row's leading keys and one fully padded row. */
    private boolean[] keyPad(int batch, int nk, int mode) {
        if (mode == 0) return null;
        boolean[] p = new boolean[batch * nk];
        for (int i = 0; i < p.length; i++) p[i] = rnd.nextInt(5) == 0;
        if (mode == 2) {
            for (int j = 0; j < Math.min(nk, 9); j++) p[j] = true;            // batch 0: its first 9 keys (causal: early queries see none)
            if (batch > 1) Arrays.fill(p, nk, 2 * nk, true);                  // batch 1: every key (every query sees none)
        }
        return p;
    }

    private Pair padPair(boolean[] p, int batch, int nk) {
        return p == null ? null : new Pair(gpu.fromBools(p, Shape.of(batch, nk)), ref.fromBools(p, Shape.of(batch, nk)));
    }

    private static AttentionShape attentionShape(int batch, int heads, int nq, int nk, int dqk, int dv, boolean causal, float drop) {
        return new AttentionShape(batch, heads, nq, nk, dqk, dv, (float) (1 / Math.sqrt(dqk)), causal, drop, 0x5EEDL + nq, 3L + nk);
    }

    private static String attentionLabel(int batch, int heads, int nq, int nk, int dqk, int dv, boolean causal, int padMode, float drop) {
        return String.format("B%d H%d Nq%d Nk%d Dqk%d Dv%d%s%s%s", batch, heads, nq, nk, dqk, dv, causal ? " causal" : "",
                padMode == 0 ? "" : padMode == 1 ? " pad" : " pad+empty rows", drop > 0 ? " dropout " + drop : "");
    }

    /** out and lse of one attention forward on random inputs, GPU against the reference. */
    private void attentionForward(List<Check> c, int batch, int heads, int nq, int nk, int dqk, int dv, boolean causal, int padMode,
                                  float drop, double tolerance, String suffix) {
        AttentionShape s = attentionShape(batch, heads, nq, nk, dqk, dv, causal, drop);
        c.add(new Check("attention " + attentionLabel(batch, heads, nq, nk, dqk, dv, causal, padMode, drop) + suffix, tolerance, () -> {
            Pair q = randPair(1, batch, nq, heads * dqk), k = randPair(1, batch, nk, heads * dqk), v = randPair(1, batch, nk, heads * dv);
            Pair pad = padPair(keyPad(batch, nk, padMode), batch, nk);
            Pair out = emptyPair(DType.F32, batch, nq, heads * dv), lse = emptyPair(DType.F32, batch, heads, nq);
            gpu.attention(s, q.g(), k.g(), v.g(), g(pad), out.g(), lse.g());
            ref.attention(s, q.r(), k.r(), v.r(), r(pad), out.r(), lse.r());
            return Math.max(err(out), err(lse));
        }));
    }

    private void attentionCase(List<Check> c, int batch, int heads, int nq, int nk, int dqk, int dv, boolean causal, int padMode, float drop) {
        attentionForward(c, batch, heads, nq, nk, dqk, dv, causal, padMode, drop, FP32, "");
        attentionBackward(c, batch, heads, nq, nk, dqk, dv, causal, padMode, drop, FP32, "");
    }

    /**
     * dQ, dK and dV of one attention backward on random inputs, GPU against the reference: added to random
     * gradients, then into fresh zeros (which the bf16 kernels write instead of adding to).
     */
    private void attentionBackward(List<Check> c, int batch, int heads, int nq, int nk, int dqk, int dv, boolean causal, int padMode,
                                   float drop, double tolerance, String suffix) {
        AttentionShape s = attentionShape(batch, heads, nq, nk, dqk, dv, causal, drop);
        String label = attentionLabel(batch, heads, nq, nk, dqk, dv, causal, padMode, drop);
        c.add(new Check("attentionBackward " + label + suffix, tolerance, () -> {
            Pair q = randPair(1, batch, nq, heads * dqk), k = randPair(1, batch, nk, heads * dqk), v = randPair(1, batch, nk, heads * dv);
            Pair pad = padPair(keyPad(batch, nk, padMode), batch, nk);
            Pair out = emptyPair(DType.F32, batch, nq, heads * dv), lse = emptyPair(DType.F32, batch, heads, nq);
            gpu.attention(s, q.g(), k.g(), v.g(), g(pad), out.g(), lse.g());
            ref.attention(s, q.r(), k.r(), v.r(), r(pad), out.r(), lse.r());
            Pair dOut = randPair(1, batch, nq, heads * dv);
            Pair dQ = randPair(1, batch, nq, heads * dqk), dK = randPair(1, batch, nk, heads * dqk), dV = randPair(1, batch, nk, heads * dv);
            gpu.attentionBackward(s, q.g(), k.g(), v.g(), g(pad), out.g(), lse.g(), dOut.g(), dQ.g(), dK.g(), dV.g());
            ref.attentionBackward(s, q.r(), k.r(), v.r(), r(pad), out.r(), lse.r(), dOut.r(), dQ.r(), dK.r(), dV.r());
            double added = Math.max(err(dQ), Math.max(err(dK), err(dV)));
            Pair zQ = emptyPair(DType.F32, batch, nq, heads * dqk), zK = emptyPair(DType.F32, batch, nk, heads * dqk);
            Pair zV = emptyPair(DType.F32, batch, nk, heads * dv);
            gpu.attentionBackward(s, q.g(), k.g(), v.g(), g(pad), out.g(), lse.g(), dOut.g(), zQ.g(), zK.g(), zV.g());
            ref.attentionBackward(s, q.r(), k.r(), v.r(), r(pad), out.r(), lse.r(), dOut.r(), zQ.r(), zK.r(), zV.r());
            return Math.max(added, Math.max(err(zQ), Math.max(err(zK), err(zV))));
        }));
    }

    private void attentions(List<Check> c) {
        // The Perceiver IO shapes, then odd ones; causal right-aligned (Nq < Nk), padding, dropout.
        attentionCase(c, 2, 1, 16, 45, 32, 160, false, 1, 0f);       // encoder cross-attention (Dqk 32 / Dv 160)
        attentionCase(c, 2, 8, 16, 16, 32, 96, false, 0, 0f);        // latent self-attention (Dqk 32 / Dv 96)
        attentionCase(c, 2, 4, 37, 37, 64, 64, true, 0, 0f);
        attentionCase(c, 2, 4, 13, 50, 16, 16, true, 1, 0f);         // Perceiver AR cross-attention: latents over prefix + latents
        attentionCase(c, 3, 2, 33, 71, 7, 13, false, 2, 0.1f);
        attentionCase(c, 3, 3, 20, 29, 5, 11, true, 2, 0.2f);
        attentionCase(c, 2, 3, 40, 40, 16, 16, true, 1, 0.5f);
        attentionCase(c, 1, 2, 130, 300, 32, 160, true, 1, 0.1f);    // several tiles on both sides
        attentionCase(c, 1, 1, 20, 33, 256, 256, false, 1, 0f);      // the largest head dims: > 48 KiB shared memory
        attentionCase(c, 1, 1, 1, 1, 1, 1, true, 0, 0f);
        // One query row with many keys: the split-key decode kernels (cached generation), incl. a fully padded row.
        attentionForward(c, 1, 8, 1, 4096, 64, 64, true, 1, 0f, FP32, " (split-key decode)");
        attentionForward(c, 3, 2, 1, 517, 7, 13, false, 2, 0f, FP32, " (split-key decode)");
        attentionBackward(c, 3, 2, 1, 517, 7, 13, false, 2, 0f, FP32, " (lse from the split-key decode)");
        attentionForward(c, 1, 1, 1, 64, 256, 256, false, 0, 0f, FP32, " (split-key decode)");
        c.add(new Check("attention: one query over 64+ keys takes the split-key decode kernels", 0, () ->
                CudaBackend.decodeAttention(attentionShape(1, 8, 1, 4096, 64, 64, true, 0f))
                        && CudaBackend.decodeAttention(attentionShape(1, 1, 1, 64, 256, 256, false, 0f))
                        && !CudaBackend.decodeAttention(attentionShape(1, 8, 1, 4096, 64, 64, true, 0.1f)) ? 0 : 1));
        // The dropout mask itself: with v = I (Dv = Nk) out[i, j] is the dropped probability P_ij·M_ij.
        for (boolean causal : new boolean[] {false, true}) {
            int batch = 2, heads = 3, nq = 19, nk = 37, dqk = 8;
            c.add(new Check("attention dropout 0.3 mask exact (v = I, B2 H3 Nq19 Nk37" + (causal ? " causal" : "") + ")", FP32, () -> {
                AttentionShape s = new AttentionShape(batch, heads, nq, nk, dqk, nk, 0.35f, causal, 0.3f, 0xABCDEF0123L, 42L);
                Pair q = randPair(1, batch, nq, heads * dqk), k = randPair(1, batch, nk, heads * dqk);
                Pair v = both(perHeadIdentity(batch, nk, heads), batch, nk, heads * nk);
                Pair out = emptyPair(DType.F32, batch, nq, heads * nk), lse = emptyPair(DType.F32, batch, heads, nq);
                gpu.attention(s, q.g(), k.g(), v.g(), null, out.g(), lse.g());
                ref.attention(s, q.r(), k.r(), v.r(), null, out.r(), lse.r());
                return Math.max(maskedErr(out), err(lse));
            }));
        }
    }

    // ---- CUDA-specific: allocator reuse, device-side input errors ------------------------------

    private void cudaSpecific(List<Check> c, CudaBackend cuda) {
        c.add(new Check("allocator: a repeated step gets the same addresses", 0, () -> {
            long[] first = null;
            for (int step = 0; step < 3; step++) {
                long[] addr = new long[4];
                try (Scope s = Scope.open()) {
                    Tensor[] t = {cuda.empty(Shape.of(1000), DType.F32), cuda.empty(Shape.of(3, 77), DType.F32),
                                  cuda.zeros(Shape.of(5000), DType.BF16), cuda.empty(Shape.of(1000), DType.F32)};
                    for (int i = 0; i < 4; i++) addr[i] = ((DeviceBuffer) t[i].data()).address();
                    if (s.buffersHeld() != 4) return 1;
                }
                if (first == null) first = addr;
                else if (!Arrays.equals(first, addr)) return 1;
            }
            return 0;
        }));
        c.add(new Check("scatterRows: a bad row index is reported at the next synchronisation", 0, () -> {
            Tensor dst = cuda.zeros(Shape.of(4, 3), DType.F32), src = cuda.zeros(Shape.of(2, 3), DType.F32);
            cuda.scatterRows(src, cuda.fromInts(new int[] {1, 4}, Shape.of(2)), dst);
            try {
                cuda.synchronize();
                return 1;
            } catch (IllegalArgumentException e) {
                return e.getMessage().contains("row index 4 at position 1") ? 0 : 1;
            }
        }));
        c.add(new Check("CUDA graph: a replay reruns the recorded ops on updated inputs", 0, () -> {
            // y = relu(x·w) + x, x read from a tensor the host rewrites between replays.
            Tensor x = cuda.persistentZeros(Shape.of(3, 8), DType.F32), w = cuda.fromFloats(randn(64, 1), Shape.of(8, 8));
            Tensor y = cuda.persistentZeros(Shape.of(3, 8), DType.F32);
            try (dev.perceiver4j.backend.Recording g = cuda.record(() -> {
                Tensor h = cuda.empty(Shape.of(3, 8), DType.F32), pre = cuda.empty(Shape.of(3, 8), DType.F32);
                cuda.matmul(x, false, w, false, null, Activation.RELU, h, pre);
                cuda.add(h, x, y);
            })) {
                if (g == null || g.ops() < 2) return 1;
                double worst = 0;
                for (int rep = 0; rep < 3; rep++) {
                    float[] xv = randn(24, 1);
                    cuda.copy(cuda.fromFloats(xv, Shape.of(3, 8)), x);
                    g.replay();
                    Tensor rx = ref.fromFloats(xv, Shape.of(3, 8)), rh = ref.empty(Shape.of(3, 8), DType.F32), ry = ref.empty(Shape.of(3, 8), DType.F32);
                    ref.matmul(rx, false, ref.fromFloats(cuda.toFloatArray(w), Shape.of(8, 8)), false, null, Activation.RELU, rh,
                            ref.empty(Shape.of(3, 8), DType.F32));
                    ref.add(rh, rx, ry);
                    worst = Math.max(worst, err(cuda.toFloatArray(y), ref.toFloatArray(ry)));
                }
                return worst <= 1e-5 ? 0 : worst;
            }
        }));
        c.add(new Check("CUDA graph: one dropped without close() is released by the garbage collector", 0, () -> {
            int before = CudaGraph.live();
            Tensor t = cuda.persistentZeros(Shape.of(4), DType.F32);
            cuda.record(() -> cuda.fill(t, 2f)).replay();   // never closed
            if (CudaGraph.live() != before + 1) return 1;
            for (int i = 0; i < 50 && CudaGraph.live() > before; i++) {
                System.gc();
                java.util.concurrent.locks.LockSupport.parkNanos(20_000_000L);
            }
            return CudaGraph.live() == before && cuda.toFloatArray(t)[3] == 2f ? 0 : 1;
        }));
        c.add(new Check("CUDA graph: a body that reads back is refused with a clear error", 0, () -> {
            Tensor t = cuda.persistentZeros(Shape.of(4), DType.F32);
            try {
                cuda.record(() -> cuda.toFloatArray(t)).close();
                return 1;
            } catch (IllegalStateException e) {
                // and the stream works normally afterwards
                return e.getMessage().contains("recording a CUDA graph failed") && cuda.toFloatArray(t).length == 4 ? 0 : 1;
            }
        }));
        c.add(new Check("embedding: a bad id is reported at the next synchronisation", 0, () -> {
            Tensor table = cuda.fromFloats(new float[12], Shape.of(4, 3));
            Tensor ids = cuda.fromInts(new int[] {1, 7, 2}, Shape.of(3));
            Tensor out = cuda.empty(Shape.of(3, 3), DType.F32);
            cuda.embedding(table, ids, out);
            try {
                cuda.synchronize();
                return 1;
            } catch (IllegalArgumentException e) {
                return e.getMessage().contains("token id 7 at position 1") ? 0 : 1;
            }
        }));
    }
}
