package dev.perceiver4j.cuda;

import dev.perceiver4j.backend.Recording;
import dev.perceiver4j.cuda.ffm.CudaException;
import dev.perceiver4j.cuda.ffm.Driver;
import dev.perceiver4j.tensor.Scope;

import java.lang.foreign.MemorySegment;
import java.lang.ref.Cleaner;
import java.util.function.LongConsumer;

/**
 * A {@link Recording} as a CUDA graph: the body's kernels, copies, memsets and cuBLASLt products
 * are captured from the backend's stream (relaxed capture mode, so the caching allocator may still
 * grow), instantiated once, and replayed with one {@code cuGraphLaunch}.
 *
 * <p>The buffers the body allocated or freed stay with the graph until {@link #close()} (see
 * {@link DeviceAllocator.Held}): its nodes keep writing them at every replay. A graph dropped
 * without close() is released when the garbage collector finds it unreachable.
 */
final class CudaGraph implements Recording {
    private static final Cleaner CLEANER = Cleaner.create();
    private static final java.util.concurrent.atomic.AtomicInteger LIVE = new java.util.concurrent.atomic.AtomicInteger();

    /**
     * What a graph owns, released exactly once: by {@link #close()}, or by the Cleaner when the
     * CudaGraph becomes unreachable unclosed (a launch still in flight finishes first: the driver
     * frees an executing graph when it completes, and later users of the buffers queue behind it on
     * the same stream). Must not refer to the CudaGraph.
     */
    private static final class Resources implements Runnable {
        private final CudaContext context;
        private final DeviceAllocator allocator;
        private final DeviceAllocator.Held held;
        private final MemorySegment graph, exec;

        Resources(CudaContext context, DeviceAllocator allocator, DeviceAllocator.Held held, MemorySegment graph, MemorySegment exec) {
            this.context = context;
            this.allocator = allocator;
            this.held = held;
            this.graph = graph;
            this.exec = exec;
        }

        @Override
        public void run() {
            LIVE.decrementAndGet();
            context.makeCurrent();
            Driver.graphExecDestroy(exec);
            Driver.graphDestroy(graph);
            allocator.returnHeld(held);
        }
    }

    private final CudaContext context;
    private final MemorySegment exec;
    private final int nodes;
    private final LongConsumer seedShift;
    private final Runnable beforeReplay;
    private final Cleaner.Cleanable cleanable;
    private boolean closed;

    private CudaGraph(CudaContext context, DeviceAllocator allocator, DeviceAllocator.Held held, MemorySegment graph, MemorySegment exec,
                      int nodes, LongConsumer seedShift, Runnable beforeReplay) {
        this.context = context;
        this.exec = exec;
        this.nodes = nodes;
        this.seedShift = seedShift;
        this.beforeReplay = beforeReplay;
        this.cleanable = CLEANER.register(this, new Resources(context, allocator, held, graph, exec));
        LIVE.incrementAndGet();
    }

    /** Graphs recorded and not yet released (closed or collected), for leak checks. */
    static int live() {
        return LIVE.get();
    }

    /**
     * Captures {@code body} (which runs once, queueing but not executing its work). {@code seedShift}
     * sets the kernels' seed shift in stream order (see {@link #replay(long)}); {@code beforeReplay} runs
     * on the host before each launch (the backend queues the zero fills it still owes there).
     *
     * @throws IllegalStateException when the body does something a graph cannot hold (a host copy,
     *         a synchronisation); the message names the capture error and the body's exception
     */
    static CudaGraph capture(CudaContext context, DeviceAllocator allocator, LongConsumer seedShift, Runnable beforeReplay, Runnable body) {
        context.makeCurrent();
        MemorySegment stream = context.stream();
        allocator.beginHold();
        RuntimeException failure = null;
        Driver.streamBeginCapture(stream, Driver.CU_STREAM_CAPTURE_MODE_RELAXED);
        try (Scope s = Scope.open()) {
            body.run();
        } catch (RuntimeException e) {
            failure = e;
        }
        MemorySegment[] g = new MemorySegment[1];
        int r = Driver.streamEndCapture(stream, g);
        DeviceAllocator.Held held = allocator.endHold();
        if (failure != null || r != 0) {
            if (g[0] != null && !g[0].equals(MemorySegment.NULL)) Driver.graphDestroy(g[0]);
            allocator.returnHeld(held);
            String why = r != 0 ? "cuStreamEndCapture failed: " + Driver.errorName(r) : "the recorded ops threw";
            throw new IllegalStateException("recording a CUDA graph failed (" + why + "); the body must not copy from or to the host "
                    + "or synchronise" + (failure != null ? ": " + failure.getMessage() : ""), failure);
        }
        try {
            int nodes = Math.toIntExact(Driver.graphNodeCount(g[0]));
            return new CudaGraph(context, allocator, held, g[0], Driver.graphInstantiate(g[0]), nodes, seedShift, beforeReplay);
        } catch (CudaException e) {
            Driver.graphDestroy(g[0]);
            allocator.returnHeld(held);
            throw e;
        }
    }

    /**
     * Launches the graph. A non-zero {@code shift} is written to the kernels' {@code p4j_seed_shift}
     * before the launch and cleared after it, both in stream order, so only this replay's Philox
     * draws see it.
     */
    @Override
    public void replay(long shift) {
        if (closed) throw new IllegalStateException("replay of a closed CUDA graph");
        context.makeCurrent();
        beforeReplay.run();
        if (shift != 0) seedShift.accept(shift);
        Driver.graphLaunch(exec, context.stream());
        if (shift != 0) seedShift.accept(0L);
    }

    @Override
    public int ops() {
        return nodes;
    }

    /** Destroys the graph (launches still in flight finish first) and returns its buffers to the allocator. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        cleanable.clean();
    }
}
