package dev.perceiver4j.cuda;

import dev.perceiver4j.cuda.ffm.CublasLt;
import dev.perceiver4j.cuda.ffm.CudaException;
import dev.perceiver4j.cuda.ffm.Driver;
import dev.perceiver4j.cuda.ffm.NativeLibraries;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.Map;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Row-major fp32 matrix products on cuBLASLt.
 *
 * <p>cuBLASLt is column-major. A row-major matrix R [r, c] is, byte for byte, the column-major
 * matrix Rᵀ [c, r] with leading dimension c. So the row-major product C[m,n] = op(X)·op(Y) is
 * computed as the column-major Cᵀ[n,m] = op(Y)ᵀ·op(X)ᵀ: cuBLASLt's A is Y, its B is X, and its
 * (m, n, k) are our (n, m, k). A layout describes the matrix as stored (before its op):
 * <pre>
 *   cuBLASLt A = Y:  transY ? k×n (ld k), op T : n×k (ld n), op N      (Y stored [n,k] / [k,n] row-major)
 *   cuBLASLt B = X:  transX ? m×k (ld m), op T : k×m (ld k), op N      (X stored [k,m] / [m,k] row-major)
 *   C = D:           n×m (ld n)                                          (C stored [m,n] row-major)
 * </pre>
 * The BIAS epilogue adds a vector with one entry per row of D, i.e. per column of our row-major C:
 * exactly {@code C[i, j] += bias[j]}.
 *
 * <p>Plans (descriptor, layouts, the heuristic's algorithm) are cached per shape, transposes,
 * batch strides and operand alignment. Compute type ({@link MatmulPrecision}): exact fp32
 * ({@code CUBLAS_COMPUTE_32F}), TF32 ({@code CUBLAS_COMPUTE_32F_FAST_TF32}), or BF16: operands
 * stored as bf16 (F's shared activation copies, see {@code Backend.matmulOperandType}) are read as
 * they are, fp32 ones are first rounded to bf16 copies (one cast kernel each, into buffers from the
 * caching allocator, freed right after in stream order), and the product runs on tensor cores
 * with fp32 accumulation into the fp32 C ({@code CUBLAS_COMPUTE_32F} with bf16 A/B layouts); the
 * bias epilogue stays fp32. A bf16 operand makes the product bf16 in any mode.
 */
final class Gemm {
    static final long WORKSPACE_BYTES = 32L << 20;

    private record Key(boolean tx, boolean ty, int m, int n, int k, int batch, long sX, long sY, long sC,
                       boolean bias, boolean accumulate, boolean bf16, boolean out16, int alignX, int alignY, int alignC, int alignBias) {}

    /**
     * A product's descriptor and layouts, the heuristic's candidates (count results of
     * {@link CublasLt#HEURISTIC_RESULT_BYTES}, runnable ones only, best estimate first) and the
     * algorithm chosen among them (null until {@link #choose} has run).
     */
    private record Plan(MemorySegment desc, MemorySegment aLayout, MemorySegment bLayout, MemorySegment cLayout, MemorySegment candidates,
                        int count, MemorySegment algo) {
        MemorySegment candidate(int i) {
            return candidates.asSlice(i * CublasLt.HEURISTIC_RESULT_BYTES, CublasLt.HEURISTIC_ALGO_BYTES);
        }

        Plan choosing(int i) {
            return new Plan(desc, aLayout, bLayout, cLayout, candidates, count, candidate(i));
        }
    }

    private final CudaContext context;
    private final MatmulPrecision precision;
    private final DeviceAllocator allocator;
    private final Kernels kernels;
    private final MemorySegment handle;
    private final DeviceBuffer workspace;
    private final Arena arena = Arena.ofAuto();
    private final MemorySegment one, zero;
    private final Map<Key, Plan> plans = new HashMap<>();
    private final GemmTuning tuning;
    private MemorySegment tuneStart, tuneEnd;   // timed events, made at the first tuning

    Gemm(CudaContext context, DeviceAllocator allocator, Kernels kernels, MatmulPrecision precision) {
        this.context = context;
        this.precision = precision;
        this.allocator = allocator;
        this.kernels = kernels;
        context.makeCurrent();
        NativeLibraries.cublasLt(); // a clear error when libcublasLt is missing
        this.handle = CublasLt.create();
        this.workspace = allocator.allocate(WORKSPACE_BYTES);
        this.tuning = GemmTuning.ON ? GemmTuning.forDevice(context.deviceName(), CublasLt.version()) : GemmTuning.in(null);
        this.one = arena.allocate(JAVA_FLOAT);
        one.set(JAVA_FLOAT, 0, 1f);
        this.zero = arena.allocate(JAVA_FLOAT);
        zero.set(JAVA_FLOAT, 0, 0f);
    }

    MatmulPrecision precision() {
        return precision;
    }

    /** Elements a batch of matrices of {@code size} elements each, {@code stride} apart, covers (gaps included). */
    private static long span(int batch, long stride, long size) {
        return (batch > 1 ? (batch - 1) * stride : 0) + size;
    }

    /** Largest power of two (≤ 256) dividing every address the operand takes over the batch. */
    private static int alignment(long address, long strideElements, int elementBytes) {
        long a = Long.lowestOneBit(address | (strideElements * elementBytes) | 256);
        return (int) Math.min(256, a);
    }

    /**
     * Rows or columns of C at or below which a product runs on fp32 operands even in the bf16 mode
     * (TF32): such a skinny product (one decoding position, a few rows) is bound by reading the
     * other operand, which rounding to bf16 first would read and write once more.
     */
    static final int SKINNY = 32;

    /**
     * C[m,n] = op(X)·op(Y) (+ bias[n]) (+ C when accumulate), all row-major with tight leading
     * dimensions, C fp32, for {@code batch} entries at element strides sX, sY, sC (each > 0 when
     * batch > 1). X: [m,k] ([k,m] if tx); Y: [k,n] ([n,k] if ty); bias: device address or 0.
     * xBf16 / yBf16: the operand is stored as bf16 already. The product runs in bf16 when the
     * precision is BF16 or an operand is bf16, an fp32 operand then rounded into a temporary
     * copy; except a {@link #SKINNY} one, which widens a bf16 operand instead and runs in TF32
     * (FP32 in that precision).
     */
    synchronized void run(boolean tx, long x, boolean xBf16, boolean ty, long y, boolean yBf16, long c, int m, int n, int k,
                          boolean accumulate, int batch, long sX, long sY, long sC, long bias) {
        run(tx, x, xBf16, ty, y, yBf16, c, c, m, n, k, accumulate, batch, sX, sY, sC, bias);
    }

    /** {@link #run} with the added C read from {@code cIn} (same layout as c) when {@code accumulate}: c = op(X)·op(Y) (+ bias) + cIn. */
    synchronized void run(boolean tx, long x, boolean xBf16, boolean ty, long y, boolean yBf16, long c, long cIn, int m, int n, int k,
                          boolean accumulate, int batch, long sX, long sY, long sC, long bias) {
        execute(tx, x, xBf16, ty, y, yBf16, c, false, cIn, m, n, k, accumulate, batch, sX, sY, sC, bias, false);
    }

    /**
     * {@link #run} with the result stored as bf16 at {@code d16} (element strides sD), rounded to
     * nearest even from the fp32 accumulator plus bias; a bf16 product adds the bias rounded to bf16
     * (cuBLASLt takes it in the result's type; {@code bias16}: it is stored so already).
     * A bf16 product writes it from its epilogue; a {@link #SKINNY} one (TF32 on fp32 operands,
     * which cuBLASLt cannot write as bf16) goes through an fp32 temporary and one rounding kernel.
     */
    synchronized void runToBf16(boolean tx, long x, boolean xBf16, boolean ty, long y, boolean yBf16, long d16, int m, int n, int k,
                                int batch, long sX, long sY, long sD, long bias, boolean bias16) {
        if (bias16 && !bf16Product(xBf16, yBf16, m, n)) {
            throw new IllegalArgumentException("Gemm: a bf16 bias needs a bf16 product");
        }
        execute(tx, x, xBf16, ty, y, yBf16, d16, true, d16, m, n, k, false, batch, sX, sY, sD, bias, bias16);
    }

    /** Whether a product runs on bf16 tensor cores: the bf16 mode or a bf16 operand, unless it is {@link #SKINNY}. */
    private boolean bf16Product(boolean xBf16, boolean yBf16, int m, int n) {
        return (precision == MatmulPrecision.BF16 || xBf16 || yBf16) && Math.min(m, n) > SKINNY;
    }

    /** bias16: the bias is stored as bf16 already (a bf16 result's only). */
    private void execute(boolean tx, long x, boolean xBf16, boolean ty, long y, boolean yBf16, long c, boolean out16, long cIn, int m, int n,
                         int k, boolean accumulate, int batch, long sX, long sY, long sC, long bias, boolean bias16) {
        if (m == 0 || n == 0) return;
        if (batch > 1 && (sX == 0 || sY == 0 || sC == 0)) throw new IllegalArgumentException("Gemm.run: zero batch stride (loop instead)");
        if (out16 && accumulate) throw new IllegalArgumentException("Gemm: a bf16 result cannot accumulate");
        context.makeCurrent();
        boolean bf16 = bf16Product(xBf16, yBf16, m, n);
        if (out16 && !bf16) {   // TF32 / fp32 products write fp32 only: into a temporary, then rounded
            long span = span(batch, sC, (long) m * n);
            DeviceBuffer t = allocator.allocate(4L * span);
            execute(tx, x, xBf16, ty, y, yBf16, t.address(), false, t.address(), m, n, k, false, batch, sX, sY, sC, bias, false);
            convertInto(t.address(), c, Math.toIntExact(span), true);
            allocator.free(t);   // safe: later work on the stream runs after the rounding
            return;
        }
        // temporary copies of the spans the operands cover (the batch's matrices and any gaps between them):
        // fp32 operands rounded for a bf16 product, bf16 operands widened for an fp32 one
        long xSpan = span(batch, sX, (long) m * k), ySpan = span(batch, sY, (long) k * n);
        DeviceBuffer bx = bf16 != xBf16 ? convert(x, xSpan, bf16) : null;
        DeviceBuffer by = bf16 != yBf16 ? convert(y, ySpan, bf16) : null;
        long xa = bx != null ? bx.address() : x, ya = by != null ? by.address() : y;
        int ab = bf16 ? 2 : 4; // bytes per A/B element
        // strides matter only for a batch: one key (one plan, one tuning) per unbatched shape
        long kX = batch > 1 ? sX : 0, kY = batch > 1 ? sY : 0, kC = batch > 1 ? sC : 0;
        Key key = new Key(tx, ty, m, n, k, batch, kX, kY, kC, bias != 0, accumulate, bf16, out16,
                alignment(xa, kX, ab), alignment(ya, kY, ab), alignment(c | cIn, kC, out16 ? 2 : 4), bias == 0 ? 0 : alignment(bias, 0, bias16 ? 2 : 4));
        Plan p = plans.get(key);
        if (p == null) {
            p = plan(key, bias);
            plans.put(key, p);
        }
        // cuBLASLt takes the bias of a bf16 result as bf16 (its type must be the result's): an fp32 one is rounded per call
        DeviceBuffer rounded = out16 && bias != 0 && !bias16 ? convert(bias, n, true) : null;
        if (bias != 0) CublasLt.matmulDescSetLong(p.desc(), CublasLt.MATMUL_DESC_BIAS_POINTER, rounded != null ? rounded.address() : bias);
        if (p.algo() == null) {
            p = choose(key, p, xa, ya, c, cIn, accumulate, out16);
            plans.put(key, p);
        }
        run(p, p.algo(), xa, ya, accumulate, cIn, c, key);
        // safe: later work on the stream runs after the product
        if (bx != null) allocator.free(bx);
        if (by != null) allocator.free(by);
        if (rounded != null) allocator.free(rounded);
    }

    /** {@code elements} values at {@code address} rounded to bf16 ({@code toBf16}) or widened from bf16 to fp32; the caller frees it. */
    private DeviceBuffer convert(long address, long elements, boolean toBf16) {
        if (elements > Integer.MAX_VALUE) throw new IllegalArgumentException("matmul operand of " + elements + " elements is too large");
        DeviceBuffer b = allocator.allocate((toBf16 ? 2 : 4) * elements);
        convertInto(address, b.address(), (int) elements, toBf16);
        return b;
    }

    /** Writes {@code elements} values at {@code src} rounded to bf16 ({@code toBf16}, 4 per thread) or widened to fp32 at {@code dst}. */
    void convertInto(long src, long dst, int elements, boolean toBf16) {
        kernels.launch(toBf16 ? "p4j_f32_to_bf16" : "p4j_bf16_to_f32")
                .grid(toBf16 ? Kernels.quadBlocks(elements, 256) : Kernels.blocks(elements, 256)).block(256)
                .ptr(src).ptr(dst).i32(elements).go();
    }

    /** A bf16 copy (rounded to nearest even) of {@code elements} fp32 values at {@code address}; the caller frees it. */
    DeviceBuffer toBf16(long address, long elements) {
        return convert(address, elements, true);
    }

    /** An fp32 copy (exact) of {@code elements} bf16 values at {@code address}; the caller frees it. */
    DeviceBuffer toF32(long address, long elements) {
        return convert(address, elements, false);
    }

    /** The descriptor, layouts and algorithm for one key (a bf16 result's bias is bf16: cuBLASLt wants the result's type). */
    private Plan plan(Key key, long bias) {
        int m = key.m(), n = key.n(), k = key.k();
        // fp32 operands: TF32 tensor cores unless the precision is exact FP32 (the bf16 mode's skinny products too)
        MemorySegment desc = CublasLt.matmulDescCreate(!key.bf16() && precision != MatmulPrecision.FP32 ? CublasLt.CUBLAS_COMPUTE_32F_FAST_TF32
                : CublasLt.CUBLAS_COMPUTE_32F, CublasLt.CUDA_R_32F);
        int ab = key.bf16() ? CublasLt.CUDA_R_16BF : CublasLt.CUDA_R_32F; // A and B
        CublasLt.matmulDescSetInt(desc, CublasLt.MATMUL_DESC_TRANSA, key.ty() ? CublasLt.CUBLAS_OP_T : CublasLt.CUBLAS_OP_N);
        CublasLt.matmulDescSetInt(desc, CublasLt.MATMUL_DESC_TRANSB, key.tx() ? CublasLt.CUBLAS_OP_T : CublasLt.CUBLAS_OP_N);
        CublasLt.matmulDescSetInt(desc, CublasLt.MATMUL_DESC_EPILOGUE, key.bias() ? CublasLt.EPILOGUE_BIAS : CublasLt.EPILOGUE_DEFAULT);
        if (key.bias()) CublasLt.matmulDescSetLong(desc, CublasLt.MATMUL_DESC_BIAS_POINTER, bias);
        MemorySegment aL = key.ty() ? CublasLt.matrixLayoutCreate(ab, k, n, k) : CublasLt.matrixLayoutCreate(ab, n, k, n);
        MemorySegment bL = key.tx() ? CublasLt.matrixLayoutCreate(ab, m, k, m) : CublasLt.matrixLayoutCreate(ab, k, m, k);
        MemorySegment cL = CublasLt.matrixLayoutCreate(key.out16() ? CublasLt.CUDA_R_16BF : CublasLt.CUDA_R_32F, n, m, n);
        if (key.batch() > 1) {
            CublasLt.matrixLayoutSetBatch(aL, key.batch(), key.sY());
            CublasLt.matrixLayoutSetBatch(bL, key.batch(), key.sX());
            CublasLt.matrixLayoutSetBatch(cL, key.batch(), key.sC());
        }
        MemorySegment pref = CublasLt.preferenceCreate(WORKSPACE_BYTES, key.alignY(), key.alignX(), key.alignC(), key.alignC());
        try {
            int asked = GemmTuning.ON ? tuning.candidates() : 1;
            MemorySegment results = arena.allocate(asked * CublasLt.HEURISTIC_RESULT_BYTES, 8);
            int found = CublasLt.algoGetHeuristics(handle, desc, aL, bL, cL, cL, pref, asked, results);
            // keep the runnable candidates within the workspace, in the heuristic's order
            int count = 0;
            for (int i = 0; i < found; i++) {
                MemorySegment r = results.asSlice(i * CublasLt.HEURISTIC_RESULT_BYTES, CublasLt.HEURISTIC_RESULT_BYTES);
                if (r.get(JAVA_INT, CublasLt.HEURISTIC_STATE_OFFSET) != 0 || r.get(JAVA_LONG, CublasLt.HEURISTIC_WORKSPACE_OFFSET) > WORKSPACE_BYTES) continue;
                if (count != i) MemorySegment.copy(r, 0, results, count * CublasLt.HEURISTIC_RESULT_BYTES, CublasLt.HEURISTIC_RESULT_BYTES);
                count++;
            }
            if (count == 0) throw new CudaException("cuBLASLt found no algorithm within " + (WORKSPACE_BYTES >> 20) + " MiB of workspace for " + describe(key));
            Plan p = new Plan(desc, aL, bL, cL, results, count, null);
            return count == 1 ? p.choosing(0) : p;
        } finally {
            CublasLt.preferenceDestroy(pref);
        }
    }

    /**
     * The plan with its algorithm chosen ({@link GemmTuning}): the choice kept for this product if
     * there is one, else the fastest candidate on this call's operands. The candidates write the
     * call's own output (which the real product then overwrites) unless the product adds C in place,
     * when they write a scratch buffer. During a graph recording nothing can be timed: the heuristic's
     * first is used and not remembered (the recorded step's op-by-op first run decides before that).
     * Products below {@link GemmTuning#MIN_TUNED_FLOPS} always take the heuristic's first.
     */
    private Plan choose(Key key, Plan p, long xa, long ya, long c, long cIn, boolean accumulate, boolean out16) {
        if (!GemmTuning.worthTiming(2L * key.m() * key.n() * key.k() * key.batch())) return p.choosing(0);
        String id = precision.label() + " " + key;
        int known = tuning.choice(id);
        if (known >= 0 && known < p.count()) return p.choosing(known);
        if (allocator.recording()) return p.choosing(0);
        long start = System.nanoTime();
        if (tuneStart == null) {
            tuneStart = Driver.eventCreateTimed();
            tuneEnd = Driver.eventCreateTimed();
        }
        long span = span(key.batch(), key.sC(), (long) key.m() * key.n());
        DeviceBuffer scratch = accumulate && cIn == c ? allocator.allocate(span * (out16 ? 2 : 4)) : null;
        long d = scratch != null ? scratch.address() : c;
        double[] ms = new double[p.count()];
        for (int i = 0; i < p.count(); i++) {
            MemorySegment algo = p.candidate(i);
            try {
                run(p, algo, xa, ya, accumulate, cIn, d, key);   // warm-up (and: does it run at all)
                Driver.eventRecord(tuneStart, context.stream());
                for (int r = 0; r < TUNE_RUNS; r++) run(p, algo, xa, ya, accumulate, cIn, d, key);
                Driver.eventRecord(tuneEnd, context.stream());
                Driver.eventSynchronize(tuneEnd);
                ms[i] = Driver.eventElapsedMs(tuneStart, tuneEnd) / TUNE_RUNS;
            } catch (CudaException e) {
                ms[i] = Double.NaN;   // cuBLASLt refused this candidate for these operands: not a choice
            }
        }
        if (scratch != null) allocator.free(scratch);
        int best = GemmTuning.pick(ms);
        tuning.remember(id, best, (System.nanoTime() - start) / 1e6);
        return p.choosing(best);
    }

    /** Product timings averaged over this many runs per candidate (after one warm-up run). */
    private static final int TUNE_RUNS = 3;

    private void run(Plan p, MemorySegment algo, long xa, long ya, boolean accumulate, long cIn, long d, Key key) {
        CublasLt.matmul(handle, p.desc(), one, ya, p.aLayout(), xa, p.bLayout(), accumulate ? one : zero, cIn, p.cLayout(), d, p.cLayout(),
                algo, workspace.address(), WORKSPACE_BYTES, context.stream(), () -> describe(key));
    }

    /** What the tuning did in this process ({@link GemmTuning#summary}). */
    String tuningSummary() {
        return GemmTuning.ON ? tuning.summary() : "matrix-product tuning: off (-Dperceiver4j.cuda.gemm.tune=false)";
    }

    private String describe(Key key) {
        return (key.batch() > 1 ? key.batch() + "×" : "") + "[" + key.m() + "," + key.n() + "] = " + (key.tx() ? "Xᵀ" : "X") + "·"
                + (key.ty() ? "Yᵀ" : "Y") + " (k " + key.k() + (key.bias() ? ", +bias" : "") + (key.accumulate() ? ", +C" : "")
                + ", " + (key.bf16() ? "bf16" : precision == MatmulPrecision.FP32 ? precision.label() : "tf32") + (key.out16() ? ", bf16 out" : "") + ")";
    }
}
