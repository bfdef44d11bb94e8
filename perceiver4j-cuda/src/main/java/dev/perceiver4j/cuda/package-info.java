/**
 * The CUDA backend, pure Java through the Foreign Function &amp; Memory API (no JNI).
 *
 * <ul>
 *   <li>{@link dev.perceiver4j.cuda.ffm} — hand-written bindings: CUDA driver, NVRTC, cuBLASLt;
 *       libraries found by soname, then at the usual install paths.</li>
 *   <li>{@link dev.perceiver4j.cuda.CudaContext} — device 0, its primary context, one stream.</li>
 *   <li>{@link dev.perceiver4j.cuda.DeviceAllocator} — caching allocator, size classes, per-Scope reuse.</li>
 *   <li>{@link dev.perceiver4j.cuda.Kernels} — resources/cuda/kernels.cu compiled once by NVRTC.</li>
 *   <li>{@link dev.perceiver4j.cuda.CudaBackend} — the {@link dev.perceiver4j.backend.Backend}.</li>
 *   <li>{@link dev.perceiver4j.cuda.GpuSelfTest} — op-by-op parity against the CPU reference, runnable without Maven.</li>
 * </ul>
 *
 * <p>Implemented (forward and backward, checked against {@code RefBackend}): memory (empty, zeros,
 * persistentZeros, release, fromFloats, fromInts, toFloatArray, copy, cast F32↔BF16, I32→F32,
 * I32↔I64), matmul (batched, shared 2-D b, transposes, bias, GELU / squared ReLU / ReLU with preAct;
 * cuBLASLt, fp32 or TF32), layerNorm, activation, add, mul, scale, axpy, fill, sumSquares, sumRows,
 * softmax, narrow, unnarrow, embedding, crossEntropy (z-loss, ignoreIndex), adamw.
 *
 * <p>Not implemented yet (throw {@code UnsupportedOperationException("CudaBackend: <op> not implemented yet")}):
 * attention and attentionBackward, dropout and dropoutBackward (needs the CPU's Philox stream bit
 * for bit), rotary and rotaryBackward; casts other than those above; matmul with K = 0. Until
 * those exist the models do not run on this backend, which is why the CLI does not bundle it yet.
 */
package dev.perceiver4j.cuda;
