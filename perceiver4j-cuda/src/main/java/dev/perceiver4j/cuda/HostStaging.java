package dev.perceiver4j.cuda;

import dev.perceiver4j.cuda.ffm.Driver;

import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;

/**
 * Host → device uploads that do not wait for the device. A synchronous {@code cuMemcpyHtoD} from
 * a Java array first waits until every op already queued has run, so an upload in the middle of a
 * training step (the targets, the prefix-dropout positions, a loss seed) used to drain the GPU and
 * leave it idle while the host queued the next ops. Here each upload is copied into a page-locked
 * ring buffer and queued on the stream ({@code cuMemcpyHtoDAsync}), ordered with the kernels around
 * it as before; the host returns at once.
 *
 * <p>A ring region is written again only after the copy that last read it has run: every upload
 * records an event, and a new region waits for the newest event among the copies it overlaps
 * (with a ring of {@value #CAPACITY} bytes, copies many steps old). Uploads larger than
 * half the ring (weights being loaded) take the synchronous copy instead.
 *
 * <p>Not for CUDA graph capture: a captured copy would read the ring again at every replay. The ring
 * lives as long as its backend (the process).
 */
final class HostStaging {
    /** Ring size in bytes. */
    static final long CAPACITY = 16L << 20;
    /** Region alignment (keeps each copy's source 256-byte aligned). */
    private static final long ALIGN = 256;
    /** Queued copies tracked at most (many small uploads without a synchronisation between them). */
    private static final int MAX_IN_FLIGHT = 1024;

    /** A queued copy's ring region and the event that completes once it has run. */
    private record InFlight(long start, long end, MemorySegment event) {}

    private final CudaContext context;
    private final MemorySegment ring;
    private final ArrayDeque<InFlight> inFlight = new ArrayDeque<>();
    private final ArrayDeque<MemorySegment> spareEvents = new ArrayDeque<>();
    private long head;

    HostStaging(CudaContext context) {
        this.context = context;
        context.makeCurrent();
        this.ring = Driver.memHostAlloc(CAPACITY);
    }

    /** Whether {@code bytes} go through the ring (else the caller copies synchronously). */
    static boolean fits(long bytes) {
        return bytes > 0 && bytes <= CAPACITY / 2;
    }

    /**
     * Queues a copy of {@code bytes} from {@code src} (a heap or native segment, read now) to the
     * device address {@code dst} on the backend's stream.
     */
    synchronized void upload(long dst, MemorySegment src, long bytes) {
        if (!fits(bytes)) throw new IllegalArgumentException("staged upload of " + bytes + " bytes: at most " + CAPACITY / 2);
        long start = head + bytes <= CAPACITY ? head : 0;
        long end = start + bytes;
        // Wait for the newest queued copy whose region this one overlaps; copies run in stream order, so
        // every older one has run too and leaves the queue with it.
        int last = -1, i = 0;
        for (InFlight f : inFlight) {
            if (f.start() < end && start < f.end()) last = i;
            i++;
        }
        if (last < 0 && inFlight.size() >= MAX_IN_FLIGHT) last = MAX_IN_FLIGHT / 2;   // keeps this scan short
        if (last >= 0) {
            MemorySegment newest = null;
            for (int k = 0; k <= last; k++) {
                newest = inFlight.removeFirst().event();
                spareEvents.addLast(newest);
            }
            Driver.eventSynchronize(newest);
        }
        MemorySegment.copy(src, 0, ring, start, bytes);
        Driver.memcpyHtoDAsync(dst, ring.asSlice(start, bytes), bytes, context.stream());
        MemorySegment event = spareEvents.isEmpty() ? Driver.eventCreate() : spareEvents.removeFirst();
        Driver.eventRecord(event, context.stream());
        inFlight.addLast(new InFlight(start, end, event));
        head = (end + ALIGN - 1) / ALIGN * ALIGN;
    }

    /** Called after the stream was synchronised: every queued copy has run. */
    synchronized void drained() {
        while (!inFlight.isEmpty()) spareEvents.addLast(inFlight.removeFirst().event());
    }
}
