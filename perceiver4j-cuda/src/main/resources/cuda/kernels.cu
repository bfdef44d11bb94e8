// perceiver4j CUDA kernels: compiled once per process by NVRTC (Kernels.java) for the device's
// compute capability. No headers: NVRTC provides the CUDA built-ins (erff, expf, atomicCAS, ...).
//
// Conventions (the same as dev.perceiver4j.backend.Backend): row-major contiguous tensors; every
// *_backward kernel ACCUMULATES into its gradient outputs (dX += ...) unless its comment says
// "written". Forward and backward of an op sit side by side. The oracle for every kernel is
// dev.perceiver4j.backend.cpu.ref.RefOps (double precision); GpuSelfTest compares the two.
// Reductions use a fixed order that depends only on the shapes and the launch configuration
// chosen by CudaBackend (never on atomics), so results repeat bit for bit from run to run.
//
// Bad input (a token id or target outside the vocabulary) cannot throw on the device: the kernel
// records the first such case in the 4-int status word (code, position, value, limit) and
// CudaBackend raises it as an IllegalArgumentException at its next synchronisation point.

#define STATUS_BAD_TOKEN_ID 1
#define STATUS_BAD_TARGET 2
#define STATUS_I64_OVERFLOW 3
#define STATUS_BAD_ROW 4

#define NEG_INF __int_as_float(0xff800000)

#define ACT_NONE 0
#define ACT_GELU 1
#define ACT_SQUARED_RELU 2
#define ACT_RELU 3

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

__device__ void report(int* status, int code, int position, int value, int limit) {
    if (atomicCAS(status, 0, code) == 0) {
        status[1] = position;
        status[2] = value;
        status[3] = limit;
    }
}

// ================================================================ reductions

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Block-wide sum / max (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// sh: 32 floats of shared memory, reusable across calls.
__device__ float block_sum(float v, float* sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();                       // sh may still be read by a previous call
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < warps ? sh[lane] : 0.0f;
        w = warp_sum(w);
        if (lane == 0) sh[0] = w;
    }
    __syncthreads();
    return sh[0];
}

__device__ float block_max(float v, float* sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < warps ? sh[lane] : NEG_INF;
        w = warp_max(w);
        if (lane == 0) sh[0] = w;
    }
    __syncthreads();
    return sh[0];
}

__device__ double block_sum_d(double v, double* sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        double w = lane < warps ? sh[lane] : 0.0;
        w = warp_sum_d(w);
        if (lane == 0) sh[0] = w;
    }
    __syncthreads();
    return sh[0];
}

// ================================================================ casts

// bf16 bits of a float, round to nearest even; NaN stays a quiet NaN (RefOps.floatToBf16).
__device__ __forceinline__ unsigned short f32_to_bf16_bits(float f) {
    unsigned int bits = __float_as_uint(f);
    if (f != f) return (unsigned short) ((bits >> 16) | 0x0040u);
    unsigned int rounded = bits + 0x7FFFu + ((bits >> 16) & 1u);
    return (unsigned short) (rounded >> 16);
}

// Elementwise kernels marked "4 per thread" take elements [4t, 4t + 4) in thread t (grid from
// Kernels.quadBlocks): one 16-byte access per fp32 operand (8 bytes per bf16 one) when every pointer
// is aligned for it, element by element otherwise and for the last, partial group. Both paths
// compute the same values.
__device__ __forceinline__ bool aligned16p(const void* p) { return ((unsigned long long) p & 15) == 0; }
__device__ __forceinline__ bool aligned8p(const void* p) { return ((unsigned long long) p & 7) == 0; }

// four floats as four bf16 values packed in 8 bytes (element 0 in the low half of .x, as in memory)
__device__ __forceinline__ uint2 bf16x4_bits(float4 v) {
    return make_uint2((unsigned int) f32_to_bf16_bits(v.x) | ((unsigned int) f32_to_bf16_bits(v.y) << 16),
                      (unsigned int) f32_to_bf16_bits(v.z) | ((unsigned int) f32_to_bf16_bits(v.w) << 16));
}

// the bf16 value at p widened exactly (f32_to_bf16_bits' inverse on the values it produces)
__device__ __forceinline__ float bf16_load(const unsigned short* p) {
    return __uint_as_float((unsigned) *p << 16);
}

// four bf16 values (8 bytes at p, 8-byte aligned) widened exactly (bf16x4_bits' inverse)
__device__ __forceinline__ float4 bf16x4_load(const unsigned short* p) {
    uint2 u = *(const uint2*) p;
    return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u), __uint_as_float(u.y << 16),
                       __uint_as_float(u.y & 0xffff0000u));
}

// first element of thread t's group of four
__device__ __forceinline__ long long quad_start() {
    return 4LL * ((long long) blockIdx.x * blockDim.x + threadIdx.x);
}

// x [n] F32 -> y [n] BF16; 4 per thread
extern "C" __global__ void p4j_f32_to_bf16(const float* x, unsigned short* y, int n) {
    long long i = quad_start();
    if (i >= n) return;
    if (i + 4 <= n && aligned16p(x) && aligned8p(y)) {
        *(uint2*) (y + i) = bf16x4_bits(*(const float4*) (x + i));
    } else {
        for (long long j = i; j < n && j < i + 4; j++) y[j] = f32_to_bf16_bits(x[j]);
    }
}

// x [n] BF16 -> y [n] F32 (exact)
extern "C" __global__ void p4j_bf16_to_f32(const unsigned short* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = bf16_load(x + i);
}

// x [n] I32 -> y [n] F32
extern "C" __global__ void p4j_i32_to_f32(const int* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = (float) x[i];
}

// x [n] I32 -> y [n] I64
extern "C" __global__ void p4j_i32_to_i64(const int* x, long long* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = (long long) x[i];
}

// x [n] I64 -> y [n] I32, reporting the first value outside the int range
extern "C" __global__ void p4j_i64_to_i32(const long long* x, int* y, int n, int* status) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long v = x[i];
    if (v < -2147483648LL || v > 2147483647LL) report(status, STATUS_I64_OVERFLOW, i, (int) v, 0);
    y[i] = (int) v;
}

// x [n] I64 -> y [n] F32 (round to nearest, as Java's (float) long)
extern "C" __global__ void p4j_i64_to_f32(const long long* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __ll2float_rn(x[i]);
}

// x [n] BOOL (one byte each) -> y [n] F32: the byte's value (0 or 1), as CpuStorageBackend.toFloatArray
extern "C" __global__ void p4j_bool_to_f32(const signed char* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = (float) x[i];
}

// ================================================================ activations (+ bias epilogue)

__device__ __forceinline__ float act_forward(int act, float x) {
    switch (act) {
        case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case ACT_SQUARED_RELU: return x > 0.0f ? x * x : 0.0f;
        case ACT_RELU: return x > 0.0f ? x : 0.0f;
        default: return x;
    }
}

// act'(x); RELU'(0) = SQUARED_RELU'(0) = 0; GELU' = Phi(x) + x*phi(x)
__device__ __forceinline__ float act_derivative(int act, float x) {
    switch (act) {
        case ACT_GELU: return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.39894228040143268f * expf(-0.5f * x * x);
        case ACT_SQUARED_RELU: return x > 0.0f ? 2.0f * x : 0.0f;
        case ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
        default: return 1.0f;
    }
}

// p = c + bias[i mod cols] (bias may be null); pre[i] = p (pre may be null); out[i] = act(p), or
// out16[i] = bf16(act(p)) when out16 is not null (an output only products read; out is then unused).
// c, pre, out [n] viewed as [n/cols, cols]; bias [cols]. out and pre may alias c.
// Serves matmul's epilogue and the plain activation (bias = pre = null). 4 per thread (the
// 16-byte path also needs cols a multiple of 4 when there is a bias, so a group is in one row).
extern "C" __global__ void p4j_bias_act(const float* c, const float* bias, int cols, float* pre, float* out, int n, int act,
                                        unsigned short* out16) {
    long long i = quad_start();
    if (i >= n) return;
    bool vec = i + 4 <= n && aligned16p(c) && (bias == 0 || ((cols & 3) == 0 && aligned16p(bias))) && aligned16p(pre)
               && (out16 != 0 ? aligned8p(out16) : aligned16p(out));
    if (vec) {
        float4 p = *(const float4*) (c + i);
        if (bias != 0) {
            float4 b = *(const float4*) (bias + (int) (i % cols));
            p.x += b.x; p.y += b.y; p.z += b.z; p.w += b.w;
        }
        if (pre != 0) *(float4*) (pre + i) = p;
        float4 y = make_float4(act_forward(act, p.x), act_forward(act, p.y), act_forward(act, p.z), act_forward(act, p.w));
        if (out16 != 0) *(uint2*) (out16 + i) = bf16x4_bits(y);
        else *(float4*) (out + i) = y;
        return;
    }
    for (long long j = i; j < n && j < i + 4; j++) {
        float p = c[j];
        if (bias != 0) p += bias[(int) (j % cols)];
        if (pre != 0) pre[j] = p;
        float y = act_forward(act, p);
        if (out16 != 0) out16[j] = f32_to_bf16_bits(y);
        else out[j] = y;
    }
}

// out[i] = act(x16[i]), or out16[i] = bf16(act(x16[i])) when out16 is not null: the activation of a
// pre-activation stored as bf16 (an MLP's, whose hidden state only products read). x16, out [n]. 4 per thread.
extern "C" __global__ void p4j_act_bf16(const unsigned short* x16, float* out, unsigned short* out16, int n, int act) {
    long long i = quad_start();
    if (i >= n) return;
    if (i + 4 <= n && aligned8p(x16) && (out16 != 0 ? aligned8p(out16) : aligned16p(out))) {
        float4 v = bf16x4_load(x16 + i);
        float4 y = make_float4(act_forward(act, v.x), act_forward(act, v.y), act_forward(act, v.z), act_forward(act, v.w));
        if (out16 != 0) *(uint2*) (out16 + i) = bf16x4_bits(y);
        else *(float4*) (out + i) = y;
        return;
    }
    for (long long j = i; j < n && j < i + 4; j++) {
        float y = act_forward(act, bf16_load(x16 + j));
        if (out16 != 0) out16[j] = f32_to_bf16_bits(y);
        else out[j] = y;
    }
}

// g = dOut[i]·act'(x[i]); dX[i] += g (accumulate != 0) or dX[i] = g (written; matmul's dC).
// x is the pre-activation, or x16 when that is not null (stored as bf16; x not read). x, dOut, dX [n]. 4 per thread.
extern "C" __global__ void p4j_act_backward(const float* x, const float* dOut, float* dX, int n, int act, int accumulate,
                                            const unsigned short* x16) {
    long long i = quad_start();
    if (i >= n) return;
    if (i + 4 <= n && (x16 != 0 ? aligned8p(x16) : aligned16p(x)) && aligned16p(dOut) && aligned16p(dX)) {
        float4 v = x16 != 0 ? bf16x4_load(x16 + i) : *(const float4*) (x + i), d = *(const float4*) (dOut + i);
        float4 g = make_float4(d.x * act_derivative(act, v.x), d.y * act_derivative(act, v.y),
                               d.z * act_derivative(act, v.z), d.w * act_derivative(act, v.w));
        if (accumulate) {
            float4 o = *(const float4*) (dX + i);
            g.x += o.x; g.y += o.y; g.z += o.z; g.w += o.w;
        }
        *(float4*) (dX + i) = g;
        return;
    }
    for (long long j = i; j < n && j < i + 4; j++) {
        float g = dOut[j] * act_derivative(act, x16 != 0 ? bf16_load(x16 + j) : x[j]);
        dX[j] = accumulate ? dX[j] + g : g;
    }
}

// matmul backward's dC rounded as it is made: dC16[i] = bf16(dOut[i]·act'(x[i])), for a bf16 product
// with no bias gradient (nothing else reads dC in fp32). x, dOut [n] F32 (x16 instead of x when not
// null: a bf16 pre-activation); dC16 [n] BF16. 4 per thread.
extern "C" __global__ void p4j_act_backward_bf16(const float* x, const float* dOut, unsigned short* dC16, int n, int act,
                                                 const unsigned short* x16) {
    long long i = quad_start();
    if (i >= n) return;
    if (i + 4 <= n && (x16 != 0 ? aligned8p(x16) : aligned16p(x)) && aligned16p(dOut) && aligned8p(dC16)) {
        float4 v = x16 != 0 ? bf16x4_load(x16 + i) : *(const float4*) (x + i), d = *(const float4*) (dOut + i);
        *(uint2*) (dC16 + i) = bf16x4_bits(make_float4(d.x * act_derivative(act, v.x), d.y * act_derivative(act, v.y),
                                                       d.z * act_derivative(act, v.z), d.w * act_derivative(act, v.w)));
        return;
    }
    for (long long j = i; j < n && j < i + 4; j++) {
        dC16[j] = f32_to_bf16_bits(dOut[j] * act_derivative(act, x16 != 0 ? bf16_load(x16 + j) : x[j]));
    }
}

// ================================================================ elementwise

// out[i] = a[i] + b[i mod bLen]; a, out [n]; b [bLen]
extern "C" __global__ void p4j_add(const float* a, const float* b, float* out, int n, int bLen) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i % bLen];
}

// out[i] = a[i] * b[i mod bLen]
extern "C" __global__ void p4j_mul(const float* a, const float* b, float* out, int n, int bLen) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] * b[i % bLen];
}

// add and mul four floats at a time (n and bLen multiples of 4, every pointer 16-byte aligned); a, out [n/4], b [bLen/4]
#define P4J_BINARY4(NAME, OP)                                                                                      \
    extern "C" __global__ void NAME(const float4* a, const float4* b, float4* out, int n4, int bLen4) {            \
        int i = blockIdx.x * blockDim.x + threadIdx.x;                                                             \
        if (i < n4) {                                                                                              \
            float4 x = a[i], y = b[bLen4 == n4 ? i : i % bLen4];                                                   \
            out[i] = make_float4(x.x OP y.x, x.y OP y.y, x.z OP y.z, x.w OP y.w);                                  \
        }                                                                                                          \
    }
P4J_BINARY4(p4j_add4, +)
P4J_BINARY4(p4j_mul4, *)

// out[i] = b[i mod bLen]: an add to zeros nothing has written (lazy zeros), which need not be read; four
// floats at a time when n and bLen are multiples of 4 and both pointers 16-byte aligned (n4, bLen4 then in quads)
extern "C" __global__ void p4j_repeat(const float* b, float* out, int n, int bLen) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = b[i % bLen];
}
extern "C" __global__ void p4j_repeat4(const float4* b, float4* out, int n4, int bLen4) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n4) out[i] = b[i % bLen4];
}

// out = alpha·x
extern "C" __global__ void p4j_scale(const float* x, float alpha, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = alpha * x[i];
}

// y += alpha·x
extern "C" __global__ void p4j_axpy(float alpha, const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += alpha * x[i];
}

// partial[blockIdx.x] = Σ x[i]² (double) over a grid-stride slice; p4j_sum_sqrt_finish adds the partials.
extern "C" __global__ void p4j_sum_squares_partial(const float* x, int n, double* partial) {
    __shared__ double sh[32];
    double s = 0.0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        double v = (double) x[i];
        s += v * v;
    }
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// out[0] = sqrt(Σ partial[i]) (one block; the same fixed order at every launch of the same n).
extern "C" __global__ void p4j_sum_sqrt_finish(const double* partial, int n, float* out) {
    __shared__ double sh[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) out[0] = (float) sqrt(s);
}

// x *= maxNorm / (norm[0] + 1e-6) when norm[0] > maxNorm (not for a NaN norm); every thread returns
// at once otherwise. Grid-stride over x [n].
extern "C" __global__ void p4j_clip_by_norm(float* x, const float* norm, float maxNorm, int n) {
    const float nrm = norm[0];
    if (!(nrm > maxNorm)) return;
    const float s = (float) ((double) maxNorm / ((double) nrm + 1e-6));
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] *= s;
}

/**
 * Whether this block is the last of its column of blocks (blockIdx.x) to have written its partial sums:
 * every thread's partials are made visible device-wide (threadfence) and the block waits for all of
 * them (syncthreads: several threads write partials, and thread 0 must not take the ticket before the
 * last of them is fenced); then thread 0 takes a ticket, and the block that takes the last one resets
 * the counter for the next launch (kernels on one stream run one after another) and finishes the sums.
 * Every thread of the block must call it.
 */
__device__ __forceinline__ bool column_block_last(unsigned* tickets) {
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        last = atomicAdd(tickets + blockIdx.x, 1u) == gridDim.y - 1;
        if (last) tickets[blockIdx.x] = 0;
    }
    __syncthreads();
    return last;
}

/**
 * Stage 2 for one column j: out[j] += Σ_c partial[c, j], chunks in order (p4j_column_finish's sum); out[j] = Σ
 * when store is not 0 (a gradient nothing has written yet: out is not read).
 */
__device__ __forceinline__ void column_finish_one(const float* partial, int chunks, int cols, int j, float* out, int store) {
    float s = 0.0f;
    for (int c = 0; c < chunks; c++) s += __ldcg(partial + (long long) c * cols + j);   // written by other blocks: not from L1
    out[j] = store ? s : out[j] + s;
}

// Column sums in two deterministic stages. Stage 1: partial[chunk, j] = Σ x[r, j] over the
// rows r of chunk (blockIdx.y), rowsPerChunk rows each. x [rows, cols]; partial [chunks, cols].
// When x16 is not null it also writes x16 = bf16(x) (a bias gradient and the bf16 operand of the
// same matmul backward from one read of dC). When out is not null the last block of each column
// of blocks also does stage 2 for its columns (column_block_last; tickets [gridDim.x], zero), writing
// the sums instead of adding them when store is not 0.
extern "C" __global__ void p4j_column_partial(const float* x, int rows, int cols, int rowsPerChunk, float* partial,
                                              unsigned short* x16, float* out, unsigned* tickets, int store) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    bool active = j < cols;
    int r0 = blockIdx.y * rowsPerChunk, r1 = imin(rows, r0 + rowsPerChunk);
    float s = 0.0f;
    if (active && x16 != 0) {
        for (int r = r0; r < r1; r++) {
            long long at = (long long) r * cols + j;
            float v = x[at];
            s += v;
            x16[at] = f32_to_bf16_bits(v);
        }
    } else if (active) {
        for (int r = r0; r < r1; r++) s += x[(long long) r * cols + j];
    }
    if (active) partial[(long long) blockIdx.y * cols + j] = s;
    if (out != 0 && column_block_last(tickets) && active) column_finish_one(partial, gridDim.y, cols, j, out, store);
}

// The 4-column sum layout: a block of 256 threads is COL_GROUPS row groups (threadIdx.x / 16) ×
// COL_QUADS column threads (threadIdx.x % 16) of 4 adjacent columns each, so 64 columns per block
// (blockIdx.x). Row group g takes rows g, g + 16, ... of the block's rows; the group sums are added in
// the order g = 0..15, so every result depends on the shape alone (deterministic).
#define COL_GROUPS 16
#define COL_QUADS 16

__device__ __forceinline__ void f4_add(float4& a, float4 b) {
    a.x += b.x; a.y += b.y; a.z += b.z; a.w += b.w;
}

// Σ over the row groups of s, in group order; the total is valid in group 0's threads. Every thread
// of the block must call it (sh is reusable when it returns).
__device__ __forceinline__ float4 col_groups_sum(float4 s, float4 (*sh)[COL_QUADS]) {
    const int q = threadIdx.x % COL_QUADS, g = threadIdx.x / COL_QUADS;
    sh[g][q] = s;
    __syncthreads();
    float4 t = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (g == 0) {
        for (int k = 0; k < COL_GROUPS; k++) f4_add(t, sh[k][q]);
    }
    __syncthreads();
    return t;
}

// Stage 2 for the block's 64 columns: out[c] += Σ_k partial[k, c] over the chunks k (out[c] = Σ when store
// is not 0); row group g adds chunks g, g + 16, ... in order, then the groups are added in order
// (col_groups_sum). partial [chunks, cols], 16-byte aligned rows (cols a multiple of 4); out needs no
// alignment. Every thread of the block must call it.
__device__ __forceinline__ void col_quads_finish(const float* partial, int chunks, int cols, float* out, float4 (*sh)[COL_QUADS],
                                                 int store) {
    const int q = threadIdx.x % COL_QUADS, g = threadIdx.x / COL_QUADS;
    const int c = (blockIdx.x * COL_QUADS + q) * 4;
    float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (c < cols) {
        for (int k = g; k < chunks; k += COL_GROUPS) f4_add(s, __ldcg((const float4*) (partial + (long long) k * cols + c)));
    }
    const float4 t = col_groups_sum(s, sh);
    if (g == 0 && c < cols && store) {
        out[c] = t.x; out[c + 1] = t.y; out[c + 2] = t.z; out[c + 3] = t.w;
    } else if (g == 0 && c < cols) {
        out[c] += t.x; out[c + 1] += t.y; out[c + 2] += t.z; out[c + 3] += t.w;
    }
}

// Stage 1 with 4 columns per thread in the layout above (cols a multiple of 4, x and partial 16-byte
// aligned, x16 8-byte aligned): partial[chunk, c] = Σ x[r, c] over the rows of chunk blockIdx.y.
// Writes x16 = bf16(x) too when x16 is not null; the last block of each column of blocks adds the
// chunks when out is not null (column_block_last). Same partial layout as p4j_column_partial.
// With act not 0 (Activation's ordinal) x is dOut of an activation and the summed (and rounded) values are
// dOut·act'(pre), pre the pre-activation [rows, cols] as pre16 (bf16, 8-byte aligned) when not null, else
// pre32 (16-byte aligned): the bias gradient and bf16 dC of a product with an activation from one pass,
// the values of p4j_act_backward. xIn16 (not null): x stored as bf16 (8-byte aligned; x not read).
extern "C" __global__ void p4j_column_partial4(const float* x, int rows, int cols, int rowsPerChunk, float* partial,
                                               unsigned short* x16, float* out, unsigned* tickets,
                                               const unsigned short* pre16, const float* pre32, int act, int store,
                                               const unsigned short* xIn16) {
    __shared__ float4 sh[COL_GROUPS][COL_QUADS];
    const int q = threadIdx.x % COL_QUADS, g = threadIdx.x / COL_QUADS;
    const int c = (blockIdx.x * COL_QUADS + q) * 4;
    const bool active = c < cols;
    const int r0 = blockIdx.y * rowsPerChunk, r1 = imin(rows, r0 + rowsPerChunk);
    float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (active) {
#pragma unroll 4
        for (int r = r0 + g; r < r1; r += COL_GROUPS) {
            const long long at = (long long) r * cols + c;
            float4 v = xIn16 != nullptr ? bf16x4_load(xIn16 + at) : *(const float4*) (x + at);
            if (act != 0) {
                const float4 p = pre16 != 0 ? bf16x4_load(pre16 + at) : *(const float4*) (pre32 + at);
                v = make_float4(v.x * act_derivative(act, p.x), v.y * act_derivative(act, p.y),
                                v.z * act_derivative(act, p.z), v.w * act_derivative(act, p.w));
            }
            f4_add(s, v);
            if (x16 != 0) *(uint2*) (x16 + at) = bf16x4_bits(v);
        }
    }
    const float4 t = col_groups_sum(s, sh);
    if (g == 0 && active) *(float4*) (partial + (long long) blockIdx.y * cols + c) = t;
    if (out != 0 && column_block_last(tickets)) col_quads_finish(partial, gridDim.y, cols, out, sh, store);
}

// Stage 2: out[j] += Σ_c partial[c, j], chunks in order (out[j] = Σ when store is not 0).
extern "C" __global__ void p4j_column_finish(const float* partial, int chunks, int cols, float* out, int store) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    float s = 0.0f;
    for (int c = 0; c < chunks; c++) s += partial[(long long) c * cols + j];
    out[j] = store ? s : out[j] + s;
}

// Stage 2 on its own for partial sums left by a kernel that does not finish them (the fused layer-norm
// backward, up to 1,024 chunks): out[c] += Σ_k partial[k·stride + c] for c < split, out2[c − split] += …
// for split ≤ c < cols (a null output is skipped; store bit 1 writes out instead of adding, bit 2 out2). A block is FIN_GROUPS row groups × 4 column quads (16
// columns, so enough blocks to spread the partials over the SMs); row group g adds chunks g, g + FIN_GROUPS,
// ... in order, then the groups are added by a fixed pairwise tree (deterministic). partial rows 16-byte
// aligned (cols, split and stride multiples of 4).
#define FIN_GROUPS 64
extern "C" __global__ void __launch_bounds__(FIN_GROUPS * 4) p4j_column_finish_rows(const float* partial, int chunks, int cols,
                                                                                  long long stride, float* out, int split, float* out2,
                                                                                  int store) {
    __shared__ float4 sh[FIN_GROUPS][4];
    const int q = threadIdx.x & 3, g = threadIdx.x >> 2;
    const int c = (blockIdx.x * 4 + q) * 4;
    float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (c < cols) {
#pragma unroll 4
        for (int k = g; k < chunks; k += FIN_GROUPS) f4_add(s, __ldcg((const float4*) (partial + k * stride + c)));
    }
    sh[g][q] = s;
    __syncthreads();
#pragma unroll
    for (int half = FIN_GROUPS / 2; half > 0; half >>= 1) {
        if (g < half) f4_add(sh[g][q], sh[g + half][q]);
        __syncthreads();
    }
    float* const to = c < split ? out : out2;   // this column's output (null: not wanted)
    if (g == 0 && c < cols && to != 0) {
        const float4 t = sh[0][q];
        float* o = to + (c < split ? c : c - split);
        if (store & (c < split ? 1 : 2)) {
            o[0] = t.x; o[1] = t.y; o[2] = t.z; o[3] = t.w;
        } else {
            o[0] += t.x; o[1] += t.y; o[2] += t.z; o[3] += t.w;
        }
    }
}

// ================================================================ layer norm

// One block per row. x, out [rows, d]; gamma, beta [d]; mean, rstd [rows] (written).
// Two passes (mean, then Σ(x−mean)²): biased variance, rstd = 1/sqrt(var + eps).
extern "C" __global__ void p4j_layernorm(const float* x, const float* gamma, const float* beta, float* out,
                                         float* mean, float* rstd, int rows, int d, float eps, unsigned short* out16) {
    __shared__ float sh[32];
    int r = blockIdx.x;
    const float* xr = x + (long long) r * d;
    float s = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) s += xr[j];
    float mu = block_sum(s, sh) / d;
    float v = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        float c = xr[j] - mu;
        v += c * c;
    }
    float rs = rsqrtf(block_sum(v, sh) / d + eps);
    float* outr = out + (long long) r * d;
    unsigned short* o16 = out16 == 0 ? 0 : out16 + (long long) r * d;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        float y = (xr[j] - mu) * rs * gamma[j] + beta[j];
        if (o16 != 0) o16[j] = f32_to_bf16_bits(y);
        else outr[j] = y;
    }
    if (threadIdx.x == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
}

// (out16 not null: the output is written there as bf16 instead of to out, for normed inputs only
// products read.)
// The same two kernels for rows of d ≤ 4·32·12 floats with d % 4 == 0 and 16-byte aligned
// rows (8-byte aligned for a bf16 output): one warp per row, the row held in registers as float4 (read once), warp-shuffle sums.
// Same math (two-pass variance, biased, rstd = 1/sqrt(var + eps)); only the summation order differs.
// Templated on LN_VECS (float4s per lane, 4, 8, 10 or 12: d ≤ 512, 1024, 1280, 1536) so a row of 512 keeps 4 float4s
// per lane in registers, not 12, and a row of 1280 (the masked-LM latents) 10.
// The sums run over the same elements in the same order at every LN_VECS, so results do not depend on it.
#define LN_WARPS 8


template <int LN_VECS>
__device__ __forceinline__ void layernorm_warp(const float* x, const float* gamma, const float* beta, float* out, float* mean,
                                               float* rstd, int rows, int d, float eps, unsigned short* out16) {
    const int r = blockIdx.x * LN_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31, d4 = d >> 2;
    if (r >= rows) return; // warp-uniform
    const float4* xr = reinterpret_cast<const float4*>(x + (long long) r * d);
    float4 v[LN_VECS];
    float s = 0.0f;
#pragma unroll
    for (int t = 0; t < LN_VECS; t++) {
        int c = lane + 32 * t;
        v[t] = c < d4 ? xr[c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        s += (v[t].x + v[t].y) + (v[t].z + v[t].w);
    }
    const float mu = warp_sum(s) / d;
    float q = 0.0f;
#pragma unroll
    for (int t = 0; t < LN_VECS; t++) {
        if (lane + 32 * t < d4) {
            float a = v[t].x - mu, b = v[t].y - mu, c = v[t].z - mu, e = v[t].w - mu;
            q += (a * a + b * b) + (c * c + e * e);
        }
    }
    const float rs = rsqrtf(warp_sum(q) / d + eps);
    const float4* g4 = reinterpret_cast<const float4*>(gamma);
    const float4* b4 = reinterpret_cast<const float4*>(beta);
    float4* o4 = reinterpret_cast<float4*>(out + (long long) r * d);
#pragma unroll
    for (int t = 0; t < LN_VECS; t++) {
        int c = lane + 32 * t;
        if (c < d4) {
            float4 g = g4[c], b = b4[c], y;
            y.x = (v[t].x - mu) * rs * g.x + b.x;
            y.y = (v[t].y - mu) * rs * g.y + b.y;
            y.z = (v[t].z - mu) * rs * g.z + b.z;
            y.w = (v[t].w - mu) * rs * g.w + b.w;
            if (out16 != 0) {
                reinterpret_cast<uint2*>(out16 + (long long) r * d)[c] = bf16x4_bits(y);
            } else {
                o4[c] = y;
            }
        }
    }
    if (lane == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
}

// xhat and g = dOut·gamma of one float4 of a row (its x, dOut and gamma values).
__device__ __forceinline__ void ln_xhat_g(float4 xv, float4 dv, float4 gm, float mu, float rs, float4& xh, float4& gg) {
    xh = make_float4((xv.x - mu) * rs, (xv.y - mu) * rs, (xv.z - mu) * rs, (xv.w - mu) * rs);
    gg = make_float4(dv.x * gm.x, dv.y * gm.y, dv.z * gm.z, dv.w * gm.w);
}

// One row's terms of the parameter gradients for the float4 at c, into the calling warp's slice of
// column sums (sums [2][d4] float4s: dGamma's Σ dOut·xhat, then dBeta's Σ dOut): sums[c] += dv·xh,
// sums[d4 + c] += dv; the warp's first row writes them (onto zeros) instead of adding.
__device__ __forceinline__ void ln_params_add(float4* sums, int d4, int c, float4 xh, float4 dv, bool first) {
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float4 sg = first ? zero : sums[c], sb = first ? zero : sums[d4 + c];
    sg.x += dv.x * xh.x;
    sg.y += dv.y * xh.y;
    sg.z += dv.z * xh.z;
    sg.w += dv.w * xh.w;
    f4_add(sb, dv);
    sums[c] = sg;
    sums[d4 + c] = sb;
}

// The backward of row r for the calling warp (all its lanes; d, mu = mean[r], rs = rstd[r] as in
// layernorm_warp). With xhat = (x − mean)·rstd and g = dOut·gamma:
// dX += rstd·(g − mean_j(g) − xhat·mean_j(g·xhat)) (dX = … when accumulate is 0). dOut, x, dX [rows, d]; gamma [d].
// With PARAMS (the fused kernel) the row's dOut·xhat and dOut are also added to the warp's column sums
// (ln_params_add; sums, first) in the second pass; dX comes out the same either way (the same
// expressions on the same values).
// The lane's x and dOut float4s (2·LN_VECS, 96 registers at LN_VECS 12) are all loaded first and held
// between the passes; gamma is read again in the second pass (from L1: the same values, so xhat and g are
// the same bits). The earlier version held nothing above LN_VECS 4 and read x and dOut again in the second
// pass: at 48 registers a warp had only a few loads in flight, and the [4096, 1280] rows of the masked-LM
// latents ran at about 2 TB/s (session 16). The kernels using this are launched with at most 128 registers
// a thread (two blocks of 256 per SM, which the fused kernel's shared sums allow anyway).
// dOut16 (not null): dOut stored as bf16 (8-byte aligned rows; dOut not read), a gradient that its single
// writer, a bf16 product, stores so (F.bf16Gradient).
template <int LN_VECS, bool PARAMS>
__device__ __forceinline__ void layernorm_backward_row(const float* dOut, const float* x, const float* gamma, int r, float mu,
                                                       float rs, float* dX, int d, int accumulate, float4* sums, bool first,
                                                       const unsigned short* dOut16) {
    const int lane = threadIdx.x & 31, d4 = d >> 2;
    const float4* xr = reinterpret_cast<const float4*>(x + (long long) r * d);
    const float4* gr = reinterpret_cast<const float4*>(dOut + (long long) r * d);
    const unsigned short* g16 = dOut16 + (long long) r * d;
    const float4* g4 = reinterpret_cast<const float4*>(gamma);
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float4 xv[LN_VECS], dv[LN_VECS];
#pragma unroll
    for (int t = 0; t < LN_VECS; t++) {   // every load of the row in flight at once
        const int c = lane + 32 * t;
        xv[t] = c < d4 ? xr[c] : zero;
        dv[t] = c >= d4 ? zero : dOut16 != nullptr ? bf16x4_load(g16 + 4 * c) : gr[c];
    }
    float sg = 0.0f, sgx = 0.0f;
#pragma unroll
    for (int t = 0; t < LN_VECS; t++) {
        const int c = lane + 32 * t;
        if (c < d4) {
            float4 h, g;
            ln_xhat_g(xv[t], dv[t], g4[c], mu, rs, h, g);
            sg += (g.x + g.y) + (g.z + g.w);
            sgx += (g.x * h.x + g.y * h.y) + (g.z * h.z + g.w * h.w);
        }
    }
    const float meanG = warp_sum(sg) / d, meanGX = warp_sum(sgx) / d;
    // the row's dX terms, into xv (x is not needed after them)
#pragma unroll
    for (int t = 0; t < LN_VECS; t++) {
        const int c = lane + 32 * t;
        if (c < d4) {
            float4 h, g;
            ln_xhat_g(xv[t], dv[t], g4[c], mu, rs, h, g);
            xv[t] = make_float4(rs * (g.x - meanG - h.x * meanGX), rs * (g.y - meanG - h.y * meanGX),
                                rs * (g.z - meanG - h.z * meanGX), rs * (g.w - meanG - h.w * meanGX));
            if (PARAMS) ln_params_add(sums, d4, c, h, dv[t], first);
        }
    }
    float4* o4 = reinterpret_cast<float4*>(dX + (long long) r * d);
    if (accumulate) {   // (prefetching these lines into L2 during the first pass made the kernel slower: 40 -> 43.5 us at [4096, 1280])
#pragma unroll
        for (int t = 0; t < LN_VECS; t++) {   // the old dX, every load in flight at once (into dOut's registers)
            const int c = lane + 32 * t;
            dv[t] = c < d4 ? o4[c] : zero;
        }
    }
#pragma unroll
    for (int t = 0; t < LN_VECS; t++) {
        const int c = lane + 32 * t;
        if (c < d4) {
            float4 o = accumulate ? dv[t] : zero;
            o.x += xv[t].x;
            o.y += xv[t].y;
            o.z += xv[t].z;
            o.w += xv[t].w;
            o4[c] = o;
        }
    }
}

// dX only: one warp per row (row blockIdx.x·LN_WARPS + warp).
template <int LN_VECS>
__device__ __forceinline__ void layernorm_backward_x_warp(const float* dOut, const float* x, const float* gamma, const float* mean,
                                                          const float* rstd, float* dX, int rows, int d, int accumulate,
                                                          const unsigned short* dOut16) {
    const int r = blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
    if (r >= rows) return; // warp-uniform
    layernorm_backward_row<LN_VECS, false>(dOut, x, gamma, r, mean[r], rstd[r], dX, d, accumulate, 0, false, dOut16);
}

// The fused backward, dX and the parameter gradients' partial sums from one read of each row: block b (a
// chunk) takes rows [b·rowsPerChunk, (b + 1)·rowsPerChunk) ∩ [0, rows) (rowsPerChunk a multiple of LN_WARPS),
// warp w the rows w, w + 8, ... of them, and computes each row's dX as layernorm_backward_x_warp does
// (the same code). The parameter gradients dGamma[j] = Σ_r dOut[r, j]·xhat[r, j], dBeta[j] = Σ_r dOut[r, j]
// are summed in a fixed order that depends on rows, d and rowsPerChunk alone (no atomics on the sums):
//  1. each warp adds its rows, in row order, into its own slice of dynamic shared memory,
//     sums [LN_WARPS][2][d] floats (dGamma's d, then dBeta's d; 64·d bytes, 96 KiB at d = 1536): a lane
//     touches only its own float4s of each slice, so no conflicts and no barrier inside the loop;
//  2. the block adds the slices of the warps that had rows in warp order and writes them to
//     partial[b] (partial [chunks][2][d]);
//  3. p4j_column_finish_rows (launched next) adds the chunks into dGamma and dBeta, many blocks in parallel.
//     (A first version had the last block of each group of chunks add them, then the last group: that
//     tail ran on one SM after the rows were done, about a quarter of the kernel's time at [4096, 1280].)
template <int LN_VECS>
__device__ __forceinline__ void layernorm_backward_warp(const float* dOut, const float* x, const float* gamma, const float* mean,
                                                        const float* rstd, float* dX, int rows, int d, int accumulate,
                                                        int rowsPerChunk, float* partial, const unsigned short* dOut16) {
    extern __shared__ float4 ln_sums[]; // [LN_WARPS][2][d4]: each warp's column sums (dGamma's, then dBeta's)
    const int warp = threadIdx.x >> 5, d4 = d >> 2, len4 = 2 * d4;
    const int r0 = blockIdx.x * rowsPerChunk, r1 = imin(rows, r0 + rowsPerChunk);
    // 1. the warp's rows (warp-uniform loop)
    for (int r = r0 + warp; r < r1; r += LN_WARPS) {
        layernorm_backward_row<LN_VECS, true>(dOut, x, gamma, r, mean[r], rstd[r], dX, d, accumulate,
                                              ln_sums + warp * len4, r == r0 + warp, dOut16);
    }
    __syncthreads();
    // 2. the chunk's partial: the slices of the warps that had rows (all but in a last chunk of < 8 rows), in warp order
    const int warps = imin(LN_WARPS, r1 - r0);
    float4* p4 = reinterpret_cast<float4*>(partial);
    for (int i = threadIdx.x; i < len4; i += blockDim.x) {
        float4 s = ln_sums[i];
        for (int w = 1; w < warps; w++) f4_add(s, ln_sums[w * len4 + i]);
        p4[(long long) blockIdx.x * len4 + i] = s;
    }
}

#define P4J_LAYERNORM_WARP(V)                                                                                          \
    extern "C" __global__ void __launch_bounds__(LN_WARPS * 32) p4j_layernorm_warp##V(const float* x, const float* gamma,       \
            const float* beta, float* out, float* mean, float* rstd, int rows, int d, float eps, unsigned short* out16) {    \
        layernorm_warp<V>(x, gamma, beta, out, mean, rstd, rows, d, eps, out16);                                           \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(LN_WARPS * 32, 2) p4j_layernorm_backward_x_warp##V(const float* dOut,          \
            const float* x, const float* gamma, const float* mean, const float* rstd, float* dX, int rows, int d, int accumulate, \
            const unsigned short* dOut16) {                                                                              \
        layernorm_backward_x_warp<V>(dOut, x, gamma, mean, rstd, dX, rows, d, accumulate, dOut16);                         \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(LN_WARPS * 32, 2) p4j_layernorm_backward_warp##V(const float* dOut,            \
            const float* x, const float* gamma, const float* mean, const float* rstd, float* dX, int rows, int d, int accumulate, \
            int rowsPerChunk, float* partial, const unsigned short* dOut16) {                                                  \
        layernorm_backward_warp<V>(dOut, x, gamma, mean, rstd, dX, rows, d, accumulate, rowsPerChunk, partial, dOut16);       \
    }
P4J_LAYERNORM_WARP(4)
P4J_LAYERNORM_WARP(8)
P4J_LAYERNORM_WARP(10)
P4J_LAYERNORM_WARP(12)

// dX: one block per row. With xhat = (x − mean)·rstd and g = dOut·gamma:
// dX += rstd·(g − mean_j(g) − xhat·mean_j(g·xhat)) (dX = … when accumulate is 0). dOut, x, dX [rows, d];
// gamma [d]; mean, rstd [rows].
extern "C" __global__ void p4j_layernorm_backward_x(const float* dOut, const float* x, const float* gamma, const float* mean,
                                                    const float* rstd, float* dX, int rows, int d, int accumulate) {
    __shared__ float sh[32];
    int r = blockIdx.x;
    long long base = (long long) r * d;
    float mu = mean[r], rs = rstd[r];
    float sg = 0.0f, sgx = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        float xhat = (x[base + j] - mu) * rs;
        float g = dOut[base + j] * gamma[j];
        sg += g;
        sgx += g * xhat;
    }
    float meanG = block_sum(sg, sh) / d;
    float meanGX = block_sum(sgx, sh) / d;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        float xhat = (x[base + j] - mu) * rs;
        float g = dOut[base + j] * gamma[j];
        const float v = rs * (g - meanG - xhat * meanGX);
        dX[base + j] = accumulate ? dX[base + j] + v : v;
    }
}

// dGamma, dBeta stage 1: per chunk of rows (blockIdx.y), pg[chunk, j] = Σ dOut·xhat, pb[chunk, j] = Σ dOut.
// pg, pb [chunks, d]. The last block of each column of blocks does stage 2 (dGamma[j] += Σ_c pg[c, j],
// dBeta alike, each where not null; column_block_last; tickets [gridDim.x], zero; store bit 1 writes dGamma
// instead of adding to it, bit 2 dBeta).
extern "C" __global__ void p4j_layernorm_backward_params_partial(const float* dOut, const float* x, const float* mean,
                                                                 const float* rstd, int rows, int d, int rowsPerChunk,
                                                                 float* pg, float* pb, float* dGamma, float* dBeta,
                                                                 unsigned* tickets, int store) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    bool active = j < d;
    if (active) {
        int r0 = blockIdx.y * rowsPerChunk, r1 = imin(rows, r0 + rowsPerChunk);
        float sg = 0.0f, sb = 0.0f;
        for (int r = r0; r < r1; r++) {
            long long i = (long long) r * d + j;
            float xhat = (x[i] - mean[r]) * rstd[r];
            sg += dOut[i] * xhat;
            sb += dOut[i];
        }
        pg[(long long) blockIdx.y * d + j] = sg;
        pb[(long long) blockIdx.y * d + j] = sb;
    }
    if (column_block_last(tickets) && active) {
        if (dGamma != 0) column_finish_one(pg, gridDim.y, d, j, dGamma, store & 1);
        if (dBeta != 0) column_finish_one(pb, gridDim.y, d, j, dBeta, store & 2);
    }
}

// p4j_layernorm_backward_params_partial with 4 columns per thread in the 4-column sum layout (d a
// multiple of 4, dOut, x, pg and pb 16-byte aligned): the same per-element terms, summed in that
// layout's order.
extern "C" __global__ void p4j_layernorm_backward_params_partial4(const float* dOut, const float* x, const float* mean,
                                                                  const float* rstd, int rows, int d, int rowsPerChunk,
                                                                  float* pg, float* pb, float* dGamma, float* dBeta,
                                                                  unsigned* tickets, int store) {
    __shared__ float4 sh[COL_GROUPS][COL_QUADS];
    const int q = threadIdx.x % COL_QUADS, g = threadIdx.x / COL_QUADS;
    const int c = (blockIdx.x * COL_QUADS + q) * 4;
    const bool active = c < d;
    const int r0 = blockIdx.y * rowsPerChunk, r1 = imin(rows, r0 + rowsPerChunk);
    float4 sg = make_float4(0.0f, 0.0f, 0.0f, 0.0f), sb = sg;
    if (active) {
#pragma unroll 4
        for (int r = r0 + g; r < r1; r += COL_GROUPS) {
            const long long i = (long long) r * d + c;
            const float4 xv = *(const float4*) (x + i), dv = *(const float4*) (dOut + i);
            const float mu = mean[r], rs = rstd[r];
            sg.x += dv.x * ((xv.x - mu) * rs);
            sg.y += dv.y * ((xv.y - mu) * rs);
            sg.z += dv.z * ((xv.z - mu) * rs);
            sg.w += dv.w * ((xv.w - mu) * rs);
            f4_add(sb, dv);
        }
    }
    const float4 tg = col_groups_sum(sg, sh);
    const float4 tb = col_groups_sum(sb, sh);
    if (g == 0 && active) {
        *(float4*) (pg + (long long) blockIdx.y * d + c) = tg;
        *(float4*) (pb + (long long) blockIdx.y * d + c) = tb;
    }
    if (column_block_last(tickets)) {
        if (dGamma != 0) col_quads_finish(pg, gridDim.y, d, dGamma, sh, store & 1);
        if (dBeta != 0) col_quads_finish(pb, gridDim.y, d, dBeta, sh, store & 2);
    }
}

// ================================================================ softmax

// One block per row: out[r] = softmax(x[r]) over the last dim; x, out [rows, n]; out may be x.
extern "C" __global__ void p4j_softmax(const float* x, float* out, int rows, int n) {
    __shared__ float sh[32];
    long long base = (long long) blockIdx.x * n;
    float m = NEG_INF;
    for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, x[base + j]);
    m = block_max(m, sh);
    float s = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) s += expf(x[base + j] - m);
    float inv = 1.0f / block_sum(s, sh);
    for (int j = threadIdx.x; j < n; j += blockDim.x) out[base + j] = expf(x[base + j] - m) * inv;
}

// ================================================================ embedding

// One block per id: out[i, :] = table[ids[i], :]. table [vocab, d]; ids [n]; out [n, d].
// An id outside [0, vocab) is reported and its row written as zeros.
extern "C" __global__ void p4j_embedding(const float* table, const int* ids, float* out, int n, int vocab, int d, int* status) {
    int i = blockIdx.x;
    int id = ids[i];
    bool ok = id >= 0 && id < vocab;
    if (!ok && threadIdx.x == 0) report(status, STATUS_BAD_TOKEN_ID, i, id, vocab);
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        out[(long long) i * d + j] = ok ? table[(long long) id * d + j] : 0.0f;
    }
}

// dst[rows[i], :] = src[i, :], rows of `width` elements of `bytes` bytes each (4: 32-bit words,
// else single bytes). One block per source row. An index outside [0, count) is reported, and that
// row is skipped.
extern "C" __global__ void p4j_scatter_rows(const void* src, const int* rows, void* dst, int n, int count, int width, int bytes,
                                            int* status) {
    int i = blockIdx.x;
    int r = rows[i];
    if (r < 0 || r >= count) {
        if (threadIdx.x == 0) report(status, STATUS_BAD_ROW, i, r, count);
        return;
    }
    if (bytes == 4) {
        const unsigned* s = (const unsigned*) src + (long long) i * width;
        unsigned* d = (unsigned*) dst + (long long) r * width;
        for (int j = threadIdx.x; j < width; j += blockDim.x) d[j] = s[j];
    } else {
        long long w = (long long) width * bytes;
        const unsigned char* s = (const unsigned char*) src + i * w;
        unsigned char* d = (unsigned char*) dst + r * w;
        for (long long j = threadIdx.x; j < w; j += blockDim.x) d[j] = s[j];
    }
}

// dTable[v] += Σ dOut[t] over the tokens t with ids[t] == v, summed in ascending t (no float
// atomics: results repeat bit for bit). A stable counting sort of the token indices by id first,
// in chunks of EMB_CHUNK tokens, then one gather-sum per (id, column):
//   1. p4j_emb_count:   cnt[c, v] = #tokens of chunk c with id v           (int atomics: exact)
//   2. p4j_emb_offsets: start[c, v] = where chunk c's tokens of id v go; base[v], total[v]
//   3. p4j_emb_place:   order[start[c, v]++] = t, one warp per chunk walking it in order, 32 tokens at a time
//   4. p4j_emb_gather:  dTable[v, j] += Σ_{p < total[v]} dOut[order[base[v] + p], j]
// ids are checked by the forward; out-of-range ids are skipped here.
#define EMB_CHUNK 1024

extern "C" __global__ void p4j_emb_count(const int* ids, int n, int vocab, int* cnt) {
    int t = blockIdx.x * EMB_CHUNK + threadIdx.x;
    for (int k = 0; k < EMB_CHUNK; k += blockDim.x, t += blockDim.x) {
        if (t < n && t < (blockIdx.x + 1) * EMB_CHUNK) {
            int v = ids[t];
            if (v >= 0 && v < vocab) atomicAdd(&cnt[(long long) blockIdx.x * vocab + v], 1);
        }
    }
}

// Column v of cnt [chunks, vocab] rewritten in chunk order: each entry becomes (exclusive ? the sum of the
// entries before it : itself) + add; returns the column's sum. EMB_BATCH chunks' counts are loaded before
// any is overwritten: that many loads in flight, not one.
#define EMB_BATCH 8
__device__ __forceinline__ int emb_rewrite_counts(int* cnt, int chunks, int vocab, int v, bool exclusive, int add) {
    int run = 0;
    for (int c0 = 0; c0 < chunks; c0 += EMB_BATCH) {
        int k[EMB_BATCH];
#pragma unroll
        for (int u = 0; u < EMB_BATCH; u++) k[u] = c0 + u < chunks ? cnt[(long long) (c0 + u) * vocab + v] : 0;
#pragma unroll
        for (int u = 0; u < EMB_BATCH; u++) {
            if (c0 + u < chunks) cnt[(long long) (c0 + u) * vocab + v] = (exclusive ? run : k[u]) + add;
            run += k[u];
        }
    }
    return run;
}

// One block. cnt [chunks, vocab] becomes start (absolute positions in order[]); base, total [vocab].
extern "C" __global__ void p4j_emb_offsets(int* cnt, int chunks, int vocab, int* base, int* total) {
    __shared__ int carry;
    __shared__ int sh[1024];
    if (threadIdx.x == 0) carry = 0;
    for (int v0 = 0; v0 < vocab; v0 += blockDim.x) {
        int v = v0 + threadIdx.x, run = 0;
        if (v < vocab) {
            run = emb_rewrite_counts(cnt, chunks, vocab, v, true, 0);
            total[v] = run;
        }
        // exclusive scan of the totals of this slice of ids, in id order (blockDim ≤ 1024)
        __syncthreads();
        sh[threadIdx.x] = v < vocab ? run : 0;
        __syncthreads();
        for (int off = 1; off < blockDim.x; off <<= 1) {
            int x = threadIdx.x >= off ? sh[threadIdx.x - off] : 0;
            __syncthreads();
            sh[threadIdx.x] += x;
            __syncthreads();
        }
        int before = carry + sh[threadIdx.x] - (v < vocab ? run : 0);
        if (v < vocab) {
            base[v] = before;
            emb_rewrite_counts(cnt, chunks, vocab, v, false, before);
        }
        __syncthreads();
        if (threadIdx.x == blockDim.x - 1) carry += sh[threadIdx.x];
        __syncthreads();
    }
}

// One warp per chunk (blockDim 32): the chunk's positions go to their ids' next free slots in order, so
// each id's run in order[] is ascending (the gather below adds in that order: deterministic).
extern "C" __global__ void p4j_emb_place(const int* ids, int n, int vocab, int* start, int* order) {
    int c = blockIdx.x, end = imin(n, (c + 1) * EMB_CHUNK);
    int* cur = start + (long long) c * vocab;
#if __CUDA_ARCH__ >= 700
    // 32 positions at a time: lanes holding the same id take consecutive slots in lane order, the
    // lowest of them reading and advancing that id's cursor (32 dependent steps per chunk, not 1,024).
    const int lane = threadIdx.x;
    for (int t0 = c * EMB_CHUNK; t0 < end; t0 += 32) {
        const int t = t0 + lane;
        int v = t < end ? ids[t] : -1;
        if (v < 0 || v >= vocab) v = -1;   // not placed
        const unsigned same = __match_any_sync(0xffffffffu, v);
        const int leader = __ffs(same) - 1, rank = __popc(same & ((1u << lane) - 1u));
        int slot = 0;
        if (lane == leader && v >= 0) {
            slot = cur[v];
            cur[v] = slot + __popc(same);
        }
        slot = __shfl_sync(0xffffffffu, slot, leader);
        if (v >= 0) order[slot + rank] = t;
    }
#else
    if (threadIdx.x != 0) return;
    for (int t = c * EMB_CHUNK; t < end; t++) {
        int v = ids[t];
        if (v >= 0 && v < vocab) order[cur[v]++] = t;
    }
#endif
}

extern "C" __global__ void p4j_emb_gather(const float* dOut, const int* order, const int* base, const int* total,
                                          float* dTable, int vocab, int d, int store) {
    int v = blockIdx.x, j = blockIdx.y * blockDim.x + threadIdx.x;
    if (j >= d) return;
    int b0 = base[v], cnt = total[v];
    if (cnt == 0 && !store) return;
    float acc = 0.0f;
    for (int p = 0; p < cnt; p++) acc += dOut[(long long) order[b0 + p] * d + j];
    const long long at = (long long) v * d + j;
    dTable[at] = store ? acc : dTable[at] + acc;   // store: a gradient nothing has written yet (unused ids get zeros)
}

// ================================================================ softmax cross-entropy

// One block per row: lse[r] = log Σ_j exp(logits[r, j]) (written for every row);
// rowLoss[2r] = lse − logits[r, t] + zLoss·lse² and rowLoss[2r+1] = 1 for rows whose target t is
// not ignoreIndex, else 0 and 0. p4j_cross_entropy_mean adds the rows (double) and divides by the count.
// logits [rows, vocab]; targets [rows]; lse [rows]; rowLoss [2·rows] (double).
extern "C" __global__ void p4j_cross_entropy(const float* logits, const int* targets, int rows, int vocab, int ignoreIndex,
                                             float zLoss, float* lse, double* rowLoss, int* status) {
    __shared__ float sh[32];
    int r = blockIdx.x;
    long long base = (long long) r * vocab;
    float m = NEG_INF;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) m = fmaxf(m, logits[base + j]);
    m = block_max(m, sh);
    float s = 0.0f;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) s += expf(logits[base + j] - m);
    s = block_sum(s, sh);
    if (threadIdx.x != 0) return;
    float l = m + logf(s);
    lse[r] = l;
    int t = targets[r];
    if (t == ignoreIndex) {
        rowLoss[2 * r] = 0.0;
        rowLoss[2 * r + 1] = 0.0;
    } else if (t < 0 || t >= vocab) {
        report(status, STATUS_BAD_TARGET, r, t, vocab);
        rowLoss[2 * r] = 0.0;
        rowLoss[2 * r + 1] = 0.0;
    } else {
        double ld = (double) l;
        rowLoss[2 * r] = ld - (double) logits[base + t] + (double) zLoss * ld * ld;
        rowLoss[2 * r + 1] = 1.0;
    }
}

// loss[0] = Σ rowLoss[2r] / Σ rowLoss[2r+1] over the rows of p4j_cross_entropy, 0 when no row counts
// (one block; the same fixed order at every launch of the same rows).
extern "C" __global__ void p4j_cross_entropy_mean(const double* rowLoss, int rows, float* loss) {
    __shared__ double sh[32];
    double s = 0.0, c = 0.0;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        s += rowLoss[2 * r];
        c += rowLoss[2 * r + 1];
    }
    s = block_sum_d(s, sh);
    c = block_sum_d(c, sh);
    if (threadIdx.x == 0) loss[0] = c == 0.0 ? 0.0f : (float) (s / c);
}

// count[0] = number of rows whose target is not ignoreIndex (one block).
extern "C" __global__ void p4j_count_targets(const int* targets, int rows, int ignoreIndex, int* count) {
    __shared__ double sh[32];
    double c = 0.0; // exact in double
    for (int r = threadIdx.x; r < rows; r += blockDim.x) c += targets[r] != ignoreIndex ? 1.0 : 0.0;
    c = block_sum_d(c, sh);
    if (threadIdx.x == 0) count[0] = (int) c;
}

// One block per row: dLogits[r, j] += dLoss[0]/count·(softmax_j·(1 + 2·zLoss·lse_r) − [j = t_r]) for
// rows not ignored (nothing when count = 0). Shapes as p4j_cross_entropy; count [1] from p4j_count_targets.
// With store set dLogits is written instead (a gradient nothing has written yet): ignored rows get zeros.
extern "C" __global__ void p4j_cross_entropy_backward(const float* dLoss, const float* logits, const int* targets, const float* lse,
                                                      const int* count, int rows, int vocab, int ignoreIndex, float zLoss,
                                                      float* dLogits, int store) {
    int r = blockIdx.x;
    int t = targets[r];
    int c = count[0];
    long long base = (long long) r * vocab;
    if (t == ignoreIndex || c == 0) {
        if (store) for (int j = threadIdx.x; j < vocab; j += blockDim.x) dLogits[base + j] = 0.0f;
        return;
    }
    float scale = dLoss[0] / (float) c;
    float l = lse[r];
    float zf = 1.0f + 2.0f * zLoss * l;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
        float p = expf(logits[base + j] - l);
        float d = scale * (p * zf - (j == t ? 1.0f : 0.0f));
        dLogits[base + j] = store ? d : dLogits[base + j] + d;
    }
}

// ================================================================ axis copies (narrow / unnarrow)

// The slab [start, start+len) of axis a of a full tensor viewed as [outer, fullLen·inner]: part is
// [outer, len·inner]. fromFull: part (=) or (+=) the slab; else the slab (=) or (+=) part.
extern "C" __global__ void p4j_axis_copy(const float* src, float* dst, int outer, int fullRun, int partRun, int startOffset,
                                         int fromFull, int accumulate) {
    long long i = (long long) blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long) outer * partRun) return;
    long long o = i / partRun, k = i % partRun;
    long long f = o * fullRun + startOffset + k;
    long long s = fromFull ? f : i, d = fromFull ? i : f;
    dst[d] = accumulate ? dst[d] + src[s] : src[s];
}

// ================================================================ AdamW

// One AdamW step, the float arithmetic of the CPU kernel (FastOps.adamw):
// m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²; p = p·decay − m·stepSize / (√v·invSqrtBc2 + eps)
// with decay = 1 − lr·wd, stepSize = lr/(1−β1^t), invSqrtBc2 = 1/√(1−β2^t) computed on the host.
// mirror: where not null, the parameters' bf16 copy (CudaBackend's bf16 mirrors), written with the new values.
extern "C" __global__ void p4j_adamw(float* param, const float* grad, float* m, float* v, int n, float b1, float b2,
                                     float c1, float c2, float stepSize, float invSqrtBc2, float eps, float decay,
                                     unsigned short* mirror) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i];
    float mi = m[i] * b1 + g * c1;
    float vi = v[i] * b2 + g * g * c2;
    float denom = sqrtf(vi) * invSqrtBc2 + eps;
    float p = param[i] * decay - mi * stepSize / denom;
    param[i] = p;
    if (mirror != nullptr) mirror[i] = f32_to_bf16_bits(p);
    m[i] = mi;
    v[i] = vi;
}

// ================================================================ Philox4x32-10 and dropout

// dev.perceiver4j.random.Philox, bit for bit: the 32-bit output at (seed, stream, index) is lane
// index & 3 of the block with counter (index >> 2 as two words, stream as two words) under key
// (seed low word, seed high word), ten rounds.
//
// p4j_seed_shift is added to every seed (mod 2^64). It is 0 except while a replayed CUDA graph runs
// (Recording.replay(seedShift)): a recorded training step then draws the masks of seed + shift, so one
// recording serves every step's seed. The host sets it in stream order before such a replay and
// clears it after.
// It stays in global memory: a __constant__ variable (session 17) let the compiler put the rounds' keys on the
// uniform datapath and took 0.27 ms off the masked-LM step's attention kernels, but made cached generation,
// whose kernels never read it, 4-5 % slower (1,960 against 2,060 new bytes/s, same call); not understood, so not kept.
__device__ unsigned long long p4j_seed_shift = 0;

__device__ __forceinline__ unsigned int philox_bits(unsigned long long seed, unsigned long long stream, unsigned long long index,
                                                    unsigned int* all4) {
    seed += p4j_seed_shift;
    unsigned long long blk = index >> 2;
    unsigned int c0 = (unsigned int) blk, c1 = (unsigned int) (blk >> 32);
    unsigned int c2 = (unsigned int) stream, c3 = (unsigned int) (stream >> 32);
    unsigned int k0 = (unsigned int) seed, k1 = (unsigned int) (seed >> 32);
#pragma unroll
    for (int r = 0; r < 10; r++) {
        unsigned int hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        unsigned int hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        unsigned int n0 = hi1 ^ c1 ^ k0;
        unsigned int n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    if (all4 != 0) {
        all4[0] = c0;
        all4[1] = c1;
        all4[2] = c2;
        all4[3] = c3;
    }
    int lane = (int) (index & 3);
    return lane == 0 ? c0 : lane == 1 ? c1 : lane == 2 ? c2 : c3;
}

// Philox.toUniform(bits) >= p: 24 random bits as a float in [0, 1) (exact), compared with p. In integers:
// u = bits >> 8 < 2^24 and p·2^24 are exact, so u·2^-24 >= p exactly when u >= ceil(p·2^24) (0 for p <= 0,
// 2^24, never kept, for p = 1). Each test is then a shift and an integer compare instead of a conversion, a
// product and a float compare; the threshold depends on p alone, but the attention kernels' SASS (session 17)
// still recomputes it (FMNMX, FMUL, F2I) once per Philox block, where registers are short.
__device__ __forceinline__ bool philox_keep_bits(unsigned int bits, float p) {
    return (bits >> 8) >= (unsigned int) ceilf(fmaxf(p, 0.0f) * 16777216.0f);
}

// Philox.keep(seed, stream, index, p)
__device__ __forceinline__ bool philox_keep(unsigned long long seed, unsigned long long stream, unsigned long long index, float p) {
    return philox_keep_bits(philox_bits(seed, stream, index, 0), p);
}

// One thread per Philox block (four consecutive indices 4g .. 4g+3). keep(i) = Philox.keep(seed, stream, i, p).
// Forward (backward = 0): out[i] = keep(i) ? x[i]·scale : 0 (out may be x).
// Backward (backward = 1): out[i] += keep(i) ? x[i]·scale : 0 (x = dOut, out = dX).
// scale = 1/(1−p) rounded to float on the host (0 when p = 1). x, out [n].
extern "C" __global__ void p4j_dropout(const float* x, float* out, int n, float p, float scale,
                                       unsigned long long seed, unsigned long long stream, int backward) {
    long long g = (long long) blockIdx.x * blockDim.x + threadIdx.x;
    long long i0 = 4 * g;
    if (i0 >= n) return;
    unsigned int r[4];
    philox_bits(seed, stream, (unsigned long long) i0, r);
#pragma unroll
    for (int t = 0; t < 4; t++) {
        long long i = i0 + t;
        if (i < n) {
            bool keep = philox_keep_bits(r[t], p);
            if (backward) {
                if (keep) out[i] = fmaf(x[i], scale, out[i]);
            } else {
                out[i] = keep ? x[i] * scale : 0.0f;
            }
        }
    }
}

/** The keep bits of the four words of a Philox block, bit w for word w. */
__device__ __forceinline__ unsigned att_keep_nibble(const unsigned* w, float p) {
    return (philox_keep_bits(w[0], p) ? 1u : 0u) | (philox_keep_bits(w[1], p) ? 2u : 0u)
         | (philox_keep_bits(w[2], p) ? 4u : 0u) | (philox_keep_bits(w[3], p) ? 8u : 0u);
}

// Attention dropout's keep bits written out, 32 keys per word, for the bf16 attention kernels (which read
// them instead of drawing Philox blocks and handing their words between lanes; session 21): bit j % 32 of
// word row·wpr + j / 32 is Philox.keep(seed, stream, row·nk + j, p) for row = (b·H + h)·nq + i, as in
// every other attention kernel; wpr = ceil(nk / 32), bits of keys ≥ nk are 0. One thread per word: eight
// Philox blocks when nk % 4 == 0 (a block's four indices then lie in one word), else one draw per key.
extern "C" __global__ void p4j_attention_keep_bits(unsigned* bits, int words, int nk, int wpr, float p,
                                                   unsigned long long seed, unsigned long long stream) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= words) return;
    const int j0 = (t % wpr) * 32, n = imin(32, nk - j0);
    const unsigned long long base = (unsigned long long) (t / wpr) * (unsigned long long) nk + j0;
    unsigned word = 0;
    if (nk % 4 == 0) {
        for (int c = 0; c < n; c += 4) {
            unsigned w[4];
            philox_bits(seed, stream, base + c, w);
            word |= att_keep_nibble(w, p) << c;
        }
    } else {
        for (int c = 0; c < n; c++) word |= (philox_keep(seed, stream, base + c, p) ? 1u : 0u) << c;
    }
    bits[t] = word;
}

// ================================================================ rotary position embedding

// Interleaved RoPE on the first rot channels of each head; θ = positions[r]·invFreq[c/2] and its
// cosine and sine in double, rounded to float (as FastOps).
// Forward: out = (x0·cosθ − x1·sinθ, x1·cosθ + x0·sinθ), other channels copied.
// Backward (backward = 1, x = dOut, out = dX): dX += (g0·cosθ + g1·sinθ, g1·cosθ − g0·sinθ), others dX += g;
// backward = 2 writes dX = … instead (a dX that held only zeros).
// x, out [rows, heads·headDim]; positions I32 [rows]; invFreq [rot/2].
// One thread per (row, slot), slots 0 … rot/2 − 1 being the rotated pairs and the rest the channels
// rot … headDim − 1; a thread does its slot in every head, so the (double) sincos runs once per row and
// pair, not once per head. Each pair is read and written by one thread, so out may be x.
// Grid: rows · (headDim − rot/2) threads.
extern "C" __global__ void p4j_rotary(const float* x, const int* positions, const float* invFreq, float* out,
                                      int rows, int heads, int headDim, int rot, int backward) {
    const int half = rot >> 1, slots = headDim - half;
    long long t = (long long) blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long long) rows * slots) return;
    int r = (int) (t / slots), j = (int) (t % slots);
    long long e = (long long) r * heads * headDim + (j < half ? 2 * j : rot + j - half);
    if (j >= half) {
        for (int h = 0; h < heads; h++, e += headDim) out[e] = backward == 1 ? out[e] + x[e] : x[e];
        return;
    }
    double theta = (double) positions[r] * (double) invFreq[j];
    double sd, cd;
    sincos(theta, &sd, &cd);
    float cs = (float) cd, sn = (float) sd;
    for (int h = 0; h < heads; h++, e += headDim) {
        float x0 = x[e], x1 = x[e + 1];
        if (backward == 1) {
            out[e] += x0 * cs + x1 * sn;
            out[e + 1] += x1 * cs - x0 * sn;
        } else if (backward == 2) {
            out[e] = x0 * cs + x1 * sn;
            out[e + 1] = x1 * cs - x0 * sn;
        } else {
            out[e] = x0 * cs - x1 * sn;
            out[e + 1] = x1 * cs + x0 * sn;
        }
    }
}

// ================================================================ attention (flash-style, fp32)
//
// Layout of dev.perceiver4j.backend.AttentionShape: q [B, Nq, H·Dqk], k [B, Nk, H·Dqk],
// v [B, Nk, H·Dv], out [B, Nq, H·Dv], lse [B, H, Nq], keyPad BOOL [B, Nk] (1 = masked) or null.
// Query i sees key j iff (not causal or j ≤ i + Nk − Nq) and key j is not padding. A query with no
// visible key gets out = 0 and lse = −inf. Dropout (p > 0) multiplies each probability by
// keep ? 1/(1−p) : 0 with keep = Philox.keep(seed, stream, ((b·H + h)·Nq + i)·Nk + j, p); the
// normaliser uses the undropped probabilities. Nothing of size Nq×Nk is ever stored.
//
// The three kernels share one shape: a block of ATT_WARPS warps owns ATT_ROWS "rows" (queries for
// the forward and dQ, keys for dK/dV), ATT_RPW per warp, with their accumulators in registers
// (lane ℓ holds channels ℓ, ℓ+32, …: head dims up to 32·ATT_MAXC); the other side streams through
// shared memory in tiles of 32 "columns", one per lane. Every reduction has a fixed order (no
// atomics): results repeat bit for bit. Grid: (row tiles, B·H); dynamic shared memory sized by the host.

#define ATT_TILE 32
#define ATT_WARPS 4
#define ATT_RPW 4
#define ATT_ROWS (ATT_WARPS * ATT_RPW)
#define ATT_MAXC 8

__device__ __forceinline__ bool att_key_ok(const unsigned char* pad, int b, int nk, int j) {
    return j < nk && (pad == 0 || pad[(long long) b * nk + j] == 0);
}

// Forward: out and lse (both written). Shared: K tile [32][Dqk+1], V tile [32][Dv], Q rows [ROWS][Dqk].
extern "C" __global__ void p4j_attention_forward(const float* q, const float* k, const float* v, const unsigned char* pad,
                                                 float* out, float* lse, int H, int nq, int nk, int dqk, int dv,
                                                 float scale, int causal, float pdrop, float keepScale,
                                                 unsigned long long seed, unsigned long long stream) {
    extern __shared__ float smem[];
    const int ks = dqk + 1;
    float* Ks = smem;
    float* Vs = Ks + ATT_TILE * ks;
    float* Qs = Vs + ATT_TILE * dv;
    const int bh = blockIdx.y, b = bh / H, h = bh % H;
    const int i0 = blockIdx.x * ATT_ROWS;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long qkW = (long long) H * dqk, vW = (long long) H * dv;
    const int shift = nk - nq;

    for (int t = threadIdx.x; t < ATT_ROWS * dqk; t += blockDim.x) {
        int r = t / dqk, c = t % dqk, i = i0 + r;
        Qs[t] = i < nq ? q[((long long) b * nq + i) * qkW + (long long) h * dqk + c] : 0.0f;
    }
    float m[ATT_RPW], l[ATT_RPW], acc[ATT_RPW][ATT_MAXC];
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        m[r] = NEG_INF;
        l[r] = 0.0f;
#pragma unroll
        for (int t = 0; t < ATT_MAXC; t++) acc[r][t] = 0.0f;
    }
    const int lastRow = imin(nq, i0 + ATT_ROWS) - 1;
    const int keyEnd = causal ? imin(nk, lastRow + shift + 1) : nk;

    for (int j0 = 0; j0 < keyEnd; j0 += ATT_TILE) {
        __syncthreads(); // the previous tile is no longer read (and Qs is complete)
        for (int t = threadIdx.x; t < ATT_TILE * dqk; t += blockDim.x) {
            int jj = t / dqk, c = t % dqk, j = j0 + jj;
            Ks[jj * ks + c] = j < nk ? k[((long long) b * nk + j) * qkW + (long long) h * dqk + c] : 0.0f;
        }
        for (int t = threadIdx.x; t < ATT_TILE * dv; t += blockDim.x) {
            int jj = t / dv, c = t % dv, j = j0 + jj;
            Vs[t] = j < nk ? v[((long long) b * nk + j) * vW + (long long) h * dv + c] : 0.0f;
        }
        __syncthreads();

        const int j = j0 + lane;
        const bool keyOk = j < keyEnd && att_key_ok(pad, b, nk, j);
        bool ok[ATT_RPW];
        float s[ATT_RPW];
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            int i = i0 + warp * ATT_RPW + r;
            ok[r] = keyOk && i < nq && (!causal || j <= i + shift);
            s[r] = 0.0f;
        }
        for (int c = 0; c < dqk; c++) {
            float kc = Ks[lane * ks + c];
#pragma unroll
            for (int r = 0; r < ATT_RPW; r++) s[r] += Qs[(warp * ATT_RPW + r) * dqk + c] * kc;
        }
        float pj[ATT_RPW];
        bool any = false;
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            float sr = ok[r] ? s[r] * scale : NEG_INF;
            float tmax = warp_max(sr);
            pj[r] = 0.0f;
            if (tmax == NEG_INF) continue; // warp-uniform: nothing visible for this row in this tile
            any = true;
            float mNew = fmaxf(m[r], tmax);
            float p = ok[r] ? expf(sr - mNew) : 0.0f;
            float corr = expf(m[r] - mNew); // 0 when m was −inf
            l[r] = l[r] * corr + warp_sum(p);
            m[r] = mNew;
#pragma unroll
            for (int t = 0; t < ATT_MAXC; t++) acc[r][t] *= corr;
            if (pdrop > 0.0f && ok[r]) {
                int i = i0 + warp * ATT_RPW + r;
                unsigned long long idx = ((unsigned long long) bh * nq + i) * (unsigned long long) nk + j;
                p *= philox_keep(seed, stream, idx, pdrop) ? keepScale : 0.0f;
            }
            pj[r] = p;
        }
        if (!any) continue; // warp-uniform
        for (int jj = 0; jj < ATT_TILE; jj++) {
            float vv[ATT_MAXC];
#pragma unroll
            for (int t = 0; t < ATT_MAXC; t++) {
                int c = lane + 32 * t;
                vv[t] = c < dv ? Vs[jj * dv + c] : 0.0f;
            }
#pragma unroll
            for (int r = 0; r < ATT_RPW; r++) {
                float p = __shfl_sync(0xffffffffu, pj[r], jj);
#pragma unroll
                for (int t = 0; t < ATT_MAXC; t++) acc[r][t] += p * vv[t];
            }
        }
    }

#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        int i = i0 + warp * ATT_RPW + r;
        if (i >= nq) continue;
        float* o = out + ((long long) b * nq + i) * vW + (long long) h * dv;
        bool none = l[r] == 0.0f;
        float inv = none ? 0.0f : 1.0f / l[r];
#pragma unroll
        for (int t = 0; t < ATT_MAXC; t++) {
            int c = lane + 32 * t;
            if (c < dv) o[c] = none ? 0.0f : acc[r][t] * inv;
        }
        if (lane == 0) lse[(long long) bh * nq + i] = none ? NEG_INF : m[r] + logf(l[r]);
    }
}

// Decode attention: one query row per (b, h) (nq == 1, the cached generation step), no dropout,
// split over the keys so that a long key range keeps every SM busy. Causal masks do not matter for
// one query (right-aligned, it sees every key).
// Step 1, block (s, bh): keys [s·chunk, min(nk, (s+1)·chunk)) → the partial softmax state
// (max m, sum l, acc[dv] = Σ e^{score − m} v) in part[bh, s, 0 .. 2 + dv). Warp w takes groups of
// DEC_GROUP keys, every DEC_WARPS-th group from w; lanes split the channels; the warps' states merge
// in shared memory.
// Step 2 (p4j_attention_decode_combine), block bh: M = max_s m_s, L = Σ_s l_s e^{m_s − M},
// out = Σ_s acc_s e^{m_s − M} / L, lse = M + log L; 0 and −inf when no key is visible (as the
// tiled forward).
#define DEC_WARPS 4
#define DEC_MAX_SPLITS 256
#define DEC_GROUP 4
#define DEC_MAXC ATT_MAXC

extern "C" __global__ void p4j_attention_decode(const float* q, const float* k, const float* v, const unsigned char* pad,
                                                float* part, int H, int nk, int dqk, int dv, float scale, int chunk) {
    __shared__ float red[DEC_WARPS][2 + 32 * DEC_MAXC];
    const int s = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long qkW = (long long) H * dqk, vW = (long long) H * dv;
    float qs[DEC_MAXC], acc[DEC_MAXC];
#pragma unroll
    for (int t = 0; t < DEC_MAXC; t++) {
        int c = lane + 32 * t;
        qs[t] = c < dqk ? q[(long long) b * qkW + (long long) h * dqk + c] : 0.0f;
        acc[t] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    const int j1 = imin(nk, (s + 1) * chunk);
    // DEC_GROUP keys per warp at a time, their K and V rows loaded before any is used, so the
    // loads' latencies overlap (one key at a time waits for two memory round trips per key).
    for (int j0 = s * chunk + warp * DEC_GROUP; j0 < j1; j0 += DEC_WARPS * DEC_GROUP) {
        float kk[DEC_GROUP][DEC_MAXC], vv[DEC_GROUP][DEC_MAXC];
        bool ok[DEC_GROUP];
#pragma unroll
        for (int g = 0; g < DEC_GROUP; g++) {
            int j = j0 + g;
            ok[g] = j < j1 && att_key_ok(pad, b, nk, j);
            const float* kr = k + ((long long) b * nk + j) * qkW + (long long) h * dqk;
            const float* vr = v + ((long long) b * nk + j) * vW + (long long) h * dv;
#pragma unroll
            for (int t = 0; t < DEC_MAXC; t++) {
                int c = lane + 32 * t;
                kk[g][t] = ok[g] && c < dqk ? kr[c] : 0.0f;
                vv[g][t] = ok[g] && c < dv ? vr[c] : 0.0f;
            }
        }
        float sc[DEC_GROUP], gmax = NEG_INF;
#pragma unroll
        for (int g = 0; g < DEC_GROUP; g++) {
            float d = 0.0f;
#pragma unroll
            for (int t = 0; t < DEC_MAXC; t++) d += qs[t] * kk[g][t];
            d = warp_sum(d) * scale;
            sc[g] = ok[g] ? d : NEG_INF;
            gmax = fmaxf(gmax, sc[g]);
        }
        if (gmax == NEG_INF) continue; // warp-uniform: no visible key in this group
        float mNew = fmaxf(m, gmax);
        float corr = expf(m - mNew); // 0 while m is −inf
        l *= corr;
#pragma unroll
        for (int t = 0; t < DEC_MAXC; t++) acc[t] *= corr;
#pragma unroll
        for (int g = 0; g < DEC_GROUP; g++) {
            float p = ok[g] ? expf(sc[g] - mNew) : 0.0f;
            l += p;
#pragma unroll
            for (int t = 0; t < DEC_MAXC; t++) acc[t] += p * vv[g][t];
        }
        m = mNew;
    }
    if (lane == 0) {
        red[warp][0] = m;
        red[warp][1] = l;
    }
#pragma unroll
    for (int t = 0; t < DEC_MAXC; t++) {
        int c = lane + 32 * t;
        if (c < dv) red[warp][2 + c] = acc[t];
    }
    __syncthreads();
    if (warp != 0) return;
    float M = NEG_INF;
    for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, red[w][0]);
    float f[DEC_WARPS], L = 0.0f;
#pragma unroll
    for (int w = 0; w < DEC_WARPS; w++) {
        f[w] = red[w][0] == NEG_INF ? 0.0f : expf(red[w][0] - M);
        L += red[w][1] * f[w];
    }
    float* o = part + ((long long) bh * gridDim.x + s) * (2 + dv);
    if (lane == 0) {
        o[0] = M;
        o[1] = L;
    }
    for (int c = lane; c < dv; c += 32) {
        float a = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) a += red[w][2 + c] * f[w];
        o[2 + c] = a;
    }
}

extern "C" __global__ void p4j_attention_decode_combine(const float* part, float* out, float* lse, int H, int dv, int splits) {
    __shared__ float weight[DEC_MAX_SPLITS]; // e^{m_s − M}
    __shared__ float total[2];               // M, L
    const int bh = blockIdx.x, b = bh / H, h = bh % H, lane = threadIdx.x & 31;
    const long long stride = 2 + dv;
    const float* p = part + (long long) bh * splits * stride;
    if (threadIdx.x < 32) { // warp 0: lanes over the splits
        float M = NEG_INF;
        for (int s = lane; s < splits; s += 32) M = fmaxf(M, p[s * stride]);
        M = warp_max(M);
        float L = 0.0f;
        for (int s = lane; s < splits; s += 32) {
            float ms = p[s * stride];
            float f = ms == NEG_INF ? 0.0f : expf(ms - M);
            weight[s] = f;
            L += p[s * stride + 1] * f;
        }
        L = warp_sum(L);
        if (lane == 0) {
            total[0] = M;
            total[1] = L;
        }
    }
    __syncthreads();
    const float M = total[0], L = total[1];
    float* o = out + (long long) b * H * dv + (long long) h * dv;
    for (int c = threadIdx.x; c < dv; c += blockDim.x) {
        float a = 0.0f;
#pragma unroll 8
        for (int s = 0; s < splits; s++) a += p[s * stride + 2 + c] * weight[s];
        o[c] = L == 0.0f ? 0.0f : a / L;
    }
    if (threadIdx.x == 0) lse[bh] = L == 0.0f ? NEG_INF : M + logf(L);
}

// Backward, step 1: rowDot[b, h, i] = dOut_i · out_i over head h's Dv channels (written). One warp per row.
// out is F32, or BF16 in out16 (out null); where dOut16 is not null the warp also stores its row of dOut
// rounded to bf16 there (the operand of the bf16 backward kernels), saving a cast kernel's second read.
// out16: the forward's output stored as bf16 instead (out not read), as the bf16 kernels write it for products.
// dOutIn16 (not null): dOut stored as bf16 (dOut not read, dOut16 must be null: it is already the kernels' operand).
extern "C" __global__ void p4j_attention_rowdot(const float* dOut, const float* out, float* rowDot, int B, int H, int nq, int dv,
                                                const unsigned short* out16, unsigned short* dOut16, const unsigned short* dOutIn16) {
    long long row = ((long long) blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (row >= (long long) B * H * nq) return; // warp-uniform
    int i = (int) (row % nq);
    long long bh = row / nq;
    int b = (int) (bh / H), h = (int) (bh % H);
    long long base = ((long long) b * nq + i) * H * dv + (long long) h * dv;
    float s = 0.0f;
    // 4 channels a lane at a time where every row allows it (the same sums whichever of dOut / out is bf16)
    const bool quads = (dv & 3) == 0 && (dOutIn16 != nullptr ? aligned8p(dOutIn16) && (base & 3) == 0 : aligned16p(dOut) && (base & 3) == 0)
            && (out16 != nullptr ? aligned8p(out16) : aligned16p(out)) && (dOut16 == nullptr || aligned8p(dOut16));
    if (quads) {
        for (int c = 4 * lane; c < dv; c += 128) {
            const long long at = base + c;
            const float4 g = dOutIn16 != nullptr ? bf16x4_load(dOutIn16 + at) : *(const float4*) (dOut + at);
            const float4 o = out16 != nullptr ? bf16x4_load(out16 + at) : *(const float4*) (out + at);
            s += (g.x * o.x + g.y * o.y) + (g.z * o.z + g.w * o.w);
            if (dOut16 != nullptr) *(uint2*) (dOut16 + at) = bf16x4_bits(g);   // rounded as p4j_f32_to_bf16 rounds
        }
    } else {
        for (int c = lane; c < dv; c += 32) {
            const float g = dOutIn16 != nullptr ? bf16_load(dOutIn16 + base + c) : dOut[base + c];
            s += g * (out16 != nullptr ? bf16_load(out16 + base + c) : out[base + c]);
            if (dOut16 != nullptr) dOut16[base + c] = f32_to_bf16_bits(g);   // the bf16 kernels' copy of dOut
        }
    }
    s = warp_sum(s);
    if (lane == 0) rowDot[row] = s;
}

// Recomputed P_ij = exp(s_ij − lse_i), dropout multiplier M_ij, dP_ij = dOut_i · v_j;
// dS_ij = scale · P_ij · (M_ij · dP_ij − rowDot_i). Returns dS; *pDropped = P_ij · M_ij.
// att_ds_mult takes the multiplier M_ij (keepScale or 0; 1 without dropout) from the caller.
__device__ __forceinline__ float att_ds_mult(float sDot, float dp, float lseI, float rowDotI, bool ok, float scale, float mult,
                                             float* pDropped) {
    if (!ok || lseI == NEG_INF) {
        *pDropped = 0.0f;
        return 0.0f;
    }
    float p = expf(sDot * scale - lseI);
    *pDropped = p * mult;
    return scale * p * (mult * dp - rowDotI);
}

__device__ __forceinline__ float att_ds(float sDot, float dp, float lseI, float rowDotI, bool ok, float scale, float pdrop,
                                        float keepScale, unsigned long long seed, unsigned long long stream,
                                        unsigned long long idx, float* pDropped) {
    float mult = 1.0f;
    if (pdrop > 0.0f && ok && lseI != NEG_INF) mult = philox_keep(seed, stream, idx, pdrop) ? keepScale : 0.0f;
    return att_ds_mult(sDot, dp, lseI, rowDotI, ok, scale, mult, pDropped);
}

// Backward, step 2: dQ += Σ_j dS_ij k_j. Rows = queries; columns = key tiles.
// Shared: K tile [32][Dqk+1], V tile [32][Dv+1], Q rows [ROWS][Dqk], dOut rows [ROWS][Dv].
extern "C" __global__ void p4j_attention_backward_dq(const float* q, const float* k, const float* v, const unsigned char* pad,
                                                     const float* lse, const float* rowDot, const float* dOut, float* dQ,
                                                     int H, int nq, int nk, int dqk, int dv, float scale, int causal,
                                                     float pdrop, float keepScale, unsigned long long seed, unsigned long long stream) {
    extern __shared__ float smem[];
    const int ks = dqk + 1, vs = dv + 1;
    float* Ks = smem;
    float* Vs = Ks + ATT_TILE * ks;
    float* Qs = Vs + ATT_TILE * vs;
    float* Gs = Qs + ATT_ROWS * dqk;
    const int bh = blockIdx.y, b = bh / H, h = bh % H;
    const int i0 = blockIdx.x * ATT_ROWS;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long qkW = (long long) H * dqk, vW = (long long) H * dv;
    const int shift = nk - nq;

    for (int t = threadIdx.x; t < ATT_ROWS * dqk; t += blockDim.x) {
        int r = t / dqk, c = t % dqk, i = i0 + r;
        Qs[t] = i < nq ? q[((long long) b * nq + i) * qkW + (long long) h * dqk + c] : 0.0f;
    }
    for (int t = threadIdx.x; t < ATT_ROWS * dv; t += blockDim.x) {
        int r = t / dv, c = t % dv, i = i0 + r;
        Gs[t] = i < nq ? dOut[((long long) b * nq + i) * vW + (long long) h * dv + c] : 0.0f;
    }
    float lseR[ATT_RPW], dR[ATT_RPW], acc[ATT_RPW][ATT_MAXC];
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        int i = i0 + warp * ATT_RPW + r;
        lseR[r] = i < nq ? lse[(long long) bh * nq + i] : NEG_INF;
        dR[r] = i < nq ? rowDot[(long long) bh * nq + i] : 0.0f;
#pragma unroll
        for (int t = 0; t < ATT_MAXC; t++) acc[r][t] = 0.0f;
    }
    const int lastRow = imin(nq, i0 + ATT_ROWS) - 1;
    const int keyEnd = causal ? imin(nk, lastRow + shift + 1) : nk;

    for (int j0 = 0; j0 < keyEnd; j0 += ATT_TILE) {
        __syncthreads();
        for (int t = threadIdx.x; t < ATT_TILE * dqk; t += blockDim.x) {
            int jj = t / dqk, c = t % dqk, j = j0 + jj;
            Ks[jj * ks + c] = j < nk ? k[((long long) b * nk + j) * qkW + (long long) h * dqk + c] : 0.0f;
        }
        for (int t = threadIdx.x; t < ATT_TILE * dv; t += blockDim.x) {
            int jj = t / dv, c = t % dv, j = j0 + jj;
            Vs[jj * vs + c] = j < nk ? v[((long long) b * nk + j) * vW + (long long) h * dv + c] : 0.0f;
        }
        __syncthreads();

        const int j = j0 + lane;
        const bool keyOk = j < keyEnd && att_key_ok(pad, b, nk, j);
        float s[ATT_RPW], dp[ATT_RPW];
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            s[r] = 0.0f;
            dp[r] = 0.0f;
        }
        for (int c = 0; c < dqk; c++) {
            float kc = Ks[lane * ks + c];
#pragma unroll
            for (int r = 0; r < ATT_RPW; r++) s[r] += Qs[(warp * ATT_RPW + r) * dqk + c] * kc;
        }
        for (int c = 0; c < dv; c++) {
            float vc = Vs[lane * vs + c];
#pragma unroll
            for (int r = 0; r < ATT_RPW; r++) dp[r] += Gs[(warp * ATT_RPW + r) * dv + c] * vc;
        }
        float ds[ATT_RPW];
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            int i = i0 + warp * ATT_RPW + r;
            bool ok = keyOk && i < nq && (!causal || j <= i + shift);
            unsigned long long idx = ((unsigned long long) bh * nq + i) * (unsigned long long) nk + j;
            float unused;
            ds[r] = att_ds(s[r], dp[r], lseR[r], dR[r], ok, scale, pdrop, keepScale, seed, stream, idx, &unused);
        }
        for (int jj = 0; jj < ATT_TILE; jj++) {
            float kk[ATT_MAXC];
#pragma unroll
            for (int t = 0; t < ATT_MAXC; t++) {
                int c = lane + 32 * t;
                kk[t] = c < dqk ? Ks[jj * ks + c] : 0.0f;
            }
#pragma unroll
            for (int r = 0; r < ATT_RPW; r++) {
                float g = __shfl_sync(0xffffffffu, ds[r], jj);
#pragma unroll
                for (int t = 0; t < ATT_MAXC; t++) acc[r][t] += g * kk[t];
            }
        }
    }

#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        int i = i0 + warp * ATT_RPW + r;
        if (i >= nq) continue;
        float* o = dQ + ((long long) b * nq + i) * qkW + (long long) h * dqk;
#pragma unroll
        for (int t = 0; t < ATT_MAXC; t++) {
            int c = lane + 32 * t;
            if (c < dqk) o[c] += acc[r][t];
        }
    }
}

// Backward, step 3: dK += Σ_i dS_ij q_i, dV += Σ_i P_ij M_ij dOut_i. Rows = keys; columns = query tiles.
// Shared: Q tile [32][Dqk+1], dOut tile [32][Dv+1], K rows [ROWS][Dqk], V rows [ROWS][Dv], lse and rowDot [32] each.
extern "C" __global__ void p4j_attention_backward_dkdv(const float* q, const float* k, const float* v, const unsigned char* pad,
                                                       const float* lse, const float* rowDot, const float* dOut,
                                                       float* dK, float* dV, int H, int nq, int nk, int dqk, int dv,
                                                       float scale, int causal, float pdrop, float keepScale,
                                                       unsigned long long seed, unsigned long long stream) {
    extern __shared__ float smem[];
    const int qs = dqk + 1, gs = dv + 1;
    float* Qs = smem;
    float* Gs = Qs + ATT_TILE * qs;
    float* Ks = Gs + ATT_TILE * gs;
    float* Vs = Ks + ATT_ROWS * dqk;
    float* Ls = Vs + ATT_ROWS * dv;
    float* Ds = Ls + ATT_TILE;
    const int bh = blockIdx.y, b = bh / H, h = bh % H;
    const int j0 = blockIdx.x * ATT_ROWS;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long qkW = (long long) H * dqk, vW = (long long) H * dv;
    const int shift = nk - nq;

    for (int t = threadIdx.x; t < ATT_ROWS * dqk; t += blockDim.x) {
        int r = t / dqk, c = t % dqk, j = j0 + r;
        Ks[t] = j < nk ? k[((long long) b * nk + j) * qkW + (long long) h * dqk + c] : 0.0f;
    }
    for (int t = threadIdx.x; t < ATT_ROWS * dv; t += blockDim.x) {
        int r = t / dv, c = t % dv, j = j0 + r;
        Vs[t] = j < nk ? v[((long long) b * nk + j) * vW + (long long) h * dv + c] : 0.0f;
    }
    bool rowOk[ATT_RPW];
    float accK[ATT_RPW][ATT_MAXC], accV[ATT_RPW][ATT_MAXC];
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        rowOk[r] = att_key_ok(pad, b, nk, j0 + warp * ATT_RPW + r);
#pragma unroll
        for (int t = 0; t < ATT_MAXC; t++) {
            accK[r][t] = 0.0f;
            accV[r][t] = 0.0f;
        }
    }
    // queries that may see key j0 or later: i ≥ j0 − shift when causal
    const int iStart = causal ? (j0 - shift > 0 ? j0 - shift : 0) : 0;

    for (int q0 = iStart; q0 < nq; q0 += ATT_TILE) {
        __syncthreads();
        for (int t = threadIdx.x; t < ATT_TILE * dqk; t += blockDim.x) {
            int ii = t / dqk, c = t % dqk, i = q0 + ii;
            Qs[ii * qs + c] = i < nq ? q[((long long) b * nq + i) * qkW + (long long) h * dqk + c] : 0.0f;
        }
        for (int t = threadIdx.x; t < ATT_TILE * dv; t += blockDim.x) {
            int ii = t / dv, c = t % dv, i = q0 + ii;
            Gs[ii * gs + c] = i < nq ? dOut[((long long) b * nq + i) * vW + (long long) h * dv + c] : 0.0f;
        }
        if (threadIdx.x < ATT_TILE) {
            int i = q0 + threadIdx.x;
            Ls[threadIdx.x] = i < nq ? lse[(long long) bh * nq + i] : NEG_INF;
            Ds[threadIdx.x] = i < nq ? rowDot[(long long) bh * nq + i] : 0.0f;
        }
        __syncthreads();

        const int i = q0 + lane;
        float s[ATT_RPW], dp[ATT_RPW];
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            s[r] = 0.0f;
            dp[r] = 0.0f;
        }
        for (int c = 0; c < dqk; c++) {
            float qc = Qs[lane * qs + c];
#pragma unroll
            for (int r = 0; r < ATT_RPW; r++) s[r] += Ks[(warp * ATT_RPW + r) * dqk + c] * qc;
        }
        for (int c = 0; c < dv; c++) {
            float gc = Gs[lane * gs + c];
#pragma unroll
            for (int r = 0; r < ATT_RPW; r++) dp[r] += Vs[(warp * ATT_RPW + r) * dv + c] * gc;
        }
        float ds[ATT_RPW], pd[ATT_RPW];
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            int j = j0 + warp * ATT_RPW + r;
            bool ok = rowOk[r] && i < nq && (!causal || j <= i + shift);
            unsigned long long idx = ((unsigned long long) bh * nq + i) * (unsigned long long) nk + j;
            ds[r] = att_ds(s[r], dp[r], Ls[lane], Ds[lane], ok, scale, pdrop, keepScale, seed, stream, idx, &pd[r]);
        }
        for (int ii = 0; ii < ATT_TILE; ii++) {
            float qq[ATT_MAXC], gg[ATT_MAXC];
#pragma unroll
            for (int t = 0; t < ATT_MAXC; t++) {
                int c = lane + 32 * t;
                qq[t] = c < dqk ? Qs[ii * qs + c] : 0.0f;
                gg[t] = c < dv ? Gs[ii * gs + c] : 0.0f;
            }
#pragma unroll
            for (int r = 0; r < ATT_RPW; r++) {
                float g = __shfl_sync(0xffffffffu, ds[r], ii);
                float p = __shfl_sync(0xffffffffu, pd[r], ii);
#pragma unroll
                for (int t = 0; t < ATT_MAXC; t++) {
                    accK[r][t] += g * qq[t];
                    accV[r][t] += p * gg[t];
                }
            }
        }
    }

#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        int j = j0 + warp * ATT_RPW + r;
        if (j >= nk) continue;
        float* ok_ = dK + ((long long) b * nk + j) * qkW + (long long) h * dqk;
        float* ov = dV + ((long long) b * nk + j) * vW + (long long) h * dv;
#pragma unroll
        for (int t = 0; t < ATT_MAXC; t++) {
            int c = lane + 32 * t;
            if (c < dqk) ok_[c] += accK[r][t];
            if (c < dv) ov[c] += accV[r][t];
        }
    }
}

// Tensor cores (mma.sync with TF32) and cp.async need compute capability 8.0 or newer. On older
// devices the kernels below compile to a trap, and the host never launches them there
// (CudaBackend.tensorCoreAttention checks the capability).
#if __CUDA_ARCH__ >= 800
#define P4J_SM80(call) call
#else
#define P4J_SM80(call) __trap()
#endif

// ================================================================ attention forward on tensor cores (TF32)
//
// The forward above with its two products (Q·Kᵀ and P·V) on tensor cores: mma.sync m16n8k8 with
// TF32 inputs (10-bit mantissa, rounded to nearest) and fp32 accumulation; softmax, masks, dropout
// and the online rescaling stay in fp32 and follow the same rules (same Philox indices, same
// normaliser, same out = 0 / lse = −inf for a query with no visible key). The backend uses it when
// its matrix products run in TF32 and a specialisation for (Dqk, Dv) exists below.
//
// Block: TC_WARPS warps, 16 query rows each; key tiles of TC_KEYS keys through shared memory,
// stored as TF32 bit patterns. Fragment ownership (PTX m16n8k8 .tf32): lane = 4·g + t;
// A (16×8): a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); B (8×8, k × n): b0 (t, g),
// b1 (t+4, g); C (16×8): c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1). Each thread thus
// owns rows g and g+8 of its warp's 16; a row's max and sum reduce over the 4 lanes sharing g.
// P goes through a per-warp shared tile to change from the C to the A layout.

#define TC_WARPS 4
#define TC_ROWS (16 * TC_WARPS)
#define TC_KEYS 32
#define TC_PS (TC_KEYS + 4)

#if __CUDA_ARCH__ >= 800
__device__ __forceinline__ unsigned tf32_bits(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ void mma_tf32(float* d, const unsigned* a, unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/**
 * A fragments of one m16n8k8 row pair — rows r0 and r1 of head h (D columns, in steps of 8) of a
 * [B, n, H·D] tensor, rounded to TF32 — for every k step: a[kk] = {(r0, c), (r1, c), (r0, c+4),
 * (r1, c+4)} with c = 8·kk + t4. Rows ≥ n give zeros.
 */
template <int D>
__device__ __forceinline__ void tc_row_fragments(unsigned (*a)[4], const float* src, int b, int h, int H, int n, int r0, int r1,
                                                 int t4) {
    const long long width = (long long) H * D;
    const float* p0 = src + ((long long) b * n + imin(r0, n - 1)) * width + (long long) h * D;
    const float* p1 = src + ((long long) b * n + imin(r1, n - 1)) * width + (long long) h * D;
#pragma unroll
    for (int kk = 0; kk < D / 8; kk++) {
        int c = kk * 8 + t4;
        a[kk][0] = tf32_bits(r0 < n ? p0[c] : 0.0f);
        a[kk][1] = tf32_bits(r1 < n ? p1[c] : 0.0f);
        a[kk][2] = tf32_bits(r0 < n ? p0[c + 4] : 0.0f);
        a[kk][3] = tf32_bits(r1 < n ? p1[c + 4] : 0.0f);
    }
}

/** Shared memory of the tensor-core forward, in 32-bit words (the host computes the same). */
__host__ __device__ constexpr int tc_k_stride(int dqk) { return dqk + 4; }                  // conflict-free B reads of K
__host__ __device__ constexpr int tc_v_stride(int dv) { return dv + (40 - dv % 32) % 32; }  // ≡ 8 mod 32: same for V

// Tiles reach shared memory by cp.async (16 bytes per copy, rows past the end zero-filled), double
// buffered: the next tile is in flight while the current one is used. The host launches these
// kernels only when q, k, v and dOut start 16-byte aligned (head dims are multiples of 8). After its
// copies arrive each thread converts the words it copied to TF32 bit patterns in place, so the
// fragment reads see the same rounded values as before.

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

/** Starts copying rows [r0, r0 + rows) of head h of a [B, n, width] tensor (D floats per head) to dst, stride st words. */
template <int D>
__device__ __forceinline__ void tc_copy_rows(unsigned* dst, int st, const float* src, int b, int h, int n, int r0, int rows,
                                             long long width) {
    constexpr int C4 = D / 4;
    for (int t = threadIdx.x; t < rows * C4; t += blockDim.x) {
        int rr = t / C4, c = (t % C4) * 4, r = r0 + rr;
        const float* from = src + ((long long) b * n + (r < n ? r : 0)) * width + (long long) h * D + c;
        unsigned to = (unsigned) __cvta_generic_to_shared(dst + rr * st + c);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to), "l"(from), "r"(r < n ? 16 : 0));
    }
}

/** Rounds to TF32, in place, the words this thread's tc_copy_rows with the same arguments wrote (after they arrived). */
template <int D>
__device__ __forceinline__ void tc_round_rows(unsigned* dst, int st, int rows) {
    constexpr int C4 = D / 4;
    for (int t = threadIdx.x; t < rows * C4; t += blockDim.x) {
        uint4* w = reinterpret_cast<uint4*>(dst + (t / C4) * st + (t % C4) * 4);
        uint4 x = *w;
        x.x = tf32_bits(__uint_as_float(x.x));
        x.y = tf32_bits(__uint_as_float(x.y));
        x.z = tf32_bits(__uint_as_float(x.z));
        x.w = tf32_bits(__uint_as_float(x.w));
        *w = x;
    }
}

/**
 * Adds a warp's m16n8 accumulator fragments — this thread's rows r0 and r1, columns 2·t4 and 2·t4 + 1
 * of each 8-column tile — into head h (D columns from h·D) of a [B, n, ·] tensor with rows `width` apart; rows ≥ n are skipped.
 * Loads first, then adds and stores, TC_ADD_TILES tiles at a time: one load, add and store per
 * element in turn made each wait for the previous store (the compiler cannot know the stores do not
 * alias the next loads), a global-memory round trip per element (30 % of the dK/dV kernel's stall
 * samples at Dv 160, ncu, session 8 call 5). With add false the fragments are stored, each pair of
 * columns as one 8-byte store, and dst is not read (a gradient nothing has written yet: the backend's
 * lazy zeros).
 */
#define TC_ADD_TILES 4
template <int D>
__device__ __forceinline__ void tc_add_fragments(float* dst, const float (*acc)[4], int b, int h, long long width, int n, int r0, int r1,
                                                 int t4, bool add = true) {
    float* o0 = dst + ((long long) b * n + imin(r0, n - 1)) * width + h * D + 2 * t4;
    float* o1 = dst + ((long long) b * n + imin(r1, n - 1)) * width + h * D + 2 * t4;
    if (!add) {
#pragma unroll
        for (int nt = 0; nt < D / 8; nt++) {
            if (r0 < n) *reinterpret_cast<float2*>(o0 + nt * 8) = make_float2(acc[nt][0], acc[nt][1]);
            if (r1 < n) *reinterpret_cast<float2*>(o1 + nt * 8) = make_float2(acc[nt][2], acc[nt][3]);
        }
        return;
    }
#pragma unroll
    for (int c0 = 0; c0 < D / 8; c0 += TC_ADD_TILES) {
        float old[TC_ADD_TILES][4];
#pragma unroll
        for (int i = 0; i < TC_ADD_TILES && c0 + i < D / 8; i++) {
            const int c = (c0 + i) * 8;
            old[i][0] = r0 < n ? o0[c] : 0.0f;
            old[i][1] = r0 < n ? o0[c + 1] : 0.0f;
            old[i][2] = r1 < n ? o1[c] : 0.0f;
            old[i][3] = r1 < n ? o1[c + 1] : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < TC_ADD_TILES && c0 + i < D / 8; i++) {
            const int c = (c0 + i) * 8;
            if (r0 < n) {
                o0[c] = old[i][0] + acc[c0 + i][0];
                o0[c + 1] = old[i][1] + acc[c0 + i][1];
            }
            if (r1 < n) {
                o1[c] = old[i][2] + acc[c0 + i][2];
                o1[c + 1] = old[i][3] + acc[c0 + i][3];
            }
        }
    }
}

/** Starts copying key tile `tile` (K rows, then V rows, stride KS / VS) into buffer tile & 1 of tsm, as one group. */
template <int DQK, int DV, int KS, int VS>
__device__ __forceinline__ void tc_fetch_keys(unsigned* tsm, int tile, const float* k, const float* v, int b, int h, int nk,
                                              long long qkW, long long vW) {
    unsigned* st = tsm + (tile & 1) * TC_KEYS * (KS + VS);
    tc_copy_rows<DQK>(st, KS, k, b, h, nk, tile * TC_KEYS, TC_KEYS, qkW);
    tc_copy_rows<DV>(st + TC_KEYS * KS, VS, v, b, h, nk, tile * TC_KEYS, TC_KEYS, vW);
    cp_async_commit();
}

/**
 * Key tile `tile` of `tiles` for the forward and dQ kernels (tile 0 fetched before the loop), ready in
 * shared memory: starts fetching the next tile into the other buffer (which every warp finished
 * with before the caller's last barrier), waits for this one, rounds it to TF32 and syncs the block.
 * Returns its K tile [TC_KEYS][KS]; the V tile [TC_KEYS][VS] follows it.
 */
template <int DQK, int DV, int KS, int VS>
__device__ __forceinline__ unsigned* tc_key_tile(unsigned* tsm, int tile, int tiles, const float* k, const float* v, int b,
                                                 int h, int nk, long long qkW, long long vW) {
    if (tile + 1 < tiles) {
        tc_fetch_keys<DQK, DV, KS, VS>(tsm, tile + 1, k, v, b, h, nk, qkW, vW);
        cp_async_wait<1>();
    } else {
        cp_async_wait<0>();
    }
    unsigned* ks = tsm + (tile & 1) * TC_KEYS * (KS + VS);
    tc_round_rows<DQK>(ks, KS, TC_KEYS);
    tc_round_rows<DV>(ks + TC_KEYS * KS, VS, TC_KEYS);
    __syncthreads(); // the tile is complete and rounded
    return ks;
}

/** Starts copying 32-bit values [i0, i0 + count) of one row of a [rows, n] array to dst (zeros past n). */
__device__ __forceinline__ void tc_copy_values(float* dst, const float* src, long long row, int n, int i0, int count) {
    for (int t = threadIdx.x; t < count; t += blockDim.x) {
        int i = i0 + t;
        const float* from = src + row * n + (i < n ? i : 0);
        unsigned to = (unsigned) __cvta_generic_to_shared(dst + t);
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(to), "l"(from), "r"(i < n ? 4 : 0));
    }
}

// Attention dropout in the tensor-core kernels draws the same bits as philox_keep with a quarter of the
// Philox work: a Philox block holds four consecutive indices (row·nk + key), and when nk % 4 == 0 the
// four lanes that need one group of blocks each draw one, turn its four words into four keep bits (a
// nibble) and share the nibbles by two butterfly shuffles, so every lane holds all sixteen decisions
// and picks its own. All 32 lanes must call these together (the callers' loops are warp-uniform).

/**
 * Keep flags of this thread's four elements of one 8-key group of a row-major m16n8 tile (forward, dQ):
 * rows with index bases baseA and baseB ((bh·nq + row)·nk), keys c0 + 2·t4 and c0 + 2·t4 + 1 (c0 a
 * multiple of 8). The quad (same g) needs four blocks (2 rows × 2 key halves): lane t4 draws block
 * (row t4 >> 1, half t4 & 1), and after the shuffles nibble t4 of `all` is that block's. Bit e is
 * (row A, key + e), bit 2 + e (row B, key + e).
 */
__device__ __forceinline__ unsigned att_keep_rows(unsigned long long seed, unsigned long long stream, unsigned long long baseA,
                                                  unsigned long long baseB, int c0, int lane, float p) {
    const int t4 = lane & 3, half = t4 >> 1, pick = t4 & 1;
    unsigned w[4];
    philox_bits(seed, stream, (half ? baseB : baseA) + c0 + 4 * pick, w);
    unsigned all = att_keep_nibble(w, p) << (4 * t4);
    all |= __shfl_xor_sync(0xffffffffu, all, 1);
    all |= __shfl_xor_sync(0xffffffffu, all, 2);
    unsigned keep = 0;
#pragma unroll
    for (int row = 0; row < 2; row++) {
        // block (row, our half) holds our two keys as its words 2·pick and 2·pick + 1
        const unsigned nib = all >> (4 * (2 * row + half));
        keep |= ((nib >> (2 * pick)) & 3u) << (2 * row);
    }
    return keep;
}

/**
 * The same for the transposed tile of the dK/dV kernel: this thread's keys ka and ka + 8 (rows g, g + 8)
 * and queries with index bases baseQ and baseQ + nk (columns 2·t4, 2·t4 + 1). Keys 4m … 4m + 3 sit in
 * lanes g = 4m … 4m + 3 of one t4 (lanes 4 apart), and those four lanes need the same four blocks
 * (2 queries × 2 key groups): lane s = g & 3 draws block s (query s & 1, key group s >> 1), and every
 * lane needs word g & 3 of each. After the shuffles (lane bits 2 and 3) nibble s of `all` is block s's.
 * Bit e is (query + e, ka), bit 2 + e (query + e, ka + 8).
 */
__device__ __forceinline__ unsigned att_keep_keys(unsigned long long seed, unsigned long long stream, unsigned long long baseQ,
                                                  int nk, int ka, int lane, float p) {
    const int me = (lane >> 2) & 3;
    unsigned w[4];
    philox_bits(seed, stream, baseQ + (unsigned long long) (me & 1) * nk + (ka & ~3) + 8 * (me >> 1), w);
    unsigned all = att_keep_nibble(w, p) << (4 * me);
    all |= __shfl_xor_sync(0xffffffffu, all, 4);
    all |= __shfl_xor_sync(0xffffffffu, all, 8);
    // bit `me` of each nibble, gathered: after the mask, bits 0, 4, 8, 12; the product by 2^3 + 2^6 + 2^9 + 2^12
    // moves them to bits 12..15 with no two terms on one bit (so no carries). The same bits as picking
    // them one by one (checked for every nibble pattern and me), in 4 instructions instead of about 15.
    return ((((all >> me) & 0x1111u) * 0x1248u) >> 12) & 0xFu;
}

/**
 * The bf16 kernels' keep bits, from p4j_attention_keep_bits' words staged in shared memory with each
 * tile (bf_copy_keep). att_keep_word_rows: this thread's four elements of one 8-key group of a
 * row-major m16n8 tile (forward, dQ), keys c0 + 2·t4, + 1 of the tile (c0 a multiple of 8) in the
 * rows whose staged words start at rowA and rowB: bit e (row A, key + e), bit 2 + e (row B, key + e),
 * as att_keep_rows.
 */
__device__ __forceinline__ unsigned att_keep_word_rows(const unsigned* rowA, const unsigned* rowB, int c0, int t4) {
    const int w = c0 >> 5, sh = (c0 & 31) + 2 * t4;
    return ((rowA[w] >> sh) & 3u) | (((rowB[w] >> sh) & 3u) << 2);
}

/**
 * The same for the dK/dV kernel's transposed tile, as att_keep_keys: bits sh and sh + 8 (keys ka and
 * ka + 8, one word since ka % 16 < 8) of the words a and b of queries q and q + 1: bit e (query + e, ka),
 * bit 2 + e (query + e, ka + 8).
 */
__device__ __forceinline__ unsigned att_keep_word_keys(unsigned a, unsigned b, int sh) {
    a >>= sh;
    b >>= sh;
    return (a & 1u) | ((b & 1u) << 1) | (((a >> 8) & 1u) << 2) | (((b >> 8) & 1u) << 3);
}

/** 2^x, approximate (ex2.approx.ftz: relative error about 2^-22, far below bf16's 2^-9); 2^-inf = 0. */
__device__ __forceinline__ float att_ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/**
 * One key tile of the bf16 forward's online softmax, in base 2, for this thread's rows r0 and r1 (C
 * layout, NT 8-key tiles from key j0): scales the scores s by scale2 = scale·log2(e) (≥ 0: the caller
 * negates Q for a negative scale, so the raw scores' max scales to the scaled scores' max), masks them
 * (MASKED only: kbias[key − j0] is 0 for a key visible to every row, −inf otherwise, and the causal
 * rule), updates the running max m (base-2 units) and sum l (before dropout), rescales the NV output
 * accumulator tiles o when a row's max moved, and leaves P (after dropout: keepA and keepB, when
 * not null, are rows r0's and r1's staged keep words of this tile) in s. Without MASKED the caller has checked that every key of the tile
 * is visible to every row, so no element is tested. A row with no visible key yet keeps m = −inf, P = 0.
 */
template <int NT, int NV, bool MASKED>
__device__ __forceinline__ void att_softmax_tile(float (*s)[4], float (*o)[4], float& m0, float& m1, float& l0, float& l1,
                                                 const float* kbias, int j0, int r0, int r1, int shift, int causal, float scale2,
                                                 const unsigned* keepA, const unsigned* keepB, float keepScale, int lane) {
    const int t4 = lane & 3;
    float mx0 = NEG_INF, mx1 = NEG_INF;   // of the raw scores (hidden ones −inf)
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            float x0 = s[nt][e], x1 = s[nt][2 + e];
            if (MASKED) {
                const int jl = nt * 8 + 2 * t4 + e, j = j0 + jl;
                const bool keyOk = kbias[jl] == 0.0f;
                x0 = keyOk && (!causal || j <= r0 + shift) ? x0 : NEG_INF;
                x1 = keyOk && (!causal || j <= r1 + shift) ? x1 : NEG_INF;
                s[nt][e] = x0;
                s[nt][2 + e] = x1;
            }
            mx0 = fmaxf(mx0, x0);
            mx1 = fmaxf(mx1, x1);
        }
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    // the tile's max in base-2 units (a row with every key hidden keeps −inf: −inf · 0 would be NaN)
    const float mn0 = fmaxf(m0, mx0 == NEG_INF ? NEG_INF : mx0 * scale2), mn1 = fmaxf(m1, mx1 == NEG_INF ? NEG_INF : mx1 * scale2);
    // Subtrahends: a row that has seen no visible key (mn = −inf, only when MASKED) subtracts 0, so
    // −inf − (−inf) never happens; its P and c are then 0, harmless as its l and o are still 0.
    const float u0 = MASKED && mn0 == NEG_INF ? 0.0f : mn0, u1 = MASKED && mn1 == NEG_INF ? 0.0f : mn1;
    const float c0 = att_ex2(m0 - u0), c1 = att_ex2(m1 - u1);   // 1 when the max stayed, 0 when m was −inf
    float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        const unsigned keep = keepA != nullptr ? att_keep_word_rows(keepA, keepB, nt * 8, t4) : 0u;
#pragma unroll
        for (int e = 0; e < 2; e++) {
            float p0 = att_ex2(fmaf(s[nt][e], scale2, -u0)), p1 = att_ex2(fmaf(s[nt][2 + e], scale2, -u1));   // one FFMA each
            if (MASKED) {   // hidden: 0 (also for scale 0, where −inf · 0 is NaN)
                p0 = s[nt][e] == NEG_INF ? 0.0f : p0;
                p1 = s[nt][2 + e] == NEG_INF ? 0.0f : p1;
            }
            ps0 += p0;
            ps1 += p1;
            if (keepA != nullptr) {
                p0 *= (keep >> e) & 1u ? keepScale : 0.0f;
                p1 *= (keep >> (2 + e)) & 1u ? keepScale : 0.0f;
            }
            s[nt][e] = p0;
            s[nt][2 + e] = p1;
        }
    }
    ps0 += __shfl_xor_sync(0xffffffffu, ps0, 1);
    ps0 += __shfl_xor_sync(0xffffffffu, ps0, 2);
    ps1 += __shfl_xor_sync(0xffffffffu, ps1, 1);
    ps1 += __shfl_xor_sync(0xffffffffu, ps1, 2);
    l0 = l0 * c0 + ps0;
    l1 = l1 * c1 + ps1;
    m0 = mn0;
    m1 = mn1;
    if (__any_sync(0xffffffffu, c0 != 1.0f || c1 != 1.0f)) {   // most tiles after the first leave every max in place
#pragma unroll
        for (int nt = 0; nt < NV; nt++) {
            o[nt][0] *= c0;
            o[nt][1] *= c0;
            o[nt][2] *= c1;
            o[nt][3] *= c1;
        }
    }
}

/** The lse of rows r0, r1 (−inf for a row that saw no key), from the first lane of each row's quad: the forwards' epilogues' last part. */
__device__ __forceinline__ void att_store_lse(float* lse, float m0, float m1, float l0, float l1, int bh, int nq, int r0, int r1, int t4) {
    if (t4 == 0) {
        if (r0 < nq) lse[(long long) bh * nq + r0] = l0 == 0.0f ? NEG_INF : m0 + logf(l0);
        if (r1 < nq) lse[(long long) bh * nq + r1] = l1 == 0.0f ? NEG_INF : m1 + logf(l1);
    }
}

/** The tensor-core forwards' epilogue: rows r0, r1 of head h of out ([B, nq, vW]) = o / l, and their lse (−inf, out 0 for a row that saw no key). */
template <int DV>
__device__ __forceinline__ void att_store_rows(float* out, float* lse, const float (*o)[4], float m0, float m1, float l0, float l1,
                                               int b, int h, int bh, int nq, long long vW, int r0, int r1, int t4) {
    const float inv0 = l0 == 0.0f ? 0.0f : 1.0f / l0, inv1 = l1 == 0.0f ? 0.0f : 1.0f / l1;
    float* o0 = out + ((long long) b * nq + imin(r0, nq - 1)) * vW + (long long) h * DV;
    float* o1 = out + ((long long) b * nq + imin(r1, nq - 1)) * vW + (long long) h * DV;
    if ((reinterpret_cast<unsigned long long>(out) & 7) == 0) {   // every pair 8-byte aligned (DV even): one store per pair
#pragma unroll
        for (int nt = 0; nt < DV / 8; nt++) {
            int c = nt * 8 + 2 * t4;
            if (r0 < nq) *reinterpret_cast<float2*>(o0 + c) = make_float2(o[nt][0] * inv0, o[nt][1] * inv0);
            if (r1 < nq) *reinterpret_cast<float2*>(o1 + c) = make_float2(o[nt][2] * inv1, o[nt][3] * inv1);
        }
    } else {
#pragma unroll
        for (int nt = 0; nt < DV / 8; nt++) {
            int c = nt * 8 + 2 * t4;
            if (r0 < nq) {
                o0[c] = o[nt][0] * inv0;
                o0[c + 1] = o[nt][1] * inv0;
            }
            if (r1 < nq) {
                o1[c] = o[nt][2] * inv1;
                o1[c + 1] = o[nt][3] * inv1;
            }
        }
    }
    att_store_lse(lse, m0, m1, l0, l1, bh, nq, r0, r1, t4);
}

template <int DQK, int DV>
__device__ void attention_forward_tc(const float* q, const float* k, const float* v, const unsigned char* pad,
                                     float* out, float* lse, int H, int nq, int nk, float scale, int causal,
                                     float pdrop, float keepScale, unsigned long long seed, unsigned long long stream) {
    constexpr int KS = tc_k_stride(DQK), VS = tc_v_stride(DV);
    extern __shared__ unsigned tsm[];
    constexpr int STAGE = TC_KEYS * (KS + VS);   // one buffer: K tile [TC_KEYS][KS], then V tile [TC_KEYS][VS]
    const int bh = blockIdx.y, b = bh / H, h = bh % H;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
    unsigned* P = tsm + 2 * STAGE + warp * 16 * TC_PS;     // this warp's [16][TC_PS]
    const int i0 = blockIdx.x * TC_ROWS;
    const int r0 = i0 + warp * 16 + g, r1 = r0 + 8;          // the two rows this thread owns
    const long long qkW = (long long) H * DQK, vW = (long long) H * DV;
    const int shift = nk - nq;

    unsigned qa[DQK / 8][4];
    tc_row_fragments<DQK>(qa, q, b, h, H, nq, r0, r1, t4);
    float o[DV / 8][4];
#pragma unroll
    for (int nt = 0; nt < DV / 8; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
    float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.0f, l1 = 0.0f;
    const unsigned long long base0 = ((unsigned long long) bh * nq + r0) * (unsigned long long) nk, base1 = base0 + 8ull * nk;
    const bool quadDrop = pdrop > 0.0f && nk % 4 == 0;   // Philox blocks shared by the quad (att_keep_rows)
    const int lastRow = imin(nq, i0 + TC_ROWS) - 1;
    const int keyEnd = causal ? imin(nk, lastRow + shift + 1) : nk;

    const int tiles = (keyEnd + TC_KEYS - 1) / TC_KEYS;
    if (tiles > 0) tc_fetch_keys<DQK, DV, KS, VS>(tsm, 0, k, v, b, h, nk, qkW, vW);
    for (int tile = 0; tile < tiles; tile++) {
        const int j0 = tile * TC_KEYS;
        unsigned* Ks = tc_key_tile<DQK, DV, KS, VS>(tsm, tile, tiles, k, v, b, h, nk, qkW, vW);
        unsigned* Vs = Ks + TC_KEYS * KS;

        float s[TC_KEYS / 8][4];
#pragma unroll
        for (int nt = 0; nt < TC_KEYS / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            const unsigned* kr = Ks + (nt * 8 + g) * KS + t4;
#pragma unroll
            for (int kk = 0; kk < DQK / 8; kk++) mma_tf32(s[nt], qa[kk], kr[kk * 8], kr[kk * 8 + 4]);
        }
        // Online softmax step (natural base, every element tested), each P value going to the shared
        // tile as it is computed.
        float mx0 = NEG_INF, mx1 = NEG_INF;
#pragma unroll
        for (int nt = 0; nt < TC_KEYS / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int j = j0 + nt * 8 + 2 * t4 + e;
                bool keyOk = j < keyEnd && att_key_ok(pad, b, nk, j);
                bool ok0 = keyOk && r0 < nq && (!causal || j <= r0 + shift);
                bool ok1 = keyOk && r1 < nq && (!causal || j <= r1 + shift);
                s[nt][e] = ok0 ? s[nt][e] * scale : NEG_INF;
                s[nt][2 + e] = ok1 ? s[nt][2 + e] * scale : NEG_INF;
                mx0 = fmaxf(mx0, s[nt][e]);
                mx1 = fmaxf(mx1, s[nt][2 + e]);
            }
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float c0 = mn0 == NEG_INF ? 1.0f : expf(m0 - mn0); // 0 when m was −inf and a key became visible
        const float c1 = mn1 == NEG_INF ? 1.0f : expf(m1 - mn1);
        float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
        for (int nt = 0; nt < TC_KEYS / 8; nt++) {
            const unsigned keep = quadDrop ? att_keep_rows(seed, stream, base0, base1, j0 + nt * 8, lane, pdrop) : 0u;
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int jj = nt * 8 + 2 * t4 + e, j = j0 + jj;
                float p0 = s[nt][e] == NEG_INF ? 0.0f : expf(s[nt][e] - mn0);
                float p1 = s[nt][2 + e] == NEG_INF ? 0.0f : expf(s[nt][2 + e] - mn1);
                ps0 += p0;
                ps1 += p1;
                if (quadDrop) {
                    p0 *= (keep >> e) & 1u ? keepScale : 0.0f;
                    p1 *= (keep >> (2 + e)) & 1u ? keepScale : 0.0f;
                } else if (pdrop > 0.0f) {
                    if (p0 != 0.0f) p0 *= philox_keep(seed, stream, base0 + j, pdrop) ? keepScale : 0.0f;
                    if (p1 != 0.0f) p1 *= philox_keep(seed, stream, base1 + j, pdrop) ? keepScale : 0.0f;
                }
                P[g * TC_PS + jj] = tf32_bits(p0);
                P[(g + 8) * TC_PS + jj] = tf32_bits(p1);
            }
        }
        ps0 += __shfl_xor_sync(0xffffffffu, ps0, 1);
        ps0 += __shfl_xor_sync(0xffffffffu, ps0, 2);
        ps1 += __shfl_xor_sync(0xffffffffu, ps1, 1);
        ps1 += __shfl_xor_sync(0xffffffffu, ps1, 2);
        l0 = l0 * c0 + ps0;
        l1 = l1 * c1 + ps1;
        m0 = mn0;
        m1 = mn1;
#pragma unroll
        for (int nt = 0; nt < DV / 8; nt++) {
            o[nt][0] *= c0;
            o[nt][1] *= c0;
            o[nt][2] *= c1;
            o[nt][3] *= c1;
        }
        __syncwarp(); // P complete for the whole warp
#pragma unroll
        for (int kk = 0; kk < TC_KEYS / 8; kk++) {
            unsigned pa[4] = {P[g * TC_PS + kk * 8 + t4], P[(g + 8) * TC_PS + kk * 8 + t4],
                              P[g * TC_PS + kk * 8 + t4 + 4], P[(g + 8) * TC_PS + kk * 8 + t4 + 4]};
            const unsigned* vr0 = Vs + (kk * 8 + t4) * VS + g;
            const unsigned* vr1 = vr0 + 4 * VS;
#pragma unroll
            for (int nt = 0; nt < DV / 8; nt++) mma_tf32(o[nt], pa, vr0[nt * 8], vr1[nt * 8]);
        }
        __syncthreads(); // every warp is done with this buffer (the next fetch overwrites it) and with P
    }

    att_store_rows<DV>(out, lse, o, m0, m1, l0, l1, b, h, bh, nq, vW, r0, r1, t4);
}

#endif // __CUDA_ARCH__ >= 800

// The specialisations the backend may launch, named p4j_attention_forward_tc_<Dqk>_<Dv>
// (CudaBackend.TC_SHAPES lists the same pairs). Their arguments are p4j_attention_forward's, in its
// order; dqk and dv equal the specialisation's and are not read.
#define P4J_ATTENTION_TC(DQK, DV)                                                                                      \
    extern "C" __global__ void __launch_bounds__(TC_WARPS * 32) p4j_attention_forward_tc_##DQK##_##DV(                \
            const float* q, const float* k, const float* v, const unsigned char* pad, float* out, float* lse, int H,   \
            int nq, int nk, int dqk, int dv, float scale, int causal, float pdrop, float keepScale,                    \
            unsigned long long seed, unsigned long long stream) {                                                      \
        P4J_SM80((attention_forward_tc<DQK, DV>(q, k, v, pad, out, lse, H, nq, nk, scale, causal, pdrop, keepScale, seed, stream))); \
    }
P4J_ATTENTION_TC(8, 8)
P4J_ATTENTION_TC(16, 16)
P4J_ATTENTION_TC(32, 32)
P4J_ATTENTION_TC(64, 64)
P4J_ATTENTION_TC(32, 96)
P4J_ATTENTION_TC(32, 160)

// ================================================================ attention forward on bf16 tensor cores
//
// The tensor-core forward for the bf16 matmul mode, FlashAttention-2 style: mma.sync m16n8k16 .bf16
// with fp32 accumulation; softmax (base 2, ex2.approx), masks, dropout (the same Philox bits,
// att_keep_rows) and the online rescaling in fp32. The operands are bf16 copies the host makes once
// per call (CudaBackend.asType): rounding inside the kernel made every block round every tile
// it read again, and that work cost more than the products. Block: W warps of 16 query rows; key
// tiles of BK keys arrive by cp.async, double buffered, in bf16 tiles with row strides of D + 8
// halves (the eight 16-byte rows an ldmatrix phase reads fall in distinct bank groups), and the warps
// read their B fragments with ldmatrix (K as stored, V transposed). Q sits in registers; P is rounded
// in registers: the S accumulator of two adjacent 8-key tiles is, element for element,
// the A fragment of the P·V product (PTX m16n8k16: A a0a1 (g, 2t..2t+1), a2a3 (g+8, ..), a4a5
// (g, 2t+8..), a6a7 (g+8, 2t+8..); C c0c1 (g, 2t..), c2c3 (g+8, 2t..)), so P never goes through shared
// memory. Tiles that every row sees whole (no padding, not past the end, below the causal diagonal)
// skip the per-element mask tests. Dqk and Dv must be multiples of 16.

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

/** Keys per tile of the bf16 forward and dQ kernels (the host computes the same): 32 for wide values (registers), else 64. */
__host__ __device__ constexpr int bf_keys(int dv) { return dv > 64 ? 32 : 64; }
/**
 * Blocks per SM the bf16 forward's registers are held to (0: no limit). The variants without dropout
 * for small heads fit 4 blocks of 4 warps in 128 registers (Dqk = Dv = 64: 16 bytes spilled, outside
 * the key loop); the dropout variants there would spill far more (80 bytes at 64/64, when they drew
 * Philox blocks themselves). Dqk 32 / Dv 160 (language-perceiver's latent and encoder attention) takes
 * 4 blocks too, with or without dropout: unbounded it took 172 registers, 2 blocks per SM, and its
 * 512-block grid (16 × 8 heads × 4 row blocks) ran in two waves, the second nearly empty; bounded, one
 * wave, and the masked-LM step and the batch-32 forward were faster (docs/benchmarks.md, session 21).
 */
__host__ __device__ constexpr int bf_forward_min_blocks(int dqk, int dv, bool drop) {
    return (!drop && dqk + dv <= 128) || (dqk == 32 && dv == 160) ? 4 : 0;
}
/** The same for the bf16 dQ and dK/dV kernels: 3 blocks in 168 registers for small heads without dropout (32–40 bytes spilled at 64/64). */
__host__ __device__ constexpr int bf_backward_min_blocks(int dqk, int dv, bool drop) { return !drop && dqk + dv <= 128 ? 3 : 0; }
/** The dQ kernel's: as bf_backward_min_blocks, but 4 at Dqk 32 / Dv 160 (one wave for the latent attention's grid, as the forward). */
__host__ __device__ constexpr int bf_dq_min_blocks(int dqk, int dv, bool drop) {
    return dqk == 32 && dv == 160 ? 4 : bf_backward_min_blocks(dqk, dv, drop);
}
/** Queries per tile of the bf16 dK/dV kernel (the host computes the same): 32 unless both head dims are small (registers). */
__host__ __device__ constexpr int bf_queries(int dqk, int dv) { return dqk + dv > 96 ? 32 : 64; }

#if __CUDA_ARCH__ >= 800
/** Two floats rounded to nearest-even bf16 in one instruction, lo in the low half (as f32_to_bf16_bits for non-NaN values). */
__device__ __forceinline__ unsigned bf16_pair(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/**
 * tc_add_fragments' store (add false) into a gradient kept as bf16 (F.bf16Gradient): each pair of columns
 * rounded into one 4-byte store; dst holds bf16 elements at the same positions (row width in elements).
 */
template <int D>
__device__ __forceinline__ void tc_store_fragments_bf16(unsigned short* dst, const float (*acc)[4], int b, int h, long long width, int n,
                                                        int r0, int r1, int t4) {
    unsigned short* o0 = dst + ((long long) b * n + imin(r0, n - 1)) * width + h * D + 2 * t4;
    unsigned short* o1 = dst + ((long long) b * n + imin(r1, n - 1)) * width + h * D + 2 * t4;
#pragma unroll
    for (int nt = 0; nt < D / 8; nt++) {
        if (r0 < n) *reinterpret_cast<unsigned*>(o0 + nt * 8) = bf16_pair(acc[nt][0], acc[nt][1]);
        if (r1 < n) *reinterpret_cast<unsigned*>(o1 + nt * 8) = bf16_pair(acc[nt][2], acc[nt][3]);
    }
}

__device__ __forceinline__ void mma_bf16(float* d, const unsigned* a, unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/** Four 8×8 bf16 matrices from shared memory (lanes 8m … 8m + 7 give the row addresses of matrix m). */
__device__ __forceinline__ void ldsm_x4(unsigned* r, const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"((unsigned) __cvta_generic_to_shared(p)));
}

/** The same, each matrix transposed: register m of lane 4g + t holds (row 2t, column g), (row 2t + 1, column g). */
__device__ __forceinline__ void ldsm_x4_trans(unsigned* r, const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"((unsigned) __cvta_generic_to_shared(p)));
}

/** Two 8×8 bf16 matrices (lanes 0 … 15 give the row addresses). */
__device__ __forceinline__ void ldsm_x2(unsigned* r, const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];"
                 : "=r"(r[0]), "=r"(r[1]) : "r"((unsigned) __cvta_generic_to_shared(p)));
}

/** This lane's ldmatrix row within an 8-row group and column offset, for B fragments read as stored (x4: four 8-column blocks). */
__device__ __forceinline__ int bf_lane_row(int lane) { return lane & 7; }
__device__ __forceinline__ int bf_lane_col(int lane) { return (lane >> 3) * 8; }
/** The same for a 16-row step read transposed (x4: rows 0–7 / 8–15 of columns 0–7, then of columns 8–15), and for A fragments read as stored. */
__device__ __forceinline__ int bf_lane_row_t(int lane) { return (lane & 7) + ((lane >> 3) & 1) * 8; }
__device__ __forceinline__ int bf_lane_col_t(int lane) { return (lane >> 4) * 8; }

/**
 * Starts copying rows [r0, r0 + ROWS) of head h of a [B, n, width] bf16 tensor (D halves per head) by
 * cp.async into a bf16 tile [ROWS][D + 8], 16 bytes per copy, rows past n zero-filled. Every
 * specialisation's tile is a whole number of block-wide steps.
 */
template <int D, int ROWS, int NT>
__device__ __forceinline__ void bf_copy_rows(unsigned short* dst, const unsigned short* src, int b, int h, int n, int r0,
                                             long long width) {
    constexpr int C8 = D / 8, STEPS = ROWS * C8 / NT;
    static_assert(ROWS * C8 % NT == 0, "tile not a whole number of block-wide steps");
    if constexpr (NT % C8 == 0) {
        // every step covers whole rows: this thread copies column c of rows rr, rr + STEP_ROWS, …, its
        // addresses one constant stride apart (computed once, not per step)
        constexpr int STEP_ROWS = NT / C8;
        const int rr = threadIdx.x / C8, c = (threadIdx.x % C8) * 8;
        const int left = n - r0 - rr;   // this thread's rows that exist: those with i · STEP_ROWS < left
        const unsigned short* from = src + ((long long) b * n + r0 + rr) * width + (long long) h * D + c;
        unsigned to = (unsigned) __cvta_generic_to_shared(dst + rr * (D + 8) + c);
        const long long fromStep = STEP_ROWS * width;
#pragma unroll 1   // unrolled, the per-step addresses are hoisted out of the tile loop: dozens of registers
        for (int i = 0; i < STEPS * STEP_ROWS; i += STEP_ROWS) {
            const bool ok = i < left;
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to), "l"(ok ? from : src), "r"(ok ? 16 : 0));
            from += fromStep;   // src: in bounds either way
            to += STEP_ROWS * (D + 8) * 2;
        }
    } else {
        const unsigned short* rows = src + ((long long) b * n + r0) * width + (long long) h * D;
        const int left = n - r0;   // rows of the tile that exist
#pragma unroll 1   // unrolled, the per-step addresses are hoisted out of the tile loop: dozens of registers
        for (int i = 0; i < STEPS; i++) {
            const int t = threadIdx.x + i * NT, rr = t / C8, c = (t % C8) * 8;
            const unsigned short* from = rr < left ? rows + rr * width + c : src;   // in bounds either way
            unsigned to = (unsigned) __cvta_generic_to_shared(dst + rr * (D + 8) + c);
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to), "l"(from), "r"(rr < left ? 16 : 0));
        }
    }
}

/** Rows r0, r1 of head h (columns h·D …) of a [B, n, ·] bf16 tensor with rows `width` apart as m16n8k16 A fragments, one per 16 columns (rows ≥ n: zeros). */
template <int D>
__device__ __forceinline__ void bf_row_fragments(unsigned (*a)[4], const unsigned short* src, int b, int h, long long width, int n, int r0,
                                                 int r1, int t4) {
    const unsigned* p0 = reinterpret_cast<const unsigned*>(src + ((long long) b * n + imin(r0, n - 1)) * width + (long long) h * D);
    const unsigned* p1 = reinterpret_cast<const unsigned*>(src + ((long long) b * n + imin(r1, n - 1)) * width + (long long) h * D);
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
        const int c = ks * 8 + t4;   // in pairs
        a[ks][0] = r0 < n ? p0[c] : 0u;
        a[ks][1] = r1 < n ? p1[c] : 0u;
        a[ks][2] = r0 < n ? p0[c + 4] : 0u;
        a[ks][3] = r1 < n ? p1[c + 4] : 0u;
    }
}

/** Starts copying rows [r0, r0 + R) of head h of bf16 x ([B, n, H·DX]) and y ([B, n, H·DY]) into the tiles tx, ty, as one group. */
template <int DX, int DY, int R, int NT>
__device__ __forceinline__ void bf_fetch_rows(unsigned short* tx, unsigned short* ty, const unsigned short* x, const unsigned short* y,
                                              int b, int h, int n, int r0, long long xW, long long yW) {
    bf_copy_rows<DX, R, NT>(tx, x, b, h, n, r0, xW);
    bf_copy_rows<DY, R, NT>(ty, y, b, h, n, r0, yW);
    cp_async_commit();
}

/**
 * Starts copying (cp.async, 4 bytes each) the keep words of rows [r0, r0 + rows) and keys [k0, k0 + 32·KW)
 * of (batch, head) bh from p4j_attention_keep_bits' words (keepBits, wpr words per row of nr rows) to
 * dst [rows][KW]; rows past nr and words past wpr read the last ones (their P is 0). Nothing without
 * dropout (keepBits null). Part of the caller's next commit group.
 */
template <int KW>
__device__ __forceinline__ void bf_copy_keep(unsigned* dst, const unsigned* keepBits, int bh, int nr, int wpr, int r0, int rows,
                                             int k0) {
    if (keepBits == nullptr) return;
    for (int t = threadIdx.x; t < rows * KW; t += blockDim.x) {
        const int r = imin(r0 + t / KW, nr - 1), w = imin((k0 >> 5) + t % KW, wpr - 1);
        const unsigned* from = keepBits + ((long long) bh * nr + r) * wpr + w;
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"((unsigned) __cvta_generic_to_shared(dst + t)), "l"(from));
    }
}

/** Halves of one stage of the bf16 forward's and dQ kernel's key tiles: K, V, BK mask words, the block's ROWS × BK / 32 keep words. */
__host__ __device__ constexpr int bf_key_stage(int dqk, int dv, int bk, int rows) { return bk * (dqk + 8 + dv + 8) + 2 * bk + 2 * rows * (bk / 32); }

/** Starts fetching key tile `tile` (K, V and the block's keep words) into its buffer, as one commit group. */
template <int DQK, int DV, int BK, int NT>
__device__ __forceinline__ void bf_fetch_key_tile(unsigned short* tsm, int tile, const unsigned short* k, const unsigned short* v,
                                                  const unsigned* keepBits, int b, int h, int bh, int nq, int nk, int i0,
                                                  long long kW, long long vW) {
    constexpr int ROWS = NT / 2;
    unsigned short* st = tsm + (tile & 1) * bf_key_stage(DQK, DV, BK, ROWS);
    bf_copy_keep<BK / 32>(reinterpret_cast<unsigned*>(st + BK * (DQK + 8 + DV + 8) + 2 * BK), keepBits, bh, nq, (nk + 31) >> 5, i0,
                          ROWS, tile * BK);
    bf_fetch_rows<DQK, DV, BK, NT>(st, st + BK * (DQK + 8), k, v, b, h, nk, tile * BK, kW, vW);   // commits the group
}

/**
 * Key tile `tile` of `tiles` for the bf16 forward and dQ kernels, double buffered (tile 0 fetched before
 * the loop; buffer tile & 1 holds K [BK][DQK + 8] then V [BK][DV + 8] halves, then BK mask words,
 * then the block's keep words [ROWS][BK / 32] with dropout, bf_key_stage):
 * starts fetching the next tile into the other buffer (every warp finished with it before the
 * caller's last barrier), writes this tile's mask words (0 for a key below keyEnd and not padded,
 * −inf otherwise), waits for this tile and syncs the block. Returns the buffer, and in `hidden`
 * whether any key of the tile is hidden.
 */
template <int DQK, int DV, int BK, int NT>
__device__ __forceinline__ unsigned short* bf_key_tile(unsigned short* tsm, int tile, int tiles, const unsigned short* k,
                                                       const unsigned short* v, const unsigned* keepBits, const unsigned char* pad,
                                                       int b, int h, int bh, int nq, int nk, int i0, int keyEnd, long long kW,
                                                       long long vW, bool& hidden) {
    constexpr int STAGE = bf_key_stage(DQK, DV, BK, NT / 2);   // halves
    if (tile + 1 < tiles) {
        bf_fetch_key_tile<DQK, DV, BK, NT>(tsm, tile + 1, k, v, keepBits, b, h, bh, nq, nk, i0, kW, vW);
        cp_async_wait<1>();
    } else {
        cp_async_wait<0>();
    }
    unsigned short* st = tsm + (tile & 1) * STAGE;
    float* kbias = reinterpret_cast<float*>(st + BK * (DQK + 8 + DV + 8));
    bool mine = false;
    if (threadIdx.x < BK) {
        const int j = tile * BK + threadIdx.x;
        mine = !(j < keyEnd && att_key_ok(pad, b, nk, j));
        kbias[threadIdx.x] = mine ? NEG_INF : 0.0f;
    }
    hidden = __syncthreads_or(mine);   // the tile and its mask words are complete
    return st;
}

/** S (or dPᵀ, …) += A·Bᵀ for one 8-row group of a bf16 tile [*][D + 8] read with ldmatrix: B rows from `row` (this lane's address, see the callers), A fragments a[D / 16]. */
template <int D>
__device__ __forceinline__ void bf_dot_rows(float* acc, const unsigned (*a)[4], const unsigned short* row) {
#pragma unroll
    for (int c = 0; c < D / 32; c++) {
        unsigned x[4];
        ldsm_x4(x, row + c * 32);
        mma_bf16(acc, a[2 * c], x[0], x[1]);
        mma_bf16(acc, a[2 * c + 1], x[2], x[3]);
    }
    if (D % 32 != 0) {
        unsigned x[2];
        ldsm_x2(x, row + (D / 32) * 32);
        mma_bf16(acc, a[D / 16 - 1], x[0], x[1]);
    }
}

/** acc[D / 8] += A·B for one 16-deep step: B a bf16 tile [16 rows of k][D + 8] read transposed with ldmatrix from `row` (this lane's address). */
template <int D>
__device__ __forceinline__ void bf_acc_cols(float (*acc)[4], const unsigned* a, const unsigned short* row) {
#pragma unroll
    for (int np = 0; np < D / 16; np++) {
        unsigned x[4];
        ldsm_x4_trans(x, row + np * 16);
        mma_bf16(acc[2 * np], a, x[0], x[1]);
        mma_bf16(acc[2 * np + 1], a, x[2], x[3]);
    }
}

/** The m16n8k16 A fragment formed by two adjacent 8-column C tiles (the register trick for P and dS). */
__device__ __forceinline__ void bf_c_to_a(unsigned* a, const float* c0, const float* c1) {
    a[0] = bf16_pair(c0[0], c0[1]);
    a[1] = bf16_pair(c0[2], c0[3]);
    a[2] = bf16_pair(c1[0], c1[1]);
    a[3] = bf16_pair(c1[2], c1[3]);
}

/**
 * att_store_rows for an output stored as bf16 (read only by products): each pair of channels rounded
 * into one 4-byte store (out16 4-byte aligned, DV even); lse as there.
 */
template <int DV>
__device__ __forceinline__ void att_store_rows_bf16(unsigned short* out16, float* lse, const float (*o)[4], float m0, float m1, float l0,
                                                    float l1, int b, int h, int bh, int nq, long long vW, int r0, int r1, int t4) {
    const float inv0 = l0 == 0.0f ? 0.0f : 1.0f / l0, inv1 = l1 == 0.0f ? 0.0f : 1.0f / l1;
    unsigned short* o0 = out16 + ((long long) b * nq + imin(r0, nq - 1)) * vW + (long long) h * DV;
    unsigned short* o1 = out16 + ((long long) b * nq + imin(r1, nq - 1)) * vW + (long long) h * DV;
#pragma unroll
    for (int nt = 0; nt < DV / 8; nt++) {
        int c = nt * 8 + 2 * t4;
        if (r0 < nq) *reinterpret_cast<unsigned*>(o0 + c) = bf16_pair(o[nt][0] * inv0, o[nt][1] * inv0);
        if (r1 < nq) *reinterpret_cast<unsigned*>(o1 + c) = bf16_pair(o[nt][2] * inv1, o[nt][3] * inv1);
    }
    att_store_lse(lse, m0, m1, l0, l1, bh, nq, r0, r1, t4);
}

template <int DQK, int DV, int W, bool DROP>
__device__ void attention_forward_bf16(const unsigned short* q, const unsigned short* k, const unsigned short* v,
                                       const unsigned char* pad, float* out, float* lse, int H, int nq, int nk, float scale,
                                       int causal, float keepScale, unsigned short* out16, const unsigned* keepBits, int qS, int kS, int vS) {
    constexpr int ROWS = 16 * W, NT = 32 * W;   // W warps of 16 query rows
    constexpr int BK = bf_keys(DV), KST = DQK + 8, VST = DV + 8;
    extern __shared__ unsigned tsm[];   // two buffers of bf_key_tile
    const int bh = blockIdx.y, b = bh / H, h = bh % H;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
    const int i0 = blockIdx.x * ROWS;
    const int r0 = i0 + warp * 16 + g, r1 = r0 + 8;
    const long long kW = kS, vW = vS, oW = (long long) H * DV;   // row widths: k, v (as passed), out
    const int shift = nk - nq;

    unsigned qa[DQK / 16][4];   // Q rows r0, r1 as A fragments (rows ≥ nq: zeros, never stored)
    bf_row_fragments<DQK>(qa, q, b, h, qS, nq, r0, r1, t4);
    if (scale < 0.0f) {   // att_softmax_tile wants scale ≥ 0: (−Q)·Kᵀ·|scale| is exactly Q·Kᵀ·scale
#pragma unroll
        for (int ks = 0; ks < DQK / 16; ks++)
#pragma unroll
            for (int i = 0; i < 4; i++) qa[ks][i] ^= 0x80008000u;
        scale = -scale;
    }
    float o[DV / 8][4];
#pragma unroll
    for (int nt = 0; nt < DV / 8; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
    float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.0f, l1 = 0.0f;
    if (!DROP) keepBits = nullptr;   // a constant: the variant without dropout has no dropout code at all
    const int lastRow = imin(nq, i0 + ROWS) - 1;
    const int keyEnd = causal ? imin(nk, lastRow + shift + 1) : nk;
    const float scale2 = scale * LOG2E;
    // ldmatrix addresses of this lane within a buffer: K as stored (matrix m: 8 keys × channels 8m …),
    // V transposed (matrices: keys 0–7 / 8–15 × channels 0–7, then the same for channels 8–15).
    const int kOff = bf_lane_row(lane) * KST + bf_lane_col(lane);
    const int vOff = BK * KST + bf_lane_row_t(lane) * VST + bf_lane_col_t(lane);
    unsigned short* buf = reinterpret_cast<unsigned short*>(tsm);

    const int tiles = (keyEnd + BK - 1) / BK;
    if (tiles > 0) bf_fetch_key_tile<DQK, DV, BK, NT>(buf, 0, k, v, keepBits, b, h, bh, nq, nk, i0, kW, vW);
    for (int tile = 0; tile < tiles; tile++) {
        const int j0 = tile * BK;
        bool hidden;
        const unsigned short* st = bf_key_tile<DQK, DV, BK, NT>(buf, tile, tiles, k, v, keepBits, pad, b, h, bh, nq, nk, i0, keyEnd,
                                                                kW, vW, hidden);
        const float* kbias = reinterpret_cast<const float*>(st + BK * (KST + VST));
        // rows r0's and r1's staged keep words (null without dropout)
        const unsigned* keepA = DROP ? reinterpret_cast<const unsigned*>(kbias + BK) + (warp * 16 + g) * (BK / 32) : nullptr;
        const unsigned* keepB = DROP ? keepA + 8 * (BK / 32) : nullptr;
        const bool masked = hidden || (causal && j0 + BK - 1 > i0 + shift);

        float s[BK / 8][4];
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            bf_dot_rows<DQK>(s[nt], qa, st + kOff + nt * 8 * KST);
        }
        if (masked)
            att_softmax_tile<BK / 8, DV / 8, true>(s, o, m0, m1, l0, l1, kbias, j0, r0, r1, shift, causal, scale2, keepA, keepB,
                                                   keepScale, lane);
        else
            att_softmax_tile<BK / 8, DV / 8, false>(s, o, m0, m1, l0, l1, kbias, j0, r0, r1, shift, causal, scale2, keepA, keepB,
                                                    keepScale, lane);   // s now holds P
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {
            unsigned pa[4];
            bf_c_to_a(pa, s[2 * kk], s[2 * kk + 1]);
            bf_acc_cols<DV>(o, pa, st + vOff + kk * 16 * VST);
        }
        __syncthreads();   // every warp is done with this buffer (the next fetch overwrites it)
    }

    if (out16 != nullptr) att_store_rows_bf16<DV>(out16, lse, o, m0 * LN2, m1 * LN2, l0, l1, b, h, bh, nq, oW, r0, r1, t4);
    else att_store_rows<DV>(out, lse, o, m0 * LN2, m1 * LN2, l0, l1, b, h, bh, nq, oW, r0, r1, t4);
}

// Backward on bf16 tensor cores (the bf16 mode's counterpart of the TF32 backward kernels below, same
// split and the same fixed accumulation order, so results repeat bit for bit): operands rounded to
// bf16 as in the forward, P recomputed in base 2 from the forward's lse, dS = scale·P·(M·dP − rowDot)
// in fp32, and both P and dS fed back as A fragments straight from registers (bf_c_to_a).
//
// dQ: 64 queries per block, key tiles as in the forward (bf_key_tile); S = Q·Kᵀ, dP = dOut·Vᵀ from Q
// and dOut fragments in registers, then dQ += dS·K with K read transposed.
// dK/dV: 64 keys per block with their K and V rows as A fragments in registers; query tiles of
// bf_queries(Dqk, Dv) queries staged and rounded like key tiles (plus their lse and rowDot): Sᵀ = K·Qᵀ,
// dPᵀ = V·dOutᵀ, dV += (P∘M)ᵀ·dOut and dK += dSᵀ·Q with dOut and Q read transposed.

/** lse in base 2 for P = 2^(s·scale·log2 e − lse₂); +inf for a row that saw no key or does not exist, so its P is 0. */
__device__ __forceinline__ float bf_lse2(float lse, bool exists) {
    return exists && lse != NEG_INF ? lse * LOG2E : __int_as_float(0x7f800000);
}

template <int DQK, int DV, int W, bool DROP>
__device__ void attention_backward_dq_bf16(const unsigned short* q, const unsigned short* k, const unsigned short* v,
                                           const unsigned char* pad, const float* lse, const float* rowDot,
                                           const unsigned short* dOut, float* dQ, int H, int nq, int nk, float scale, int causal,
                                           float keepScale, const unsigned* keepBits, int store, int qS, int kS, int vS) {
    constexpr int ROWS = 16 * W, NT = 32 * W;   // W warps of 16 query rows
    constexpr int BK = bf_keys(DV), KST = DQK + 8, VST = DV + 8;
    extern __shared__ unsigned tsm[];   // as the forward's
    const int bh = blockIdx.y, b = bh / H, h = bh % H;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
    const int i0 = blockIdx.x * ROWS;
    const int r0 = i0 + warp * 16 + g, r1 = r0 + 8;
    const long long qW = qS, kW = kS, vW = vS, oW = (long long) H * DV;   // row widths: q and dQ, k, v (as passed), dOut
    const int shift = nk - nq;

    unsigned qa[DQK / 16][4], ga[DV / 16][4];
    bf_row_fragments<DQK>(qa, q, b, h, qW, nq, r0, r1, t4);
    bf_row_fragments<DV>(ga, dOut, b, h, oW, nq, r0, r1, t4);
    const float l0 = bf_lse2(r0 < nq ? lse[(long long) bh * nq + r0] : 0.0f, r0 < nq);
    const float l1 = bf_lse2(r1 < nq ? lse[(long long) bh * nq + r1] : 0.0f, r1 < nq);
    const float d0 = r0 < nq ? rowDot[(long long) bh * nq + r0] : 0.0f, d1 = r1 < nq ? rowDot[(long long) bh * nq + r1] : 0.0f;
    float acc[DQK / 8][4];
#pragma unroll
    for (int nt = 0; nt < DQK / 8; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
    if (!DROP) keepBits = nullptr;   // a constant: the variant without dropout has no dropout code at all
    const int lastRow = imin(nq, i0 + ROWS) - 1;
    const int keyEnd = causal ? imin(nk, lastRow + shift + 1) : nk;
    const float scale2 = scale * LOG2E;
    const int kOff = bf_lane_row(lane) * KST + bf_lane_col(lane);                     // K as stored (S)
    const int vOff = BK * KST + bf_lane_row(lane) * VST + bf_lane_col(lane);          // V as stored (dP)
    const int kOffT = bf_lane_row_t(lane) * KST + bf_lane_col_t(lane);                // K transposed (dS·K)
    unsigned short* buf = reinterpret_cast<unsigned short*>(tsm);

    const int tiles = (keyEnd + BK - 1) / BK;
    if (tiles > 0) bf_fetch_key_tile<DQK, DV, BK, NT>(buf, 0, k, v, keepBits, b, h, bh, nq, nk, i0, kW, vW);
    for (int tile = 0; tile < tiles; tile++) {
        const int j0 = tile * BK;
        bool hidden;
        const unsigned short* st = bf_key_tile<DQK, DV, BK, NT>(buf, tile, tiles, k, v, keepBits, pad, b, h, bh, nq, nk, i0, keyEnd,
                                                                kW, vW, hidden);
        const float* kbias = reinterpret_cast<const float*>(st + BK * (KST + VST));
        const unsigned* keepA = reinterpret_cast<const unsigned*>(kbias + BK) + (warp * 16 + g) * (BK / 32);   // as in the forward
        const unsigned* keepB = keepA + 8 * (BK / 32);
        const bool masked = hidden || (causal && j0 + BK - 1 > i0 + shift);
        float s[BK / 8][4], dp[BK / 8][4];
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.0f;
            bf_dot_rows<DQK>(s[nt], qa, st + kOff + nt * 8 * KST);
            bf_dot_rows<DV>(dp[nt], ga, st + vOff + nt * 8 * VST);
        }
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++) {
            const unsigned keep = DROP ? att_keep_word_rows(keepA, keepB, nt * 8, t4) : 0u;
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int jl = nt * 8 + 2 * t4 + e, j = j0 + jl;
                bool ok0 = true, ok1 = true;
                if (masked) {
                    const bool keyOk = kbias[jl] == 0.0f;
                    ok0 = keyOk && (!causal || j <= r0 + shift);
                    ok1 = keyOk && (!causal || j <= r1 + shift);
                }
                const float p0 = ok0 ? att_ex2(s[nt][e] * scale2 - l0) : 0.0f;
                const float p1 = ok1 ? att_ex2(s[nt][2 + e] * scale2 - l1) : 0.0f;
                float m0 = 1.0f, m1 = 1.0f;
                if (DROP) {
                    m0 = (keep >> e) & 1u ? keepScale : 0.0f;
                    m1 = (keep >> (2 + e)) & 1u ? keepScale : 0.0f;
                }
                s[nt][e] = scale * p0 * (m0 * dp[nt][e] - d0);   // dS
                s[nt][2 + e] = scale * p1 * (m1 * dp[nt][2 + e] - d1);
            }
        }
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {
            unsigned da[4];
            bf_c_to_a(da, s[2 * kk], s[2 * kk + 1]);
            bf_acc_cols<DQK>(acc, da, st + kOffT + kk * 16 * KST);
        }
        __syncthreads();   // every warp is done with this buffer (the next fetch overwrites it)
    }

    if (store & 2) tc_store_fragments_bf16<DQK>(reinterpret_cast<unsigned short*>(dQ), acc, b, h, qW, nq, r0, r1, t4);   // bf16 (written)
    else tc_add_fragments<DQK>(dQ, acc, b, h, qW, nq, r0, r1, t4, (store & 1) == 0);
}

template <int DQK, int DV, int W, bool DROP>
__device__ void attention_backward_dkdv_bf16(const unsigned short* q, const unsigned short* k, const unsigned short* v,
                                             const unsigned char* pad, const float* lse, const float* rowDot,
                                             const unsigned short* dOut, float* dK, float* dV, int H, int nq, int nk, float scale,
                                             int causal, float keepScale, const unsigned* keepBits, int store, int qS, int kS, int vS) {
    constexpr int ROWS = 16 * W, NT = 32 * W;   // W warps of 16 keys
    constexpr int BQ = bf_queries(DQK, DV), QST = DQK + 8, GST = DV + 8;
    // two buffers, each: Q [BQ][QST], dOut [BQ][GST] halves, then lse [BQ] and rowDot [BQ] words, then
    // with dropout the keep words of the tile's queries and the block's keys [BQ][KW]
    constexpr int KW = (ROWS + 31) / 32;
    constexpr int STAGE = BQ * (QST + GST) + 4 * BQ + 2 * BQ * KW;
    extern __shared__ unsigned tsm[];
    unsigned short* buf = reinterpret_cast<unsigned short*>(tsm);
    const int bh = blockIdx.y, b = bh / H, h = bh % H;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
    const int j0 = blockIdx.x * ROWS;
    const int r0 = j0 + warp * 16 + g, r1 = r0 + 8;   // the two keys this thread owns
    const long long qW = qS, kW = kS, vW = vS, oW = (long long) H * DV;   // row widths: q, k and dK, v and dV (as passed), dOut
    const int shift = nk - nq;

    unsigned ka[DQK / 16][4], va[DV / 16][4];
    bf_row_fragments<DQK>(ka, k, b, h, kW, nk, r0, r1, t4);
    bf_row_fragments<DV>(va, v, b, h, vW, nk, r0, r1, t4);
    const bool keyOk0 = att_key_ok(pad, b, nk, r0), keyOk1 = att_key_ok(pad, b, nk, r1);
    // every key of the block exists and is not padded: the tiles below the causal diagonal need no tests
    const bool allKeys = __syncthreads_and(threadIdx.x >= ROWS || att_key_ok(pad, b, nk, j0 + threadIdx.x));
    float accK[DQK / 8][4], accV[DV / 8][4];
#pragma unroll
    for (int nt = 0; nt < DQK / 8; nt++) accK[nt][0] = accK[nt][1] = accK[nt][2] = accK[nt][3] = 0.0f;
#pragma unroll
    for (int nt = 0; nt < DV / 8; nt++) accV[nt][0] = accV[nt][1] = accV[nt][2] = accV[nt][3] = 0.0f;
    if (!DROP) keepBits = nullptr;   // a constant: the variant without dropout has no dropout code at all
    const int wpr = (nk + 31) >> 5;
    const float scale2 = scale * LOG2E;
    const int iStart = causal ? (j0 - shift > 0 ? j0 - shift : 0) : 0;   // queries that may see key j0 or later
    const int qOff = bf_lane_row(lane) * QST + bf_lane_col(lane);                     // Q as stored (Sᵀ)
    const int gOff = BQ * QST + bf_lane_row(lane) * GST + bf_lane_col(lane);          // dOut as stored (dPᵀ)
    const int qOffT = bf_lane_row_t(lane) * QST + bf_lane_col_t(lane);                // Q transposed (dK)
    const int gOffT = BQ * QST + bf_lane_row_t(lane) * GST + bf_lane_col_t(lane);     // dOut transposed (dV)

    const int tiles = iStart < nq ? (nq - iStart + BQ - 1) / BQ : 0;
    auto fetch = [&](int tile) {   // lse and rowDot past nq arrive as 0; bf_lse2 hides those queries
        const int from = iStart + tile * BQ;
        unsigned short* st = buf + (tile & 1) * STAGE;
        float* ld = reinterpret_cast<float*>(st + BQ * (QST + GST));
        tc_copy_values(ld, lse, bh, nq, from, BQ);
        tc_copy_values(ld + BQ, rowDot, bh, nq, from, BQ);
        bf_copy_keep<KW>(reinterpret_cast<unsigned*>(ld + 2 * BQ), keepBits, bh, nq, wpr, from, BQ, j0);
        bf_fetch_rows<DQK, DV, BQ, NT>(st, st + BQ * QST, q, dOut, b, h, nq, from, qW, oW);   // commits the group
    };
    if (tiles > 0) fetch(0);
    for (int tile = 0; tile < tiles; tile++) {
        const int q0 = iStart + tile * BQ;
        if (tile + 1 < tiles) {
            fetch(tile + 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();   // this tile is complete
        const unsigned short* st = buf + (tile & 1) * STAGE;
        const float* ls = reinterpret_cast<const float*>(st + BQ * (QST + GST));
        const bool masked = !allKeys || (causal && j0 + ROWS - 1 > q0 + shift);

        float s[BQ / 8][4], dp[BQ / 8][4];
#pragma unroll
        for (int nt = 0; nt < BQ / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.0f;
            bf_dot_rows<DQK>(s[nt], ka, st + qOff + nt * 8 * QST);
            bf_dot_rows<DV>(dp[nt], va, st + gOff + nt * 8 * GST);
        }
#pragma unroll
        for (int nt = 0; nt < BQ / 8; nt++) {
            // the staged keep words of queries nt·8 + 2·t4 and the next of the tile, in the column of keys r0, r1
            const unsigned* kq = reinterpret_cast<const unsigned*>(ls + 2 * BQ) + (nt * 8 + 2 * t4) * KW + ((warp * 16 + g) >> 5);
            const unsigned keep = DROP ? att_keep_word_keys(kq[0], kq[KW], r0 & 31) : 0u;
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int ii = nt * 8 + 2 * t4 + e, i = q0 + ii;
                bool ok0 = true, ok1 = true;
                if (masked) {
                    ok0 = keyOk0 && (!causal || r0 <= i + shift);
                    ok1 = keyOk1 && (!causal || r1 <= i + shift);
                }
                const float li = bf_lse2(ls[ii], i < nq), di = ls[BQ + ii];
                const float p0 = ok0 ? att_ex2(s[nt][e] * scale2 - li) : 0.0f;
                const float p1 = ok1 ? att_ex2(s[nt][2 + e] * scale2 - li) : 0.0f;
                float m0 = 1.0f, m1 = 1.0f;
                if (DROP) {
                    m0 = (keep >> e) & 1u ? keepScale : 0.0f;
                    m1 = (keep >> (2 + e)) & 1u ? keepScale : 0.0f;
                }
                s[nt][e] = p0 * m0;   // (P∘M)ᵀ
                s[nt][2 + e] = p1 * m1;
                dp[nt][e] = scale * p0 * (m0 * dp[nt][e] - di);   // dSᵀ
                dp[nt][2 + e] = scale * p1 * (m1 * dp[nt][2 + e] - di);
            }
        }
#pragma unroll
        for (int kk = 0; kk < BQ / 16; kk++) {
            unsigned pa[4], sa[4];
            bf_c_to_a(pa, s[2 * kk], s[2 * kk + 1]);
            bf_c_to_a(sa, dp[2 * kk], dp[2 * kk + 1]);
            bf_acc_cols<DV>(accV, pa, st + gOffT + kk * 16 * GST);
            bf_acc_cols<DQK>(accK, sa, st + qOffT + kk * 16 * QST);
        }
        __syncthreads();   // every warp is done with this buffer (the next fetch overwrites it)
    }

    if (store & 4) {   // dK and dV kept as bf16 (written)
        tc_store_fragments_bf16<DQK>(reinterpret_cast<unsigned short*>(dK), accK, b, h, kW, nk, r0, r1, t4);
        tc_store_fragments_bf16<DV>(reinterpret_cast<unsigned short*>(dV), accV, b, h, vW, nk, r0, r1, t4);
    } else {
        tc_add_fragments<DQK>(dK, accK, b, h, kW, nk, r0, r1, t4, (store & 1) == 0);
        tc_add_fragments<DV>(dV, accV, b, h, vW, nk, r0, r1, t4, (store & 2) == 0);
    }
}
#endif // __CUDA_ARCH__ >= 800

// p4j_attention_forward_bf16_<Dqk>_<Dv>_w<W>, p4j_attention_backward_dq_bf16_…_w<W> and …_dkdv_bf16_…_w<W>:
// blocks of W warps (16 W query rows, or keys for dK/dV); arguments as the fp32 kernels' (dqk, dv not read),
// the forward's last but one out16: where not null, the output is stored there as bf16 (out not written).
// Each comes twice: without dropout (pdrop, seed, stream and the argument keepBits not read, no
// dropout code) and with (SUFFIX _drop): keepBits then holds p4j_attention_keep_bits' words for the
// shape (pdrop, seed and stream still not read: the words carry them). The backward kernels' argument
// store says which gradients are written rather than added to (dQ: 1; dK: bit 0, dV: bit 1). The last
// three, qS, kS and vS, are the row widths of q (and dQ), k (and dK), v (and dV) in elements: H·Dqk,
// H·Dqk, H·Dv for separate tensors, wider for column ranges of one packed tensor (out and dOut are
// always [B, Nq, H·Dv]).
#define P4J_ATTENTION_BF16_W(DQK, DV, W, DROP, SUFFIX)                                                                            \
    extern "C" __global__ void __launch_bounds__(W * 32, bf_forward_min_blocks(DQK, DV, DROP)) p4j_attention_forward_bf16_##DQK##_##DV##_w##W##SUFFIX(               \
            const unsigned short* q, const unsigned short* k, const unsigned short* v, const unsigned char* pad, float* out, float* lse, int H,   \
            int nq, int nk, int dqk, int dv, float scale, int causal, float pdrop, float keepScale,                    \
            unsigned long long seed, unsigned long long stream, unsigned short* out16, const unsigned* keepBits,       \
            int qS, int kS, int vS) {                                                                                  \
        P4J_SM80((attention_forward_bf16<DQK, DV, W, DROP>(q, k, v, pad, out, lse, H, nq, nk, scale, causal, keepScale, out16, \
                                                    keepBits, qS, kS, vS)));                                           \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(W * 32, bf_dq_min_blocks(DQK, DV, DROP)) p4j_attention_backward_dq_bf16_##DQK##_##DV##_w##W##SUFFIX(           \
            const unsigned short* q, const unsigned short* k, const unsigned short* v, const unsigned char* pad, const float* lse,               \
            const float* rowDot, const unsigned short* dOut, float* dQ, int H, int nq, int nk, int dqk, int dv, float scale,   \
            int causal, float pdrop, float keepScale, unsigned long long seed, unsigned long long stream,             \
            const unsigned* keepBits, int store, int qS, int kS, int vS) {                                             \
        P4J_SM80((attention_backward_dq_bf16<DQK, DV, W, DROP>(q, k, v, pad, lse, rowDot, dOut, dQ, H, nq, nk, scale, causal, \
                                                        keepScale, keepBits, store, qS, kS, vS)));                     \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(W * 32, bf_backward_min_blocks(DQK, DV, DROP)) p4j_attention_backward_dkdv_bf16_##DQK##_##DV##_w##W##SUFFIX(         \
            const unsigned short* q, const unsigned short* k, const unsigned short* v, const unsigned char* pad, const float* lse,               \
            const float* rowDot, const unsigned short* dOut, float* dK, float* dV, int H, int nq, int nk, int dqk, int dv,     \
            float scale, int causal, float pdrop, float keepScale, unsigned long long seed,                           \
            unsigned long long stream, const unsigned* keepBits, int store, int qS, int kS, int vS) {                  \
        P4J_SM80((attention_backward_dkdv_bf16<DQK, DV, W, DROP>(q, k, v, pad, lse, rowDot, dOut, dK, dV, H, nq, nk, scale, \
                                                          causal, keepScale, keepBits, store, qS, kS, vS)));           \
    }
// W = 4: 8-warp blocks (128 rows, half the staging work per row) measured the same (session 8, call 4).
#define P4J_ATTENTION_BF16(DQK, DV) P4J_ATTENTION_BF16_W(DQK, DV, 4, false, ) P4J_ATTENTION_BF16_W(DQK, DV, 4, true, _drop)
P4J_ATTENTION_BF16(16, 16)
P4J_ATTENTION_BF16(32, 32)
P4J_ATTENTION_BF16(64, 64)
P4J_ATTENTION_BF16(32, 96)
P4J_ATTENTION_BF16(32, 160)

// ================================================================ attention backward on tensor cores (TF32)
//
// The two backward kernels above with their products on tensor cores (mma.sync m16n8k8, TF32 inputs,
// fp32 accumulation; fragment layouts as in the tensor-core forward). The elementwise part — the
// recomputed P, the dropout multiplier, dS = scale·P·(M·dP − rowDot) — is att_ds in fp32, with the
// same Philox indices. Like the fp32 kernels they add into dQ, dK and dV, each element by one thread
// in a fixed order: results repeat bit for bit. Used with the tensor-core forward (same shapes).
//
// dQ: a block of TC_WARPS warps owns 64 queries (16 per warp); per tile of 32 keys a warp computes
// S = Q·Kᵀ and dP = dOut·Vᵀ (16×32 each) from Q and dOut fragments held in registers, turns them into
// dS, and adds dS·K into its dQ accumulators (dS changes from the C to the A layout through a per-warp
// shared tile). Shared: K tile [32][Dqk+4], V tile [32][Dv+4], per-warp dS tiles [16][TC_PS].
//
// dK/dV: a block owns 64 keys; per tile of 32 queries a warp computes Sᵀ = K·Qᵀ and dPᵀ = V·dOutᵀ
// (16 keys × 32 queries), then dV += (P∘M)ᵀ·dOut and dK += dSᵀ·Q. K fragments stay in registers; the
// block's V rows sit in shared memory (register room goes to the dV accumulators). Shared: Q tile
// [32][Dqk+4], dOut tile [32][Dv+4], V rows [64][Dv+4], lse and rowDot [32] each, per-warp
// (P∘M)ᵀ and dSᵀ tiles [16][TC_PS] each. Strides ≡ 4 (mod 32) make the Sᵀ / dPᵀ operand reads
// conflict-free; the gradient products read the same tiles with two-way conflicts.

#if __CUDA_ARCH__ >= 800
/** One m16n8k8 A fragment (rows g, g+8; columns c0+t4, c0+t4+4) from a row-major tile of stride st. */
__device__ __forceinline__ void tc_load_a(unsigned* a, const unsigned* tile, int st, int g, int t4, int c0) {
    a[0] = tile[g * st + c0 + t4];
    a[1] = tile[(g + 8) * st + c0 + t4];
    a[2] = tile[g * st + c0 + t4 + 4];
    a[3] = tile[(g + 8) * st + c0 + t4 + 4];
}

template <int DQK, int DV>
__device__ void attention_backward_dq_tc(const float* q, const float* k, const float* v, const unsigned char* pad,
                                         const float* lse, const float* rowDot, const float* dOut, float* dQ, int H, int nq,
                                         int nk, float scale, int causal, float pdrop, float keepScale,
                                         unsigned long long seed, unsigned long long stream) {
    constexpr int KS = DQK + 4, VS = DV + 4;
    extern __shared__ unsigned tsm[];
    const int bh = blockIdx.y, b = bh / H, h = bh % H;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
    constexpr int STAGE = TC_KEYS * (KS + VS);                 // one buffer: K tile [TC_KEYS][KS], V tile [TC_KEYS][VS]
    unsigned* G = tsm + 2 * STAGE + warp * 16 * TC_PS;         // this warp's dS tile [16][TC_PS]
    const int i0 = blockIdx.x * TC_ROWS;
    const int r0 = i0 + warp * 16 + g, r1 = r0 + 8;
    const long long qkW = (long long) H * DQK, vW = (long long) H * DV;
    const int shift = nk - nq;

    unsigned qa[DQK / 8][4], ga[DV / 8][4];
    tc_row_fragments<DQK>(qa, q, b, h, H, nq, r0, r1, t4);
    tc_row_fragments<DV>(ga, dOut, b, h, H, nq, r0, r1, t4);
    const float lse0 = r0 < nq ? lse[(long long) bh * nq + r0] : NEG_INF, lse1 = r1 < nq ? lse[(long long) bh * nq + r1] : NEG_INF;
    const float d0 = r0 < nq ? rowDot[(long long) bh * nq + r0] : 0.0f, d1 = r1 < nq ? rowDot[(long long) bh * nq + r1] : 0.0f;
    float acc[DQK / 8][4];
#pragma unroll
    for (int nt = 0; nt < DQK / 8; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
    const unsigned long long base0 = ((unsigned long long) bh * nq + r0) * (unsigned long long) nk, base1 = base0 + 8ull * nk;
    const bool quadDrop = pdrop > 0.0f && nk % 4 == 0;   // as in the forward (att_keep_rows)
    const int lastRow = imin(nq, i0 + TC_ROWS) - 1;
    const int keyEnd = causal ? imin(nk, lastRow + shift + 1) : nk;

    const int tiles = (keyEnd + TC_KEYS - 1) / TC_KEYS;
    if (tiles > 0) tc_fetch_keys<DQK, DV, KS, VS>(tsm, 0, k, v, b, h, nk, qkW, vW);
    for (int tile = 0; tile < tiles; tile++) {
        const int j0 = tile * TC_KEYS;
        unsigned* Ks = tc_key_tile<DQK, DV, KS, VS>(tsm, tile, tiles, k, v, b, h, nk, qkW, vW);
        unsigned* Vs = Ks + TC_KEYS * KS;

        float s[TC_KEYS / 8][4], dp[TC_KEYS / 8][4];
#pragma unroll
        for (int nt = 0; nt < TC_KEYS / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.0f;
            const unsigned* kr = Ks + (nt * 8 + g) * KS + t4;
#pragma unroll
            for (int kk = 0; kk < DQK / 8; kk++) mma_tf32(s[nt], qa[kk], kr[kk * 8], kr[kk * 8 + 4]);
            const unsigned* vr = Vs + (nt * 8 + g) * VS + t4;
#pragma unroll
            for (int kk = 0; kk < DV / 8; kk++) mma_tf32(dp[nt], ga[kk], vr[kk * 8], vr[kk * 8 + 4]);
        }
#pragma unroll
        for (int nt = 0; nt < TC_KEYS / 8; nt++) {
            const unsigned keep = quadDrop ? att_keep_rows(seed, stream, base0, base1, j0 + nt * 8, lane, pdrop) : 0u;
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int jj = nt * 8 + 2 * t4 + e, j = j0 + jj;
                bool keyOk = j < keyEnd && att_key_ok(pad, b, nk, j);
                bool ok0 = keyOk && r0 < nq && (!causal || j <= r0 + shift);
                bool ok1 = keyOk && r1 < nq && (!causal || j <= r1 + shift);
                float unused, ds0, ds1;
                if (quadDrop) {
                    ds0 = att_ds_mult(s[nt][e], dp[nt][e], lse0, d0, ok0, scale, (keep >> e) & 1u ? keepScale : 0.0f, &unused);
                    ds1 = att_ds_mult(s[nt][2 + e], dp[nt][2 + e], lse1, d1, ok1, scale, (keep >> (2 + e)) & 1u ? keepScale : 0.0f,
                                      &unused);
                } else {
                    ds0 = att_ds(s[nt][e], dp[nt][e], lse0, d0, ok0, scale, pdrop, keepScale, seed, stream, base0 + j, &unused);
                    ds1 = att_ds(s[nt][2 + e], dp[nt][2 + e], lse1, d1, ok1, scale, pdrop, keepScale, seed, stream, base1 + j, &unused);
                }
                G[g * TC_PS + jj] = tf32_bits(ds0);
                G[(g + 8) * TC_PS + jj] = tf32_bits(ds1);
            }
        }
        __syncwarp(); // dS complete for the whole warp
#pragma unroll
        for (int kk = 0; kk < TC_KEYS / 8; kk++) {
            unsigned da[4];
            tc_load_a(da, G, TC_PS, g, t4, kk * 8);
            const unsigned* kr0 = Ks + (kk * 8 + t4) * KS + g;
            const unsigned* kr1 = kr0 + 4 * KS;
#pragma unroll
            for (int nt = 0; nt < DQK / 8; nt++) mma_tf32(acc[nt], da, kr0[nt * 8], kr1[nt * 8]);
        }
        __syncthreads(); // this buffer is refilled by the next fetch; G is rewritten
    }

    tc_add_fragments<DQK>(dQ, acc, b, h, (long long) H * DQK, nq, r0, r1, t4);
}

template <int DQK, int DV>
__device__ void attention_backward_dkdv_tc(const float* q, const float* k, const float* v, const unsigned char* pad,
                                           const float* lse, const float* rowDot, const float* dOut, float* dK, float* dV,
                                           int H, int nq, int nk, float scale, int causal, float pdrop, float keepScale,
                                           unsigned long long seed, unsigned long long stream) {
    constexpr int QS = DQK + 4, GS = DV + 4;
    extern __shared__ unsigned tsm[];
    const int bh = blockIdx.y, b = bh / H, h = bh % H;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
    // one buffer: Q tile [TC_KEYS][QS] (32 queries), their dOut [TC_KEYS][GS], lse [TC_KEYS], rowDot [TC_KEYS]
    constexpr int STAGE = TC_KEYS * (QS + GS + 2);
    unsigned* Vr = tsm + 2 * STAGE;                             // [TC_ROWS][GS]: this block's V rows
    unsigned* Pt = Vr + TC_ROWS * GS + warp * 2 * 16 * TC_PS;   // (P∘M)ᵀ [16][TC_PS]
    unsigned* St = Pt + 16 * TC_PS;                                                   // dSᵀ [16][TC_PS]
    const int j0 = blockIdx.x * TC_ROWS;
    const int r0 = j0 + warp * 16 + g, r1 = r0 + 8;   // the two keys this thread owns
    const long long qkW = (long long) H * DQK, vW = (long long) H * DV;
    const int shift = nk - nq;

    unsigned ka[DQK / 8][4];
    tc_row_fragments<DQK>(ka, k, b, h, H, nk, r0, r1, t4);
    tc_copy_rows<DV>(Vr, GS, v, b, h, nk, j0, TC_ROWS, vW); // completes with the first tile's group
    const bool keyOk0 = att_key_ok(pad, b, nk, r0), keyOk1 = att_key_ok(pad, b, nk, r1);
    const unsigned* vrow = Vr + warp * 16 * GS;
    float accK[DQK / 8][4], accV[DV / 8][4];
#pragma unroll
    for (int nt = 0; nt < DQK / 8; nt++) accK[nt][0] = accK[nt][1] = accK[nt][2] = accK[nt][3] = 0.0f;
#pragma unroll
    for (int nt = 0; nt < DV / 8; nt++) accV[nt][0] = accV[nt][1] = accV[nt][2] = accV[nt][3] = 0.0f;
    const bool quadDrop = pdrop > 0.0f && nk % 4 == 0;   // Philox blocks shared by four lanes (att_keep_keys)
    // queries that may see key j0 or later: i ≥ j0 − shift when causal
    const int iStart = causal ? (j0 - shift > 0 ? j0 - shift : 0) : 0;

    const int tiles = iStart < nq ? (nq - iStart + TC_KEYS - 1) / TC_KEYS : 0;
    auto fetch = [&](int tile) { // lse and rowDot past nq arrive as 0: those queries are masked anyway
        unsigned* st = tsm + (tile & 1) * STAGE;
        const int from = iStart + tile * TC_KEYS;
        tc_copy_rows<DQK>(st, QS, q, b, h, nq, from, TC_KEYS, qkW);
        tc_copy_rows<DV>(st + TC_KEYS * QS, GS, dOut, b, h, nq, from, TC_KEYS, vW);
        float* ld = reinterpret_cast<float*>(st + TC_KEYS * (QS + GS));
        tc_copy_values(ld, lse, bh, nq, from, TC_KEYS);
        tc_copy_values(ld + TC_KEYS, rowDot, bh, nq, from, TC_KEYS);
        cp_async_commit();
    };
    if (tiles > 0) {
        fetch(0);
    } else {
        cp_async_commit();
    }

    for (int tile = 0; tile < tiles; tile++) {
        const int q0 = iStart + tile * TC_KEYS;
        unsigned* Qs = tsm + (tile & 1) * STAGE;
        unsigned* Gs = Qs + TC_KEYS * QS;
        const float* Ls = reinterpret_cast<const float*>(Gs + TC_KEYS * GS);
        const float* Ds = Ls + TC_KEYS;
        if (tile + 1 < tiles) {
            fetch(tile + 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        tc_round_rows<DQK>(Qs, QS, TC_KEYS);
        tc_round_rows<DV>(Gs, GS, TC_KEYS);
        if (tile == 0) tc_round_rows<DV>(Vr, GS, TC_ROWS);
        __syncthreads();

        float s[TC_KEYS / 8][4], dp[TC_KEYS / 8][4];
#pragma unroll
        for (int nt = 0; nt < TC_KEYS / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.0f;
            const unsigned* qr = Qs + (nt * 8 + g) * QS + t4;
#pragma unroll
            for (int kk = 0; kk < DQK / 8; kk++) mma_tf32(s[nt], ka[kk], qr[kk * 8], qr[kk * 8 + 4]);
        }
#pragma unroll
        for (int kk = 0; kk < DV / 8; kk++) {
            unsigned va[4];
            tc_load_a(va, vrow, GS, g, t4, kk * 8);
#pragma unroll
            for (int nt = 0; nt < TC_KEYS / 8; nt++) {
                const unsigned* gr = Gs + (nt * 8 + g) * GS + kk * 8 + t4;
                mma_tf32(dp[nt], va, gr[0], gr[4]);
            }
        }
#pragma unroll
        for (int nt = 0; nt < TC_KEYS / 8; nt++) {
            const unsigned long long baseQ = ((unsigned long long) bh * nq + q0 + nt * 8 + 2 * t4) * (unsigned long long) nk;
            const unsigned keep = quadDrop ? att_keep_keys(seed, stream, baseQ, nk, r0, lane, pdrop) : 0u;
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int ii = nt * 8 + 2 * t4 + e, i = q0 + ii;
                bool ok0 = keyOk0 && i < nq && (!causal || r0 <= i + shift);
                bool ok1 = keyOk1 && i < nq && (!causal || r1 <= i + shift);
                float pd0, pd1, ds0, ds1;
                if (quadDrop) {
                    ds0 = att_ds_mult(s[nt][e], dp[nt][e], Ls[ii], Ds[ii], ok0, scale, (keep >> e) & 1u ? keepScale : 0.0f, &pd0);
                    ds1 = att_ds_mult(s[nt][2 + e], dp[nt][2 + e], Ls[ii], Ds[ii], ok1, scale,
                                      (keep >> (2 + e)) & 1u ? keepScale : 0.0f, &pd1);
                } else {
                    ds0 = att_ds(s[nt][e], dp[nt][e], Ls[ii], Ds[ii], ok0, scale, pdrop, keepScale, seed, stream,
                                 baseQ + (unsigned long long) e * nk + r0, &pd0);
                    ds1 = att_ds(s[nt][2 + e], dp[nt][2 + e], Ls[ii], Ds[ii], ok1, scale, pdrop, keepScale, seed, stream,
                                 baseQ + (unsigned long long) e * nk + r1, &pd1);
                }
                Pt[g * TC_PS + ii] = tf32_bits(pd0);
                Pt[(g + 8) * TC_PS + ii] = tf32_bits(pd1);
                St[g * TC_PS + ii] = tf32_bits(ds0);
                St[(g + 8) * TC_PS + ii] = tf32_bits(ds1);
            }
        }
        __syncwarp(); // Pt and St complete for the whole warp
#pragma unroll
        for (int kk = 0; kk < TC_KEYS / 8; kk++) {
            unsigned pa[4], sa[4];
            tc_load_a(pa, Pt, TC_PS, g, t4, kk * 8);
            tc_load_a(sa, St, TC_PS, g, t4, kk * 8);
            const unsigned* gr0 = Gs + (kk * 8 + t4) * GS + g;
            const unsigned* gr1 = gr0 + 4 * GS;
#pragma unroll
            for (int nt = 0; nt < DV / 8; nt++) mma_tf32(accV[nt], pa, gr0[nt * 8], gr1[nt * 8]);
            const unsigned* qr0 = Qs + (kk * 8 + t4) * QS + g;
            const unsigned* qr1 = qr0 + 4 * QS;
#pragma unroll
            for (int nt = 0; nt < DQK / 8; nt++) mma_tf32(accK[nt], sa, qr0[nt * 8], qr1[nt * 8]);
        }
        __syncthreads(); // this buffer is refilled by the next fetch; Pt and St are rewritten
    }
    cp_async_wait<0>(); // nothing may stay in flight at exit (no tiles: the V rows' group)

    tc_add_fragments<DQK>(dK, accK, b, h, (long long) H * DQK, nk, r0, r1, t4);
    tc_add_fragments<DV>(dV, accV, b, h, (long long) H * DV, nk, r0, r1, t4);
}

#endif // __CUDA_ARCH__ >= 800

// The backward specialisations, p4j_attention_backward_dq_tc_<Dqk>_<Dv> and
// p4j_attention_backward_dkdv_tc_<Dqk>_<Dv>, for the forward's shapes; arguments as the fp32
// backward kernels' (dqk and dv not read).
#define P4J_ATTENTION_BACKWARD_TC(DQK, DV)                                                                             \
    extern "C" __global__ void __launch_bounds__(TC_WARPS * 32) p4j_attention_backward_dq_tc_##DQK##_##DV(            \
            const float* q, const float* k, const float* v, const unsigned char* pad, const float* lse,               \
            const float* rowDot, const float* dOut, float* dQ, int H, int nq, int nk, int dqk, int dv, float scale,   \
            int causal, float pdrop, float keepScale, unsigned long long seed, unsigned long long stream) {           \
        P4J_SM80((attention_backward_dq_tc<DQK, DV>(q, k, v, pad, lse, rowDot, dOut, dQ, H, nq, nk, scale, causal,    \
                                                   pdrop, keepScale, seed, stream)));                                  \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(TC_WARPS * 32) p4j_attention_backward_dkdv_tc_##DQK##_##DV(          \
            const float* q, const float* k, const float* v, const unsigned char* pad, const float* lse,               \
            const float* rowDot, const float* dOut, float* dK, float* dV, int H, int nq, int nk, int dqk, int dv,     \
            float scale, int causal, float pdrop, float keepScale, unsigned long long seed,                           \
            unsigned long long stream) {                                                                               \
        P4J_SM80((attention_backward_dkdv_tc<DQK, DV>(q, k, v, pad, lse, rowDot, dOut, dK, dV, H, nq, nk, scale,      \
                                                     causal, pdrop, keepScale, seed, stream)));                        \
    }
P4J_ATTENTION_BACKWARD_TC(8, 8)
P4J_ATTENTION_BACKWARD_TC(16, 16)
P4J_ATTENTION_BACKWARD_TC(32, 32)
P4J_ATTENTION_BACKWARD_TC(64, 64)
P4J_ATTENTION_BACKWARD_TC(32, 96)
P4J_ATTENTION_BACKWARD_TC(32, 160)
