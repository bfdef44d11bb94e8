package dev.perceiver4j.cuda;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.MatmulShape;
import dev.perceiver4j.backend.AxisSlab;
import dev.perceiver4j.backend.Recording;
import dev.perceiver4j.backend.RowScatter;
import dev.perceiver4j.cuda.ffm.Driver;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The CUDA backend: tensors live in device memory ({@code Tensor.data()} is a {@link DeviceBuffer},
 * {@code Tensor.offset()} counts elements into it), kernels are the project's CUDA C
 * ({@link Kernels}, resources/cuda/kernels.cu) and matrix products go through cuBLASLt ({@link Gemm}).
 * Everything is queued on one stream ({@link CudaContext}); the host waits only where a value
 * comes back (toFloatArray, item, synchronize): losses and gradient norms stay on the device, and
 * uploads are queued from page-locked memory ({@link HostStaging}).
 *
 * <p>Memory: {@link DeviceAllocator} (size classes, per-step reuse through {@link Scope}, the same
 * addresses step after step). Buffers allocated inside a Scope go back on its close; the rest
 * (fromFloats, persistentZeros, tensors made outside a scope) when the GC finds them unreachable.
 *
 * <p>Precision: matrix products follow {@link MatmulPrecision}
 * ({@code -Dperceiver4j.cuda.precision=fp32|tf32|bf16}, default exact fp32): TF32 or bf16 tensor
 * cores with fp32 accumulation. Storage is fp32 except, in the bf16 mode, the activations F hands
 * products as operands ({@link #matmulOperandType()}: layer-norm outputs, MLP hidden states and
 * shared rounded copies, all BF16); products with at most {@code Gemm.SKINNY} rows or columns run
 * in TF32 there, on F32 operands ({@link #matmulOperandType(long)} answers F32 for them, so nothing
 * is rounded only to be widened again). Attention runs its products on tensor cores in the TF32 and
 * bf16 modes, forward and backward, at the head dims that have a kernel: TF32 mma.sync (Dqk×Dv 8×8,
 * 16×16, 32×32, 64×64, 32×96, 32×160) or, in the bf16 mode, bf16 mma.sync (16×16, 32×32, 64×64,
 * 32×96, 32×160); softmax and accumulation in fp32.
 * GELU is the exact erf form in our own epilogue kernel:
 * cuBLASLt's GELU epilogues use the tanh approximation, so they are not used.
 *
 * <p>Bad input found on the device (token id or target outside the vocabulary, an I64 value
 * outside int range) is recorded in a status word and thrown as IllegalArgumentException at the
 * next synchronisation point ({@link #synchronize()}, toFloatArray, item).
 *
 * <p>Dropout (plain and on attention probabilities) draws the CPU backend's mask exactly:
 * Philox4x32-10 at (seed, stream, element index), see {@link dev.perceiver4j.random.Philox}.
 * Attention is flash-style (tiled, online softmax, backward recomputed from the saved lse);
 * head dims up to {@value #MAX_HEAD_DIM}. See package-info for what is not implemented.
 */
public final class CudaBackend implements Backend {
    private static final int THREADS = 256;
    /** Rows per chunk in the two-stage (deterministic) column sums (more when the chunks would exceed gridDim.y). */
    private static final int ROWS_PER_CHUNK = 64;
    /** Column threads of 4 columns each per block of the 4-column sums (COL_QUADS in kernels.cu): 64 columns a block. */
    private static final int COL_QUADS = 16;
    /** Largest Dqk / Dv the attention kernels take (32 lanes × ATT_MAXC channels in kernels.cu). */
    public static final int MAX_HEAD_DIM = 256;
    /** Rows (queries or keys) per attention block and columns per shared-memory tile (ATT_ROWS, ATT_TILE). */
    private static final int ATT_ROWS = 16, ATT_TILE = 32, ATT_THREADS = 128;
    /** (Dqk, Dv) pairs with a tensor-core (TF32) forward kernel, p4j_attention_forward_tc_&lt;Dqk&gt;_&lt;Dv&gt; in kernels.cu. */
    private static final java.util.Set<Long> TC_SHAPES = java.util.Set.of(tcKey(8, 8), tcKey(16, 16), tcKey(32, 32), tcKey(64, 64),
            tcKey(32, 96), tcKey(32, 160));
    /** Query rows per block, keys per tile and warps of the tensor-core forward (TC_ROWS, TC_KEYS, TC_WARPS). */
    private static final int TC_ROWS = 64, TC_KEYS = 32, TC_WARPS = 4;
    /** Largest float4s per lane and rows (warps) per block of the warp-per-row layer norm (LN_VECS, LN_WARPS in kernels.cu). */
    private static final int LN_VECS = 12, LN_WARPS = 8;
    /** Tokens per chunk of the embedding backward's counting sort (EMB_CHUNK in kernels.cu). */
    private static final int EMB_CHUNK = 1024;
    /** Off with -Dperceiver4j.cuda.graphs=false: {@link #record} returns null and callers run their ops one by one. */
    private static final boolean GRAPHS = !"false".equals(System.getProperty("perceiver4j.cuda.graphs"));
    /** Warps per block, keys per block (at least) and most blocks per (batch, head) of the split-key decode attention (DEC_WARPS, DEC_MAX_SPLITS in kernels.cu). */
    private static final int DEC_WARPS = 4, DEC_KEYS = 32, DEC_MAX_SPLITS = 256;
    /** Off with -Dperceiver4j.cuda.decodeAttention=false: one-query attention then uses the tiled kernels. */
    private static final boolean DECODE_ATTENTION = !"false".equals(System.getProperty("perceiver4j.cuda.decodeAttention"));
    /** Off with -Dperceiver4j.cuda.tcAttention=false: TF32 mode then keeps the fp32 attention kernels. */
    private static final boolean TC_ATTENTION = !"false".equals(System.getProperty("perceiver4j.cuda.tcAttention"));
    /** (Dqk, Dv) pairs with bf16 tensor-core attention kernels, p4j_attention_{forward,backward_dq,backward_dkdv}_bf16_&lt;Dqk&gt;_&lt;Dv&gt; in kernels.cu. */
    private static final java.util.Set<Long> BF16_SHAPES = java.util.Set.of(tcKey(16, 16), tcKey(32, 32), tcKey(64, 64),
            tcKey(32, 96), tcKey(32, 160));
    /** Off with -Dperceiver4j.cuda.bf16Attention=false: the bf16 mode's attention (forward and backward) then runs in TF32. */
    private static final boolean BF16_ATTENTION = !"false".equals(System.getProperty("perceiver4j.cuda.bf16Attention"));
    /** Off with -Dperceiver4j.cuda.keepBitsReuse=false: every bf16 attention backward then draws its dropout keep bits again. */
    private static final boolean KEEP_BITS_REUSE = !"false".equals(System.getProperty("perceiver4j.cuda.keepBitsReuse"));
    /** Most bytes of dropout keep bits held from forwards for their backwards (oldest dropped beyond). */
    private static final long KEEP_BITS_HELD = 256L << 20;
    /** Warps per block of the bf16 attention kernels, 16 rows each (the W of P4J_ATTENTION_BF16 in kernels.cu). */
    private static final int BF16_WARPS = 4;

    private final CudaContext context;
    private final DeviceAllocator allocator;
    private final Kernels kernels;
    private final Gemm gemm;
    private final DeviceBuffer status; // int[4]: code, position, value, limit
    /** Uploads queued in stream order from page-locked memory, so that they do not wait for the device. */
    private final HostStaging staging;
    private final long seedShiftAddress;   // of the kernels' p4j_seed_shift
    /**
     * Buffers with zeros asked for and not yet written ({@link #zeros}, a {@link #fill} with 0: their
     * DeviceBuffer.zeroPending()); weakly held, so that an unused one still goes back to the allocator
     * when unreachable (DeviceBuffer has identity equality).
     */
    private final java.util.Set<DeviceBuffer> pendingZeros = java.util.Collections.newSetFromMap(new java.util.WeakHashMap<>());
    /**
     * Column-sum tickets (unsigned int per block column, zero between launches): the kernels that sum
     * columns in chunks count their finished blocks here so the last one adds the chunks up
     * (kernels.cu, column_block_last) instead of a second kernel.
     */
    private final DeviceBuffer tickets;
    private static final int TICKETS = 4096;
    /** Zero fills issued by the host code (a recorded step counts once, when recorded), for memoryReport. */
    private long zeroFills, zeroFillBytes;

    /** {@code tf32}: TF32 matrix products, else exact fp32. */
    public CudaBackend(CudaContext context, boolean tf32) {
        this(context, tf32 ? MatmulPrecision.TF32 : MatmulPrecision.FP32);
    }

    public CudaBackend(CudaContext context, MatmulPrecision precision) {
        this.context = context;
        this.allocator = new DeviceAllocator(context);
        this.kernels = new Kernels(context);
        this.seedShiftAddress = kernels.global("p4j_seed_shift");
        kernels.afterLaunch(this::refreshUnlessHeld);
        this.gemm = new Gemm(context, allocator, kernels, precision);
        this.status = allocator.allocate(16);
        this.staging = new HostStaging(context);
        this.tickets = allocator.allocate(4L * TICKETS);
        Driver.memsetD32Async(tickets.address(), 0, TICKETS, context.stream());
        Driver.memsetD32Async(status.address(), 0, 4, context.stream());
    }

    /** Device 0; precision from {@code -Dperceiver4j.cuda.precision=fp32|tf32|bf16} (default fp32, see {@link MatmulPrecision}). */
    public static CudaBackend create() {
        return new CudaBackend(CudaContext.create(0), MatmulPrecision.fromSystemProperties());
    }

    public MatmulPrecision precision() {
        return gemm.precision();
    }

    public CudaContext context() {
        return context;
    }

    public DeviceAllocator allocator() {
        return allocator;
    }

    public Kernels kernels() {
        return kernels;
    }

    @Override
    public String name() {
        return "cuda (" + context + ", matmul " + gemm.precision().label() + ")";
    }

    @Override
    public String memoryReport() {
        String r = allocator.report();
        int nl = r.indexOf('\n');
        return (nl < 0 ? r : r.substring(0, nl)) + String.format("; zero fills issued %d (%.1f MiB)", zeroFills, zeroFillBytes / 1048576.0)
                + "\n" + gemm.tuningSummary();
    }

    /**
     * Captures the body's ops into a CUDA graph ({@link CudaGraph}); null when graphs are switched
     * off ({@code -Dperceiver4j.cuda.graphs=false}).
     *
     * @throws IllegalStateException when the body does what a graph cannot hold (host copies, waits)
     */
    @Override
    public Recording record(Runnable body) {
        if (!GRAPHS) return null;
        zeroPendingNow();   // zeros made before the recording stay zeros made once, not at every replay
        dropHeldKeepBits();   // bits drawn before the recording are not read in it
        // Pending zeros are host state that a replay does not see, so none cross a recording's edges: the
        // recording starts with none (above, and before each replay), and those its body leaves pending
        // (a gradient zeroed by fill(0) in the body that nothing wrote) are zeroed by the recording itself.
        // (The body's own scope closes first: the step's temporaries it frees take their pending zeros with them.)
        return CudaGraph.capture(context, allocator, this::setSeedShift, this::zeroPendingNow, () -> {
            try (Scope step = Scope.open()) {
                body.run();
            } finally {
                dropHeldKeepBits();   // still recording: the freed buffers stay the graph's (DeviceAllocator.Held)
            }
            zeroPendingNow();
        });
    }

    /**
     * Sets the kernels' {@code p4j_seed_shift} (added to every Philox seed) in stream order: two
     * 32-bit memsets, so nothing waits and no host memory is read later.
     */
    private void setSeedShift(long shift) {
        Driver.memsetD32Async(seedShiftAddress, (int) shift, 1, context.stream());
        Driver.memsetD32Async(seedShiftAddress + 4, (int) (shift >>> 32), 1, context.stream());
    }

    /** Waits for the stream and raises any bad input the kernels recorded. */
    @Override
    public void synchronize() {
        context.synchronize();
        staging.drained();
        int[] s = new int[4];
        Driver.memcpyDtoH(MemorySegment.ofArray(s), status.address(), 16);
        if (s[0] == 0) return;
        Driver.memsetD32Async(status.address(), 0, 4, context.stream());
        throw new IllegalArgumentException(switch (s[0]) {
            case 1 -> "embedding: token id " + s[2] + " at position " + s[1] + " is outside the vocabulary [0, " + s[3] + ")";
            case 2 -> "crossEntropy: target " + s[2] + " at row " + s[1] + " is outside [0, " + s[3] + ") and is not the ignore index";
            case 3 -> "cast I64 -> I32: the value at position " + s[1] + " does not fit in int32";
            case 4 -> "scatterRows: row index " + s[2] + " at position " + s[1] + " is outside [0, " + s[3] + ")";
            default -> "CUDA kernel reported status " + s[0] + " at position " + s[1];
        });
    }

    // ---- memory ------------------------------------------------------------------------------

    private static long bytes(Shape shape, DType dtype) {
        return shape.numel() * dtype.bytes();
    }

    private Tensor allocate(Shape shape, DType dtype, boolean tracked) {
        context.makeCurrent();
        DeviceBuffer b = allocator.allocate(bytes(shape, dtype));
        if (tracked) Scope.track(this, b);
        return new Tensor(this, shape, dtype, b, 0);
    }

    @Override
    public Tensor empty(Shape shape, DType dtype) {
        return allocate(shape, dtype, true);
    }

    @Override
    public Tensor zeros(Shape shape, DType dtype) {
        Tensor t = empty(shape, dtype);
        // Lazily: most of these are gradients whose first writer can write instead of add (fresh()), which
        // saves the memset and the GEMM's read of the zeros; every other use zeroes first (ptr()).
        DeviceBuffer b = buffer(t);
        b.markZero(0, (b.requested[0] + 3) & ~3L);   // within the size class, a multiple of 512 bytes
        pendingZeros.add(b);
        return t;
    }

    /**
     * Zeroes every zero still pending (before and at the end of a recording, and before a replay). The set
     * may still name buffers freed while pending (the allocator dropped their ranges, and may have handed
     * the object out again for something else): those have none.
     */
    private void zeroPendingNow() {
        for (DeviceBuffer b : new ArrayList<>(pendingZeros)) clearRanges(b, b.takeAllZeros());
        pendingZeros.clear();
    }

    /** t's bytes in its buffer, [start, end). */
    private static long byteStart(Tensor t) {
        return (long) t.offset() * t.dtype().bytes();
    }

    private static long byteEnd(Tensor t) {
        return byteStart(t) + (long) t.size() * t.dtype().bytes();
    }

    @Override
    public Tensor persistentZeros(Shape shape, DType dtype) {
        Tensor t = allocate(shape, dtype, false);
        clear(buffer(t));
        return t;
    }

    /** Zeroes the bytes a buffer's holder asked for, as whole 32-bit words (the size class is a multiple of 512 bytes). */
    private void clear(DeviceBuffer b) {
        clearRange(b, 0, (b.requested[0] + 3) & ~3L);
    }

    /** Zeroes the ranges {start0, end0, start1, end1, ...} of b (DeviceBuffer.takeZeros), and drops b from the pending set when none are left. */
    private void clearRanges(DeviceBuffer b, long[] ranges) {
        for (int i = 0; i < ranges.length; i += 2) clearRange(b, ranges[i], ranges[i + 1]);
        if (!b.zeroPending()) pendingZeros.remove(b);
    }

    /** Zeroes bytes [start, end) of b, as 32-bit words (both multiples of 4). */
    private void clearRange(DeviceBuffer b, long start, long end) {
        long words = (end - start) / 4;
        if (words > 0) {
            Driver.memsetD32Async(b.address() + start, 0, words, context.stream());
            zeroFills++;
            zeroFillBytes += 4 * words;
            boolean recorded = allocator.recording();   // a fill in a recording runs at every replay
            if (TRACE_ZERO_FILLS && (words >= 1 << 18 || recorded)) {   // a developer's view of the large ones: which op asked
                System.err.println((recorded ? "recorded " : "") + "zero fill " + 4 * words + " bytes: " + StackWalker.getInstance().walk(f -> f.skip(1).limit(5)
                        .map(x -> x.getClassName().substring(x.getClassName().lastIndexOf('.') + 1) + "." + x.getMethodName() + ":" + x.getLineNumber())
                        .toList()));
            }
        }
    }

    private static final boolean TRACE_ZERO_FILLS = Boolean.getBoolean("perceiver4j.cuda.traceZeroFills");

    @Override
    public void release(Object buffer) {
        allocator.free((DeviceBuffer) buffer);
    }

    @Override
    public Tensor fromFloats(float[] values, Shape shape) {
        check(values.length == shape.numel(), "fromFloats: " + values.length + " values for shape " + shape);
        Tensor t = allocate(shape, DType.F32, false);
        upload(ptr(t), MemorySegment.ofArray(values), 4L * values.length);
        return t;
    }

    @Override
    public Tensor fromInts(int[] values, Shape shape) {
        check(values.length == shape.numel(), "fromInts: " + values.length + " values for shape " + shape);
        Tensor t = allocate(shape, DType.I32, false);
        writeInts(values, t);
        return t;
    }

    @Override
    public Tensor fromBools(boolean[] values, Shape shape) {
        check(values.length == shape.numel(), "fromBools: " + values.length + " values for shape " + shape);
        Tensor t = allocate(shape, DType.BOOL, false);
        writeBools(values, t);
        return t;
    }

    @Override
    public void writeInts(int[] values, Tensor dst) {
        check(dst.dtype() == DType.I32 && values.length == dst.size(), "writeInts: " + values.length + " values into " + dst.describe());
        context.makeCurrent();
        upload(out(dst), MemorySegment.ofArray(values), 4L * values.length);
        refreshUnlessHeld();
    }

    @Override
    public void writeBools(boolean[] values, Tensor dst) {
        check(dst.dtype() == DType.BOOL && values.length == dst.size(), "writeBools: " + values.length + " values into " + dst.describe());
        context.makeCurrent();
        byte[] b = new byte[values.length];
        for (int i = 0; i < b.length; i++) b[i] = (byte) (values[i] ? 1 : 0);
        upload(out(dst), MemorySegment.ofArray(b), b.length);
        refreshUnlessHeld();
    }

    /**
     * Host data to device address {@code dst}, queued in stream order without waiting for the device
     * ({@link HostStaging}); copies too large for the staging ring go synchronously.
     *
     * @throws IllegalStateException while a CUDA graph is being recorded (the recording would read the
     *         staging ring again at every replay): upload before recording, into a tensor it reads
     */
    private void upload(long dst, MemorySegment src, long bytes) {
        if (bytes == 0) return;
        context.makeCurrent();
        if (allocator.recording()) {
            throw new IllegalStateException("upload of " + bytes + " host bytes while recording a CUDA graph: write inputs before recording, "
                    + "into tensors the recording reads");
        }
        if (HostStaging.fits(bytes)) staging.upload(dst, src, bytes);
        else Driver.memcpyHtoD(dst, src, bytes);
    }

    @Override
    public float[] toFloatArray(Tensor t) {
        int n = t.size();
        float[] r = new float[n];
        synchronize();
        if (n == 0) return r;
        switch (t.dtype()) {
            case F32 -> Driver.memcpyDtoH(MemorySegment.ofArray(r), ptr(t), 4L * n);
            case BF16 -> {
                short[] s = new short[n];
                Driver.memcpyDtoH(MemorySegment.ofArray(s), ptr(t), 2L * n);
                for (int i = 0; i < n; i++) r[i] = Float.intBitsToFloat((s[i] & 0xFFFF) << 16);
            }
            case I32 -> {
                int[] a = new int[n];
                Driver.memcpyDtoH(MemorySegment.ofArray(a), ptr(t), 4L * n);
                for (int i = 0; i < n; i++) r[i] = a[i];
            }
            case I64 -> {
                long[] a = new long[n];
                Driver.memcpyDtoH(MemorySegment.ofArray(a), ptr(t), 8L * n);
                for (int i = 0; i < n; i++) r[i] = a[i];
            }
            case BOOL -> {
                byte[] a = new byte[n];
                Driver.memcpyDtoH(MemorySegment.ofArray(a), ptr(t), n);
                for (int i = 0; i < n; i++) r[i] = a[i];
            }
        }
        return r;
    }

    @Override
    public void copy(Tensor src, Tensor dst) {
        sameSize(src, dst, "copy");
        check(src.dtype() == dst.dtype(), "copy: dtype " + src.dtype() + " to " + dst.dtype() + " (use cast)");
        long n = bytes(src.shape(), src.dtype());
        if (n > 0) Driver.memcpyDtoDAsync(out(dst), ptr(src), n, context.stream());
        refreshUnlessHeld();
    }

    @Override
    public void cast(Tensor src, Tensor dst) {
        sameSize(src, dst, "cast");
        int n = src.size();
        DType from = src.dtype(), to = dst.dtype();
        if (from == to) {
            copy(src, dst);
            return;
        }
        if (n == 0) return;
        if ((from == DType.F32 && to == DType.BF16) || (from == DType.BF16 && to == DType.F32)) {
            gemm.convertInto(ptr(src), out(dst), n, to == DType.BF16);   // the same kernels the products' operands use
            return;
        }
        String kernel;
        if (from == DType.I32 && to == DType.F32) kernel = "p4j_i32_to_f32";
        else if (from == DType.I32 && to == DType.I64) kernel = "p4j_i32_to_i64";
        else if (from == DType.I64 && to == DType.F32) kernel = "p4j_i64_to_f32";
        else if (from == DType.BOOL && to == DType.F32) kernel = "p4j_bool_to_f32";
        else if (from == DType.I64 && to == DType.I32) {
            kernels.launch("p4j_i64_to_i32").grid(Kernels.blocks(n, THREADS)).block(THREADS)
                    .ptr(ptr(src)).ptr(out(dst)).i32(n).ptr(status.address()).go();
            return;
        } else {
            // the CPU backend does not support these either
            throw new UnsupportedOperationException("cast " + from + " -> " + to + " is not supported");
        }
        kernels.launch(kernel).grid(Kernels.blocks(n, THREADS)).block(THREADS).ptr(ptr(src)).ptr(out(dst)).i32(n).go();
    }

    // ---- matrix products ---------------------------------------------------------------------

    /** One matmul call: batch entries, M, N, K, per-batch element strides of a and b (b: 0 when shared). */
    /** The CPU backend's shape rules ({@link MatmulShape}); K = 0 is not supported on the GPU yet. */
    private static MatmulShape matDims(Tensor a, boolean transA, Tensor b, boolean transB, Tensor out) {
        MatmulShape d = MatmulShape.of(a, transA, b, transB, out);
        if (d.k() == 0) throw new UnsupportedOperationException("CudaBackend: matmul with an empty inner dimension (K = 0) not implemented yet");
        return d;
    }

    /** One product operand: device address, element stride between batch entries (0 = shared), stored as bf16. */
    private record Operand(long address, long stride, boolean bf16) {
        static Operand of(long address, long stride, Tensor t) {
            return new Operand(address, stride, t.dtype() == DType.BF16);
        }

        /** The operand of batch entry i. */
        long at(int i) {
            return address + (bf16 ? 2L : 4L) * i * stride;
        }
    }

    /**
     * Row-major C[m,n] (+)= op(X)·op(Y) over {@code batch} entries with element strides; loops over
     * the batch when a stride is 0 (an operand shared by every entry, e.g. a 2-D weight). C is fp32,
     * or bf16 when {@code out16} (rounded from the fp32 sums; no accumulate).
     */
    private void gemm(boolean tx, Operand x, boolean ty, Operand y, long c, long sC, boolean out16, int m, int n, int k,
                      boolean accumulate, int batch, long bias) {
        gemm(tx, x, ty, y, c, sC, out16, m, n, k, accumulate, batch, bias, false);
    }

    /** The same with the bias stored as bf16 when {@code bias16} (for a bf16 result only). */
    private void gemm(boolean tx, Operand x, boolean ty, Operand y, long c, long sC, boolean out16, int m, int n, int k,
                      boolean accumulate, int batch, long bias, boolean bias16) {
        if (batch == 1 || (x.stride() != 0 && y.stride() != 0 && sC != 0)) {
            gemmOne(tx, x.address(), x.bf16(), ty, y.address(), y.bf16(), c, out16, m, n, k, accumulate, batch, x.stride(), y.stride(), sC,
                    bias, bias16);
        } else {
            for (int i = 0; i < batch; i++) {
                // a shared output (sC 0) sums the entries: only the first may write instead of adding
                gemmOne(tx, x.at(i), x.bf16(), ty, y.at(i), y.bf16(), c + (out16 ? 2L : 4L) * i * sC, out16, m, n, k,
                        accumulate || (sC == 0 && i > 0), 1, 0, 0, 0, bias, bias16);
            }
        }
    }

    private void gemmOne(boolean tx, long x, boolean xBf16, boolean ty, long y, boolean yBf16, long c, boolean out16, int m, int n, int k,
                         boolean accumulate, int batch, long sX, long sY, long sC, long bias, boolean bias16) {
        if (out16) gemm.runToBf16(tx, x, xBf16, ty, y, yBf16, c, m, n, k, batch, sX, sY, sC, bias, bias16);
        else gemm.run(tx, x, xBf16, ty, y, yBf16, c, m, n, k, accumulate, batch, sX, sY, sC, bias);
    }

    // ---- bf16 copies of persistent operands ---------------------------------------------------
    //
    // In the bf16 mode a product rounds each fp32 operand to bf16 first. For persistent tensors (weights,
    // biases: not step activations) the rounding is kept instead: a buffer gets a bf16 mirror of its
    // whole fp32 contents the first time a tensor-core product reads it outside a graph recording, and
    // every later product (and graph) reads the mirror. Every write to such a buffer keeps it equal:
    // each op names the tensors it writes through out(), and the written ranges are rounded again
    // right after the op's launches (refreshMirrors: Kernels calls it after every launch, the copies
    // and products after theirs), in stream order, so a graph that writes a weight re-rounds it too.
    // AdamW writes the bf16 copy in the same kernel.

    /** A written range of a mirrored buffer, rounded again by refreshMirrors. */
    private record Stale(DeviceBuffer buffer, long offset, int count) {}

    private final List<Stale> stale = new ArrayList<>();
    private boolean refreshing;
    /**
     * Open ops of several launches (or products) that write: until the outermost ends, launches do not
     * refresh (a range noted by out() may be written by a later launch of the op than the first).
     */
    private int holds;

    private void hold() {
        holds++;
    }

    /** After a launch or copy of a single-launch op (inside a held op the outermost release refreshes). */
    private void refreshUnlessHeld() {
        if (holds == 0) refreshMirrors();
    }

    /** Ends hold(): the outermost refreshes the ranges its op wrote. */
    private void release() {
        if (--holds == 0) refreshMirrors();
    }

    /** The device address of a tensor the op writes (as ptr); a range of a mirrored buffer is noted for refreshMirrors. */
    private long out(Tensor t) {
        DeviceBuffer b = buffer(t);
        if (b.mirror != null && t.size() > 0) stale.add(new Stale(b, t.offset(), t.size()));
        return ptr(t);
    }

    /** Rounds the ranges written since the last call into their buffers' mirrors (after the writing launches). */
    private void refreshMirrors() {
        if (refreshing || stale.isEmpty()) return;
        refreshing = true;
        try {
            for (Stale w : stale) {
                DeviceBuffer m = w.buffer().mirror;
                if (m != null) gemm.convertInto(w.buffer().address() + 4L * w.offset(), m.address() + 2L * w.offset(), w.count(), true);
            }
            stale.clear();
        } finally {
            refreshing = false;
        }
    }

    /**
     * Whether persistent F32 tensor t has (or now gets) a bf16 mirror: the bf16 mode, not a step
     * activation, not during a graph recording (the mirror's first rounding must run once, not at
     * every replay).
     */
    private boolean bf16Copy(Tensor t) {
        if (t == null || t.dtype() != DType.F32 || gemm.precision() != MatmulPrecision.BF16) return false;
        DeviceBuffer b = buffer(t);
        if (b.mirror != null) return true;
        if (t.inStepScope() || allocator.recording() || b.requested[0] % 4 != 0) return false;
        long n = b.requested[0] / 4;
        if (n == 0 || n > Integer.MAX_VALUE) return false;
        clearRanges(b, b.takeAllZeros());   // the rounding reads the whole buffer
        DeviceBuffer m = allocator.allocate(2L * n);
        gemm.convertInto(b.address(), m.address(), (int) n, true);
        b.mirror = m;
        return true;
    }

    /**
     * A product operand: t's bf16 mirror for a tensor-core product ({@code tensorCores}: more than
     * Gemm.SKINNY rows and columns) of a persistent F32 tensor starting 16 bytes into its mirror
     * ({@link #mirrorAligned}), else t as stored.
     */
    private Operand operand(Tensor t, long stride, boolean tensorCores) {
        if (tensorCores && mirrorAligned(t) && bf16Copy(t)) return new Operand(mirrorAddress(t), stride, true);
        return Operand.of(ptr(t), stride, t);
    }

    /**
     * Whether t's place in a bf16 mirror is 16-byte aligned (an element offset that is a multiple of 8):
     * a packed parameter after one of odd size is not, and cuBLASLt's fast kernels want 16 bytes,
     * so such an operand is rounded into a fresh (aligned) copy per call instead.
     */
    private static boolean mirrorAligned(Tensor t) {
        return t != null && t.offset() % 8 == 0;
    }

    /** Where t's values sit in its buffer's bf16 mirror (which must exist). */
    private long mirrorAddress(Tensor t) {
        return buffer(t).mirror.address() + 2L * t.offset();
    }

    /** The bias argument of a product: 0 unless the product adds it ({@code fused}), then its bf16 mirror when {@code bias16}. */
    private long biasArgument(Tensor bias, boolean fused, boolean bias16) {
        return !fused ? 0 : bias16 ? mirrorAddress(bias) : ptr(bias);
    }

    /** BF16 in the bf16 matmul mode: F then hands over shared bf16 copies of activations (Backend.matmulOperandType). */
    @Override
    public DType matmulOperandType() {
        return gemm.precision() == MatmulPrecision.BF16 ? DType.BF16 : DType.F32;
    }

    /** F32 for a {@link Gemm#SKINNY} product (it runs in TF32 and would widen a bf16 operand again), else {@link #matmulOperandType()}. */
    @Override
    public DType matmulOperandType(long rows) {
        return rows <= Gemm.SKINNY ? DType.F32 : matmulOperandType();
    }

    /**
     * false: activations stay for backward instead of being rebuilt. Measured (docs/benchmarks.md,
     * session 14): the Perceiver AR model-1 step 16.5 → 15.5 ms, peak 4.7 → 5.3 GB (PyTorch 6.9 GB);
     * the masked-LM step 34.6 → 33.0 ms, peak 8.5 → 9.2 GiB (PyTorch 9.3 GiB).
     */
    @Override
    public boolean recomputesActivations() {
        return false;
    }

    @Override
    public void matmul(Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Activation act, Tensor out, Tensor preAct) {
        hold();
        try {
            MatmulShape d = matDims(a, transA, b, transB, out);
            check(act == Activation.NONE || preAct != null, "matmul with activation " + act + " needs a preAct buffer");
            check(bias == null || bias.size() == d.n(), "matmul: bias " + (bias == null ? "" : bias.describe()) + " should have " + d.n() + " elements");
            // target = op(a)·op(b) (+ bias when cuBLASLt's BIAS epilogue can add it: one GEMM call). A bf16
            // out without activation is written by the product itself (rounded in its epilogue); with an
            // activation the product writes the fp32 preAct and the exact-GELU kernel the rounded out.
            boolean out16 = out.dtype() == DType.BF16;
            check(out.dtype() == DType.F32 || out16, "matmul: out " + out.describe() + " must be F32 or BF16");
            int total = d.batch() * d.m() * d.n();
            boolean fuseBias = bias != null && d.batch() == 1;
            if (act != Activation.NONE && preAct.dtype() == DType.BF16) {
                matmulBf16PreAct(a, transA, b, transB, bias, act, out, preAct, d, fuseBias);
                return;
            }
            boolean direct16 = out16 && act == Activation.NONE && (bias == null || fuseBias);
            DeviceBuffer tmp = out16 && act == Activation.NONE && !direct16 ? allocator.allocate(4L * total) : null;
            long target = act != Activation.NONE ? out(preAct) : tmp != null ? tmp.address() : out(out);
            boolean tensorCores = Math.min(d.m(), d.n()) > Gemm.SKINNY;
            boolean bias16 = fuseBias && direct16 && tensorCores && mirrorAligned(bias) && bf16Copy(bias);   // a bf16 result's bias from its bf16 copy
            gemm(transA, operand(a, d.strideA(), tensorCores), transB, operand(b, d.strideB(), tensorCores), target, (long) d.m() * d.n(), direct16,
                    d.m(), d.n(), d.k(), false, d.batch(), biasArgument(bias, fuseBias, bias16), bias16);
            boolean biasLeft = bias != null && !fuseBias;
            if (biasLeft || act != Activation.NONE || (out16 && !direct16)) {
                // preAct = target + bias (in place), out = act(preAct): the exact-GELU epilogue (bf16 out: rounded)
                kernels.launch("p4j_bias_act").grid(Kernels.quadBlocks(total, THREADS)).block(THREADS)
                        .ptr(target).ptr(biasLeft ? ptr(bias) : 0).i32(d.n())
                        .ptr(act == Activation.NONE || !biasLeft ? 0 : ptr(preAct))   // without a bias to add, preAct (= target) already holds it
                        .ptr(out16 ? 0 : out(out)).i32(total).i32(act.ordinal())
                        .ptr(out16 ? out(out) : 0).go();
            }
            if (tmp != null) allocator.free(tmp); // safe: later work on the stream runs after the epilogue
        } finally {
            release();
        }
    }

    /**
     * matmul with an activation whose pre-activation is stored as bf16 (an MLP's hidden state that only
     * products read, as PyTorch's autocast keeps it): the product writes preAct rounded (its bias added
     * in the epilogue, from the bias's bf16 mirror where there is one), and the activation reads that.
     */
    private void matmulBf16PreAct(Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Activation act, Tensor out, Tensor preAct,
                                  MatmulShape d, boolean fuseBias) {
        check(preAct.size() == out.size(), "matmul: preAct " + preAct.describe() + " should match out " + out.describe());
        int total = d.batch() * d.m() * d.n();
        boolean tensorCores = Math.min(d.m(), d.n()) > Gemm.SKINNY;
        Operand oa = operand(a, d.strideA(), tensorCores), ob = operand(b, d.strideB(), tensorCores);
        if (bias == null || fuseBias) {
            boolean bias16 = fuseBias && tensorCores && mirrorAligned(bias) && bf16Copy(bias);
            gemm(transA, oa, transB, ob, out(preAct), (long) d.m() * d.n(), true, d.m(), d.n(), d.k(), false, d.batch(),
                    biasArgument(bias, fuseBias, bias16), bias16);
        } else {   // a batch of products with a bias: fp32 sums, the bias added and the result rounded by the epilogue kernel
            DeviceBuffer t = allocator.allocate(4L * total);
            gemm(transA, oa, transB, ob, t.address(), (long) d.m() * d.n(), false, d.m(), d.n(), d.k(), false, d.batch(), 0);
            kernels.launch("p4j_bias_act").grid(Kernels.quadBlocks(total, THREADS)).block(THREADS)
                    .ptr(t.address()).ptr(ptr(bias)).i32(d.n()).ptr(0).ptr(0).i32(total).i32(Activation.NONE.ordinal()).ptr(out(preAct)).go();
            allocator.free(t);   // safe: later work on the stream runs after the epilogue
        }
        boolean out16 = out.dtype() == DType.BF16;
        kernels.launch("p4j_act_bf16").grid(Kernels.quadBlocks(total, THREADS)).block(THREADS)
                .ptr(ptr(preAct)).ptr(out16 ? 0 : out(out)).ptr(out16 ? out(out) : 0).i32(total).i32(act.ordinal()).go();
    }

    /** out = residual + op(a)·op(b) + bias in one cuBLASLt call (the residual as C, beta = 1; the BIAS epilogue when one batch entry). */
    @Override
    public void matmulAdd(Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Tensor residual, Tensor out) {
        hold();
        try {
            MatmulShape d = matDims(a, transA, b, transB, out);
            check(bias == null || bias.size() == d.n(), "matmulAdd: bias " + (bias == null ? "" : bias.describe()) + " should have " + d.n() + " elements");
            check(residual.size() == out.size() && residual.dtype() == DType.F32 && out.dtype() == DType.F32,
                    "matmulAdd: residual " + residual.describe() + " and out " + out.describe() + " must be F32 of one size");
            check(ptr(residual) != ptr(out), "matmulAdd: residual and out must be distinct");
            if (d.batch() != 1) {   // batched products (the models do not add those to a residual): product, then add
                Backend.super.matmulAdd(a, transA, b, transB, bias, residual, out);
                return;
            }
            boolean tensorCores = Math.min(d.m(), d.n()) > Gemm.SKINNY;
            Operand oa = operand(a, 0, tensorCores), ob = operand(b, 0, tensorCores);
            gemm.run(transA, oa.address(), oa.bf16(), transB, ob.address(), ob.bf16(), out(out), ptr(residual),
                    d.m(), d.n(), d.k(), true, 1, 0, 0, 0, bias == null ? 0 : ptr(bias));
        } finally {
            release();
        }
    }

    @Override
    public void matmulBackward(Tensor dOut, Tensor a, boolean transA, Tensor b, boolean transB, Tensor bias, Activation act, Tensor preAct,
                               Tensor dA, Tensor dB, Tensor dBias) {
        boolean addA = dA != null && !fresh(dA), addB = dB != null && !fresh(dB);   // else dA / dB are written, not added to
        boolean storeBias = dBias != null && fresh(dBias);
        // A BF16 dA (F.bf16Gradient: an activation's gradient its only reader writes) is the product's rounded result.
        boolean dA16 = dA != null && dA.dtype() == DType.BF16;
        check(!dA16 || !addA, writtenBf16("matmulBackward: dA", dA));
        List<DeviceBuffer> temps = new ArrayList<>(1);
        hold();
        try {
            MatmulShape d = matDims(a, transA, b, transB, dOut);
            int rows = d.batch() * d.m(), total = rows * d.n();
            long mn = (long) d.m() * d.n();
            // A bf16 product rounds dC once for both of its products (not once per product): with a bias
            // gradient the column sums write that copy from the same read of dC; with an activation and
            // no bias gradient the activation's backward writes only the copy.
            boolean bf16 = gemm.precision() == MatmulPrecision.BF16 || a.dtype() == DType.BF16 || b.dtype() == DType.BF16;
            boolean round = bf16 && dA != null && dB != null;
            DeviceBuffer dC16 = null;
            // dC = dOut · act'(preAct) (a temporary, returned to the pool after the queued GEMMs)
            DeviceBuffer tmp = null;
            check(preAct != null || act == Activation.NONE, "matmulBackward with activation " + act + " needs preAct");
            boolean pre16 = preAct != null && preAct.dtype() == DType.BF16;   // stored so by matmulBf16PreAct
            long pre = preAct == null ? 0 : ptr(preAct), pre32 = pre16 ? 0 : pre, preBf16 = pre16 ? pre : 0;
            // dOut as BF16 (the gradient of a bf16 hidden state, F.bf16Gradient) is read as such where dC's bias
            // sums and bf16 copy come from one pass; elsewhere it is widened to an F32 temporary first
            boolean in16 = dOut.dtype() == DType.BF16;
            check(in16 || dOut.dtype() == DType.F32, "matmulBackward: dOut " + dOut.describe() + " must be F32 or BF16");
            boolean fusedAct = act != Activation.NONE && round && dBias != null
                    && quadColumns(in16 ? 0 : ptr(dOut), d.n(), 0, in16 ? ptr(dOut) : 0, pre32, preBf16);
            // without an activation a BF16 dOut is dC's bf16 copy itself; the bias sums read it as bf16
            boolean dOutIsCopy = in16 && act == Activation.NONE && round && (dBias == null || quadColumns(0, d.n(), 0, ptr(dOut), 0, 0));
            if (in16 && !fusedAct && !dOutIsCopy) {
                dOut = asType(dOut, DType.F32, temps);
                in16 = false;
            }
            long dC = ptr(dOut);
            if (act != Activation.NONE) {
                if (fusedAct) {
                    // dC's bias sums and bf16 copy made from dOut and preAct in one pass: dC never stored in fp32
                    dC16 = allocator.allocate(2L * total);
                    columnSums(in16 ? 0 : dC, rows, d.n(), out(dBias), storeBias, dC16.address(), in16 ? dC : 0, pre32, preBf16, act);
                } else if (round && dBias == null) {
                    dC16 = allocator.allocate(2L * total);
                    kernels.launch("p4j_act_backward_bf16").grid(Kernels.quadBlocks(total, THREADS)).block(THREADS)
                            .ptr(pre16 ? 0 : ptr(preAct)).ptr(ptr(dOut)).ptr(dC16.address()).i32(total).i32(act.ordinal())
                            .ptr(pre16 ? ptr(preAct) : 0).go();
                } else {
                    tmp = allocator.allocate(4L * total);
                    dC = tmp.address();
                    kernels.launch("p4j_act_backward").grid(Kernels.quadBlocks(total, THREADS)).block(THREADS)
                            .ptr(pre16 ? 0 : ptr(preAct)).ptr(ptr(dOut)).ptr(dC).i32(total).i32(act.ordinal()).i32(0)
                            .ptr(pre16 ? ptr(preAct) : 0).go();
                }
            }
            if (dOutIsCopy) {   // dC is dOut, already bf16: the bias sums read it so
                if (dBias != null) columnSums(0, rows, d.n(), out(dBias), storeBias, 0, dC, 0, 0, Activation.NONE);
            } else if (dC16 == null && dBias != null && round) {
                dC16 = allocator.allocate(2L * total);
                columnSums(dC, rows, d.n(), out(dBias), storeBias, dC16.address());
            } else if (dC16 == null) {
                if (dBias != null) columnSums(dC, rows, d.n(), out(dBias), storeBias, 0);
                if (round) dC16 = gemm.toBf16(dC, total);
            }
            Operand g = dC16 != null ? new Operand(dC16.address(), mn, true) : new Operand(dC, mn, dOutIsCopy);
            // op(B) feeds dA's product ([M, K] or [K, M]), op(A) dB's ([K, N] or [N, K])
            Operand oa = operand(a, d.strideA(), Math.min(d.k(), d.n()) > Gemm.SKINNY), ob = operand(b, d.strideB(), Math.min(d.m(), d.k()) > Gemm.SKINNY);
            long sA = d.strideA(), sB = d.strideB();
            if (dA != null) {
                if (!transA) { // dA[M,K] += dC[M,N] · op(B)ᵀ
                    gemm(false, g, !transB, ob, out(dA), sA, dA16, d.m(), d.k(), d.n(), addA, d.batch(), 0);
                } else {       // dA[K,M] += op(B)[K,N] · dCᵀ
                    gemm(transB, ob, true, g, out(dA), sA, dA16, d.k(), d.m(), d.n(), addA, d.batch(), 0);
                }
            }
            if (dB != null) {
                if (!transB) { // dB[K,N] += op(A)ᵀ · dC
                    gemm(!transA, oa, false, g, out(dB), sB, false, d.k(), d.n(), d.m(), addB, d.batch(), 0);
                } else {       // dB[N,K] += dCᵀ · op(A)
                    gemm(true, g, transA, oa, out(dB), sB, false, d.n(), d.k(), d.m(), addB, d.batch(), 0);
                }
            }
            if (dC16 != null) allocator.free(dC16);
            if (tmp != null) allocator.free(tmp); // safe: later work on the stream runs after these GEMMs
            freeAll(temps);
        } finally {
            release();
        }
    }

    // ---- normalisation and pointwise ---------------------------------------------------------

    /** Whether the warp-per-row layer norm kernels apply: d a multiple of 4 up to 4·32·LN_VECS, rows 16-byte aligned. */
    private boolean warpLayerNorm(int d, Tensor... rowTensors) {
        return d % 4 == 0 && d <= 4 * 32 * LN_VECS && aligned16(rowTensors);
    }

    /** The warp-per-row layer norm kernel for rows of d floats: the variant holding 4, 8, 10 or 12 float4s per lane. */
    private static String lnWarpKernel(String base, int d) {
        int quads = d / 4;
        return base + (quads <= 4 * 32 ? 4 : quads <= 8 * 32 ? 8 : quads <= 10 * 32 ? 10 : 12);
    }

    /** Whether every tensor's data starts 16-byte aligned (for the float4 / 16-byte cp.async kernels). */
    private boolean aligned16(Tensor... tensors) {
        for (Tensor t : tensors) {
            if (address(t) % 16 != 0) return false;
        }
        return true;
    }

    /** t's device address without zeroing pending zeros (ptr() does that): for alignment checks before fresh(). */
    private long address(Tensor t) {
        return buffer(t).address() + byteStart(t);
    }

    /** Threads for a one-block-per-row kernel over rows of length {@code n}: a multiple of 32, at most 1024. */
    private static int rowThreads(int n) {
        if (n >= 1024) return 1024;
        return Math.max(32, (n + 31) / 32 * 32);
    }

    @Override
    public void layerNorm(Tensor x, Tensor gamma, Tensor beta, float eps, Tensor out, Tensor mean, Tensor rstd) {
        int d = x.shape().last(), rows = x.shape().rows();
        check(gamma.size() == d && beta.size() == d, "layerNorm: gamma/beta must have " + d + " elements, got " + gamma.describe() + ", " + beta.describe());
        check(mean.size() == rows && rstd.size() == rows, "layerNorm: mean/rstd must have " + rows + " elements");
        if (rows == 0) return;
        boolean out16 = out.dtype() == DType.BF16;   // normed inputs only products read (F.layerNorm's outType)
        check(out.dtype() == DType.F32 || out16, "layerNorm: out " + out.describe() + " must be F32 or BF16");
        boolean warp = out16 ? warpLayerNorm(d, x, gamma, beta) && ptr(out) % 8 == 0 : warpLayerNorm(d, x, gamma, beta, out);
        kernels.launch(warp ? lnWarpKernel("p4j_layernorm_warp", d) : "p4j_layernorm").grid(warp ? (rows + LN_WARPS - 1) / LN_WARPS : rows)
                .block(warp ? LN_WARPS * 32 : rowThreads(d))
                .ptr(ptr(x)).ptr(ptr(gamma)).ptr(ptr(beta)).ptr(out16 ? 0 : out(out)).ptr(out(mean)).ptr(out(rstd)).i32(rows).i32(d).f32(eps)
                .ptr(out16 ? out(out) : 0).go();
    }

    @Override
    public void layerNormBackward(Tensor dOut, Tensor x, Tensor gamma, Tensor mean, Tensor rstd, Tensor dX, Tensor dGamma, Tensor dBeta) {
        List<DeviceBuffer> temps = new ArrayList<>(1);
        hold();
        try {
            int d = x.shape().last(), rows = x.shape().rows();
            if (rows == 0) return;
            // bit 1: dGamma written, not added to (nothing has written it yet); bit 2: dBeta
            int store = (dGamma != null && fresh(dGamma) ? 1 : 0) | (dBeta != null && fresh(dBeta) ? 2 : 0);
            boolean params = dGamma != null || dBeta != null, fusable = lnSumsShared(d) <= 32 * 1024 || context.computeCapability() >= 80;
            // dOut as BF16 (the gradient of a normed input its one product wrote, F.bf16Gradient): read so by the
            // warp-per-row kernels; for the others widened to an F32 temporary first
            boolean in16 = dOut.dtype() == DType.BF16;
            check(in16 || dOut.dtype() == DType.F32, "layerNormBackward: dOut " + dOut.describe() + " must be F32 or BF16");
            if (in16 && !(dX != null && warpLayerNorm(d, x, gamma, dX) && ptr(dOut) % 8 == 0 && (!params || fusable))) {
                dOut = asType(dOut, DType.F32, temps);
                in16 = false;
            }
            if (dX != null) {
                boolean add = !fresh(dX), warp = in16 || warpLayerNorm(d, dOut, x, gamma, dX);
                if (warp && params && fusable) {
                    layerNormBackwardFused(dOut, x, gamma, mean, rstd, dX, add, dGamma, dBeta, store, rows, d);
                    return;
                }
                Kernels.Launch launch = kernels.launch(warp ? lnWarpKernel("p4j_layernorm_backward_x_warp", d) : "p4j_layernorm_backward_x")
                        .grid(warp ? (rows + LN_WARPS - 1) / LN_WARPS : rows).block(warp ? LN_WARPS * 32 : rowThreads(d))
                        .ptr(in16 ? 0 : ptr(dOut)).ptr(ptr(x)).ptr(ptr(gamma)).ptr(ptr(mean)).ptr(ptr(rstd)).ptr(out(dX)).i32(rows).i32(d)
                        .i32(add ? 1 : 0);
                (warp ? launch.ptr(in16 ? ptr(dOut) : 0) : launch).go();
            }
            if (dGamma != null || dBeta != null) {
                int perChunk = rowsPerChunk(rows), chunks = (rows + perChunk - 1) / perChunk;
                DeviceBuffer pg = allocator.allocate(4L * chunks * d), pb = allocator.allocate(4L * chunks * d);
                boolean quads = d % 4 == 0 && ptr(dOut) % 16 == 0 && ptr(x) % 16 == 0;
                int gridX = quads ? Kernels.blocks(d, 4 * COL_QUADS) : Kernels.blocks(d, THREADS);
                boolean fused = gridX <= TICKETS;   // the partial kernel's last blocks finish the sums (else two more kernels)
                kernels.launch(quads ? "p4j_layernorm_backward_params_partial4" : "p4j_layernorm_backward_params_partial").grid(gridX, chunks).block(THREADS)
                        .ptr(ptr(dOut)).ptr(ptr(x)).ptr(ptr(mean)).ptr(ptr(rstd)).i32(rows).i32(d).i32(perChunk)
                        .ptr(pg.address()).ptr(pb.address()).ptr(fused && dGamma != null ? out(dGamma) : 0)
                        .ptr(fused && dBeta != null ? out(dBeta) : 0).ptr(fused ? tickets.address() : 0).i32(store).go();
                if (!fused && dGamma != null) columnFinish(pg.address(), chunks, d, out(dGamma), (store & 1) != 0);
                if (!fused && dBeta != null) columnFinish(pb.address(), chunks, d, out(dBeta), (store & 2) != 0);
                allocator.free(pg);
                allocator.free(pb);
            }
        } finally {
            freeAll(temps);
            release();
        }
    }

    /**
     * dX, dGamma and dBeta from one pass over the rows ({@code p4j_layernorm_backward_warp{4,8,10,12}}, kernels.cu):
     * the warp-per-row dX (the same code as {@code p4j_layernorm_backward_x_warp}, so the same bits) and
     * the parameter gradients' column sums per chunk of {@link #lnRowsPerChunk} rows (one block each, its
     * warps' sums in shared memory), which {@code p4j_column_finish_rows} then adds into dGamma and dBeta in an
     * order fixed by the shape. dGamma or dBeta may be null. {@code add}: dX is added to, else written;
     * {@code store} bit 1: dGamma is written, not added to, bit 2: dBeta.
     */
    private void layerNormBackwardFused(Tensor dOut, Tensor x, Tensor gamma, Tensor mean, Tensor rstd, Tensor dX, boolean add,
                                        Tensor dGamma, Tensor dBeta, int store, int rows, int d) {
        int perChunk = lnRowsPerChunk(rows), chunks = (rows + perChunk - 1) / perChunk;
        // [chunks][2][d]: per chunk dGamma's d column sums, then dBeta's d
        DeviceBuffer partial = allocator.allocate(4L * chunks * 2 * d);
        boolean in16 = dOut.dtype() == DType.BF16;
        kernels.launch(lnWarpKernel("p4j_layernorm_backward_warp", d)).grid(chunks).block(LN_WARPS * 32).sharedBytes(lnSumsShared(d))
                .ptr(in16 ? 0 : ptr(dOut)).ptr(ptr(x)).ptr(ptr(gamma)).ptr(ptr(mean)).ptr(ptr(rstd)).ptr(out(dX)).i32(rows).i32(d).i32(add ? 1 : 0)
                .i32(perChunk).ptr(partial.address()).ptr(in16 ? ptr(dOut) : 0).go();
        // [dGamma | dBeta] += Σ over the chunks, 16 columns a block (kernels.cu p4j_column_finish_rows)
        kernels.launch("p4j_column_finish_rows").grid(Kernels.blocks(2 * d, 16)).block(THREADS).ptr(partial.address()).i32(chunks)
                .i32(2 * d).i64(2L * d).ptr(dGamma != null ? out(dGamma) : 0).i32(d).ptr(dBeta != null ? out(dBeta) : 0).i32(store).go();
        allocator.free(partial);
    }

    /** The most chunks of the fused layer-norm backward (their partial sums: 2·d floats each). */
    private static final int LN_MAX_CHUNKS = 1024;

    /**
     * Rows per block (chunk) of the fused layer-norm backward: a function of {@code rows} alone (the sums'
     * order depends on it), a multiple of LN_WARPS, and at least rows / {@link #LN_MAX_CHUNKS}; up to
     * 8,192 rows that is one row per warp. A warp's rows run one after another, each waiting on its loads,
     * so the kernel needs many warps in flight: with 256 chunks (the first version) the AR model's
     * [12,288, 512] rows took 55 µs a call, 6 rows per warp and 16 warps per SM (session 15, call 3).
     */
    private static int lnRowsPerChunk(int rows) {
        int perChunk = (int) ((rows + (long) LN_MAX_CHUNKS - 1) / LN_MAX_CHUNKS);
        return Math.max(LN_WARPS, (perChunk + LN_WARPS - 1) / LN_WARPS * LN_WARPS);
    }

    /** Dynamic shared memory of the fused layer-norm backward, bytes: each warp's column sums, [LN_WARPS][2][d] floats. */
    private static int lnSumsShared(int d) {
        return 4 * LN_WARPS * 2 * d;
    }

    /**
     * out[j] += Σ_r x[r, j] (out[j] = Σ when {@code store}: nothing has written out yet); x [rows, cols] at
     * device address x; two deterministic stages. When {@code x16} is not 0, the first stage also writes
     * bf16(x) there ([rows, cols], 2 bytes each).
     */
    private void columnSums(long x, int rows, int cols, long out, boolean store, long x16) {
        columnSums(x, rows, cols, out, store, x16, 0, 0, 0, Activation.NONE);
    }

    /**
     * The same over x·act'(pre) when {@code act} is not NONE (x the dOut of the activation, pre its
     * pre-activation [rows, cols] at pre32 (F32) or pre16 (BF16)), and over x stored as bf16 at xIn16 when
     * that is not 0 (x then 0); either needs {@link #quadColumns}.
     */
    private void columnSums(long x, int rows, int cols, long out, boolean store, long x16, long xIn16, long pre32, long pre16, Activation act) {
        if (rows == 0 || cols == 0) return;
        int perChunk = rowsPerChunk(rows), chunks = (rows + perChunk - 1) / perChunk;
        DeviceBuffer partial = allocator.allocate(4L * chunks * cols);   // 512-byte aligned, as every allocation
        boolean quads = quadColumns(x, cols, x16, xIn16, pre32, pre16);
        check(quads || (act == Activation.NONE && xIn16 == 0), "columnSums: an activation's or bf16 input's sums need the 4-column kernel");
        int gridX = quads ? Kernels.blocks(cols, 4 * COL_QUADS) : Kernels.blocks(cols, THREADS);
        boolean fused = gridX <= TICKETS;   // the partial kernel's last blocks finish the sums (else one more kernel)
        Kernels.Launch l = kernels.launch(quads ? "p4j_column_partial4" : "p4j_column_partial").grid(gridX, chunks).block(THREADS)
                .ptr(x).i32(rows).i32(cols).i32(perChunk).ptr(partial.address()).ptr(x16)
                .ptr(fused ? out : 0).ptr(fused ? tickets.address() : 0);
        if (quads) l.ptr(pre16).ptr(pre32).i32(act.ordinal()).i32(store ? 1 : 0).ptr(xIn16).go();
        else l.i32(store ? 1 : 0).go();
        if (!fused) columnFinish(partial.address(), chunks, cols, out, store);
        allocator.free(partial);
    }

    /** Whether column sums over these addresses can take 4 columns a thread (p4j_column_partial4's alignments; 0 = absent). */
    private static boolean quadColumns(long x, int cols, long x16, long xIn16, long pre32, long pre16) {
        return cols % 4 == 0 && x % 16 == 0 && x16 % 8 == 0 && xIn16 % 8 == 0 && pre32 % 16 == 0 && pre16 % 8 == 0;
    }

    /** Rows per chunk: a function of {@code rows} alone (deterministic), chunks ≤ 65535 (the gridDim.y limit). */
    private static int rowsPerChunk(int rows) {
        return Math.max(ROWS_PER_CHUNK, (rows + 65534) / 65535);
    }

    private void columnFinish(long partial, int chunks, int cols, long out, boolean store) {
        kernels.launch("p4j_column_finish").grid(Kernels.blocks(cols, THREADS)).block(THREADS)
                .ptr(partial).i32(chunks).i32(cols).ptr(out).i32(store ? 1 : 0).go();
    }

    @Override
    public void activation(Activation act, Tensor x, Tensor out) {
        sameSize(x, out, "activation");
        int n = x.size();
        if (n == 0) return;
        boolean out16 = out.dtype() == DType.BF16;   // the rebuilt hidden state of an MLP whose output only products read
        if (x.dtype() == DType.BF16) {   // its bf16 pre-activation
            kernels.launch("p4j_act_bf16").grid(Kernels.quadBlocks(n, THREADS)).block(THREADS)
                    .ptr(ptr(x)).ptr(out16 ? 0 : out(out)).ptr(out16 ? out(out) : 0).i32(n).i32(act.ordinal()).go();
            return;
        }
        kernels.launch("p4j_bias_act").grid(Kernels.quadBlocks(n, THREADS)).block(THREADS)
                .ptr(ptr(x)).ptr(0).i32(1).ptr(0).ptr(out16 ? 0 : out(out)).i32(n).i32(act.ordinal()).ptr(out16 ? out(out) : 0).go();
    }

    @Override
    public void activationBackward(Activation act, Tensor x, Tensor dOut, Tensor dX) {
        sameSize(x, dX, "activationBackward");
        int n = x.size();
        if (n == 0) return;
        boolean x16 = x.dtype() == DType.BF16, add = !fresh(dX);
        kernels.launch("p4j_act_backward").grid(Kernels.quadBlocks(n, THREADS)).block(THREADS)
                .ptr(x16 ? 0 : ptr(x)).ptr(ptr(dOut)).ptr(out(dX)).i32(n).i32(act.ordinal()).i32(add ? 1 : 0).ptr(x16 ? ptr(x) : 0).go();
    }

    @Override
    public void add(Tensor a, Tensor b, Tensor out) {
        broadcastable(a, b, "add");
        if (pendingZeros(a) && a.dtype() == DType.F32 && b.dtype() == DType.F32 && out.dtype() == DType.F32) {   // 0 + b: b repeated, the zeros never read
            sameSize(a, out, "add");
            repeat(b, out);
            return;
        }
        elementwise("p4j_add", a, b, out);
    }

    /** Whether {@code t} lies inside zeros asked for that nothing has written yet (its values are zeros not yet filled in). */
    private boolean pendingZeros(Tensor t) {
        return buffer(t).zeroWithin(byteStart(t), byteEnd(t));
    }

    /** out[i] = b[i mod |b|] (out may be the pending zeros a of add: written, so no longer pending). */
    private void repeat(Tensor b, Tensor out) {
        int n = out.size(), bLen = b.size();
        if (n == 0) return;
        fresh(out);   // pending zeros under out are written, not zero-filled first
        long pb = ptr(b), po = out(out);
        if (n % 4 == 0 && bLen % 4 == 0 && pb % 16 == 0 && po % 16 == 0) {
            kernels.launch("p4j_repeat4").grid(Kernels.blocks(n / 4, THREADS)).block(THREADS).ptr(pb).ptr(po).i32(n / 4).i32(bLen / 4).go();
        } else {
            kernels.launch("p4j_repeat").grid(Kernels.blocks(n, THREADS)).block(THREADS).ptr(pb).ptr(po).i32(n).i32(bLen).go();
        }
    }

    @Override
    public void mul(Tensor a, Tensor b, Tensor out) {
        broadcastable(a, b, "mul");
        elementwise("p4j_mul", a, b, out);
    }

    private void elementwise(String kernel, Tensor a, Tensor b, Tensor out) {
        sameSize(a, out, kernel);
        int n = a.size(), bLen = b.size();
        if (n == 0) return;
        if (n % 4 == 0 && bLen % 4 == 0 && aligned16(a, b, out)) { // float4 variant
            kernels.launch(kernel + "4").grid(Kernels.blocks(n / 4, THREADS)).block(THREADS).ptr(ptr(a)).ptr(ptr(b)).ptr(out(out))
                    .i32(n / 4).i32(bLen / 4).go();
            return;
        }
        kernels.launch(kernel).grid(Kernels.blocks(n, THREADS)).block(THREADS).ptr(ptr(a)).ptr(ptr(b)).ptr(out(out)).i32(n).i32(bLen).go();
    }

    @Override
    public void scale(Tensor x, float alpha, Tensor out) {
        sameSize(x, out, "scale");
        int n = x.size();
        if (n == 0) return;
        kernels.launch("p4j_scale").grid(Kernels.blocks(n, THREADS)).block(THREADS).ptr(ptr(x)).f32(alpha).ptr(out(out)).i32(n).go();
    }

    @Override
    public void axpy(float alpha, Tensor x, Tensor y) {
        sameSize(x, y, "axpy");
        int n = x.size();
        if (n == 0) return;
        if (x.dtype() == DType.F32 && y.dtype() == DType.F32 && fresh(y)) {   // y = 0 + alpha·x
            if (alpha == 1f) copy(x, y);
            else scale(x, alpha, y);
            return;
        }
        kernels.launch("p4j_axpy").grid(Kernels.blocks(n, THREADS)).block(THREADS).f32(alpha).ptr(ptr(x)).ptr(out(y)).i32(n).go();
    }

    @Override
    public void fill(Tensor x, float v) {
        check(x.dtype() == DType.F32, "fill: " + x.describe() + " is not F32");
        if (x.size() == 0) return;
        DeviceBuffer b = buffer(x);
        if (Float.floatToRawIntBits(v) == 0 && b.mirror == null && LAZY_FILLS) {
            // zeros as zeros() makes them: a gradient zeroed between steps is then written, not added to, by
            // its first contribution (PyTorch's zero_grad(set_to_none=True) saves the same memset and reads)
            b.markZero(byteStart(x), byteEnd(x));
            pendingZeros.add(b);
            return;
        }
        Driver.memsetD32Async(out(x), Float.floatToRawIntBits(v), x.size(), context.stream());
        refreshUnlessHeld();
    }

    /** {@code -Dperceiver4j.cuda.lazyFills=false}: a fill with 0 zeroes at once (to measure what the lazy zeros save). */
    private static final boolean LAZY_FILLS = !"false".equals(System.getProperty("perceiver4j.cuda.lazyFills"));

    @Override
    public void l2Norm(Tensor x, Tensor out) {
        check(out.dtype() == DType.F32 && out.size() == 1, "l2Norm: out " + out.describe() + " should be F32 [1]");
        int n = x.size();
        if (n == 0) {
            fill(out, 0f);
            return;
        }
        int grid = Math.min(Kernels.blocks(n, THREADS), 1024); // fixed by n alone: the same partials every run
        DeviceBuffer partial = allocator.allocate(8L * grid);
        kernels.launch("p4j_sum_squares_partial").grid(grid).block(THREADS).ptr(ptr(x)).i32(n).ptr(partial.address()).go();
        kernels.launch("p4j_sum_sqrt_finish").grid(1).block(1024).ptr(partial.address()).i32(grid).ptr(out(out)).go();
        allocator.free(partial);   // stream-ordered: a later user of the buffer queues behind these kernels
    }

    @Override
    public void clipByNorm(Tensor x, Tensor norm, float maxNorm) {
        check(norm.dtype() == DType.F32 && norm.size() == 1, "clipByNorm: norm " + norm.describe() + " should be F32 [1]");
        int n = x.size();
        if (n == 0) return;
        // Few blocks, grid-stride: when the norm is within bounds every thread just reads it and returns.
        int grid = Math.min(Kernels.blocks(n, THREADS), 8 * context.multiprocessors());
        kernels.launch("p4j_clip_by_norm").grid(grid).block(THREADS).ptr(out(x)).ptr(ptr(norm)).f32(maxNorm).i32(n).go();
    }

    @Override
    public void sumRows(Tensor x, Tensor out) {
        hold();
        try {
            int n = out.size();
            check(n > 0 && x.size() % n == 0, "sumRows: " + x.describe() + " is not a whole number of rows of " + n);
            boolean store = fresh(out);
            columnSums(ptr(x), x.size() / n, n, out(out), store, 0);
        } finally {
            release();
        }
    }

    private static void checkDropP(float p) {
        if (!(p >= 0 && p <= 1)) throw new IllegalArgumentException("p must be in [0, 1], got " + p);
    }

    /** The kept elements' multiplier, as FastOps: 1/(1−p) rounded to float, 0 when p = 1. */
    private static float keepScale(float p) {
        return p == 1f ? 0f : (float) (1.0 / (1.0 - p));
    }

    @Override
    public void dropout(Tensor x, float p, long seed, long stream, Tensor out) {
        sameSize(x, out, "dropout");
        checkDropP(p);
        int n = x.size();
        if (n == 0) return;
        if (p == 0f) {
            if (ptr(x) != ptr(out)) copy(x, out);
            return;
        }
        kernels.launch("p4j_dropout").grid(Kernels.blocks((n + 3L) / 4, THREADS)).block(THREADS)
                .ptr(ptr(x)).ptr(out(out)).i32(n).f32(p).f32(keepScale(p)).i64(seed).i64(stream).i32(0).go();
    }

    @Override
    public void dropoutBackward(Tensor dOut, float p, long seed, long stream, Tensor dX) {
        sameSize(dOut, dX, "dropoutBackward");
        checkDropP(p);
        int n = dOut.size();
        if (n == 0) return;
        if (p == 0f) {
            axpy(1f, dOut, dX);
            return;
        }
        kernels.launch("p4j_dropout").grid(Kernels.blocks((n + 3L) / 4, THREADS)).block(THREADS)
                .ptr(ptr(dOut)).ptr(out(dX)).i32(n).f32(p).f32(keepScale(p)).i64(seed).i64(stream).i32(1).go();
    }

    @Override
    public void softmax(Tensor x, Tensor out) {
        sameSize(x, out, "softmax");
        int rows = x.shape().rows(), n = x.shape().last();
        if (rows == 0 || n == 0) return;
        kernels.launch("p4j_softmax").grid(rows).block(rowThreads(n)).ptr(ptr(x)).ptr(out(out)).i32(rows).i32(n).go();
    }

    // ---- copies along an axis ----------------------------------------------------------------

    @Override
    public void narrow(Tensor src, int axis, int start, Tensor dst, boolean accumulate) {
        axisCopy(src, dst, axis, start, true, accumulate);
    }

    @Override
    public void unnarrow(Tensor src, int axis, int start, Tensor dst, boolean accumulate) {
        axisCopy(src, dst, axis, start, false, accumulate);
    }

    /** Copies between a full tensor and the slab [start, start+len) of it along {@code axis} (F32; BF16 plain copies of even runs). */
    private void axisCopy(Tensor src, Tensor dst, int axis, int start, boolean fromFull, boolean accumulate) {
        Tensor full = fromFull ? src : dst, part = fromFull ? dst : src;
        AxisSlab g = AxisSlab.of(full, part, axis, start, accumulate);
        if (full.dtype() == DType.BF16) {
            // plain bf16 copies (AxisSlab refuses to accumulate them) move pairs of elements as 32-bit words
            boolean pairs = g.fullRun() % 2 == 0 && g.partRun() % 2 == 0 && g.startOffset() % 2 == 0 && ptr(src) % 4 == 0 && ptr(dst) % 4 == 0;
            if (!pairs) throw new UnsupportedOperationException("CudaBackend: BF16 narrow with odd run lengths or offsets: " + full.describe() + ", " + part.describe());
            g = new AxisSlab(g.outer(), g.fullRun() / 2, g.partRun() / 2, g.startOffset() / 2);
        }
        long total = (long) g.outer() * g.partRun();
        if (total == 0) return;
        kernels.launch("p4j_axis_copy").grid(Kernels.blocks(total, THREADS)).block(THREADS)
                .ptr(ptr(src)).ptr(out(dst)).i32(g.outer()).i32(g.fullRun()).i32(g.partRun()).i32(g.startOffset())
                .i32(fromFull ? 1 : 0).i32(accumulate ? 1 : 0).go();
    }

    @Override
    public void scatterRows(Tensor src, Tensor rows, Tensor dst) {
        int width = RowScatter.width(src, rows, dst), n = rows.size(), count = dst.size() / width;
        if (n == 0) return;
        int bytes = src.dtype().bytes();
        boolean words = bytes % 4 == 0;   // F32, I32, I64 (two words per element), else byte rows (BOOL, BF16)
        int unitWidth = words ? width * (bytes / 4) : width * bytes;
        kernels.launch("p4j_scatter_rows").grid(n).block(Math.min(THREADS, rowThreads(unitWidth)))
                .ptr(ptr(src)).ptr(ptr(rows)).ptr(out(dst)).i32(n).i32(count).i32(unitWidth).i32(words ? 4 : 1).ptr(status.address()).go();
    }

    // ---- attention ---------------------------------------------------------------------------

    private static void checkAttention(AttentionShape s, Tensor q, Tensor k, Tensor v, Tensor keyPad, Tensor out, Tensor lse) {
        check(q.size() == s.qSize(), "attention: q " + q.describe() + " should hold " + s.qSize() + " elements");
        check(k.size() == s.kSize(), "attention: k " + k.describe() + " should hold " + s.kSize() + " elements");
        check(v.size() == s.vSize(), "attention: v " + v.describe() + " should hold " + s.vSize() + " elements");
        checkKeyPad(s, keyPad);
        checkAttentionOutputs(s, out, lse);
    }

    private static void checkKeyPad(AttentionShape s, Tensor keyPad) {
        check(keyPad == null || (keyPad.dtype() == DType.BOOL && keyPad.size() == s.keyPadSize()),
                "attention: keyPad " + (keyPad == null ? "" : keyPad.describe()) + " should be BOOL with " + s.keyPadSize() + " elements");
    }

    /** The checks of out, lse and the launch limits that every attention entry point makes. */
    private static void checkAttentionOutputs(AttentionShape s, Tensor out, Tensor lse) {
        check(out.size() == s.outSize(), "attention: out " + out.describe() + " should hold " + s.outSize() + " elements");
        check(out.dtype() == DType.F32 || out.dtype() == DType.BF16, "attention: out " + out.describe() + " must be F32 or BF16");
        check(lse.size() == s.lseSize(), "attention: lse " + lse.describe() + " should hold " + s.lseSize() + " elements");
        if (s.dqk() > MAX_HEAD_DIM || s.dv() > MAX_HEAD_DIM) {
            throw new UnsupportedOperationException("CudaBackend: attention with head dims Dqk " + s.dqk() + ", Dv " + s.dv()
                    + " not implemented yet (at most " + MAX_HEAD_DIM + ")");
        }
        check((long) s.batch() * s.heads() <= 65535, "attention: batch·heads " + (long) s.batch() * s.heads() + " exceeds 65535 (gridDim.y)");
    }

    /** Dynamic shared memory of the attention kernels, bytes (see the layouts in kernels.cu). */
    private static int forwardShared(AttentionShape s) {
        return 4 * (ATT_TILE * (s.dqk() + 1) + ATT_TILE * s.dv() + ATT_ROWS * s.dqk());
    }

    private static int backwardShared(AttentionShape s) {
        return 4 * (ATT_TILE * (s.dqk() + 1) + ATT_TILE * (s.dv() + 1) + ATT_ROWS * (s.dqk() + s.dv()) + 2 * ATT_TILE);
    }

    /** The shape's scalar arguments, in the kernels' order: H, nq, nk, dqk, dv, scale, causal, p, keepScale, seed, stream. */
    private static Kernels.Launch shapeArgs(Kernels.Launch l, AttentionShape s) {
        return l.i32(s.heads()).i32(s.nq()).i32(s.nk()).i32(s.dqk()).i32(s.dv()).f32(s.scale()).i32(s.causal() ? 1 : 0)
                .f32(s.dropout()).f32(s.dropout() == 0f ? 1f : keepScale(s.dropout())).i64(s.seed()).i64(s.stream());
    }

    /**
     * Dropout keep bits a training forward drew, held for its backward: the same shape, seed and stream
     * give the same bits, so the backward reads them instead of drawing them again. Insertion order, at
     * most KEEP_BITS_HELD bytes; emptied when a graph recording starts and just before it ends, so a
     * recording never reads bits drawn outside it, and the buffers of bits drawn in it stay its own.
     */
    private final LinkedHashMap<AttentionShape, DeviceBuffer> heldKeepBits = new LinkedHashMap<>();
    private long heldKeepBytes;

    /**
     * The keep bits of the attention dropout of shape s for the bf16 kernels, drawn by
     * {@code p4j_attention_keep_bits} (one bit per batch, head, query and key, 32 keys a word, the same
     * Philox draws as every other attention kernel); 0 without dropout. The forward's are held for the
     * backward ({@link #heldKeepBits}); the backward takes them (or draws them) into {@code temps}, freed
     * after its launches. The bf16 kernels stage these words in shared memory with each tile instead of
     * drawing Philox blocks and handing their words from lane to lane (docs/benchmarks.md, session 21).
     */
    private long keepBits(AttentionShape s, boolean forward, List<DeviceBuffer> temps) {
        if (s.dropout() == 0f) return 0;
        DeviceBuffer held = heldKeepBits.get(s);
        if (held != null) {
            if (!forward) {
                heldKeepBits.remove(s);
                heldKeepBytes -= held.bytes();
                temps.add(held);
            }
            return held.address();
        }
        long wordsPerRow = (s.nk() + 31) / 32, words = s.lseSize() * wordsPerRow;
        check(words <= Integer.MAX_VALUE, "attention: the dropout keep bits of " + s + " take " + words + " words, more than 2^31 - 1");
        DeviceBuffer b = allocator.allocate(4L * words);
        kernels.launch("p4j_attention_keep_bits").grid(Kernels.blocks(words, THREADS)).block(THREADS).ptr(b.address()).i32((int) words)
                .i32(s.nk()).i32((int) wordsPerRow).f32(s.dropout()).i64(s.seed()).i64(s.stream()).go();
        if (forward && KEEP_BITS_REUSE && b.bytes() <= KEEP_BITS_HELD) {
            for (Iterator<Map.Entry<AttentionShape, DeviceBuffer>> it = heldKeepBits.entrySet().iterator();
                 heldKeepBytes + b.bytes() > KEEP_BITS_HELD && it.hasNext(); ) {
                DeviceBuffer old = it.next().getValue();   // a forward whose backward never came, or came long after
                it.remove();
                heldKeepBytes -= old.bytes();
                allocator.free(old);   // later work on the stream runs after the kernels that read it
            }
            heldKeepBits.put(s, b);
            heldKeepBytes += b.bytes();
        } else {
            temps.add(b);
        }
        return b.address();
    }

    /** Frees every held keep-bit buffer (around graph recordings). */
    private void dropHeldKeepBits() {
        for (DeviceBuffer b : heldKeepBits.values()) allocator.free(b);
        heldKeepBits.clear();
        heldKeepBytes = 0;
    }

    /** The bf16 attention kernels come without dropout code and with it (kernels.cu, P4J_ATTENTION_BF16_W). */
    private static String dropSuffix(AttentionShape s) {
        return s.dropout() > 0f ? "_drop" : "";
    }

    private long padPtr(Tensor keyPad) {
        return keyPad == null ? 0 : ptr(keyPad);
    }

    private static long tcKey(int dqk, int dv) {
        return ((long) dqk << 32) | dv;
    }

    /**
     * Whether attention runs on tensor cores: TF32 products, compute capability 8.0 or newer, kernels for
     * these head dims, and {@code streamed} (the tensors the kernels copy with 16-byte cp.async) 16-byte aligned.
     */
    boolean tensorCoreAttention(AttentionShape s, Tensor... streamed) {
        return TC_ATTENTION && gemm.precision().reduced() && context.computeCapability() >= 80
                && TC_SHAPES.contains(tcKey(s.dqk(), s.dv())) && aligned16(streamed);
    }

    /**
     * One query row per (batch, head) without dropout (the cached generation step) and enough keys to
     * split: {@code p4j_attention_decode} spreads the keys over many blocks (DEC_KEYS per block), then
     * {@code p4j_attention_decode_combine} merges their softmax states (kernels.cu). The tiled kernels
     * would give each (batch, head) one block that walks every key alone.
     */
    static boolean decodeAttention(AttentionShape s) {
        return DECODE_ATTENTION && s.nq() == 1 && s.dropout() == 0f && s.nk() >= 2 * DEC_KEYS;
    }

    private void attentionDecode(AttentionShape s, Tensor q, Tensor k, Tensor v, Tensor keyPad, Tensor out, Tensor lse) {
        int bh = s.batch() * s.heads();
        int splits = Math.max(1, Math.min(Math.min((s.nk() + DEC_KEYS - 1) / DEC_KEYS, 16 * context.multiprocessors() / bh), DEC_MAX_SPLITS));
        int chunk = (s.nk() + splits - 1) / splits;
        DeviceBuffer part = allocator.allocate(4L * bh * splits * (2 + s.dv()));
        kernels.launch("p4j_attention_decode").grid(splits, bh).block(DEC_WARPS * 32)
                .ptr(ptr(q)).ptr(ptr(k)).ptr(ptr(v)).ptr(padPtr(keyPad)).ptr(part.address())
                .i32(s.heads()).i32(s.nk()).i32(s.dqk()).i32(s.dv()).f32(s.scale()).i32(chunk).go();
        kernels.launch("p4j_attention_decode_combine").grid(bh).block(Math.min(THREADS, rowThreads(s.dv())))
                .ptr(part.address()).ptr(out(out)).ptr(out(lse)).i32(s.heads()).i32(s.dv()).i32(splits).go();
        allocator.free(part); // later work on the stream runs after these kernels
    }

    /** Shared memory of the tensor-core forward: two K+V tile buffers (tc_k_stride, tc_v_stride), per-warp P tiles (kernels.cu). */
    private static int tensorCoreShared(AttentionShape s) {
        int kStride = s.dqk() + 4, vStride = s.dv() + (40 - s.dv() % 32) % 32;
        return 4 * (2 * TC_KEYS * (kStride + vStride) + TC_WARPS * 16 * (TC_KEYS + 4));
    }

    /** Whether attention of shape s runs on the bf16 kernels, forward and backward (the bf16 mode, a shape with them, aligned tensors). */
    boolean bf16Attention(AttentionShape s, Tensor q, Tensor k, Tensor v) {
        return BF16_ATTENTION && gemm.precision() == MatmulPrecision.BF16 && tensorCoreAttention(s, k, v)
                && BF16_SHAPES.contains(tcKey(s.dqk(), s.dv())) && aligned16(q);
    }

    /**
     * Shared memory of the bf16 forward and dQ kernels (kernels.cu, bf_key_stage): two buffers of a bf16 K
     * and V tile (rows of D + 8 halves), one mask word per key and the block's keep words (16·W rows of
     * keys / 32 words), for bf_keys(Dv) keys.
     */
    private static int bf16Shared(AttentionShape s) {
        int keys = s.dv() > 64 ? 32 : 64;
        return 2 * (keys * (2 * (s.dqk() + 8 + s.dv() + 8) + 4) + 4 * 16 * BF16_WARPS * (keys / 32));
    }

    /**
     * Shared memory of the bf16 dK/dV kernel: two buffers of a bf16 Q and dOut tile (rows of D + 8 halves)
     * with their lse, rowDot and keep words (the block's 16·W keys, 32 a word), for bf_queries(Dqk, Dv) queries.
     */
    private static int bf16DkdvShared(AttentionShape s) {
        int queries = s.dqk() + s.dv() > 96 ? 32 : 64, keepWords = (16 * BF16_WARPS + 31) / 32;
        return 2 * queries * (2 * (s.dqk() + 8 + s.dv() + 8) + 8 + 4 * keepWords);
    }

    /**
     * t itself when it has dtype {@code want} (F32 or BF16), else a converted copy (outside any scope; added
     * to {@code temps}, which the caller frees after its launches): the bf16 attention kernels read bf16
     * operands only (rounded once per call, not by every block that reads a tile), the others fp32.
     */
    private Tensor asType(Tensor t, DType want, List<DeviceBuffer> temps) {
        if (t.dtype() == want) return t;
        check(t.dtype() == DType.F32 || t.dtype() == DType.BF16, "asType: " + t.describe() + " must be F32 or BF16");
        DeviceBuffer b = want == DType.BF16 ? gemm.toBf16(ptr(t), t.size()) : gemm.toF32(ptr(t), t.size());
        temps.add(b);
        return new Tensor(this, t.shape(), want, b, 0);
    }

    private void freeAll(List<DeviceBuffer> temps) {
        for (DeviceBuffer b : temps) allocator.free(b); // later work on the stream runs after the kernels that read them
    }

    /** Shared memory of the tensor-core dQ kernel: two K+V tile buffers of stride D+4, per-warp dS tiles (kernels.cu). */
    private static int tensorCoreDqShared(AttentionShape s) {
        return 4 * (2 * TC_KEYS * (s.dqk() + 4 + s.dv() + 4) + TC_WARPS * 16 * (TC_KEYS + 4));
    }

    /** Shared memory of the tensor-core dK/dV kernel: two Q+dOut+lse+rowDot buffers, the block's V rows, two per-warp tiles. */
    private static int tensorCoreDkdvShared(AttentionShape s) {
        return 4 * (2 * TC_KEYS * (s.dqk() + 4 + s.dv() + 4 + 2) + TC_ROWS * (s.dv() + 4) + TC_WARPS * 2 * 16 * (TC_KEYS + 4));
    }

    @Override
    public void attention(AttentionShape s, Tensor q, Tensor k, Tensor v, Tensor keyPad, Tensor out, Tensor lse) {
        hold();
        try {
            checkAttention(s, q, k, v, keyPad, out, lse);
            List<DeviceBuffer> temps = new ArrayList<>(3);
            int bh = s.batch() * s.heads();
            boolean bf16 = !decodeAttention(s) && bf16Attention(s, q, k, v);
            if (out.dtype() == DType.BF16 && !(bf16 && ptr(out) % 4 == 0)) {
                // a bf16 output the kernels cannot store directly: an fp32 one, rounded
                DeviceBuffer b = allocator.allocate(4L * out.size());
                temps.add(b);
                Tensor wide = new Tensor(this, out.shape(), DType.F32, b, 0);
                attention(s, q, k, v, keyPad, wide, lse);
                cast(wide, out);
                freeAll(temps);
                return;
            }
            if (bf16) {   // a BF16 out (one only products read) is stored so by the kernel
                q = asType(q, DType.BF16, temps);
                k = asType(k, DType.BF16, temps);
                v = asType(v, DType.BF16, temps);
                bf16Forward(s, ptr(q), ptr(k), ptr(v), padPtr(keyPad), out, lse, separateWidths(s), temps);
                freeAll(temps);
                return;
            }
            q = asType(q, DType.F32, temps);
            k = asType(k, DType.F32, temps);
            v = asType(v, DType.F32, temps);
            if (decodeAttention(s)) {
                attentionDecode(s, q, k, v, keyPad, out, lse);
            } else {
                boolean tc = tensorCoreAttention(s, k, v);
                Kernels.Launch l = tc
                        ? kernels.launch("p4j_attention_forward_tc_" + s.dqk() + "_" + s.dv()).grid((s.nq() + TC_ROWS - 1) / TC_ROWS, bh)
                                .block(TC_WARPS * 32).sharedBytes(tensorCoreShared(s))
                        : kernels.launch("p4j_attention_forward").grid((s.nq() + ATT_ROWS - 1) / ATT_ROWS, bh).block(ATT_THREADS)
                                .sharedBytes(forwardShared(s));
                shapeArgs(l.ptr(ptr(q)).ptr(ptr(k)).ptr(ptr(v)).ptr(padPtr(keyPad)).ptr(out(out)).ptr(out(lse)), s).go();
            }
            freeAll(temps);
        } finally {
            release();
        }
    }

    @Override
    public void attentionBackward(AttentionShape s, Tensor q, Tensor k, Tensor v, Tensor keyPad, Tensor out, Tensor lse,
                                  Tensor dOut, Tensor dQ, Tensor dK, Tensor dV) {
        hold();
        try {
            checkAttention(s, q, k, v, keyPad, out, lse);
            check(dOut.size() == s.outSize() && dQ.size() == s.qSize() && dK.size() == s.kSize() && dV.size() == s.vSize(),
                    "attentionBackward: gradient sizes differ from the shape's");
            int bh = s.batch() * s.heads();
            boolean bf16 = tensorCoreAttention(s, dOut) && bf16Attention(s, q, k, v);
            // the bf16 kernels read bf16 q, k, v and dOut (its copy made by the rowDot pass); the others fp32
            List<DeviceBuffer> temps = new ArrayList<>(4);
            Tensor g16 = bf16 ? bf16Copy(dOut, temps) : null;
            DeviceBuffer rowDot = rowDot(s, dOut, out, g16);
            DType operands = bf16 ? DType.BF16 : DType.F32;
            q = asType(q, operands, temps);
            k = asType(k, operands, temps);
            v = asType(v, operands, temps);
            Tensor g = g16 != null ? g16 : asType(dOut, operands, temps);
            if (bf16) {
                // they write a gradient nothing has written yet (lazy zeros) instead of adding to it
                int store = (fresh(dQ) ? 1 : 0) | (fresh(dK) ? 2 : 0) | (fresh(dV) ? 4 : 0);
                bf16Backward(s, ptr(q), ptr(k), ptr(v), padPtr(keyPad), lse, rowDot, ptr(g), out(dQ), out(dK), out(dV), store,
                        separateWidths(s), temps);
            } else {
                boolean tc = tensorCoreAttention(s, q, k, v, dOut);
                String suffix = tc ? "_tc_" + s.dqk() + "_" + s.dv() : "";
                int rowsPerBlock = tc ? 16 * TC_WARPS : ATT_ROWS, threads = tc ? TC_WARPS * 32 : ATT_THREADS;
                shapeArgs(kernels.launch("p4j_attention_backward_dq" + suffix).grid((s.nq() + rowsPerBlock - 1) / rowsPerBlock, bh)
                        .block(threads).sharedBytes(tc ? tensorCoreDqShared(s) : backwardShared(s))
                        .ptr(ptr(q)).ptr(ptr(k)).ptr(ptr(v)).ptr(padPtr(keyPad)).ptr(ptr(lse)).ptr(rowDot.address()).ptr(ptr(g))
                        .ptr(out(dQ)), s).go();
                shapeArgs(kernels.launch("p4j_attention_backward_dkdv" + suffix).grid((s.nk() + rowsPerBlock - 1) / rowsPerBlock, bh)
                        .block(threads).sharedBytes(tc ? tensorCoreDkdvShared(s) : backwardShared(s))
                        .ptr(ptr(q)).ptr(ptr(k)).ptr(ptr(v)).ptr(padPtr(keyPad)).ptr(ptr(lse)).ptr(rowDot.address()).ptr(ptr(g))
                        .ptr(out(dK)).ptr(out(dV)), s).go();
            }
            allocator.free(rowDot); // safe: later work on the stream runs after these kernels
            freeAll(temps);
        } finally {
            release();
        }
    }

    /**
     * dOut·out per query row ([B, H, Nq], the backward's rowDot; out F32 or BF16), in a buffer the caller
     * frees; where {@code dOut16} is not null (a BF16 tensor of dOut's size) the same pass stores dOut
     * rounded to bf16 there (F32 dOut only).
     */
    private DeviceBuffer rowDot(AttentionShape s, Tensor dOut, Tensor out, Tensor dOut16) {
        int rows = s.lseSize();
        DeviceBuffer rowDot = allocator.allocate(4L * rows);
        boolean out16 = out.dtype() == DType.BF16, in16 = dOut.dtype() == DType.BF16;   // in16: a BF16 gradient (F.bf16Gradient)
        check(!in16 || dOut16 == null, "rowDot: a BF16 dOut needs no bf16 copy");
        kernels.launch("p4j_attention_rowdot").grid(Kernels.blocks(32L * rows, THREADS)).block(THREADS)
                .ptr(in16 ? 0 : ptr(dOut)).ptr(out16 ? 0 : ptr(out)).ptr(rowDot.address()).i32(s.batch()).i32(s.heads()).i32(s.nq()).i32(s.dv())
                .ptr(out16 ? ptr(out) : 0).ptr(dOut16 == null ? 0 : ptr(dOut16)).ptr(in16 ? ptr(dOut) : 0).go();
        return rowDot;
    }

    /** A bf16 copy of an F32 attention gradient dOut for rowDot to fill (a temporary), or null when dOut is already BF16. */
    private Tensor bf16Copy(Tensor dOut, List<DeviceBuffer> temps) {
        if (dOut.dtype() == DType.BF16) return null;
        check(dOut.dtype() == DType.F32, "attention backward: dOut " + dOut.describe() + " must be F32 or BF16");
        DeviceBuffer b = allocator.allocate(2L * dOut.size());
        temps.add(b);
        return new Tensor(this, dOut.shape(), DType.BF16, b, 0);
    }

    /** Row widths (elements) of q, k and v, and of their gradients, as separate [B, N, H·D] tensors. */
    private static int[] separateWidths(AttentionShape s) {
        return new int[] {s.heads() * s.dqk(), s.heads() * s.dqk(), s.heads() * s.dv()};
    }

    /**
     * The bf16 forward kernel on bf16 q, k, v at these addresses, rows widths[0], widths[1], widths[2]
     * elements apart (separate tensors, or column ranges of one packed tensor); out F32, or BF16 at a
     * 4-byte aligned address (stored so by the kernel).
     */
    private void bf16Forward(AttentionShape s, long q, long k, long v, long keyPad, Tensor out, Tensor lse, int[] widths,
                             List<DeviceBuffer> temps) {
        boolean out16 = out.dtype() == DType.BF16;
        long keep = keepBits(s, true, temps);
        shapeArgs(kernels.launch("p4j_attention_forward_bf16_" + s.dqk() + "_" + s.dv() + "_w" + BF16_WARPS + dropSuffix(s))
                .grid((s.nq() + 16 * BF16_WARPS - 1) / (16 * BF16_WARPS), s.batch() * s.heads()).block(BF16_WARPS * 32).sharedBytes(bf16Shared(s))
                .ptr(q).ptr(k).ptr(v).ptr(keyPad).ptr(out16 ? 0 : out(out)).ptr(out(lse)), s)
                .ptr(out16 ? out(out) : 0).ptr(keep).i32(widths[0]).i32(widths[1]).i32(widths[2]).go();
    }

    /**
     * The bf16 dQ and dK/dV kernels (bf16 q, k, v and dOut g; rowDot from p4j_attention_rowdot) adding
     * into dQ, dK, dV, or writing those whose bit is set in {@code store} (1 dQ, 2 dK, 4 dV); bit 8 stores
     * dQ as bf16 and 16 dK and dV (BF16 gradients, written); row widths as {@link #bf16Forward}'s (the
     * gradients' as their tensors').
     */
    private void bf16Backward(AttentionShape s, long q, long k, long v, long keyPad, Tensor lse, DeviceBuffer rowDot, long g, long dQ,
                              long dK, long dV, int store, int[] widths, List<DeviceBuffer> temps) {
        String suffix = "_bf16_" + s.dqk() + "_" + s.dv() + "_w" + BF16_WARPS + dropSuffix(s);
        int rows = 16 * BF16_WARPS, bh = s.batch() * s.heads();
        long keep = keepBits(s, false, temps);   // the dropout mask as bits: the forward's, held for this backward, or drawn again
        shapeArgs(kernels.launch("p4j_attention_backward_dq" + suffix).grid((s.nq() + rows - 1) / rows, bh)
                .block(BF16_WARPS * 32).sharedBytes(bf16Shared(s))
                .ptr(q).ptr(k).ptr(v).ptr(keyPad).ptr(ptr(lse)).ptr(rowDot.address()).ptr(g).ptr(dQ), s)
                .ptr(keep).i32((store & 1) | ((store & 8) != 0 ? 2 : 0)).i32(widths[0]).i32(widths[1]).i32(widths[2]).go();   // 8: dQ as bf16
        shapeArgs(kernels.launch("p4j_attention_backward_dkdv" + suffix).grid((s.nk() + rows - 1) / rows, bh)
                .block(BF16_WARPS * 32).sharedBytes(bf16DkdvShared(s))
                .ptr(q).ptr(k).ptr(v).ptr(keyPad).ptr(ptr(lse)).ptr(rowDot.address()).ptr(g).ptr(dK).ptr(dV), s)
                .ptr(keep).i32(((store >> 1) & 3) | ((store & 16) != 0 ? 4 : 0)).i32(widths[0]).i32(widths[1]).i32(widths[2]).go();   // 16: dK, dV as bf16
    }

    @Override
    public boolean packsSelfAttention() {
        return BF16_ATTENTION && gemm.precision() == MatmulPrecision.BF16;
    }

    /** The bf16 mode: matmulBackward, layerNormBackward and the attention backwards take BF16 gradients (see there). */
    @Override
    public boolean bf16Gradients() {
        return gemm.precision() == MatmulPrecision.BF16;
    }

    /**
     * In place on the bf16 kernels (row widths 2·H·Dqk + H·Dv) where the separate tensors would take them
     * (bf16 qkv, a shape with bf16 kernels, 16-byte aligned column ranges, out F32 or 4-byte aligned BF16);
     * else the copies of the interface's default.
     */
    @Override
    public void attentionPacked(AttentionShape s, Tensor qkv, Tensor out, Tensor lse) {
        if (!packedInPlace(s, qkv, out)) {
            Backend.super.attentionPacked(s, qkv, out, lse);
            return;
        }
        hold();
        try {
            checkPacked(s, qkv, out, lse);
            List<DeviceBuffer> temps = new ArrayList<>(1);
            long base = ptr(qkv), qk = 2L * s.heads() * s.dqk();
            bf16Forward(s, base, base + qk, base + 2 * qk, 0, out, lse, packedWidths(s), temps);
            freeAll(temps);
        } finally {
            release();
        }
    }

    @Override
    public void attentionPackedBackward(AttentionShape s, Tensor qkv, Tensor out, Tensor lse, Tensor dOut, Tensor dQkv) {
        if (!packedInPlace(s, qkv, out) || !tensorCoreAttention(s, dOut)) {
            if (dQkv.dtype() == DType.BF16) {
                viaF32Gradient(dQkv, "attentionPackedBackward: dQkv", wide -> Backend.super.attentionPackedBackward(s, qkv, out, lse, dOut, wide));
            } else {
                Backend.super.attentionPackedBackward(s, qkv, out, lse, dOut, dQkv);
            }
            return;
        }
        hold();
        try {
            checkPacked(s, qkv, out, lse);
            check(dOut.size() == s.outSize() && (dQkv.dtype() == DType.F32 || dQkv.dtype() == DType.BF16) && dQkv.size() == qkv.size(),
                    "attentionPackedBackward: dOut " + dOut.describe() + " or dQkv " + dQkv.describe() + " does not match qkv " + qkv.describe());
            boolean grad16 = dQkv.dtype() == DType.BF16;   // a BF16 gradient (F.bf16Gradient): written rounded, never added to
            int store = fresh(dQkv) ? 7 : 0;   // the three column ranges cover it: written, not added, when nothing has written it yet
            check(!grad16 || store == 7, writtenBf16("attentionPackedBackward: dQkv", dQkv));
            if (grad16) store |= 8 | 16;
            long base = ptr(qkv), qk = 2L * s.heads() * s.dqk(), dBase = out(dQkv), dqk = (grad16 ? 2L : 4L) * s.heads() * s.dqk();
            bf16BackwardOf(s, out, lse, dOut, base, base + qk, base + 2 * qk, 0, dBase, dBase + dqk, dBase + 2 * dqk, store, packedWidths(s));
        } finally {
            release();
        }
    }

    /**
     * The bf16 backward of a packed layout: dOut's bf16 copy with the row dots (p4j_attention_rowdot), then
     * {@link #bf16Backward} over q, k, v and into dQ, dK, dV at these addresses.
     */
    private void bf16BackwardOf(AttentionShape s, Tensor out, Tensor lse, Tensor dOut, long q, long k, long v, long keyPad, long dQ, long dK,
                                long dV, int store, int[] widths) {
        List<DeviceBuffer> temps = new ArrayList<>(2);
        Tensor g16 = bf16Copy(dOut, temps);
        DeviceBuffer rowDot = rowDot(s, dOut, out, g16);
        bf16Backward(s, q, k, v, keyPad, lse, rowDot, ptr(g16 != null ? g16 : dOut), dQ, dK, dV, store, widths, temps);
        allocator.free(rowDot); // safe: later work on the stream runs after these kernels
        freeAll(temps);
    }

    /**
     * For a default path that adds F32 gradients: runs it into a zeroed F32 temporary and rounds that into
     * the BF16 gradient {@code grad16}, which nothing may have written yet ({@code what} names it in the error).
     */
    private void viaF32Gradient(Tensor grad16, String what, java.util.function.Consumer<Tensor> intoF32) {
        check(fresh(grad16), writtenBf16(what, grad16));
        Tensor wide = allocate(grad16.shape(), DType.F32, false);
        clear(buffer(wide));
        intoF32.accept(wide);
        cast(wide, grad16);
        allocator.free(buffer(wide));   // stream-ordered: a later user of the buffer queues behind the cast
    }

    /** The error of a second contribution to a BF16 gradient. */
    private static String writtenBf16(String what, Tensor grad) {
        return what + " " + (grad == null ? "" : grad.describe()) + " is a BF16 gradient something has written already; a BF16 gradient "
                + "takes one contribution (F.bf16Gradient)";
    }

    @Override
    public void attentionKvPacked(AttentionShape s, Tensor q, Tensor kv, Tensor keyPad, Tensor out, Tensor lse) {
        if (!kvPackedInPlace(s, q, kv, out)) {
            Backend.super.attentionKvPacked(s, q, kv, keyPad, out, lse);
            return;
        }
        hold();
        try {
            checkKvPacked(s, q, kv, keyPad, out, lse);
            List<DeviceBuffer> temps = new ArrayList<>(1);
            long base = ptr(kv);
            bf16Forward(s, ptr(q), base, base + 2L * s.heads() * s.dqk(), padPtr(keyPad), out, lse, kvWidths(s), temps);
            freeAll(temps);
        } finally {
            release();
        }
    }

    @Override
    public void attentionKvPackedBackward(AttentionShape s, Tensor q, Tensor kv, Tensor keyPad, Tensor out, Tensor lse, Tensor dOut,
                                          Tensor dQ, Tensor dKv) {
        check(dQ.dtype() == DType.F32, "attentionKvPackedBackward: dQ " + dQ.describe() + " must be F32");
        if (!kvPackedInPlace(s, q, kv, out) || !tensorCoreAttention(s, dOut)) {
            if (dKv.dtype() == DType.BF16) {
                viaF32Gradient(dKv, "attentionKvPackedBackward: dKv", wide -> Backend.super.attentionKvPackedBackward(s, q, kv, keyPad, out, lse, dOut, dQ, wide));
            } else {
                Backend.super.attentionKvPackedBackward(s, q, kv, keyPad, out, lse, dOut, dQ, dKv);
            }
            return;
        }
        hold();
        try {
            checkKvPacked(s, q, kv, keyPad, out, lse);
            check(dOut.size() == s.outSize() && dQ.size() == q.size() && (dKv.dtype() == DType.F32 || dKv.dtype() == DType.BF16)
                    && dKv.size() == kv.size(), "attentionKvPackedBackward: dOut " + dOut.describe() + ", dQ " + dQ.describe() + " or dKv "
                    + dKv.describe() + " does not match q " + q.describe() + ", kv " + kv.describe());
            boolean grad16 = dKv.dtype() == DType.BF16;   // a BF16 gradient (F.bf16Gradient): written rounded, never added to
            int store = (fresh(dQ) ? 1 : 0) | (fresh(dKv) ? 6 : 0);   // written, not added, where nothing has written them yet
            check(!grad16 || (store & 6) == 6, writtenBf16("attentionKvPackedBackward: dKv", dKv));
            if (grad16) store |= 16;
            long base = ptr(kv), dBase = out(dKv);
            bf16BackwardOf(s, out, lse, dOut, ptr(q), base, base + 2L * s.heads() * s.dqk(), padPtr(keyPad), out(dQ), dBase,
                    dBase + (grad16 ? 2L : 4L) * s.heads() * s.dqk(), store, kvWidths(s));
        } finally {
            release();
        }
    }

    /** Whether attentionKvPacked reads kv in place: bf16 q and kv on the bf16 kernels, k's columns and kv's rows whole 16-byte units. */
    boolean kvPackedInPlace(AttentionShape s, Tensor q, Tensor kv, Tensor out) {
        long qk = 2L * s.heads() * s.dqk();   // bytes of k's columns in a bf16 row
        return q.dtype() == DType.BF16 && kv.dtype() == DType.BF16 && bf16Attention(s, q, kv, kv) && qk % 16 == 0
                && (2L * kv.dim(-1)) % 16 == 0 && (out.dtype() == DType.F32 || address(out) % 4 == 0);
    }

    /** Row widths (elements) of q and of k and v (and their gradients) as columns of one packed kv. */
    private static int[] kvWidths(AttentionShape s) {
        int kv = s.heads() * (s.dqk() + s.dv());
        return new int[] {s.heads() * s.dqk(), kv, kv};
    }

    private static void checkKvPacked(AttentionShape s, Tensor q, Tensor kv, Tensor keyPad, Tensor out, Tensor lse) {
        int w = kvWidths(s)[1];
        check(q.rank() == 3 && q.dim(0) == s.batch() && q.dim(1) == s.nq() && q.dim(2) == s.heads() * s.dqk(),
                "attentionKvPacked: q " + q.describe() + " is not [" + s.batch() + ", " + s.nq() + ", " + s.heads() * s.dqk() + "]");
        check(kv.rank() == 3 && kv.dim(0) == s.batch() && kv.dim(1) == s.nk() && kv.dim(2) == w,
                "attentionKvPacked: kv " + kv.describe() + " is not [" + s.batch() + ", " + s.nk() + ", " + w + "]");
        checkKeyPad(s, keyPad);
        checkAttentionOutputs(s, out, lse);
    }

    /** Whether attentionPacked reads qkv in place (see there). */
    boolean packedInPlace(AttentionShape s, Tensor qkv, Tensor out) {
        long qk = 2L * s.heads() * s.dqk();   // bytes of q's (and k's) columns in a bf16 row
        return qkv.dtype() == DType.BF16 && s.nq() == s.nk() && bf16Attention(s, qkv, qkv, qkv) && qk % 16 == 0
                && (2L * qkv.dim(-1)) % 16 == 0 && (out.dtype() == DType.F32 || ptr(out) % 4 == 0);
    }

    private static int[] packedWidths(AttentionShape s) {
        int w = 2 * s.heads() * s.dqk() + s.heads() * s.dv();
        return new int[] {w, w, w};
    }

    private static void checkPacked(AttentionShape s, Tensor qkv, Tensor out, Tensor lse) {
        int w = packedWidths(s)[0];
        check(qkv.rank() == 3 && qkv.dim(0) == s.batch() && qkv.dim(1) == s.nq() && qkv.dim(2) == w,
                "attentionPacked: qkv " + qkv.describe() + " is not [" + s.batch() + ", " + s.nq() + ", " + w + "]");
        checkAttentionOutputs(s, out, lse);
    }

    // ---- positions, embeddings, losses -------------------------------------------------------

    /** Shared checks of rotary and its backward; returns the head dim. */
    private static int checkRotary(Tensor x, Tensor positions, Tensor invFreq, int heads, int rot, Tensor out) {
        sameSize(x, out, "rotary");
        int rows = x.shape().rows(), width = x.shape().last();
        check(heads > 0 && width % heads == 0, "rotary: width " + width + " does not split into " + heads + " heads");
        int headDim = width / heads;
        check(rot >= 0 && rot % 2 == 0 && rot <= headDim, "rotary: rot must be even and <= headDim " + headDim + ", got " + rot);
        check(positions.dtype() == DType.I32 && positions.size() == rows, "rotary: positions " + positions.describe() + " should be I32 [" + rows + "]");
        check(invFreq.size() >= rot / 2, "rotary: invFreq " + invFreq.describe() + " should hold " + rot / 2 + " elements");
        return headDim;
    }

    /** p4j_rotary's grid: one thread per row and slot (rot/2 pairs, headDim − rot copied channels), heads looped. */
    private static int rotaryBlocks(int rows, int headDim, int rot) {
        return Kernels.blocks((long) rows * (headDim - rot / 2), THREADS);
    }

    @Override
    public void rotary(Tensor x, Tensor positions, Tensor invFreq, int heads, int rot, Tensor out) {
        int headDim = checkRotary(x, positions, invFreq, heads, rot, out);
        if (x.size() == 0) return;
        kernels.launch("p4j_rotary").grid(rotaryBlocks(x.shape().rows(), headDim, rot)).block(THREADS)
                .ptr(ptr(x)).ptr(ptr(positions)).ptr(ptr(invFreq)).ptr(out(out))
                .i32(x.shape().rows()).i32(heads).i32(headDim).i32(rot).i32(0).go();
    }

    @Override
    public void rotaryBackward(Tensor dOut, Tensor positions, Tensor invFreq, int heads, int rot, Tensor dX) {
        int headDim = checkRotary(dOut, positions, invFreq, heads, rot, dX);
        if (dOut.size() == 0) return;
        boolean add = !fresh(dX);
        kernels.launch("p4j_rotary").grid(rotaryBlocks(dOut.shape().rows(), headDim, rot)).block(THREADS)
                .ptr(ptr(dOut)).ptr(ptr(positions)).ptr(ptr(invFreq)).ptr(out(dX))
                .i32(dOut.shape().rows()).i32(heads).i32(headDim).i32(rot).i32(add ? 1 : 2).go();
    }

    @Override
    public void embedding(Tensor table, Tensor ids, Tensor out) {
        check(table.rank() == 2, "embedding: table must be [vocab, d], got " + table.describe());
        check(ids.dtype() == DType.I32, "embedding: ids must be I32, got " + ids.describe());
        int vocab = table.dim(0), d = table.dim(1), n = ids.size();
        check(out.size() == (long) n * d, "embedding: out " + out.describe() + " should hold " + n + "×" + d);
        if (n == 0 || d == 0) return;
        kernels.launch("p4j_embedding").grid(n).block(Math.min(THREADS, rowThreads(d)))
                .ptr(ptr(table)).ptr(ptr(ids)).ptr(out(out)).i32(n).i32(vocab).i32(d).ptr(status.address()).go();
    }

    @Override
    public void embeddingBackward(Tensor dOut, Tensor ids, Tensor dTable) {
        hold();
        try {
            int vocab = dTable.dim(0), d = dTable.dim(1), n = ids.size();
            if (n == 0 || d == 0) return;
            boolean store = fresh(dTable);   // written (ids without tokens get zeros), not added to
            // A stable counting sort of the token indices by id, then one ordered gather-sum per (id, column); see kernels.cu.
            int chunks = (n + EMB_CHUNK - 1) / EMB_CHUNK;
            long cntWords = (long) chunks * vocab;
            DeviceBuffer cnt = allocator.allocate(4L * cntWords), base = allocator.allocate(4L * vocab), total = allocator.allocate(4L * vocab),
                    order = allocator.allocate(4L * n);
            Driver.memsetD32Async(cnt.address(), 0, cntWords, context.stream());
            kernels.launch("p4j_emb_count").grid(chunks).block(THREADS).ptr(ptr(ids)).i32(n).i32(vocab).ptr(cnt.address()).go();
            kernels.launch("p4j_emb_offsets").grid(1).block(1024).ptr(cnt.address()).i32(chunks).i32(vocab).ptr(base.address())
                    .ptr(total.address()).go();
            kernels.launch("p4j_emb_place").grid(chunks).block(32).ptr(ptr(ids)).i32(n).i32(vocab).ptr(cnt.address()).ptr(order.address()).go();
            kernels.launch("p4j_emb_gather").grid(vocab, Kernels.blocks(d, THREADS)).block(THREADS).ptr(ptr(dOut)).ptr(order.address())
                    .ptr(base.address()).ptr(total.address()).ptr(out(dTable)).i32(vocab).i32(d).i32(store ? 1 : 0).go();
            for (DeviceBuffer b : new DeviceBuffer[] {cnt, base, total, order}) allocator.free(b); // later work on the stream runs after these kernels
        } finally {
            release();
        }
    }

    @Override
    public void crossEntropy(Tensor logits, Tensor targets, int ignoreIndex, float zLoss, Tensor lse, Tensor loss) {
        int rows = logits.shape().rows(), vocab = logits.shape().last();
        check(targets.size() == rows, "crossEntropy: targets " + targets.describe() + " should have " + rows + " entries");
        check(lse.size() == rows, "crossEntropy: lse " + lse.describe() + " should have " + rows + " entries");
        check(loss.dtype() == DType.F32 && loss.size() == 1, "crossEntropy: loss " + loss.describe() + " should be F32 [1]");
        if (rows == 0) {
            fill(loss, 0f);
            return;
        }
        DeviceBuffer rowLoss = allocator.allocate(16L * rows);
        kernels.launch("p4j_cross_entropy").grid(rows).block(rowThreads(vocab))
                .ptr(ptr(logits)).ptr(ptr(targets)).i32(rows).i32(vocab).i32(ignoreIndex).f32(zLoss)
                .ptr(out(lse)).ptr(rowLoss.address()).ptr(status.address()).go();
        kernels.launch("p4j_cross_entropy_mean").grid(1).block(1024).ptr(rowLoss.address()).i32(rows).ptr(out(loss)).go();
        allocator.free(rowLoss);
    }

    @Override
    public void crossEntropyBackward(Tensor dLoss, Tensor logits, Tensor targets, int ignoreIndex, float zLoss, Tensor lse, Tensor dLogits) {
        check(dLoss.dtype() == DType.F32 && dLoss.size() == 1, "crossEntropyBackward: dLoss " + dLoss.describe() + " should be F32 [1]");
        int rows = logits.shape().rows(), vocab = logits.shape().last();
        if (rows == 0) return;
        boolean store = fresh(dLogits);   // written, not added to lazy zeros
        DeviceBuffer count = allocator.allocate(4);
        kernels.launch("p4j_count_targets").grid(1).block(1024).ptr(ptr(targets)).i32(rows).i32(ignoreIndex).ptr(count.address()).go();
        kernels.launch("p4j_cross_entropy_backward").grid(rows).block(rowThreads(vocab))
                .ptr(ptr(dLoss)).ptr(ptr(logits)).ptr(ptr(targets)).ptr(ptr(lse)).ptr(count.address())
                .i32(rows).i32(vocab).i32(ignoreIndex).f32(zLoss).ptr(out(dLogits)).i32(store ? 1 : 0).go();
        allocator.free(count);
    }

    // ---- optimizer ---------------------------------------------------------------------------

    @Override
    public void adamw(Tensor param, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, long step) {
        sameSize(param, grad, "adamw");
        sameSize(param, m, "adamw");
        sameSize(param, v, "adamw");
        if (step < 1) throw new IllegalArgumentException("step must be >= 1, got " + step);
        int n = param.size();
        if (n == 0) return;
        // The host part of FastOps.adamw, unchanged: the same float constants.
        double bc1 = 1.0 - Math.pow(beta1, step);
        double bc2 = 1.0 - Math.pow(beta2, step);
        float stepSize = (float) (lr / bc1);
        float invSqrtBc2 = (float) (1.0 / Math.sqrt(bc2));
        float decay = (float) (1.0 - (double) lr * weightDecay);
        boolean mirrored = buffer(param).mirror != null;   // the kernel writes the updated bf16 copy too (so param is not out(...))
        kernels.launch("p4j_adamw").grid(Kernels.blocks(n, THREADS)).block(THREADS)
                .ptr(ptr(param)).ptr(ptr(grad)).ptr(out(m)).ptr(out(v)).i32(n)
                .f32(beta1).f32(beta2).f32(1f - beta1).f32(1f - beta2).f32(stepSize).f32(invSqrtBc2).f32(eps).f32(decay)
                .ptr(mirrored ? mirrorAddress(param) : 0).go();
    }

    // ---- helpers -----------------------------------------------------------------------------

    private DeviceBuffer buffer(Tensor t) {
        if (t.data() instanceof DeviceBuffer b) return b;
        throw new IllegalArgumentException("tensor " + t.describe() + " is not on the CUDA backend (its storage is "
                + (t.data() == null ? "null" : t.data().getClass().getSimpleName()) + ")");
    }

    /** Device address of the tensor's first element. */
    private long ptr(Tensor t) {
        DeviceBuffer b = buffer(t);
        if (b.zeroPending()) clearRanges(b, b.takeZeros(byteStart(t), byteEnd(t)));   // zeros t overlaps, not yet written: zero them now
        return b.address() + byteStart(t);
    }

    /**
     * Whether {@code t} lies inside zeros asked for ({@link #zeros}, {@link #fill} with 0) that nothing has
     * written yet: the caller's op then writes every element of t instead of adding to zeros. Call before
     * any ptr(t) / out(t); a true answer is given once (t's range counts as written from then on).
     */
    private boolean fresh(Tensor t) {
        if (!pendingZeros(t)) return false;
        DeviceBuffer b = buffer(t);
        b.takeZeros(byteStart(t), byteEnd(t));
        if (!b.zeroPending()) pendingZeros.remove(b);
        return true;
    }

    private static void check(boolean ok, String message) {
        if (!ok) throw new IllegalArgumentException(message);
    }

    private static void sameSize(Tensor a, Tensor b, String op) {
        check(a.size() == b.size(), op + ": sizes differ: " + a.describe() + " vs " + b.describe());
    }

    private static void broadcastable(Tensor a, Tensor b, String op) {
        check(b.size() > 0 && a.size() % b.size() == 0, op + ": " + b.describe() + " does not broadcast over " + a.describe());
    }
}
