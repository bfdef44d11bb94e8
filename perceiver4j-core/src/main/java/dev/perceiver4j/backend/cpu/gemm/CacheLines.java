package dev.perceiver4j.backend.cpu.gemm;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Where a float[]'s elements sit relative to 64-byte cache lines.
 *
 * <p>The JVM places an array's first element 16 bytes after an 8-byte-aligned object start, so a
 * packed operand written from index 0 starts at any multiple of 8 bytes within a line, and then
 * every 512-bit vector the micro-kernel loads from it spans two lines. {@link #start} finds the
 * first index whose address is at a chosen offset within a line; buffers are allocated
 * {@link #SLACK} floats longer so that the operand still fits from there.
 *
 * <p>Java has no call that tells an array's address. The C library's {@code memcpy(p, p, 0)}
 * returns {@code p}, and a downcall linked with {@link Linker.Option#critical(boolean)
 * critical(true)} passes a heap array as the address of its elements, so that call reads it.
 * The GC may move the array later (it is asked again at each use, a few tens of nanoseconds); a
 * move costs speed until then, never correctness: the index only says where packing starts.
 * Without native access (the launcher and the jars enable it), or without the symbol, every
 * start is 0, as before.
 */
@SuppressWarnings("restricted") // the downcall needs --enable-native-access; checked before linking
final class CacheLines {
    /** Bytes per cache line. */
    static final int LINE = 64;
    /** Extra floats a buffer needs so that an operand can start anywhere in its first line. */
    static final int SLACK = LINE / Float.BYTES;

    /**
     * {@code void *memcpy(void *dst, const void *src, size_t n)}, heap arrays allowed; null when
     * unavailable. The pointer it returns is taken as a 64-bit integer (the same register on the
     * 64-bit ABIs), so that no segment object is made for it.
     */
    private static final MethodHandle MEMCPY = link();

    private CacheLines() {}

    private static MethodHandle link() {
        try {
            if (!CacheLines.class.getModule().isNativeAccessEnabled() || ADDRESS.byteSize() != Long.BYTES) return null;
            Linker linker = Linker.nativeLinker();
            return linker.defaultLookup().find("memcpy")
                    .map(f -> linker.downcallHandle(f, FunctionDescriptor.of(JAVA_LONG, ADDRESS, ADDRESS, JAVA_LONG),
                            Linker.Option.critical(true)))
                    .orElse(null);
        } catch (RuntimeException | LinkageError e) { // no native linker on this platform, access denied
            return null;
        }
    }

    /** Whether {@link #start} can see addresses here (false: it always answers 0). */
    static boolean available() {
        return MEMCPY != null;
    }

    /** The byte address of {@code a[0]} right now, or -1 when it cannot be known. */
    static long address(float[] a) {
        if (MEMCPY == null) return -1;
        MemorySegment s = MemorySegment.ofArray(a);
        try {
            return (long) MEMCPY.invokeExact(s, s, 0L);
        } catch (Throwable t) {
            return -1;
        }
    }

    /**
     * The first index of {@code a} whose element starts {@code offset} bytes into a cache line
     * (a multiple of 8 below {@link #LINE}; 0 for aligned), below {@link #SLACK}; 0 when addresses
     * cannot be known.
     */
    static int start(float[] a, int offset) {
        long address = address(a);
        if (address < 0) return 0;
        int bytes = (int) Math.floorMod(offset - address, (long) LINE);
        return bytes / Float.BYTES; // the JVM aligns float[] elements to 4 bytes at least
    }
}
