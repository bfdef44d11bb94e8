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
 *   <li>{@link dev.perceiver4j.cuda.CudaGraph} — {@link dev.perceiver4j.backend.Backend#record}: ops captured
 *       from the stream into a CUDA graph and replayed (the cached generation step).</li>
 *   <li>{@link dev.perceiver4j.cuda.GraphOpTimes} — developer tool: each op's device time inside a graph.</li>
 *   <li>{@link dev.perceiver4j.cuda.GpuSelfTest} — op-by-op parity against the CPU reference ({@link dev.perceiver4j.cuda.OpParity})
 *       and model-level parity ({@link dev.perceiver4j.cuda.ModelParity}), runnable without Maven.</li>
 * </ul>
 *
 * <p>Implemented (forward and backward, fp32, checked against {@code RefBackend}): memory (empty, zeros,
 * persistentZeros, release, fromFloats, fromInts, fromBools, toFloatArray, copy, every cast the CPU
 * backend supports: F32↔BF16, I32/I64/BOOL→F32, I32↔I64), matmul (batched, shared 2-D b, transposes,
 * bias, GELU / squared ReLU / ReLU with preAct; cuBLASLt, fp32, TF32 or bf16 operands; F32 or BF16 out),
 * matmulAdd (the residual as cuBLASLt's C), layerNorm (F32 or BF16 out), activation, add,
 * mul, scale, axpy, fill, sumSquares, sumRows, softmax, narrow, unnarrow, embedding, crossEntropy
 * (z-loss, ignoreIndex), adamw, dropout (the CPU's Philox mask bit for bit), rotary, and flash-style
 * attention (tiled, online softmax, backward recomputed from lse; causal, key padding, dropout with
 * the CPU's mask; head dims up to 256; tensor cores in the TF32 and bf16 modes; split-key decode
 * kernels for one query row), scatterRows, writeInts, writeBools, and record (CUDA graphs).
 *
 * <p>Not implemented yet: bf16 storage beyond product operands and outputs (the bf16 mode's layer
 * norms, MLP hidden states and shared operand copies); a bf16 attention backward (the bf16 mode's forward
 * runs on bf16 tensor cores); attention with head dims above 256 and matmul with K = 0
 * (UnsupportedOperationException). Both models run on this backend (ModelParity checks them) and
 * the CLI jar bundles the module ({@code --backend cuda}).
 */
package dev.perceiver4j.cuda;
