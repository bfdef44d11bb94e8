package dev.perceiver4j.random;

/**
 * Philox4x32-10, the counter-based generator of Salmon et al. (SC'11) that cuRAND and PyTorch use.
 *
 * <p>Stateless: the value at (seed, stream, index) is a pure function, so a dropout mask can be
 * recomputed in the backward pass, split over threads in any order, and produced identically by
 * every backend. {@code index} selects one 32-bit output: block {@code index >>> 2}, lane
 * {@code index & 3}.
 */
public final class Philox {
    private static final int M0 = 0xD2511F53;
    private static final int M1 = 0xCD9E8D57;
    private static final int W0 = 0x9E3779B9;
    private static final int W1 = 0xBB67AE85;

    private Philox() {}

    /** The four 32-bit outputs of block {@code (c0, c1, c2, c3)} under key {@code (k0, k1)}, into {@code out[0..3]}. */
    public static void block(int c0, int c1, int c2, int c3, int k0, int k1, int[] out) {
        for (int r = 0; r < 10; r++) {
            long p0 = (M0 & 0xFFFFFFFFL) * (c0 & 0xFFFFFFFFL);
            long p1 = (M1 & 0xFFFFFFFFL) * (c2 & 0xFFFFFFFFL);
            int hi0 = (int) (p0 >>> 32), lo0 = (int) p0;
            int hi1 = (int) (p1 >>> 32), lo1 = (int) p1;
            int n0 = hi1 ^ c1 ^ k0;
            int n2 = hi0 ^ c3 ^ k1;
            c0 = n0;
            c1 = lo1;
            c2 = n2;
            c3 = lo0;
            k0 += W0;
            k1 += W1;
        }
        out[0] = c0;
        out[1] = c1;
        out[2] = c2;
        out[3] = c3;
    }

    /** The block holding output {@code index} of (seed, stream): outputs index − index%4 … that + 3, into {@code out[0..3]}. */
    public static void blockOf(long seed, long stream, long index, int[] out) {
        long blk = index >>> 2;
        block((int) blk, (int) (blk >>> 32), (int) stream, (int) (stream >>> 32), (int) seed, (int) (seed >>> 32), out);
    }

    /** One 32-bit output: counter block (index/4, stream) under key seed, lane index%4. */
    public static int bits(long seed, long stream, long index) {
        int[] o = new int[4];
        blockOf(seed, stream, index, o);
        return o[(int) (index & 3)];
    }

    /** A float uniform in [0, 1) with 24 random bits, from {@link #bits}. */
    public static float uniform(long seed, long stream, long index) {
        return (bits(seed, stream, index) >>> 8) * 0x1.0p-24f;
    }

    /** Converts one 32-bit output to a float uniform in [0, 1). */
    public static float toUniform(int bits) {
        return (bits >>> 8) * 0x1.0p-24f;
    }

    /** True where element {@code index} of a dropout mask with drop probability {@code p} is kept. */
    public static boolean keep(long seed, long stream, long index, float p) {
        return uniform(seed, stream, index) >= p;
    }
}
