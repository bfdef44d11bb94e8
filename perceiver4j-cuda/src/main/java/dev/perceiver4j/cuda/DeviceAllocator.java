package dev.perceiver4j.cuda;

import dev.perceiver4j.cuda.ffm.CudaException;
import dev.perceiver4j.cuda.ffm.Driver;

import java.lang.ref.Cleaner;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * A caching device allocator: requests are rounded up to a size class (512 bytes, then eight
 * classes per power of two, so at most 12.5% waste: a [16, 256, 1280] fp32 activation, 20 MiB,
 * is a class of its own instead of taking 24 MiB; from 64 MiB on, multiples of 2 MiB, so a
 * parameter slab and its gradients and moments do not each carry up to an eighth more) and freed
 * buffers wait in a per-class stack.
 * A step {@link dev.perceiver4j.tensor.Scope} hands its buffers back newest first, so the next
 * step that makes the same requests in the same order gets the same addresses (what CUDA graph
 * capture will need). cuMemFree is only called when cuMemAlloc runs out of memory (then every
 * cached buffer is freed and the allocation retried).
 *
 * <p>Buffers no Scope owns (parameters, fromFloats, tensors made outside a scope) come back when
 * the garbage collector finds their {@link DeviceBuffer} unreachable: a {@link Cleaner} queues the
 * address and the next allocation puts it back on its free list. Work already queued on the stream
 * that still reads such a buffer runs before any later reuse, since everything uses one stream.
 *
 * <p>Not thread-safe by design beyond its own lock: the backend calls it from the thread that runs the model.
 */
public final class DeviceAllocator {
    private static final Cleaner CLEANER = Cleaner.create();

    private record Reclaimed(long address, long bytes, long requested) {}

    private final Map<Long, ArrayDeque<DeviceBuffer>> free = new TreeMap<>();
    private final ConcurrentLinkedQueue<Reclaimed> reclaimed = new ConcurrentLinkedQueue<>();
    // Addresses cuMemFree'd by releaseCached whose buffer objects' Cleaners have not run yet: their
    // (one) reclaim event must be dropped. A later cuMemAlloc may return the same address for a new
    // buffer; either event may come first, and each address is still reclaimed exactly once.
    private final Set<Long> freedAddresses = new HashSet<>();
    private final CudaContext context;
    private long reservedBytes;   // Σ cuMemAlloc'd and not cuMemFree'd
    private long cachedBytes;     // Σ bytes on the free lists
    private long buffersReserved; // count of live cuMemAlloc'd buffers
    private long peakInUse;
    private long requestedInUse, peakRequested; // Σ bytes asked for by live buffers (no size-class rounding), and its high-water mark
    private Held held; // non-null while a CUDA graph is being recorded

    /**
     * The buffers a graph recording keeps: every buffer handed out while recording (the graph's
     * nodes use their addresses, so no Cleaner may reclaim them while it lives) and every buffer
     * freed while recording (the graph will still write them at each replay, so nobody else may get
     * them). A buffer freed while recording may serve a later request of the same recording (its
     * free lists, {@code reuse}): replays run the nodes in recording order, so that is the reuse an
     * op-by-op run makes. {@link #returnHeld} gives the freed ones back when the graph is destroyed.
     */
    record Held(List<DeviceBuffer> allocated, Set<DeviceBuffer> freed, Map<Long, ArrayDeque<DeviceBuffer>> reuse) {}

    DeviceAllocator(CudaContext context) {
        this.context = context;
    }

    private static final long LARGE = 64L << 20, LARGE_STEP = 2L << 20;

    /** The size class a request of {@code bytes} is served from. */
    static long sizeClass(long bytes) {
        if (bytes <= 512) return 512;
        long p = Long.highestOneBit(bytes);
        long step = bytes > LARGE ? LARGE_STEP : Math.max(512, p / 8);
        return (bytes + step - 1) / step * step;
    }

    /** A buffer of at least {@code bytes}, reused from the free list of its class when possible. */
    public synchronized DeviceBuffer allocate(long bytes) {
        drainReclaimed();
        long cls = sizeClass(Math.max(1, bytes));
        ArrayDeque<DeviceBuffer> q = free.get(cls);
        DeviceBuffer b;
        ArrayDeque<DeviceBuffer> own = held == null ? null : held.reuse().get(cls);
        if (own != null && !own.isEmpty()) {
            b = own.pop();   // freed earlier in this recording, and still the recording's
        } else {
            if (q != null && !q.isEmpty()) {
                b = q.pop();
                cachedBytes -= cls;
            } else {
                b = newBuffer(reserve(cls), cls);
            }
            if (held != null) held.allocated().add(b);
        }
        b.requested[0] = bytes;
        requestedInUse += bytes;
        peakInUse = Math.max(peakInUse, inUseBytes());
        peakRequested = Math.max(peakRequested, requestedInUse);
        return b;
    }

    /**
     * Puts a buffer back on its free list (Scope.close, and temporaries of one op). The caller
     * must drop every reference to it: the object itself goes on the list and is handed out again.
     */
    public synchronized void free(DeviceBuffer b) {
        if (b.mirror != null) {   // the bf16 copy goes with it (in stream order, like the buffer)
            DeviceBuffer m = b.mirror;
            b.mirror = null;
            free(m);
        }
        requestedInUse -= b.requested[0];
        b.requested[0] = 0;
        b.dropZeros();   // lazy zeros die with their holder: whoever gets the object next did not ask for them
        if (held != null) {
            held.freed().add(b);
            held.reuse().computeIfAbsent(b.bytes(), k -> new ArrayDeque<>()).push(b);
            return;
        }
        free.computeIfAbsent(b.bytes(), k -> new ArrayDeque<>()).push(b);
        cachedBytes += b.bytes();
    }

    /** Whether a graph is being recorded (buffers allocated now belong to it). */
    synchronized boolean recording() {
        return held != null;
    }

    /** Starts keeping buffers for a graph recording (see {@link Held}). */
    synchronized void beginHold() {
        if (held != null) throw new IllegalStateException("a CUDA graph is already being recorded");
        held = new Held(new ArrayList<>(), Collections.newSetFromMap(new IdentityHashMap<>()), new TreeMap<>());
    }

    /** Stops keeping buffers; the recording owns what was kept. */
    synchronized Held endHold() {
        Held h = held;
        held = null;
        return h;
    }

    /** Puts the buffers freed during a recording back on the free lists (the graph is destroyed). */
    synchronized void returnHeld(Held h) {
        for (DeviceBuffer b : h.freed()) free(b);
        h.freed().clear();
        h.allocated().clear();
        h.reuse().clear();
    }

    /**
     * A buffer object for an address, with its one Cleaner: when the object becomes unreachable
     * outside the free lists (which hold it strongly), the address is queued for reuse, once.
     */
    private DeviceBuffer newBuffer(long address, long bytes) {
        DeviceBuffer b = new DeviceBuffer(address, bytes);
        CLEANER.register(b, new Reclaim(reclaimed, address, bytes, b.requested));
        return b;
    }

    /** The Cleaner action; it must not refer to the buffer object itself. */
    private record Reclaim(ConcurrentLinkedQueue<Reclaimed> queue, long address, long bytes, long[] requested) implements Runnable {
        @Override
        public void run() {
            queue.add(new Reclaimed(address, bytes, requested[0]));
        }
    }

    private void drainReclaimed() {
        for (Reclaimed r; (r = reclaimed.poll()) != null; ) {
            requestedInUse -= r.requested();
            if (freedAddresses.remove(r.address())) continue; // cuMemFree'd by releaseCached; not ours any more
            free.computeIfAbsent(r.bytes(), k -> new ArrayDeque<>()).push(newBuffer(r.address(), r.bytes()));
            cachedBytes += r.bytes();
        }
    }

    private long reserve(long bytes) {
        long[] out = new long[1];
        int r = Driver.memAlloc(bytes, out);
        if (r == Driver.CUDA_ERROR_OUT_OF_MEMORY) {
            releaseCached();
            r = Driver.memAlloc(bytes, out);
        }
        if (r != 0) {
            throw new CudaException("cuMemAlloc_v2(" + bytes + " bytes) failed: " + Driver.errorName(r) + "\n" + report(), r, null);
        }
        reservedBytes += bytes;
        buffersReserved++;
        return out[0];
    }

    /** Frees every cached buffer (cuMemFree), after the stream has finished with them. */
    public synchronized void releaseCached() {
        drainReclaimed();
        context.synchronize();
        for (ArrayDeque<DeviceBuffer> q : free.values()) {
            for (DeviceBuffer b : q) {
                freedAddresses.add(b.address());
                Driver.memFree(b.address());
                reservedBytes -= b.bytes();
                buffersReserved--;
            }
            q.clear();
        }
        cachedBytes = 0;
    }

    /** Bytes handed out and not yet returned (live tensors and not-yet-collected untracked ones). */
    public synchronized long inUseBytes() {
        return reservedBytes - cachedBytes;
    }

    public synchronized long reservedBytes() {
        return reservedBytes;
    }

    public synchronized long cachedBytes() {
        return cachedBytes;
    }

    /**
     * A memory report: reserved, in use, cached (with the size classes holding the most), peak,
     * and the device's free/total. Buffers "in use" after everything was released are leaks.
     */
    public synchronized String report() {
        drainReclaimed();
        StringBuilder sb = new StringBuilder();
        sb.append(String.format("device memory: reserved %s in %d buffers, in use %s, cached %s, peak in use %s",
                mib(reservedBytes), buffersReserved, mib(inUseBytes()), mib(cachedBytes), mib(peakInUse)));
        sb.append(String.format(", peak requested %s", mib(peakRequested)));
        try {
            long[] info = Driver.memGetInfo();
            sb.append(String.format("; device free %s of %s", mib(info[0]), mib(info[1])));
        } catch (RuntimeException e) {
            sb.append("; device free/total unavailable (").append(e.getMessage()).append(')');
        }
        int shown = 0;
        for (Map.Entry<Long, ArrayDeque<DeviceBuffer>> e : free.entrySet()) {
            if (e.getValue().isEmpty()) continue;
            if (shown++ == 0) sb.append("\n  cached size classes:");
            if (shown > 12) {
                sb.append(" …");
                break;
            }
            sb.append(' ').append(e.getValue().size()).append("×").append(e.getKey());
        }
        return sb.toString();
    }

    private static String mib(long bytes) {
        return String.format("%.1f MiB", bytes / 1048576.0);
    }
}
