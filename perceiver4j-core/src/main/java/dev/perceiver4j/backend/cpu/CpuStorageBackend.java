package dev.perceiver4j.backend.cpu;

import dev.perceiver4j.backend.AxisSlab;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.RowScatter;
import dev.perceiver4j.backend.cpu.fast.FastOps;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.util.Arrays;

/**
 * What every CPU backend shares: Java arrays as storage (pooled per step {@link Scope}), copies,
 * casts and axis copies. Subclasses supply the compute kernels: {@link CpuBackend} (fast) and
 * {@link RefBackend} (the double-precision oracle).
 */
abstract sealed class CpuStorageBackend implements Backend permits CpuBackend, RefBackend {
    final CpuPool pool;
    private final CpuBuffers buffers = new CpuBuffers();
    private final DType matmulOperands;
    private final long f32Rows;

    CpuStorageBackend(CpuPool pool, DType matmulOperands, long f32Rows) {
        if (matmulOperands != DType.F32 && matmulOperands != DType.BF16) {
            throw new IllegalArgumentException("matmul operands must be F32 or BF16, got " + matmulOperands);
        }
        if (f32Rows < 0) throw new IllegalArgumentException("f32Rows must be >= 0, got " + f32Rows);
        this.pool = pool;
        this.matmulOperands = matmulOperands;
        this.f32Rows = f32Rows;
    }

    /** F32 unless this backend was built to take bf16 activation operands (tests of that path on the CPU). */
    @Override
    public DType matmulOperandType() {
        return matmulOperands;
    }

    /** F32 for products of at most {@code f32Rows} rows (0 unless built to mimic CUDA's skinny products), else {@link #matmulOperandType()}. */
    @Override
    public DType matmulOperandType(long rows) {
        return rows <= f32Rows ? DType.F32 : matmulOperands;
    }

    /**
     * Where an op computes an output that may be BF16 (layer norm, activations and products whose
     * only readers are products): {@code out} itself if F32, else an F32 temporary outside any
     * scope, which {@link #roundInto} then rounds into {@code out}.
     */
    static Tensor f32Target(Tensor out) {
        if (out == null || out.dtype() == DType.F32) return out;
        if (out.dtype() != DType.BF16) throw new IllegalArgumentException("output " + out.describe() + " must be F32 or BF16");
        return new Tensor(out.backend(), out.shape(), DType.F32, new float[out.size()], 0);
    }

    /** Rounds {@code f32} (from {@link #f32Target}) into {@code out}; nothing when they are the same tensor. */
    void roundInto(Tensor f32, Tensor out) {
        if (f32 != out) cast(f32, out);
    }

    /** {@code t} itself if F32; a BF16 operand widened (exactly, by {@link #cast}) into an F32 temporary outside any scope. */
    Tensor widened(Tensor t) {
        if (t == null || t.dtype() == DType.F32) return t;
        if (t.dtype() != DType.BF16) throw new IllegalArgumentException("product or attention operand " + t.describe() + " must be F32 or BF16");
        Tensor f = new Tensor(this, t.shape(), DType.F32, new float[t.size()], 0);
        cast(t, f);
        return f;
    }

    public CpuPool pool() {
        return pool;
    }

    // ---- memory ------------------------------------------------------------------------------

    @Override
    public Tensor empty(Shape shape, DType dtype) {
        int n = shape.size();
        Object data = null;
        if (Scope.current() != null) data = buffers.take(dtype, n);
        if (data == null) data = CpuBuffers.allocate(dtype, n);
        Scope.track(this, data);
        return new Tensor(this, shape, dtype, data, 0);
    }

    @Override
    public Tensor zeros(Shape shape, DType dtype) {
        Tensor t = empty(shape, dtype);
        clear(t.data());
        return t;
    }

    @Override
    public Tensor persistentZeros(Shape shape, DType dtype) {
        return new Tensor(this, shape, dtype, CpuBuffers.allocate(dtype, shape.size()), 0);
    }

    @Override
    public void release(Object buffer) {
        buffers.give(buffer);
    }

    /** Bytes currently parked in the buffer pool (for memory reports). */
    public long pooledBytes() {
        return buffers.pooledBytes();
    }

    private static void clear(Object data) {
        switch (data) {
            case float[] a -> Arrays.fill(a, 0f);
            case short[] a -> Arrays.fill(a, (short) 0);
            case int[] a -> Arrays.fill(a, 0);
            case long[] a -> Arrays.fill(a, 0L);
            case byte[] a -> Arrays.fill(a, (byte) 0);
            default -> throw new IllegalArgumentException("not a CPU buffer: " + data.getClass());
        }
    }

    @Override
    public Tensor fromFloats(float[] values, Shape shape) {
        check(values.length == shape.numel(), "fromFloats: " + values.length + " values for shape " + shape);
        return new Tensor(this, shape, DType.F32, values.clone(), 0);
    }

    @Override
    public Tensor fromInts(int[] values, Shape shape) {
        check(values.length == shape.numel(), "fromInts: " + values.length + " values for shape " + shape);
        return new Tensor(this, shape, DType.I32, values.clone(), 0);
    }

    @Override
    public Tensor fromBools(boolean[] values, Shape shape) {
        check(values.length == shape.numel(), "fromBools: " + values.length + " values for shape " + shape);
        Tensor t = new Tensor(this, shape, DType.BOOL, new byte[values.length], 0);
        writeBools(values, t);
        return t;
    }

    @Override
    public void writeInts(int[] values, Tensor dst) {
        check(dst.dtype() == DType.I32 && values.length == dst.size(), "writeInts: " + values.length + " values into " + dst.describe());
        System.arraycopy(values, 0, dst.ints(), dst.offset(), values.length);
    }

    @Override
    public void writeBools(boolean[] values, Tensor dst) {
        check(dst.dtype() == DType.BOOL && values.length == dst.size(), "writeBools: " + values.length + " values into " + dst.describe());
        byte[] b = dst.bools();
        for (int i = 0; i < values.length; i++) b[dst.offset() + i] = (byte) (values[i] ? 1 : 0);
    }

    @Override
    public float[] toFloatArray(Tensor t) {
        int n = t.size();
        int o = t.offset();
        float[] r = new float[n];
        switch (t.dtype()) {
            case F32 -> System.arraycopy(t.floats(), o, r, 0, n);
            case BF16 -> FastOps.fromBf16(pool, t.shorts(), o, r, 0, n);
            case I32 -> { int[] a = t.ints(); for (int i = 0; i < n; i++) r[i] = a[o + i]; }
            case I64 -> { long[] a = t.longs(); for (int i = 0; i < n; i++) r[i] = a[o + i]; }
            case BOOL -> { byte[] a = t.bools(); for (int i = 0; i < n; i++) r[i] = a[o + i]; }
        }
        return r;
    }

    @Override
    public void copy(Tensor src, Tensor dst) {
        sameSize(src, dst, "copy");
        check(src.dtype() == dst.dtype(), "copy: dtype " + src.dtype() + " to " + dst.dtype() + " (use cast)");
        System.arraycopy(src.data(), src.offset(), dst.data(), dst.offset(), src.size());
    }

    @Override
    public void cast(Tensor src, Tensor dst) {
        sameSize(src, dst, "cast");
        int n = src.size();
        DType from = src.dtype(), to = dst.dtype();
        if (from == to) {
            copy(src, dst);
        } else if (from == DType.F32 && to == DType.BF16) {
            FastOps.toBf16(pool, src.floats(), src.offset(), dst.shorts(), dst.offset(), n);
        } else if (from == DType.BF16 && to == DType.F32) {
            FastOps.fromBf16(pool, src.shorts(), src.offset(), dst.floats(), dst.offset(), n);
        } else if (from == DType.I64 && to == DType.I32) {
            FastOps.toInt32(pool, src.longs(), src.offset(), dst.ints(), dst.offset(), n);
        } else if (from == DType.I32 && to == DType.I64) {
            int[] a = src.ints();
            long[] b = dst.longs();
            for (int i = 0; i < n; i++) b[dst.offset() + i] = a[src.offset() + i];
        } else if (to == DType.F32) {
            System.arraycopy(toFloatArray(src), 0, dst.floats(), dst.offset(), n);
        } else {
            throw new UnsupportedOperationException("cast " + from + " -> " + to + " is not supported");
        }
    }

    // ---- copies along an axis ----------------------------------------------------------------

    @Override
    public void narrow(Tensor src, int axis, int start, Tensor dst, boolean accumulate) {
        blockCopy(src, dst, axis, start, true, accumulate);
    }

    @Override
    public void unnarrow(Tensor src, int axis, int start, Tensor dst, boolean accumulate) {
        blockCopy(src, dst, axis, start, false, accumulate);
    }

    @Override
    public void scatterRows(Tensor src, Tensor rows, Tensor dst) {
        int width = RowScatter.width(src, rows, dst);
        int[] r = rows.ints();
        int count = dst.shape().numel() == 0 ? 0 : dst.size() / width;
        for (int i = 0; i < rows.size(); i++) {
            int row = r[rows.offset() + i];
            check(row >= 0 && row < count, "scatterRows: row index " + row + " at position " + i + " is outside [0, " + count + ")");
            System.arraycopy(src.data(), src.offset() + i * width, dst.data(), dst.offset() + row * width, width);
        }
    }

    /**
     * Copies between a full tensor and a slab [start, start+len) of it along {@code axis}.
     * Viewing both as [outer, len·inner] blocks, each outer index is one contiguous run.
     */
    private void blockCopy(Tensor src, Tensor dst, int axis, int start, boolean fromFull, boolean accumulate) {
        Tensor full = fromFull ? src : dst, part = fromFull ? dst : src;
        AxisSlab g = AxisSlab.of(full, part, axis, start, accumulate);
        for (int o = 0; o < g.outer(); o++) {
            int fo = full.offset() + o * g.fullRun() + g.startOffset(), po = part.offset() + o * g.partRun();
            int so = fromFull ? fo : po, dOff = fromFull ? po : fo;
            if (accumulate) {   // F32 (AxisSlab checks)
                FastOps.axpy(pool, 1f, src.floats(), so, dst.floats(), dOff, g.partRun());
            } else {            // any dtype: the arrays' elements
                System.arraycopy(src.data(), so, dst.data(), dOff, g.partRun());
            }
        }
    }

    // ---- checks ------------------------------------------------------------------------------

    static void check(boolean ok, String message) {
        if (!ok) throw new IllegalArgumentException(message);
    }

    static void sameSize(Tensor a, Tensor b, String op) {
        check(a.size() == b.size(), op + ": sizes differ: " + a.describe() + " vs " + b.describe());
    }

    /** A product's bias (or null) has one element per output column n. */
    static void biasSize(Tensor bias, long n, String op) {
        check(bias == null || bias.size() == n, op + ": bias " + (bias == null ? "" : bias.describe()) + " should have " + n + " elements");
    }

    static void broadcastable(Tensor a, Tensor b, String op) {
        check(b.size() > 0 && a.size() % b.size() == 0, op + ": " + b.describe() + " does not broadcast over " + a.describe());
    }
}
