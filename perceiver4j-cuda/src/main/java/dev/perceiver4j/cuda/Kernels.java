package dev.perceiver4j.cuda;

import dev.perceiver4j.cuda.ffm.CudaException;
import dev.perceiver4j.cuda.ffm.Driver;
import dev.perceiver4j.cuda.ffm.NativeLibraries;
import dev.perceiver4j.cuda.ffm.Nvrtc;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import static java.lang.foreign.ValueLayout.ADDRESS;

/**
 * The project's own CUDA C ({@code src/main/resources/cuda/kernels.cu}), compiled once per process
 * with NVRTC for the device's compute capability (the cubin is cached per architecture), loaded
 * with cuModuleLoadData, and launched through a small typed builder:
 *
 * <pre>{@code
 * kernels.launch("p4j_scale").grid(blocks(n)).block(256).ptr(x).f32(alpha).ptr(out).i32(n).go();
 * }</pre>
 * The argument kinds must match the kernel's C signature one for one (pointer and
 * long long = 8 bytes, int/float = 4 bytes); {@link KernelSignatures} checks each launch against
 * the declaration in the source.
 */
public final class Kernels {
    static final String SOURCE = "cuda/kernels.cu";
    private static final Map<Integer, Compiled> CUBINS = new ConcurrentHashMap<>(); // per process, by sm_XY

    /** The kernels' argument widths, read from the source once: every launch is checked against them. */
    private static final class Signatures {
        static final KernelSignatures ALL = KernelSignatures.parse(source());
    }

    private final CudaContext context;
    private final Map<String, MemorySegment> functions = new HashMap<>();
    private final Map<String, Integer> sharedLimits = new HashMap<>(); // dynamic shared memory opted in, per function
    private final MemorySegment module;
    private final long compileMillis;

    Kernels(CudaContext context) {
        this.context = context;
        context.makeCurrent();
        int cc = context.computeCapability();
        long t0 = System.nanoTime();
        Compiled c = cubin(cc);
        MemorySegment loaded;
        try {
            loaded = load(c.cubin());
        } catch (CudaException e) {
            if (c.compiled()) throw e;
            // A cached cubin the driver refuses (damaged, or made for another driver): compile afresh.
            System.err.println("perceiver4j: the cached kernels " + c.file() + " did not load (" + e.getMessage() + "); compiling them again");
            CubinCache.discard(c.file());
            CUBINS.remove(cc);
            t0 = System.nanoTime();
            c = cubin(cc);
            loaded = load(c.cubin());
        }
        this.module = loaded;
        this.compileMillis = c.compiled() ? (System.nanoTime() - t0) / 1_000_000 : 0;
    }

    private static MemorySegment load(byte[] cubin) {
        try (Arena a = Arena.ofConfined()) { // the driver reads the image during the call only
            MemorySegment image = a.allocate(cubin.length + 1L, 16);
            MemorySegment.copy(cubin, 0, image, ValueLayout.JAVA_BYTE, 0, cubin.length);
            return Driver.moduleLoadData(image);
        }
    }

    /** A cubin, whether NVRTC made it in this process ({@code compiled}), and its cache file (null: none). */
    record Compiled(byte[] cubin, boolean compiled, Path file) {}

    /**
     * The cubin for {@code sm_<cc>}: made once per process, read from the disk cache ({@link CubinCache})
     * when an earlier run compiled the same source with the same compiler, else compiled with NVRTC and
     * stored there.
     */
    static Compiled cubin(int cc) {
        return CUBINS.computeIfAbsent(cc, k -> {
            NativeLibraries.nvrtc(); // a clear error when libnvrtc is missing
            List<String> options = List.of("--gpu-architecture=sm_" + k, "--std=c++17");
            String source = source();
            int[] v = Nvrtc.version();
            Path file = CubinCache.fromEnvironment().file(source, options, "nvrtc " + v[0] + "." + v[1], k);
            return CubinCache.read(file).map(b -> new Compiled(b, false, file)).orElseGet(() -> {
                byte[] b = Nvrtc.compileToCubin(source, "perceiver4j_kernels.cu", options);
                CubinCache.write(file, b);
                return new Compiled(b, true, file);
            });
        });
    }

    /** The CUDA C source text. */
    public static String source() {
        try (InputStream in = Kernels.class.getClassLoader().getResourceAsStream(SOURCE)) {
            if (in == null) throw new IllegalStateException("resource " + SOURCE + " is missing from the perceiver4j-cuda jar");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new IllegalStateException("cannot read resource " + SOURCE, e);
        }
    }

    /** Milliseconds NVRTC took (0 when the cubin came from this process or the disk cache). */
    public long compileMillis() {
        return compileMillis;
    }

    /** The device address of the source's {@code __device__} variable {@code name}. */
    long global(String name) {
        context.makeCurrent();
        return Driver.moduleGetGlobal(module, name);
    }

    private synchronized MemorySegment function(String name) {
        return functions.computeIfAbsent(name, n -> Driver.moduleGetFunction(module, n));
    }

    /**
     * Without the function's opt-in a block may use 48 KiB of shared memory, static and dynamic
     * together; more needs the opt-in (once per function, up to the device's limit). A kernel with
     * __shared__ variables of its own therefore fails at exactly 48 KiB of dynamic shared memory
     * (CUDA_ERROR_INVALID_VALUE; the fused layer-norm backward's first version did at d = 768), so the opt-in is taken
     * from half of that on, which leaves the static part 24 KiB.
     */
    private static final int OPT_IN_SHARED = 24 * 1024;

    private synchronized void allowShared(String name, MemorySegment f, int bytes) {
        if (bytes <= OPT_IN_SHARED || sharedLimits.getOrDefault(name, 0) >= bytes) return;
        Driver.funcSetAttribute(f, Driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes, name);
        sharedLimits.put(name, bytes);
    }

    /** Blocks for a kernel taking 4 elements per thread (the "4 per thread" kernels of kernels.cu) over {@code n} elements. */
    static int quadBlocks(long n, int threads) {
        return blocks((n + 3) / 4, threads);
    }

    /** Number of 1-D blocks of {@code threads} covering {@code n} elements (at least 1). */
    static int blocks(long n, int threads) {
        long b = (n + threads - 1) / threads;
        if (b > Integer.MAX_VALUE) throw new IllegalArgumentException(n + " elements is too many for one launch");
        return (int) Math.max(1, b);
    }

    /** Starts a launch of the named kernel. */
    public Launch launch(String name) {
        return new Launch(name);
    }

    private static final int MAX_ARGS = 32;

    /**
     * Native memory for one launch's arguments, one per thread: {@code values} holds an 8-byte slot per
     * argument, {@code params} (the void*[] cuLaunchKernel takes) points at the slots once and for all.
     */
    private record LaunchArgs(MemorySegment values, MemorySegment params) {
        static LaunchArgs allocate() {
            Arena arena = Arena.ofAuto(); // freed when the thread's block becomes unreachable
            MemorySegment values = arena.allocate(8L * MAX_ARGS, 8);
            MemorySegment params = arena.allocate(ADDRESS, MAX_ARGS);
            for (int i = 0; i < MAX_ARGS; i++) params.setAtIndex(ADDRESS, i, values.asSlice(8L * i, 8));
            return new LaunchArgs(values, params);
        }
    }

    /** Runs after every launch: CudaBackend's refresh of the bf16 copies the launched kernel made stale (null: none). */
    private volatile Runnable afterLaunch;

    void afterLaunch(Runnable r) {
        this.afterLaunch = r;
    }

    private static final ThreadLocal<LaunchArgs> LAUNCH_ARGS = ThreadLocal.withInitial(LaunchArgs::allocate);

    /** Arguments and shape of one launch. */
    public final class Launch {
        private final String name;
        private final long[] values = new long[MAX_ARGS];
        private final boolean[] wide = new boolean[MAX_ARGS];
        private int count;
        private int gridX = 1, gridY = 1, blockX = 256, sharedBytes;

        private Launch(String name) {
            this.name = name;
        }

        public Launch grid(int x) {
            this.gridX = x;
            return this;
        }

        public Launch grid(int x, int y) {
            this.gridX = x;
            this.gridY = y;
            return this;
        }

        public Launch block(int x) {
            this.blockX = x;
            return this;
        }

        public Launch sharedBytes(int bytes) {
            this.sharedBytes = bytes;
            return this;
        }

        /** A pointer argument (device address; 0 = null). */
        public Launch ptr(long address) {
            return add(address, true);
        }

        public Launch i32(int v) {
            return add(v, false);
        }

        /** A 64-bit integer argument ({@code long long} / {@code unsigned long long} in C). */
        public Launch i64(long v) {
            return add(v, true);
        }

        public Launch f32(float v) {
            return add(Float.floatToRawIntBits(v) & 0xFFFFFFFFL, false);
        }

        private Launch add(long v, boolean is64) {
            if (count == MAX_ARGS) throw new IllegalStateException(name + ": more than " + MAX_ARGS + " arguments");
            values[count] = v;
            wide[count] = is64;
            count++;
            return this;
        }

        /**
         * Queues the kernel on the context's stream (asynchronous; errors of the run surface at the
         * next synchronisation). Arguments that do not match the kernel's declaration in the source
         * throw {@link IllegalStateException} first.
         */
        public void go() {
            Signatures.ALL.check(name, count, wide);
            context.makeCurrent();
            MemorySegment f = function(name);
            allowShared(name, f, sharedBytes);
            // The calling thread's argument block, reused: cuLaunchKernel copies the values before it returns.
            LaunchArgs block = LAUNCH_ARGS.get();
            for (int i = 0; i < count; i++) {
                if (wide[i]) block.values.set(ValueLayout.JAVA_LONG, 8L * i, values[i]);
                else block.values.set(ValueLayout.JAVA_INT, 8L * i, (int) values[i]);
            }
            Driver.launchKernel(f, gridX, gridY, 1, blockX, 1, 1, sharedBytes, context.stream(), block.params, name);
            Runnable after = afterLaunch;
            if (after != null) after.run();
        }
    }
}
