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

// x [n] F32 -> y [n] BF16
extern "C" __global__ void p4j_f32_to_bf16(const float* x, unsigned short* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = f32_to_bf16_bits(x[i]);
}

// x [n] BF16 -> y [n] F32 (exact)
extern "C" __global__ void p4j_bf16_to_f32(const unsigned short* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __uint_as_float(((unsigned int) x[i]) << 16);
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

// p = c + bias[i mod cols] (bias may be null); pre[i] = p (pre may be null); out[i] = act(p).
// c, pre, out [n] viewed as [n/cols, cols]; bias [cols]. out and pre may alias c.
// Serves matmul's epilogue and the plain activation (bias = pre = null).
extern "C" __global__ void p4j_bias_act(const float* c, const float* bias, int cols, float* pre, float* out, int n, int act) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float p = c[i];
    if (bias != 0) p += bias[i % cols];
    if (pre != 0) pre[i] = p;
    out[i] = act_forward(act, p);
}

// g = dOut[i]·act'(x[i]); dX[i] += g (accumulate != 0) or dX[i] = g (written; matmul's dC).
// x is the pre-activation. x, dOut, dX [n].
extern "C" __global__ void p4j_act_backward(const float* x, const float* dOut, float* dX, int n, int act, int accumulate) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = dOut[i] * act_derivative(act, x[i]);
    dX[i] = accumulate ? dX[i] + g : g;
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

// partial[blockIdx.x] = Σ x[i]² (double) over a grid-stride slice; the host adds the partials in order.
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

// Column sums in two deterministic stages. Stage 1: partial[chunk, j] = Σ x[r, j] over the
// rows r of chunk (blockIdx.y), rowsPerChunk rows each. x [rows, cols]; partial [chunks, cols].
extern "C" __global__ void p4j_column_partial(const float* x, int rows, int cols, int rowsPerChunk, float* partial) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    int r0 = blockIdx.y * rowsPerChunk, r1 = imin(rows, r0 + rowsPerChunk);
    float s = 0.0f;
    for (int r = r0; r < r1; r++) s += x[(long long) r * cols + j];
    partial[(long long) blockIdx.y * cols + j] = s;
}

// Stage 2: out[j] += Σ_c partial[c, j], chunks in order.
extern "C" __global__ void p4j_column_finish(const float* partial, int chunks, int cols, float* out) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    float s = 0.0f;
    for (int c = 0; c < chunks; c++) s += partial[(long long) c * cols + j];
    out[j] += s;
}

// ================================================================ layer norm

// One block per row. x, out [rows, d]; gamma, beta [d]; mean, rstd [rows] (written).
// Two passes (mean, then Σ(x−mean)²): biased variance, rstd = 1/sqrt(var + eps).
extern "C" __global__ void p4j_layernorm(const float* x, const float* gamma, const float* beta, float* out,
                                         float* mean, float* rstd, int rows, int d, float eps) {
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
    for (int j = threadIdx.x; j < d; j += blockDim.x) outr[j] = (xr[j] - mu) * rs * gamma[j] + beta[j];
    if (threadIdx.x == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
}

// dX: one block per row. With xhat = (x − mean)·rstd and g = dOut·gamma:
// dX += rstd·(g − mean_j(g) − xhat·mean_j(g·xhat)). dOut, x, dX [rows, d]; gamma [d]; mean, rstd [rows].
extern "C" __global__ void p4j_layernorm_backward_x(const float* dOut, const float* x, const float* gamma, const float* mean,
                                                    const float* rstd, float* dX, int rows, int d) {
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
        dX[base + j] += rs * (g - meanG - xhat * meanGX);
    }
}

// dGamma, dBeta stage 1 (finished by p4j_column_finish): per chunk of rows (blockIdx.y),
// pg[chunk, j] = Σ dOut·xhat, pb[chunk, j] = Σ dOut. pg, pb [chunks, d].
extern "C" __global__ void p4j_layernorm_backward_params_partial(const float* dOut, const float* x, const float* mean,
                                                                 const float* rstd, int rows, int d, int rowsPerChunk,
                                                                 float* pg, float* pb) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
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

// One block per vocabulary row v: dTable[v, :] += Σ_{i: ids[i] = v} dOut[i, :], positions i in
// ascending order (deterministic, no atomics). The ids are scanned in tiles held in shared memory.
// dOut [n, d]; ids [n]; dTable [vocab, d]. Cost: vocab · n id comparisons (fine for byte vocabularies).
#define EMB_TILE 1024
extern "C" __global__ void p4j_embedding_backward(const float* dOut, const int* ids, float* dTable, int n, int vocab, int d) {
    __shared__ int tile[EMB_TILE];
    int v = blockIdx.x;
    for (int j0 = 0; j0 < d; j0 += blockDim.x) {          // uniform loop: every thread reaches each __syncthreads
        int j = j0 + threadIdx.x;
        float acc = 0.0f;
        for (int t0 = 0; t0 < n; t0 += EMB_TILE) {
            int len = imin(EMB_TILE, n - t0);
            __syncthreads();
            for (int t = threadIdx.x; t < len; t += blockDim.x) tile[t] = ids[t0 + t];
            __syncthreads();
            if (j < d) {
                for (int t = 0; t < len; t++) {
                    if (tile[t] == v) acc += dOut[(long long) (t0 + t) * d + j];
                }
            }
        }
        if (j < d) dTable[(long long) v * d + j] += acc;
    }
}

// ================================================================ softmax cross-entropy

// One block per row: lse[r] = log Σ_j exp(logits[r, j]) (written for every row);
// rowLoss[2r] = lse − logits[r, t] + zLoss·lse² and rowLoss[2r+1] = 1 for rows whose target t is
// not ignoreIndex, else 0 and 0. The host adds the rows in order (double) and divides by the count.
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

// count[0] = number of rows whose target is not ignoreIndex (one block).
extern "C" __global__ void p4j_count_targets(const int* targets, int rows, int ignoreIndex, int* count) {
    __shared__ double sh[32];
    double c = 0.0; // exact in double
    for (int r = threadIdx.x; r < rows; r += blockDim.x) c += targets[r] != ignoreIndex ? 1.0 : 0.0;
    c = block_sum_d(c, sh);
    if (threadIdx.x == 0) count[0] = (int) c;
}

// One block per row: dLogits[r, j] += dLoss/count·(softmax_j·(1 + 2·zLoss·lse_r) − [j = t_r]) for
// rows not ignored (nothing when count = 0). Shapes as p4j_cross_entropy; count [1] from p4j_count_targets.
extern "C" __global__ void p4j_cross_entropy_backward(float dLoss, const float* logits, const int* targets, const float* lse,
                                                      const int* count, int rows, int vocab, int ignoreIndex, float zLoss,
                                                      float* dLogits) {
    int r = blockIdx.x;
    int t = targets[r];
    int c = count[0];
    if (t == ignoreIndex || c == 0) return;
    float scale = dLoss / (float) c;
    float l = lse[r];
    float zf = 1.0f + 2.0f * zLoss * l;
    long long base = (long long) r * vocab;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
        float p = expf(logits[base + j] - l);
        dLogits[base + j] += scale * (p * zf - (j == t ? 1.0f : 0.0f));
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
extern "C" __global__ void p4j_adamw(float* param, const float* grad, float* m, float* v, int n, float b1, float b2,
                                     float c1, float c2, float stepSize, float invSqrtBc2, float eps, float decay) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i];
    float mi = m[i] * b1 + g * c1;
    float vi = v[i] * b2 + g * g * c2;
    float denom = sqrtf(vi) * invSqrtBc2 + eps;
    param[i] = param[i] * decay - mi * stepSize / denom;
    m[i] = mi;
    v[i] = vi;
}
