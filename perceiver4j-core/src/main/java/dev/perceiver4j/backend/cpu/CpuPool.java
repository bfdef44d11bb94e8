package dev.perceiver4j.backend.cpu;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

/**
 * A fixed pool of platform threads that CPU kernels split their work over.
 *
 * <p>{@link #parallelFor} cuts {@code [0, n)} into at most {@link #threads()} contiguous chunks;
 * {@link #parallelForClaimed} into pieces that the threads claim one at a time. The calling thread
 * takes part (the first chunk, or pieces like the others). A call made from inside a running loop
 * (a pool worker, or the caller's own share) runs serially (no nested parallelism, no deadlock). The default pool is sized to the machine; the
 * system property {@code perceiver4j.threads} overrides it.
 */
public final class CpuPool implements AutoCloseable {

    /** Body of a parallel loop over a half-open index range. */
    @FunctionalInterface
    public interface RangeBody {
        void run(int from, int to);
    }

    private static volatile CpuPool common;

    private final int threads;
    private final Worker[] workers;

    private CpuPool(int threads) {
        if (threads < 1) throw new IllegalArgumentException("thread count must be >= 1, got " + threads);
        this.threads = threads;
        this.workers = new Worker[threads - 1];
        for (int i = 0; i < workers.length; i++) {
            workers[i] = new Worker(this, i + 1);
            workers[i].thread.start();
        }
    }

    /** A new pool with {@code threads} threads in all (the caller counts as one). */
    public static CpuPool create(int threads) {
        return new CpuPool(threads);
    }

    /** The shared pool: {@code -Dperceiver4j.threads=N}, else one thread per available core. */
    public static CpuPool common() {
        CpuPool p = common;
        if (p == null) {
            synchronized (CpuPool.class) {
                p = common;
                if (p == null) {
                    p = new CpuPool(defaultThreads());
                    common = p;
                }
            }
        }
        return p;
    }

    static int defaultThreads() {
        String s = System.getProperty("perceiver4j.threads");
        if (s != null && !s.isBlank()) {
            try {
                int n = Integer.parseInt(s.trim());
                if (n >= 1) return n;
            } catch (NumberFormatException ignored) {
                // fall through to the error below
            }
            throw new IllegalArgumentException("perceiver4j.threads must be a positive integer, got '" + s + "'");
        }
        return Runtime.getRuntime().availableProcessors();
    }

    public int threads() {
        return threads;
    }

    /** Runs {@code body} over {@code [0, n)} in at most {@code threads()} chunks, and waits for all. */
    public void parallelFor(int n, RangeBody body) {
        parallelFor(n, 1, body);
    }

    /**
     * Like {@link #parallelFor(int, RangeBody)} but never makes a chunk smaller than {@code grain}
     * indices (small loops run on fewer threads, or inline).
     */
    public void parallelFor(int n, int grain, RangeBody body) {
        if (n <= 0) return;
        int chunks = Math.min(threads, Math.max(1, n / Math.max(1, grain)));
        run(n, chunks, 0, body);
    }

    /**
     * Runs {@code body} over {@code [0, n)} in pieces of {@code piece} indices (the last one may be
     * shorter) that the threads claim one at a time, and waits for all. {@link #parallelFor} gives
     * each thread one fixed share, so the loop lasts as long as its slowest thread; here a thread
     * that runs slower (other load on its core, or a virtual CPU the host gives to someone else for
     * a while) takes fewer pieces and the others take more. For loops whose pieces cost the same
     * whoever runs them (no per-thread set-up that a fixed share would amortise).
     */
    public void parallelForClaimed(int n, int piece, RangeBody body) {
        if (n <= 0) return;
        if (piece < 1) throw new IllegalArgumentException("piece must be >= 1, got " + piece);
        int pieces = (int) ((n + (long) piece - 1) / piece);
        run(n, Math.min(threads, pieces), piece, body);
    }

    /** Runs a {@link Job} of {@code chunks} shares (claimed pieces of {@code piece} indices when that is > 0), inline when nested or single. */
    private void run(int n, int chunks, int piece, RangeBody body) {
        if (chunks == 1 || Thread.currentThread() instanceof PoolThread || Thread.holdsLock(this)) { // nested: run inline
            if (piece == 0) body.run(0, n);
            else for (int from = 0; from < n; from += piece) body.run(from, (int) Math.min(n, (long) from + piece));
            return;
        }
        Throwable failure = null;
        synchronized (this) { // one parallel loop at a time per pool; callers from several threads queue here
            Job job = new Job(body, n, chunks, piece);
            for (int c = 1; c < chunks; c++) workers[c - 1].submit(job);
            try {
                job.runChunk(0);
            } catch (Throwable t) {
                failure = t;
                job.failure.compareAndSet(null, t); // the others stop claiming pieces
            }
            job.await();
            if (failure == null) failure = job.failure.get();
        }
        if (failure instanceof RuntimeException re) throw re;
        if (failure instanceof Error e) throw e;
        if (failure != null) throw new RuntimeException(failure);
    }

    @Override
    public void close() {
        for (Worker w : workers) w.stop();
    }

    private static final class Job {
        final RangeBody body;
        final int n;
        final int chunks;
        /** Indices per claimed piece; 0: chunk c is the c-th of {@code chunks} equal shares. */
        final int piece;
        /** The next piece to claim (claimed jobs). */
        final AtomicInteger next = new AtomicInteger();
        final AtomicInteger remaining;
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        final Thread owner = Thread.currentThread();

        Job(RangeBody body, int n, int chunks, int piece) {
            this.body = body;
            this.n = n;
            this.chunks = chunks;
            this.piece = piece;
            this.remaining = new AtomicInteger(chunks - 1);
        }

        void runChunk(int c) {
            if (piece > 0) {
                for (int p = next.getAndIncrement(); (long) p * piece < n && failure.get() == null; p = next.getAndIncrement()) {
                    body.run(p * piece, (int) Math.min(n, (long) (p + 1) * piece));
                }
                return;
            }
            long from = (long) n * c / chunks;
            long to = (long) n * (c + 1) / chunks;
            body.run((int) from, (int) to);
        }

        void done(Throwable t) {
            if (t != null) failure.compareAndSet(null, t);
            if (remaining.decrementAndGet() == 0) LockSupport.unpark(owner);
        }

        void await() {
            int spins = 0;
            while (remaining.get() > 0) {
                if (spins < 20_000) {
                    Thread.onSpinWait();
                    spins++;
                } else {
                    LockSupport.parkNanos(this, 50_000);
                }
            }
        }
    }

    private static final class PoolThread extends Thread {
        PoolThread(Runnable r, String name) {
            super(r, name);
            setDaemon(true);
        }
    }

    private static final class Worker implements Runnable {
        final int index;
        final PoolThread thread;
        volatile Job job;
        volatile boolean stopped;

        Worker(CpuPool pool, int index) {
            this.index = index;
            this.thread = new PoolThread(this, "perceiver4j-cpu-" + index + "-of-" + pool.threads);
        }

        void submit(Job j) {
            job = j;
            LockSupport.unpark(thread);
        }

        void stop() {
            stopped = true;
            LockSupport.unpark(thread);
        }

        @Override
        public void run() {
            int spins = 0;
            while (!stopped) {
                Job j = job;
                if (j == null) {
                    if (spins < 50_000) {
                        Thread.onSpinWait();
                        spins++;
                    } else {
                        LockSupport.park(this);
                    }
                    continue;
                }
                spins = 0;
                job = null;
                Throwable t = null;
                try {
                    j.runChunk(index);
                } catch (Throwable e) {
                    t = e;
                }
                j.done(t);
            }
        }
    }
}
