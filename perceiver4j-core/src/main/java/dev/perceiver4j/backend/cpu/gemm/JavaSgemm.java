package dev.perceiver4j.backend.cpu.gemm;

import dev.perceiver4j.backend.cpu.CpuPool;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorSpecies;

import java.util.Arrays;
import java.util.Objects;

/**
 * Pure-Java SGEMM on the Vector API, organised like GotoBLAS/BLIS.
 *
 * <h2>Blocking scheme</h2>
 * With VL = lanes of {@link #SPECIES} (16 floats on AVX-512, 8 on AVX2) and MR x NR the register
 * tile of the {@link Kernel} in use:
 * <pre>
 *   for jc in [0, n) step NC          NC = 3072 columns at most (a multiple of NR; fewer when
 *                                     k x NC would pass MAX_STRIP floats)
 *     pack B[0:k, jc:jc+NC] as K panels of KC rows, each in slivers of NR columns: sliver s =
 *                                     KC x NR, row-major (every B row/column read in one run)
 *     for pc in [0, k) step KC        KC = 256 (8x2) or 128 (6x4) at most (k is cut into equal panels)
 *       for ic in [0, m) step MC      MC = 256 (8x2) or 384 (6x4) rows at most (equal blocks,
 *                                     multiples of MR)
 *         pack A[ic:ic+MC, pc:pc+KC] into slivers of MR rows: sliver = KC x MR, k-major
 *                                     (at most 192-256 KiB: stays in L2)
 *         for jr in [0, NC) step NR   one B sliver (KC x NR x 4 B = 32 KiB with 512-bit
 *                                     vectors, for both kernels) stays in L1
 *           for ir in [0, MC) step MR
 *             micro-kernel: C[ir:ir+MR, jr:jr+NR] (+)= A sliver . B sliver
 * </pre>
 * The packed slivers are zero-padded to full MR / NR, so tails in m and n cost nothing in the
 * kernel: a partial tile is computed into a small buffer and only its valid part is merged into C.
 * Tails in k are just a shorter KC. Packing handles all four transpose combinations and any
 * lda / ldb, so the kernel only ever sees unit-stride panels.
 *
 * <h2>Transposed formulation</h2>
 * The scheme above packs all of B. For C = A . B^T with A stored [m,k] and B stored [n,k] (an
 * activation times an nn.Linear weight) and n > m, that is the larger operand, and its packing
 * is a scalar transposing copy of every weight: skipping it (a timing-only experiment) took 14-19 %
 * off the language-perceiver's forward pass on dev, most of it from the 256 x 1280 x 1280 products. Such products run instead as C^T = B . A^T
 * ({@link #sgemmTransposed}), with either kernel: B's rows are the A side of the kernel, read
 * where they are stored by the 6x4 tile and copied block by block (whole rows, {@code
 * System.arraycopy}) by the others to a buffer whose row stride is the constant {@value
 * #ROW_STRIDE}, so that the kernel addresses its MR rows from one index; A^T is packed once per
 * call into slivers shared by all threads, in K panels of up to {@value #TRANSPOSED_KC} rows (one
 * panel for k <= 2048, so each output tile is merged into C once, transposed); threads split B's
 * rows. {@code -D}{@value #TRANSPOSED_PROPERTY}{@code =false} turns this off (always pack B).
 *
 * <h2>Row-buffer products</h2>
 * Products with A stored [m,k] that the transposed formulation does not take (the 2048-row
 * products of the language perceiver: m > n) run the same way with the roles as they are
 * ({@link #sgemmRows}): op(B) packed once in one K panel and shared, A's rows as the kernel's A
 * side, each tile's accumulators over all of k and merged once. The blocked algorithm above
 * packed A for the 6x4 tile (a scalar interleaving copy) and merged each tile once per K panel of
 * 128 rows; the row-buffer products took 0.82-1.02x its time (median 0.89x over ten comparisons)
 * at 2048 x 768 x n on gpu-host's Xeon, 0.73-0.96x with the 8x2 and 4x2 tiles there
 * (docs/benchmarks.md, session 25). The blocked algorithm remains for A stored [k,m] (backward
 * products) and {@link Formulation#PACKED}.
 *
 * <h2>Micro-kernels</h2>
 * Three register tiles, chosen once per JVM with the system property {@value #KERNEL_PROPERTY}
 * ({@code 8x2}, {@code 6x4}, {@code 4x2}, or {@code auto}, the default: 4x2 with 256-bit vectors,
 * 6x4 on Intel cores with 512-bit vectors, 8x2 on other 512-bit cores, see {@link Kernel#forCpu};
 * tests and benchmarks pass a {@link Kernel} to {@link #JavaSgemm(CpuPool, Kernel)} instead):
 * <ul>
 *   <li><b>8x2</b>: MR x NR = 8 x (2 x VL) in 16 vector accumulators; per k step 2 vector loads of
 *       the B sliver, 8 scalar broadcasts of the A sliver, 16 independent FMAs. When A is stored
 *       [m,k] its full MR-row slivers are read in place (8 row streams) instead of being packed.
 *       This is the kernel tuned on Zen 5.</li>
 *   <li><b>6x4</b>: MR x NR = 6 x (4 x VL) in 24 accumulators; per k step 4 vector loads, 6
 *       broadcasts, 24 FMAs (the tile shape of the usual AVX-512 SGEMM kernels). It exists for
 *       Intel cores (Sapphire / Emerald Rapids), where the 8x2 kernel reaches a much smaller
 *       fraction of peak than on Zen 5. The hypothesis behind it: a broadcast that is not fused
 *       with its memory load is a port-5 uop there, and port 5 is also one of the two 512-bit FMA
 *       ports, so 8 broadcasts per 16 FMAs would cap the FMA rate near 2/3. (C2 on JDK 25 does emit
 *       every {@code broadcast(SPECIES, ap[i])} of both kernels as {@code vbroadcastss zmm, m32},
 *       a pure load, in the disassembly on Zen 5; what 6x4 still saves is non-FMA work per FMA:
 *       10 loads and about 9 scalar uops per 24 FMAs, against 10 loads per 16 FMAs for 8x2, plus
 *       8 address computations per 16 in its in-place path.) In the blocked algorithm A is always
 *       packed for it (no in-place path), and KC is halved so that its twice-as-wide B sliver
 *       still fits in L1.
 *       24 accumulators + 4 B vectors + 1 broadcast need 29 vector registers: it is meant for
 *       AVX-512 (32 registers); with 256-bit vectors (16 registers) it spills. On Zen 5 both
 *       tiles run at the same speed (docs/benchmarks.md).</li>
 *   <li><b>4x2</b>: MR x NR = 4 x (2 x VL) in 8 accumulators; per k step 2 vector loads, 4
 *       broadcasts, 8 FMAs. For AVX2 (16 vector registers): C2 schedules every broadcast of a k
 *       step before its FMAs, so 8x2 (16 accumulators) and even 6x2 (12) need more than 16
 *       registers and keep accumulators on the stack, each one a store/load chain through memory
 *       around the loop; both ran at about half the FMA peak in isolation on an AVX2 Zen, 4x2 at
 *       the peak (docs/benchmarks.md, session 19). A stored [m,k] is read in place, as for 8x2.</li>
 * </ul>
 * Each tile has a variant per way its A side arrives: packed slivers, rows in place (8x2 and 4x2),
 * rows of a row-buffer product's copy (all three) and, for 6x4, a row-buffer product's rows where
 * they are stored (the last two accumulate into a tile buffer, see {@link #rowBlock}). All keep
 * their accumulators in locals of a small method written out by hand (no arrays, no helper taking
 * vectors), so that C2 keeps them in registers, and index with compile-time constant strides
 * where they can (the in-place 6x4 variant takes its row stride as an argument). The shared packing and
 * blocking code takes MR, NR, KC and MC from the instance's {@link Kernel}; the choice between
 * micro-kernels is one branch per tile.
 *
 * <h2>Threads</h2>
 * The output is split into at most {@code pool.threads()} contiguous strips along its larger
 * dimension (columns in multiples of NR, or rows in multiples of MR); each thread runs the whole
 * blocked algorithm on its strip with its own packing buffers (one {@link Workspace} per thread,
 * reused across calls). With column strips each thread packs its part of B and reads A (the
 * 8x2 kernel, A stored [m,k]) in place. With row strips every thread needs all of B, so B is
 * packed once, each thread packing some of its slivers, and shared (up to {@value
 * #MAX_SHARED_B} floats; beyond, each thread packs all of it). This was 1.05-1.10x faster on 2
 * threads of dev at 2048 x 768 x 768 / 1280, and saves more with more threads, each of which
 * would otherwise pack the whole of B for a smaller strip. The transposed formulation shares its
 * packed A^T the same way. Where an operand is shared like this, the strips are pieces that the
 * threads claim one at a time ({@link #forStrips}, unless the {@link Formulation} says otherwise),
 * so that a thread that runs slower takes fewer. Products under ~2 MFLOP run on the caller only.
 */
public final class JavaSgemm implements Sgemm {

    static final VectorSpecies<Float> SPECIES = FloatVector.SPECIES_PREFERRED;
    private static final int VL = SPECIES.length();

    /** System property choosing the register tile of {@link #JavaSgemm(CpuPool)}: {@code 8x2} (default) or {@code 6x4}. */
    public static final String KERNEL_PROPERTY = "perceiver4j.sgemm.kernel";

    /** Rows / columns of the 8x2 tile (8 rows, 2 vectors); constants, so the kernel's strides fold. */
    private static final int MR_8X2 = 8, NR_8X2 = 2 * VL;
    /** Rows / columns of the 6x4 tile (6 rows, 4 vectors). */
    private static final int MR_6X4 = 6, NR_6X4 = 4 * VL;
    /** Rows / columns of the 4x2 tile (4 rows, 2 vectors). */
    private static final int MR_4X2 = 4, NR_4X2 = 2 * VL;

    /** 8-lane floats (256-bit): one column of a tile, merged transposed ({@link #mergeTransposed}). */
    private static final VectorSpecies<Float> EIGHT = FloatVector.SPECIES_256;
    /** Offsets of an 8x2 tile's 8 rows: the gather indices of one of its columns. */
    private static final int[] COLUMN_8X2 = {0, NR_8X2, 2 * NR_8X2, 3 * NR_8X2, 4 * NR_8X2, 5 * NR_8X2, 6 * NR_8X2, 7 * NR_8X2};
    /** Offsets of a 6x4 tile's 6 rows (the last two lanes are masked off). */
    private static final int[] COLUMN_6X4 = {0, NR_6X4, 2 * NR_6X4, 3 * NR_6X4, 4 * NR_6X4, 5 * NR_6X4, 0, 0};
    /** The first 6 of 8 lanes. */
    private static final VectorMask<Float> SIX_OF_EIGHT = EIGHT.indexInRange(0, MR_6X4);
    /** 4-lane floats (128-bit): one column of a 4x2 tile (an unmasked gather: AVX2 has no intrinsic for masked ones). */
    private static final VectorSpecies<Float> FOUR = FloatVector.SPECIES_128;
    /** Offsets of a 4x2 tile's 4 rows. */
    private static final int[] COLUMN_4X2 = {0, NR_4X2, 2 * NR_4X2, 3 * NR_4X2};

    /** Register tile of the micro-kernel, with the blocking sizes that go with it. */
    public enum Kernel {
        /** 8 rows x 2 vectors (16 accumulators), A stored [m,k] read in place. The default except on Intel AVX-512 cores. */
        K8X2("8x2", 8, 2, 256, 256, true),
        /** 6 rows x 4 vectors (24 accumulators), A always packed; for Intel AVX-512 cores. */
        K6X4("6x4", 6, 4, 128, 384, false),
        /** 4 rows x 2 vectors (8 accumulators), A stored [m,k] read in place. The default with 256-bit vectors (16 registers). */
        K4X2("4x2", 4, 2, 256, 256, true);

        /** Name as written in {@value JavaSgemm#KERNEL_PROPERTY}. */
        final String label;
        /** Rows of the register tile. */
        final int mr;
        /** Columns of the register tile: a number of whole vectors. */
        final int nr;
        /** Depth of one packed panel: KC x NR floats of a B sliver stay in L1. */
        final int kc;
        /** Rows of one packed A block (a multiple of MR). */
        final int mc;
        /** Columns of one packed B strip (a multiple of NR). */
        final int nc;
        /** Whether full MR-row slivers of an A stored [m,k] are read in place instead of packed. */
        final boolean directA;

        Kernel(String label, int mr, int vectors, int kc, int mc, boolean directA) {
            this.label = label;
            this.mr = mr;
            // Not JavaSgemm.VL: reading the outer class's statics here would tie the two class
            // initialisations in a cycle.
            this.nr = vectors * FloatVector.SPECIES_PREFERRED.length();
            this.kc = kc;
            this.mc = mc;
            this.nc = Math.max(nr, 3072 / nr * nr);
            this.directA = directA;
        }

        /** The kernel named {@code 8x2} or {@code 6x4} (surrounding blanks ignored). */
        public static Kernel parse(String name) {
            String s = name.trim();
            for (Kernel kn : values()) {
                if (kn.label.equals(s)) return kn;
            }
            throw new IllegalArgumentException("-D" + KERNEL_PROPERTY + "=" + name + " is not one of 8x2, 6x4, 4x2, auto");
        }

        /**
         * The kernel for a CPU: 6x4 on Intel ({@code vendor} "GenuineIntel") with 512-bit vectors
         * ({@code floatLanes} >= 16, the 32 registers it needs), where it was 1.04x faster over a
         * whole language-perceiver forward than 8x2 (docs/benchmarks.md); 8x2 everywhere else
         * (1.06-1.14x faster than 6x4 on Zen 5). {@code vendor} may be null (unknown).
         */
        public static Kernel forCpu(String vendor, int floatLanes) {
            if (floatLanes < 16) return K4X2;
            return "GenuineIntel".equals(vendor) ? K6X4 : K8X2;
        }

        @Override
        public String toString() {
            return label;
        }
    }

    /**
     * System property turning the transposed formulation of {@link #JavaSgemm(CpuPool)} off
     * ({@code false}; default {@code true}), to compare both in separate runs of one command.
     */
    public static final String TRANSPOSED_PROPERTY = "perceiver4j.sgemm.transposed";

    /** {@value #TRANSPOSED_PROPERTY}, read once: anything but "false" leaves the formulation on. */
    static final boolean DEFAULT_TRANSPOSED = !"false".equals(System.getProperty(TRANSPOSED_PROPERTY, "true").trim());

    /** The kernel of {@link #JavaSgemm(CpuPool)}: {@value #KERNEL_PROPERTY}, read once; null when that value is invalid. */
    static final Kernel DEFAULT_KERNEL;
    /** Why {@link #DEFAULT_KERNEL} is null. */
    private static final String KERNEL_ERROR;

    static {
        Kernel kn = null;
        String error = null;
        try {
            String name = System.getProperty(KERNEL_PROPERTY, "auto");
            kn = name.trim().equals("auto") ? Kernel.forCpu(cpuVendor(), FloatVector.SPECIES_PREFERRED.length()) : Kernel.parse(name);
        } catch (IllegalArgumentException e) {
            error = e.getMessage();
        }
        DEFAULT_KERNEL = kn;
        KERNEL_ERROR = error;
    }

    /** The {@code vendor_id} of the first processor in /proc/cpuinfo (Linux), or null where there is none. */
    static String cpuVendor() {
        try (java.io.BufferedReader in = java.nio.file.Files.newBufferedReader(java.nio.file.Path.of("/proc/cpuinfo"))) {
            for (String line; (line = in.readLine()) != null; ) {
                int colon = line.indexOf(':');
                if (line.startsWith("vendor_id") && colon > 0) return line.substring(colon + 1).trim();
            }
        } catch (java.io.IOException | RuntimeException e) {
            // no /proc (macOS, Windows) or unreadable: unknown vendor, the 8x2 kernel
        }
        return null;
    }

    /** Most floats of one packed B strip (k x strip width): 8 MiB per thread. */
    private static final int MAX_STRIP = 1 << 21;

    /**
     * Most floats of an operand packed once and shared by all threads (a row-strip B, or the
     * transposed formulation's A^T): 32 MiB, kept by the calling thread for its next call. Larger
     * products fall back to per-thread packing (row strips) or to the usual formulation.
     */
    static final int MAX_SHARED_B = 1 << 23;

    /** Whether an operand of k rows packed into whole NR slivers over {@code cols} columns fits the shared buffer ({@link #MAX_SHARED_B}). */
    private static boolean sharable(Kernel kn, int k, int cols) {
        return (long) k * roundUp(cols, kn.nr) <= MAX_SHARED_B;
    }

    /**
     * Most rows of a K panel of a row-buffer product ({@link #rowBlock}: the transposed formulation
     * and {@link #sgemmRows}): its B sliver
     * (KC x NR floats, 128 KiB per 1024 rows with 512-bit vectors) stays in L2, and the products of
     * the Perceiver models (k <= 1280) run as a single panel, so each output tile is merged once.
     */
    static final int TRANSPOSED_KC = 2048;

    /** Most rows per row-buffer block that {@link Formulation#blockRows} may ask for: MC x k floats stay in L2. */
    static final int MAX_BLOCK_ROWS = 1024;
    /** Most rows of A per chunk of the transposed formulation ({@link Formulation#chunkRows}). */
    static final int MAX_CHUNK_ROWS = 1 << 16;

    /**
     * Row stride of the buffer a row-buffer product copies its rows to: a constant, so a
     * kernel reads its MR rows at fixed displacements from one index (reading them in place at
     * stride ldb takes MR index registers). 16 floats (one cache line) more than
     * {@link #TRANSPOSED_KC}, so that consecutive rows do not all fall into the same cache sets.
     */
    static final int ROW_STRIDE = TRANSPOSED_KC + 16;

    /** Claimed pieces per thread that {@link #forStrips} aims at (more: a shorter tail when threads run unevenly). */
    private static final int PIECES_PER_THREAD = 8;

    /** Below this many flops (2mnk) the product runs on the calling thread alone. */
    private static final long PARALLEL_MIN_FLOPS = 1L << 21;

    /** Per-thread packing buffers, grown on demand and reused across calls (shared by both kernels). */
    private static final class Workspace {
        float[] packA = new float[0];
        float[] packB = new float[0];
        /**
         * An operand packed once per call and shared by all threads (the A^T of {@link
         * #sgemmTransposed}, the B of row strips): each thread packs some slivers, all read it.
         */
        float[] packShared = new float[0];
        /** A row-buffer product's accumulator tiles, one per MR rows of a block ({@link #rowBlock}). */
        float[] tiles = new float[0];
        final float[] tile = new float[Math.max(MR_8X2 * NR_8X2, MR_6X4 * NR_6X4)];

        float[] packA(int size) {
            if (packA.length < size) packA = new float[size];
            return packA;
        }

        /** Room for {@code size} floats from a cache-line start ({@link CacheLines#SLACK} more). */
        float[] packB(int size) {
            if (packB.length < size + CacheLines.SLACK) packB = new float[size + CacheLines.SLACK];
            return packB;
        }

        float[] tiles(int size) {
            if (tiles.length < size + CacheLines.SLACK) tiles = new float[size + CacheLines.SLACK];
            return tiles;
        }

        float[] packShared(int size) {
            if (packShared.length < size + CacheLines.SLACK) packShared = new float[size + CacheLines.SLACK];
            return packShared;
        }
    }

    private static final ThreadLocal<Workspace> WORKSPACE = ThreadLocal.withInitial(Workspace::new);

    private final CpuPool pool;
    private final Kernel kernel;
    /** Whether {@link #sgemmTransposed} may be chosen (false: always the usual formulation; benchmarks). */
    private final Formulation form;

    /**
     * How products are formulated and blocked; benchmarks compare these in one process.
     *
     * @param transposed   the transposed formulation where it pays ({@link #transposedPays}); false: B always packed
     * @param always       the transposed formulation for every such product with A stored [m,k], whatever the sizes
     * @param l1Step       k rows per L1-sized step in which the 6x4 tile walks a sliver of a row-buffer
     *                     block ({@link #rowBlock}; {@code 0}: one pass over k, as before session 19)
     * @param claimed      threads claim pieces of the output one at a time where the pieces cost the same
     *                     whoever runs them (the transposed formulation, row strips over a shared B; see
     *                     {@link CpuPool#parallelForClaimed}); false: one fixed strip per thread
     * @param lineOffset   where in a 64-byte cache line the packed operands whose vectors the kernels
     *                     load start: 0 (the default: every vector load within one line), another
     *                     multiple of 8 (measurements), or -1: wherever the array's first element is
     *                     (as before session 24; see {@link CacheLines})
     * @param registerTransposes packing an operand stored the other way round transposes square blocks
     *                     of VL x VL floats in registers ({@link Transpose}) where VL is 8 or 16; false:
     *                     one float at a time (as before session 24)
     * @param blockRows    most rows of B per block of the transposed formulation's row buffer ({@link
     *                     #rowBlock}): the block's MR-row tiles share each L1 step of a sliver of A^T,
     *                     their accumulator tiles wait in L1 between steps, and the block's rows stay
     *                     in L2 beside all of A^T
     * @param rowsBlockRows most rows of A per block of a row-buffer product ({@link #sgemmRows}); each
     *                     block streams all of the packed B, so blocks are larger
     * @param rows         products with A stored [m,k] that the transposed formulation does not take run
     *                     as row-buffer products, A's rows the kernel's broadcast side ({@link
     *                     #sgemmRows}); false: A packed or read in place by the blocked algorithm, B in
     *                     K panels (as before session 25)
     * @param inPlace      the 6x4 tile reads the full MR-row tiles of a row-buffer block where they are
     *                     stored (row stride ldb or lda) instead of from a copy at stride {@link
     *                     #ROW_STRIDE}; a partial last tile is still copied (zero rows). false: every
     *                     block copied, as before session 25 (the kernel now takes the stride as an
     *                     argument instead of the constant)
     * @param firstPass    with rows read in place, each block's first sliver walks k in one pass (every
     *                     tile reads its rows from memory in order, which the hardware prefetchers
     *                     follow), the others in L1 steps; the same bits (a step only splits the sum)
     * @param panelRows    most k rows per K panel of a row-buffer product ({@link #rowBlock}): each
     *                     panel's partial sums are merged into C, so fewer rows mean more merges and a
     *                     smaller share of L2 for the shared operand ({@value #TRANSPOSED_KC}: one panel
     *                     for every product of the models)
     * @param chunkRows    most rows of A per chunk of the transposed formulation with the 6x4 tile (rounded up to
     *                     whole NR slivers): each chunk packs its own A^T and meets all of B before the next, so L2
     *                     holds one chunk's A^T beside a block of B instead of all of A^T; the same tiles,
     *                     so the same bits. 0 (the default): all of A at once (other tiles always)
     */
    public record Formulation(boolean transposed, boolean always, int l1Step, boolean claimed, int lineOffset,
                              boolean registerTransposes, int blockRows, int rowsBlockRows, boolean rows, boolean inPlace,
                              boolean firstPass, int panelRows, int chunkRows) {
        /** {@link #l1Step} of the defaults: 128 k rows of a 64-column sliver, 32 KiB, fill a 48 KiB L1 with the accumulator tiles. */
        static final int L1_STEP = 128;
        /**
         * {@link #blockRows} of the defaults: 84 rows (14 tiles of the 6x4 kernel), the claimed pieces
         * that two threads took of a 1280-row B before session 25, and the block of one thread too:
         * with rows read in place, one thread's blocks of 132 rows made the 256 x 1280 x 1280
         * product 1.19-1.23x slower on gpu-host's Xeon (84 rows of 1280 floats, 420 KiB, stay in a
         * 2 MiB L2 beside a 256-row A^T of 1.25 MiB; docs/benchmarks.md, session 25).
         */
        static final int BLOCK_ROWS = 84;
        /**
         * {@link #chunkRows} of the defaults: 0, all of A at once. In chunks of 128 rows (6x4 tile) gpu-host's
         * Xeon ran the 256 x 1280 x 1280 product in 0.980x the time (20 processes, each comparing both) and the
         * 2-thread forward in 0.949-1.002x, but against PyTorch in turn it was no better (duels 1.031x against
         * 1.014x), the 16-thread forward took 1.14x the time, and the 4x2 tile on AVX2 (dev) 1.03-1.11x:
         * kept as a choice, not the default (docs/benchmarks.md, session 28).
         */
        static final int CHUNK_ROWS = 0;
        /** {@link #rowsBlockRows} of the defaults. */
        static final int ROWS_BLOCK_ROWS = 128;

        /** What {@link #JavaSgemm(CpuPool)} uses. */
        public static final Formulation DEFAULT = new Formulation(true, false, L1_STEP, true, 0, true, BLOCK_ROWS, ROWS_BLOCK_ROWS, true, true, true, TRANSPOSED_KC, CHUNK_ROWS);
        /** Never transposed nor row-buffered: the blocked algorithm packs B (and A for the 6x4 tile). */
        public static final Formulation PACKED = new Formulation(false, false, L1_STEP, true, 0, true, BLOCK_ROWS, ROWS_BLOCK_ROWS, false, true, true, TRANSPOSED_KC, CHUNK_ROWS);
        /** The default without k steps (each A^T sliver in one pass over k, as before session 19). */
        public static final Formulation ONE_PASS = new Formulation(true, false, 0, true, 0, true, BLOCK_ROWS, ROWS_BLOCK_ROWS, true, true, true, TRANSPOSED_KC, CHUNK_ROWS);
        /** Transposed for every A . B^T with A stored [m,k], whatever the sizes. */
        public static final Formulation ALWAYS = new Formulation(true, true, L1_STEP, true, 0, true, BLOCK_ROWS, ROWS_BLOCK_ROWS, true, true, true, TRANSPOSED_KC, CHUNK_ROWS);
        /** The default with one fixed strip per thread (as before session 20). */
        public static final Formulation STATIC = new Formulation(true, false, L1_STEP, false, 0, true, BLOCK_ROWS, ROWS_BLOCK_ROWS, true, true, true, TRANSPOSED_KC, CHUNK_ROWS);
        /** The default with packed operands wherever their arrays start (as before session 24). */
        public static final Formulation UNALIGNED = new Formulation(true, false, L1_STEP, true, -1, true, BLOCK_ROWS, ROWS_BLOCK_ROWS, true, true, true, TRANSPOSED_KC, CHUNK_ROWS);
        /** The default with transposing copies one float at a time (as before session 24). */
        public static final Formulation SCALAR_PACKING = new Formulation(true, false, L1_STEP, true, 0, false, BLOCK_ROWS, ROWS_BLOCK_ROWS, true, true, true, TRANSPOSED_KC, CHUNK_ROWS);

        public Formulation {
            if (lineOffset != -1 && !isLineOffset(lineOffset)) {
                throw new IllegalArgumentException("lineOffset is -1 or a multiple of 8 below " + CacheLines.LINE + ", got " + lineOffset);
            }
            if (l1Step < 0 || l1Step > TRANSPOSED_KC) {
                throw new IllegalArgumentException("l1Step is 0 (one pass) or at most " + TRANSPOSED_KC + " k rows, got " + l1Step);
            }
            if (panelRows < 1 || panelRows > TRANSPOSED_KC) {
                throw new IllegalArgumentException("panelRows is 1 to " + TRANSPOSED_KC + ", got " + panelRows);
            }
            if (chunkRows < 0 || chunkRows > MAX_CHUNK_ROWS) {
                throw new IllegalArgumentException("chunkRows is 0 (all of A at once) or at most " + MAX_CHUNK_ROWS + " rows of A, got " + chunkRows);
            }
            if (blockRows < 1 || blockRows > MAX_BLOCK_ROWS || rowsBlockRows < 1 || rowsBlockRows > MAX_BLOCK_ROWS) {
                throw new IllegalArgumentException("blockRows and rowsBlockRows are 1 to " + MAX_BLOCK_ROWS + ", got " + blockRows
                        + " and " + rowsBlockRows);
            }
        }

        /** Whether {@code bytes} is a start within a cache line that packing can take: 0, 8, ..., 56. */
        private static boolean isLineOffset(int bytes) {
            return bytes >= 0 && bytes < CacheLines.LINE && bytes % 8 == 0;
        }

        /**
         * {@code auto} (the default), {@code packed} (never transposed), {@code onepass} (no k steps),
         * {@code always} (transposed for every A . B^T), {@code static} (fixed strips per thread),
         * combined with '+' with any of {@code unaligned} (packed operands wherever their arrays start),
         * {@code scalarpack} (transposing copies one float at a time), {@code lineN} (packed operands
         * starting N bytes into a cache line: N = 0, 8, ..., 56), {@code rows} / {@code norows} (A's rows
         * copied to a row buffer where the transposed formulation is not taken, or not), {@code inplace} /
         * {@code noinplace} (the 6x4 tile reads a row block's full tiles where they are stored, or from a copy),
         * {@code firstpass} / {@code nofirstpass} (in place, a block's first sliver in one pass over k, or in steps),
         * {@code stepN} (L1 steps of N k rows), {@code blockN} (transposed blocks of at most N rows of B),
         * {@code chunkN} (the transposed formulation's A in chunks of at most N rows with the 6x4 tile, 0: at once),
         * {@code rowblockN} (row-buffer blocks of at most N rows of A) and {@code panelN} (row-buffer K
         * panels of at most N k rows).
         */
        public static Formulation parse(String name) {
            // A base (auto, packed, onepass, always, static) and the choices listed above combine
            // with '+': "norows+noinplace+block128" runs session 24's paths.
            Formulation f = null;
            int lineOffset = 0, l1Step = -1, blockRows = -1, rowsBlockRows = -1, panelRows = -1, chunkRows = -1;
            boolean registerTransposes = true;
            Boolean rows = null, inPlace = null, firstPass = null;
            for (String part : name.trim().split("\\+", -1)) {
                String n = part.trim();
                Formulation base = switch (n) {
                    case "auto" -> DEFAULT;
                    case "packed" -> PACKED;
                    case "onepass" -> ONE_PASS;
                    case "always" -> ALWAYS;
                    case "static" -> STATIC;
                    default -> null;
                };
                if (base != null) {
                    if (f != null) throw new IllegalArgumentException("a formulation has one of auto, packed, onepass, always, static, got " + name);
                    f = base;
                } else if (n.equals("unaligned")) {
                    lineOffset = -1;
                } else if (n.equals("scalarpack")) {
                    registerTransposes = false;
                } else if (n.equals("firstpass") || n.equals("nofirstpass")) {
                    firstPass = n.equals("firstpass");
                } else if (n.equals("inplace") || n.equals("noinplace")) {
                    inPlace = n.equals("inplace");
                } else if (n.equals("rows") || n.equals("norows")) {
                    rows = n.equals("rows");
                } else if (n.startsWith("line")) {
                    lineOffset = parseLineOffset(n.substring(4), name);
                } else if (n.startsWith("step")) {
                    l1Step = parseCount(n.substring(4), 1, TRANSPOSED_KC, "stepN takes N = 1 to " + TRANSPOSED_KC + " (k rows per L1 step)", name);
                } else if (n.startsWith("panel")) {
                    panelRows = parseCount(n.substring(5), 1, TRANSPOSED_KC, "panelN takes N = 1 to " + TRANSPOSED_KC
                            + " (k rows per K panel of a row-buffer product)", name);
                } else if (n.startsWith("chunk")) {
                    chunkRows = parseCount(n.substring(5), 0, MAX_CHUNK_ROWS, "chunkN takes N = 0 (all of A at once) to " + MAX_CHUNK_ROWS
                            + " (rows of A per transposed chunk)", name);
                } else if (n.startsWith("rowblock")) {
                    rowsBlockRows = parseCount(n.substring(8), 1, MAX_BLOCK_ROWS, "rowblockN takes N = 1 to " + MAX_BLOCK_ROWS
                            + " (rows of A per row-buffer block)", name);
                } else if (n.startsWith("block")) {
                    blockRows = parseCount(n.substring(5), 1, MAX_BLOCK_ROWS, "blockN takes N = 1 to " + MAX_BLOCK_ROWS + " (rows of B per transposed block)", name);
                } else {
                    throw new IllegalArgumentException("a formulation is auto, packed, onepass, always or static, with any of +unaligned,"
                            + " +lineN, +scalarpack, +rows, +norows, +inplace, +noinplace, +firstpass, +nofirstpass, +stepN, +blockN, +chunkN, +rowblockN, +panelN (alone they modify auto), got " + name);
                }
            }
            if (f == null) f = DEFAULT;
            return new Formulation(f.transposed, f.always, l1Step < 0 ? f.l1Step : l1Step, f.claimed, lineOffset,
                    registerTransposes, blockRows < 0 ? f.blockRows : blockRows,
                    rowsBlockRows < 0 ? f.rowsBlockRows : rowsBlockRows, rows == null ? f.rows : rows,
                    inPlace == null ? f.inPlace : inPlace, firstPass == null ? f.firstPass : firstPass,
                    panelRows < 0 ? f.panelRows : panelRows, chunkRows < 0 ? f.chunkRows : chunkRows);
        }

        /** N of {@code lineN}; {@code name} for the message. */
        private static int parseLineOffset(String digits, String name) {
            try {
                int bytes = Integer.parseInt(digits);
                if (isLineOffset(bytes)) return bytes;
            } catch (NumberFormatException e) {
                // the message below
            }
            throw new IllegalArgumentException("lineN takes N = 0, 8, ..., 56 (bytes into a cache line), got " + name);
        }

        /** N of {@code stepN} or {@code blockN}, within [min, max]; {@code what} and {@code name} for the message. */
        private static int parseCount(String digits, int min, int max, String what, String name) {
            try {
                int count = Integer.parseInt(digits);
                if (count >= min && count <= max) return count;
            } catch (NumberFormatException e) {
                // the message below
            }
            throw new IllegalArgumentException(what + ", got " + name);
        }

        /** The index in {@code buffer} from which a packed operand starts ({@link #lineOffset}). */
        int start(float[] buffer) {
            return lineOffset < 0 ? 0 : CacheLines.start(buffer, lineOffset);
        }

        /** How this differs from {@link #DEFAULT}, for {@link JavaSgemm#name()} (empty for the default). */
        String describe() {
            StringBuilder sb = new StringBuilder();
            if (!transposed && !rows) sb.append(", B always packed");
            else if (!transposed) sb.append(", never transposed");
            else if (!rows) sb.append(", A packed by the blocked algorithm");
            if (transposed && always) sb.append(", transposed for every A.B^T");
            if (l1Step == 0) sb.append(", one pass over k");
            else if (l1Step != L1_STEP) sb.append(", L1 steps of ").append(l1Step).append(" k rows");
            if (blockRows != BLOCK_ROWS) sb.append(", blocks of ").append(blockRows).append(" rows of B");
            if (rowsBlockRows != ROWS_BLOCK_ROWS) sb.append(", blocks of ").append(rowsBlockRows).append(" rows of A");
            if (panelRows != TRANSPOSED_KC) sb.append(", K panels of ").append(panelRows).append(" rows");
            if (chunkRows != CHUNK_ROWS) sb.append(", A in chunks of ").append(chunkRows).append(" rows");
            if (!inPlace) sb.append(", rows copied for the 6x4 tile");
            if (!firstPass) sb.append(", first slivers in L1 steps");
            if (!claimed) sb.append(", fixed strips per thread");
            if (!registerTransposes) sb.append(", scalar transposing copies");
            if (lineOffset < 0) sb.append(", packed operands unaligned");
            else if (lineOffset > 0) sb.append(", packed operands ").append(lineOffset).append(" bytes into a cache line");
            return sb.toString();
        }
    }

    /**
     * The kernel chosen by {@value #KERNEL_PROPERTY} (default 8x2), the transposed formulation as
     * {@value #TRANSPOSED_PROPERTY} says (default on).
     *
     * @throws IllegalArgumentException when that property names no kernel
     */
    public JavaSgemm(CpuPool pool) {
        this(pool, defaultKernel(), DEFAULT_TRANSPOSED);
    }

    /** An explicit kernel, whatever {@value #KERNEL_PROPERTY} says (tests, benchmarks). */
    public JavaSgemm(CpuPool pool, Kernel kernel) {
        this(pool, kernel, true);
    }

    /**
     * An explicit kernel; {@code transposedForm = false} turns off the transposed formulation of
     * {@code A . B^T} products with the larger B ({@link #transposedPays}), so that a benchmark can
     * compare both in one process. Results are the same up to rounding (sums in another order).
     */
    public JavaSgemm(CpuPool pool, Kernel kernel, boolean transposedForm) {
        this(pool, kernel, transposedForm ? Formulation.DEFAULT : Formulation.PACKED);
    }

    /** An explicit kernel and {@link Formulation} (benchmarks compare formulations in one process). */
    public JavaSgemm(CpuPool pool, Kernel kernel, Formulation form) {
        this.pool = Objects.requireNonNull(pool, "pool");
        this.kernel = Objects.requireNonNull(kernel, "kernel");
        this.form = Objects.requireNonNull(form, "form");
    }

    private static Kernel defaultKernel() {
        if (DEFAULT_KERNEL == null) throw new IllegalArgumentException(KERNEL_ERROR);
        return DEFAULT_KERNEL;
    }

    /** The pool this instance splits its products over. */
    public CpuPool pool() {
        return pool;
    }

    /** The register tile this instance uses. */
    public Kernel kernel() {
        return kernel;
    }

    @Override
    public String name() {
        return "java-vector(" + pool.threads() + " threads, " + SPECIES.vectorBitSize() + "-bit, " + kernel.label + " kernel"
                + form.describe() + ")";
    }

    @Override
    public void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                      float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
                      float beta, float[] c, int cOff, int ldc) {
        NaiveSgemm.checkArgs(transA, transB, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        if (NaiveSgemm.handleTrivial(m, n, k, alpha, beta, c, cOff, ldc)) return;

        long flops = 2L * m * n * k;
        Kernel kn = kernel;
        if (form.transposed() && (form.always() ? !transA && transB : transposedPays(transA, transB, m, n))
                && sharable(kn, k, m)) { // the packed A^T is kept for the next call
            sgemmTransposed(kn, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
            return;
        }
        boolean shareB = sharable(kn, k, n);
        if (form.rows() && !transA && shareB) { // B is packed once, kept for the next call
            sgemmRows(kn, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
            return;
        }
        if (pool.threads() == 1 || flops < PARALLEL_MIN_FLOPS) {
            gemmBlock(kn, form, transA, transB, 0, m, 0, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
        } else if (n >= m) {
            // Column strips of whole NR slivers; each thread packs all of A (m x k) and its part of B.
            int nr = kn.nr;
            pool.parallelFor(ceilDiv(n, nr), 1, (u0, u1) -> gemmBlock(kn, form, transA, transB, 0, m,
                    u0 * nr, Math.min(n, u1 * nr), k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc));
        } else if (shareB) {
            // Row strips of whole MR slivers. B (k x n, the smaller operand) is packed once, every
            // thread packing some of its slivers, and shared: each strip needs all of it.
            int mr = kn.mr, nPad = roundUp(n, kn.nr), kcStep = balanced(k, kn.kc);
            Packed bp = packShared(true, kn.nr, transB, b, bOff, ldb, k, kcStep, n);
            forStrips(ceilDiv(m, mr), kn.mc / mr, (u0, u1) -> multiplyPacked(kn, transA, u0 * mr, Math.min(m, u1 * mr),
                    n, k, kcStep, alpha, a, aOff, lda, bp.data, bp.start, nPad, beta, c, cOff, ldc));
        } else {
            // Row strips, B too large to share: each thread packs all of B, strip by strip.
            int mr = kn.mr;
            pool.parallelFor(ceilDiv(m, mr), 1, (u0, u1) -> gemmBlock(kn, form, transA, transB,
                    u0 * mr, Math.min(m, u1 * mr), 0, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc));
        }
    }

    /**
     * C_i[m, n_i] = A[m, k] . B_i[n_i, k]^T for every i (B_i stored [n_i, k] with row stride k, C_i
     * [m, n_i] with row stride n_i, overwritten): several nn.Linear weights applied to one activation,
     * the q, k and v projections of self-attention. Where the transposed formulation takes every
     * product, A^T is packed once for all of them and the threads claim pieces of all the B_i's rows
     * in one loop, so the narrow q and k products no longer run alone on their own 43 tiles (256
     * rows of B with the 6x4 tile), split over every thread. Every tile is computed as a lone
     * {@link #sgemm} of the same product computes it: the same bits. Otherwise, products one by one.
     */
    public void sgemmSharedA(int m, int k, float[] a, int aOff, int lda, float[][] b, int[] bOff, int[] n, float[][] c, int[] cOff) {
        int count = b.length;
        if (bOff.length != count || n.length != count || c.length != count || cOff.length != count) {
            throw new IllegalArgumentException("sgemmSharedA: b, bOff, n, c and cOff need one entry per product, got "
                    + count + ", " + bOff.length + ", " + n.length + ", " + c.length + ", " + cOff.length);
        }
        Kernel kn = kernel;
        boolean shared = form.transposed() && form.claimed() && m > 0 && k > 0 && sharable(kn, k, m);
        for (int i = 0; i < count; i++) {
            NaiveSgemm.checkArgs(false, true, m, n[i], k, a, aOff, lda, b[i], bOff[i], k, c[i], cOff[i], n[i]);
            shared &= n[i] > 0 && transposedPays(false, true, m, n[i]);
        }
        if (!shared) {
            for (int i = 0; i < count; i++) sgemm(false, true, m, n[i], k, 1f, a, aOff, lda, b[i], bOff[i], k, 0f, c[i], cOff[i], n[i]);
            return;
        }
        int mr = kn.mr, kcStep = balanced(k, form.panelRows());
        int tiles = 0;
        for (int i = 0; i < count; i++) tiles += ceilDiv(n[i], mr);
        int piece = pieceUnits(tiles, Math.max(1, form.blockRows() / mr));
        // pieces of at most `piece` MR tiles, none across two products: (product, first row, end row)
        int[] which = new int[tiles], from = new int[tiles], to = new int[tiles];
        int pieces = 0;
        for (int i = 0; i < count; i++) {
            for (int t = 0; t < ceilDiv(n[i], mr); t += piece, pieces++) {
                which[pieces] = i;
                from[pieces] = t * mr;
                to[pieces] = Math.min(n[i], (t + piece) * mr);
            }
        }
        int chunk = chunkRows(kn, m);
        for (int m0 = 0; m0 < m; m0 += chunk) { // in chunks of A's rows (Formulation.chunkRows), as sgemmTransposed
            int rows = Math.min(chunk, m - m0), rowsPad = roundUp(rows, kn.nr), first = m0;
            Packed ap = packShared(pool.threads() > 1, kn.nr, true, a, aOff + m0 * lda, lda, k, kcStep, rows);
            pool.parallelForClaimed(pieces, 1, (p0, p1) -> {
                for (int p = p0; p < p1; p++) {
                    int i = which[p];
                    rowBlock(kn, form, true, form.blockRows(), from[p], to[p], rows, k, kcStep, 1f, b[i], bOff[i], k, ap.data, ap.start,
                            rowsPad, 0f, c[i], cOff[i] + first * n[i], n[i]);
                }
            });
        }
    }

    /**
     * The step that cuts {@code extent} into equal blocks of at most {@code max}: e.g. k = 300 with
     * KC = 256 gives two K panels of 150 rather than 256 + 44 (short panels waste the kernel's
     * setup), m = 256 with MC = 192 two blocks of 128 rather than 192 + 64.
     */
    private static int balanced(int extent, int max) {
        return ceilDiv(extent, ceilDiv(extent, max));
    }

    /**
     * op(B)[0:k, 0:n] packed as one strip of roundUp(n, nr) columns ({@link #packB}'s layout, K
     * panels of kcStep rows) into the calling thread's shared buffer, the slivers split over the
     * pool's threads when {@code parallel}. Every thread then reads it.
     */
    private Packed packShared(boolean parallel, int nr, boolean transB, float[] b, int bOff, int ldb, int k, int kcStep, int n) {
        int nPad = roundUp(n, nr);
        float[] bp = WORKSPACE.get().packShared(k * nPad);
        int bp0 = form.start(bp);
        if (parallel) {
            forStrips(nPad / nr, nPad / nr, (s0, s1) -> packB(nr, transB, b, bOff, ldb, k, kcStep,
                    s0 * nr, Math.min(n, s1 * nr) - s0 * nr, bp, bp0, nPad, s0 * nr, form.registerTransposes()));
        } else {
            packB(nr, transB, b, bOff, ldb, k, kcStep, 0, n, bp, bp0, nPad, 0, form.registerTransposes());
        }
        return new Packed(bp, bp0);
    }

    /** A packed operand: {@code data} from index {@code start} (a cache-line start, see {@link Formulation#start}). */
    private record Packed(float[] data, int start) {}

    /**
     * Whether C = A . B^T with A stored [m,k] and B stored [n,k] (activations times an nn.Linear
     * weight) runs as C^T = B . A^T: whenever B is at least as large as A, so that the larger one is
     * only copied row by row and the smaller one packed, as the usual formulation already does when
     * m > n. Even at m = 1 (A^T padded to a whole NR sliver of zeros) this beat packing B on the
     * dev machine: 2.6x at m = 8 and 1.3x at m = 256 against n = k = 1280. At n = m (the
     * language-perceiver's 256 x 1280 x 256 q and k products) it was 1.13x / 1.35x faster on 1 / 2
     * threads of gpu-host's Xeon (6x4) and as fast on 1 / 2 AVX2 threads of dev (4x2); until
     * session 19 it was taken there only with more threads than column strips.
     */
    static boolean transposedPays(boolean transA, boolean transB, int m, int n) {
        return !transA && transB && n >= m;
    }

    /**
     * C[m,n] = alpha A[m,k] . B[n,k]^T + beta C computed as C^T = B . A^T, for products whose B
     * (typically a weight matrix) is larger than A (the activations of a few hundred positions).
     * The usual formulation packs B, and that scalar transposing copy of every weight costs a
     * large share of the product when m is small; here B's rows are only copied whole (see
     * {@link #rowBlock}), and A is packed, once, shared by all threads: A^T in slivers of
     * NR columns (= NR rows of A), with K panels of up to {@link #TRANSPOSED_KC} rows. The kernel's
     * tiles are C^T tiles (MR rows of B by NR rows of A); each is merged into C transposed.
     * Threads split B's rows (C's columns) in whole MR tiles.
     */
    private void sgemmTransposed(Kernel kn, int m, int n, int k, float alpha, float[] a, int aOff, int lda,
                                 float[] b, int bOff, int ldb, float beta, float[] c, int cOff, int ldc) {
        // [K panels][m/NR slivers][kc][NR]: op(B') = A^T, i.e. A packed as a B "stored [n,k]".
        // In chunks of A's rows (Formulation.chunkRows): C's rows m0.. come from A's rows m0.. alone.
        int chunk = chunkRows(kn, m);
        for (int m0 = 0; m0 < m; m0 += chunk) {
            rowBufferProduct(kn, true, form.blockRows(), n, Math.min(chunk, m - m0), k, alpha, b, bOff, ldb, true,
                    a, aOff + m0 * lda, lda, beta, c, cOff + m0 * ldc, ldc);
        }
    }

    /**
     * Rows of A per chunk of the transposed formulation: {@link Formulation#chunkRows} rounded up to
     * whole NR slivers (so every tile is the one an unchunked product computes) for the 6x4 tile, or all m.
     */
    private int chunkRows(Kernel kn, int m) {
        int chunk = form.chunkRows(), all = Math.max(1, m);
        return chunk == 0 || kn != Kernel.K6X4 ? all : Math.min(all, roundUp(chunk, kn.nr));
    }

    /**
     * C[m,n] = alpha A[m,k] . op(B) + beta C with A stored [m,k], as a row-buffer product ({@link
     * #rowBlock}): op(B) packed once in K panels of up to {@link #TRANSPOSED_KC} rows, shared by all
     * threads, and A's rows read where they are (6x4) or copied block by block (whole rows, {@code
     * System.arraycopy}) instead of packed into MR-row slivers (a scalar interleaving copy for the
     * 6x4 tile). Each tile's
     * accumulators run over the whole panel (k <= 2048: all of k), so C is written once, not once
     * per K panel of the blocked algorithm. Threads split A's rows in whole MR tiles.
     */
    private void sgemmRows(Kernel kn, boolean transB, int m, int n, int k, float alpha, float[] a, int aOff, int lda,
                           float[] b, int bOff, int ldb, float beta, float[] c, int cOff, int ldc) {
        rowBufferProduct(kn, false, form.rowsBlockRows(), m, n, k, alpha, a, aOff, lda, transB, b, bOff, ldb, beta, c, cOff, ldc);
    }

    /**
     * A row-buffer product: {@code rowCount} rows of r (row stride ldr, k floats each) times op(p)
     * (k x pCols; p stored [pCols,k] when transP), op(p) packed once into the calling thread's
     * shared buffer (the slivers split over the threads) and read by all, the rows split over the
     * threads in claimed pieces of up to {@code blockRows} rows (whole MR tiles); see {@link
     * #rowBlock} for the rest and for {@code transposedMerge}.
     */
    private void rowBufferProduct(Kernel kn, boolean transposedMerge, int blockRows, int rowCount, int pCols, int k, float alpha,
                                  float[] r, int rOff, int ldr, boolean transP, float[] p, int pOff, int ldp,
                                  float beta, float[] c, int cOff, int ldc) {
        int mr = kn.mr, pPad = roundUp(pCols, kn.nr), kcStep = balanced(k, form.panelRows());
        boolean inline = pool.threads() == 1 || 2L * rowCount * pCols * k < PARALLEL_MIN_FLOPS;
        Packed packed = packShared(!inline, kn.nr, transP, p, pOff, ldp, k, kcStep, pCols);
        if (inline) {
            rowBlock(kn, form, transposedMerge, blockRows, 0, rowCount, pCols, k, kcStep, alpha, r, rOff, ldr,
                    packed.data, packed.start, pPad, beta, c, cOff, ldc);
        } else {
            forStrips(ceilDiv(rowCount, mr), Math.max(1, blockRows / mr), (u0, u1) -> rowBlock(kn, form, transposedMerge, blockRows,
                    u0 * mr, Math.min(rowCount, u1 * mr), pCols, k, kcStep, alpha, r, rOff, ldr, packed.data, packed.start, pPad,
                    beta, c, cOff, ldc));
        }
    }

    /**
     * Runs {@code body} over {@code [0, units)} (units of MR tiles or NR slivers) on the pool: as
     * pieces the threads claim when the formulation says so, about {@value #PIECES_PER_THREAD} per
     * thread and at most {@code maxUnits} each; else one fixed strip per thread. Claimed pieces
     * cost nothing extra here (their operand is shared and packed, every block packs its own part
     * anyway), and they keep a thread that runs slower from holding up the product: on gpu-host's
     * virtual CPUs the same two-thread product took 121 to 204 GFLOP/s from one run to the next
     * with fixed strips (docs/benchmarks.md, session 20).
     */
    private void forStrips(int units, int maxUnits, CpuPool.RangeBody body) {
        if (form.claimed()) {
            pool.parallelForClaimed(units, pieceUnits(units, maxUnits), body);
        } else {
            pool.parallelFor(units, 1, body);
        }
    }

    /** Units per claimed piece: about {@value #PIECES_PER_THREAD} pieces per thread, at least 1 and at most {@code maxUnits} units each. */
    private int pieceUnits(int units, int maxUnits) {
        return Math.max(1, Math.min(maxUnits, ceilDiv(units, pool.threads() * PIECES_PER_THREAD)));
    }

    /**
     * One strip of a row-buffer product, on the current thread: rows [i0, i1) of {@code r} (row
     * stride ldr) times the packed operand {@code p} ({@code pCols} columns, {@code pPad} padded,
     * {@link #packB}'s layout with K panels of kcStep rows). In the transposed formulation r is B
     * (weight rows), p is A^T, and each tile lands in C transposed: C[0:pCols, i0:i1]^T (+)=
     * B[i0:i1, :] . A^T. In {@link #sgemmRows} r is A, p is B, and tiles land as they are:
     * C[i0:i1, 0:pCols] (+)= A[i0:i1, :] . B.
     *
     * <p>Per block of up to {@code blockRows} rows ({@link Formulation#blockRows} or {@link
     * Formulation#rowsBlockRows}) and K panel: the block's rows are copied to the workspace at
     * stride {@link #ROW_STRIDE} (zero rows up to a whole MR tile; with {@link Formulation#inPlace}
     * only a partial last tile, the 6x4 tile reading the others where they are), then every sliver
     * of p meets every MR-row tile of the block, in L1-sized k steps for the 6x4 tile ({@link
     * Formulation#l1Step}; the tiles' accumulators wait in the workspace between steps; in place,
     * the first sliver in one pass, {@link Formulation#firstPass}), and each tile is merged into C
     * once per K panel.
     */
    private static void rowBlock(Kernel kn, Formulation form, boolean transposedMerge, int blockRows, int i0, int i1, int pCols, int k, int kcStep,
                                 float alpha, float[] r, int rOff, int ldr, float[] p, int p0, int pPad,
                                 float beta, float[] c, int cOff, int ldc) {
        Workspace ws = WORKSPACE.get();
        int mr = kn.mr;
        int mcStep = roundUp(balanced(i1 - i0, blockRows), mr);
        int tileN = kn.nr, tileSize = mr * tileN;
        boolean inPlace = form.inPlace() && kn == Kernel.K6X4;
        // One accumulator tile per MR rows of a block (mcStep is a multiple of MR), for the sliver in hand.
        float[] acc = ws.tiles(mcStep / mr * tileSize);
        int acc0 = form.start(acc);
        for (int ic = i0; ic < i1; ic += mcStep) {
            int mc = Math.min(mcStep, i1 - ic), mcPad = roundUp(mc, mr), full = mc / mr * mr;
            float[] rows = ws.packA(mcPad * ROW_STRIDE);
            for (int pc = 0; pc < k; pc += kcStep) {
                int kc = Math.min(kcStep, k - pc);
                float betaNow = pc == 0 ? beta : 1f;
                for (int row = inPlace ? full : 0; row < mcPad; row++) { // in place: only a partial last tile is copied
                    if (row < mc) System.arraycopy(r, rOff + (ic + row) * ldr + pc, rows, row * ROW_STRIDE, kc);
                    else Arrays.fill(rows, row * ROW_STRIDE, row * ROW_STRIDE + kc, 0f);
                }
                // The 6x4 tile's sliver (kc x NR, the widest: 256-byte rows with 512-bit vectors) is
                // walked in L1-sized steps of up to l1Step k-rows, each step meeting every MR-row tile
                // of the block, whose accumulators go to `acc` between steps: the same FMAs in the
                // same order as one pass over kc, but the step is read from L1 (a whole 1280-row
                // sliver, 320 KiB at NR = 64, came from L2). On gpu-host's Xeon this made the 6x4
                // product 1.10x faster on one thread, the same on two; narrower slivers (8x2, 4x2)
                // ran as fast or faster in one pass (docs/benchmarks.md, session 19).
                int innerStep = form.l1Step() > 0 && kn == Kernel.K6X4 ? balanced(kc, form.l1Step()) : kc;
                for (int jr = 0; jr < pCols; jr += tileN) {
                    int nr = Math.min(tileN, pCols - jr);
                    int pBase = p0 + pc * pPad + jr * kc; // sliver jr / NR of K panel pc
                    // In place, the first sliver of a block meets its rows straight from memory: one pass
                    // over k reads each row in order, a stream the prefetchers follow (see firstPass).
                    int stepNow = inPlace && form.firstPass() && jr == 0 ? kc : innerStep;
                    for (int s0 = 0; s0 < kc; s0 += stepNow) {
                        int kin = Math.min(stepNow, kc - s0);
                        for (int ir = 0, t = acc0; ir < mc; ir += mr, t += tileSize) {
                            int rowAt = ir * ROW_STRIDE + s0, pAt = pBase + s0 * tileN;
                            switch (kn) {
                                case K6X4 -> {
                                    if (ir < full && inPlace) {
                                        microKernel6x4Rows(kin, r, rOff + (ic + ir) * ldr + pc + s0, ldr, p, pAt, acc, t, s0 > 0);
                                    } else {
                                        microKernel6x4Rows(kin, rows, rowAt, ROW_STRIDE, p, pAt, acc, t, s0 > 0);
                                    }
                                }
                                case K8X2 -> microKernelRows(kin, rows, rowAt, p, pAt, acc, t); // kin == kc: one step
                                case K4X2 -> microKernel4x2Rows(kin, rows, rowAt, p, pAt, acc, t);
                            }
                        }
                    }
                    for (int ir = 0, t = acc0; ir < mc; ir += mr, t += tileSize) {
                        int valid = Math.min(mr, mc - ir);
                        if (transposedMerge) {
                            mergeTransposed(valid, nr, tileN, acc, t, c, cOff + jr * ldc + ic + ir, ldc, alpha, betaNow,
                                    form.registerTransposes());
                        } else {
                            mergeTile(valid, nr, mr, tileN, acc, t, c, cOff + (ic + ir) * ldc + jr, ldc, alpha, betaNow);
                        }
                    }
                }
            }
        }
    }

    /** The blocked algorithm for the strip C[i0:i1, j0:j1] (global indices), on the current thread. */
    private static void gemmBlock(Kernel kn, Formulation form, boolean transA, boolean transB, int i0, int i1, int j0, int j1, int k,
                                  float alpha, float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
                                  float beta, float[] c, int cOff, int ldc) {
        int nr = kn.nr, kcStep = balanced(k, kn.kc);
        // The whole K extent of a column strip is packed at once (each B row or column is read in
        // one long run, which the hardware prefetchers follow from DRAM); strips narrow for deep k.
        int ncStep = Math.min(kn.nc, Math.max(nr, MAX_STRIP / k / nr * nr));
        for (int jc = j0; jc < j1; jc += ncStep) {
            int nc = Math.min(ncStep, j1 - jc), ncPad = roundUp(nc, nr);
            float[] bp = WORKSPACE.get().packB(k * ncPad);
            int bp0 = form.start(bp);
            packB(nr, transB, b, bOff, ldb, k, kcStep, jc, nc, bp, bp0, ncPad, 0, form.registerTransposes());
            multiplyPacked(kn, transA, i0, i1, nc, k, kcStep, alpha, a, aOff, lda, bp, bp0, ncPad, beta, c, cOff + jc, ldc);
        }
    }

    /**
     * C[i0:i1, 0:nc] (+)= op(A)[i0:i1, :] . B, B packed as {@link #packB} lays out a strip {@code
     * ncPad} columns wide with K panels of {@code kcStep} rows; C's column 0 at cOff. On the
     * current thread: K panel by K panel, A in blocks of up to MC rows (read in place or packed).
     */
    private static void multiplyPacked(Kernel kn, boolean transA, int i0, int i1, int nc, int k, int kcStep, float alpha,
                                       float[] a, int aOff, int lda, float[] bp, int bp0, int ncPad,
                                       float beta, float[] c, int cOff, int ldc) {
        Workspace ws = WORKSPACE.get();
        int mr = kn.mr;
        int mcStep = roundUp(balanced(i1 - i0, kn.mc), mr);
        for (int pc = 0; pc < k; pc += kcStep) {
            int kc = Math.min(kcStep, k - pc);
            float betaNow = pc == 0 ? beta : 1f; // later K panels accumulate onto the first
            int panel = bp0 + pc * ncPad; // K panel pc of the packed strip
            for (int ic = i0; ic < i1; ic += mcStep) {
                int mc = Math.min(mcStep, i1 - ic);
                float[] ap = ws.packA(roundUp(mc, mr) * kc);
                // 8x2 and A stored [m,k]: no packing, its MR rows are read in place (8 sequential
                // streams); only a partial last sliver is packed, zero-padded, at ap[0].
                int direct = transA || !kn.directA ? 0 : mc / mr * mr;
                if (direct < mc) packA(mr, transA, a, aOff, lda, ic + direct, mc - direct, pc, kc, ap);
                macroKernel(kn, mc, nc, kc, alpha, betaNow, ap, bp, panel, c, cOff + ic * ldc, ldc, ws.tile,
                        direct, a, aOff + ic * lda + pc, lda);
            }
        }
    }

    /**
     * C[0:mc, 0:nc] at cBase (+)= A block [mc x kc] . packed B panel [kc x nc]. The first
     * {@code direct} rows of A are read in place from {@code a} (row i at aDirect + i*lda, 8x2
     * only); the rest come packed from {@code ap}.
     */
    private static void macroKernel(Kernel kn, int mc, int nc, int kc, float alpha, float beta, float[] ap, float[] bp,
                                    int panel, float[] c, int cBase, int ldc, float[] tile,
                                    int direct, float[] a, int aDirect, int lda) {
        int tileM = kn.mr, tileN = kn.nr;
        for (int jr = 0; jr < nc; jr += tileN) {
            int nr = Math.min(tileN, nc - jr);
            int bBase = panel + jr * kc; // sliver jr / NR starts at (jr / NR) * kc * NR
            for (int ir = 0; ir < mc; ir += tileM) {
                int mr = Math.min(tileM, mc - ir);
                int ci = cBase + ir * ldc + jr;
                switch (kn) {
                    case K6X4 -> microKernel6x4(kc, ap, ir * kc, bp, bBase, tile);
                    case K8X2 -> {
                        if (ir < direct) microKernelDirect(kc, a, aDirect + ir * lda, lda, bp, bBase, tile);
                        else microKernel(kc, ap, (ir - direct) * kc, bp, bBase, tile);
                    }
                    case K4X2 -> {
                        if (ir < direct) microKernel4x2Direct(kc, a, aDirect + ir * lda, lda, bp, bBase, tile);
                        else microKernel4x2(kc, ap, (ir - direct) * kc, bp, bBase, tile);
                    }
                }
                mergeTile(mr, nr, tileM, tileN, tile, 0, c, ci, ldc, alpha, beta);
            }
        }
    }

    /**
     * The 8x2 register-blocked kernel: tile[8 x 2VL] = A sliver . B sliver, where A is an 8-row sliver
     * (kc x 8, k-major) and B a 2VL-column sliver (kc x 2VL, row-major). The 16 accumulators are
     * written to the small L1-resident tile buffer rather than to C, which keeps this method small
     * enough for C2 to hold every accumulator in a register (no vector boxing).
     */
    private static void microKernel(int kc, float[] ap, int aBase, float[] bp, int bBase, float[] tile) {
        FloatVector zero = FloatVector.zero(SPECIES);
        FloatVector c00 = zero, c01 = zero;
        FloatVector c10 = zero, c11 = zero;
        FloatVector c20 = zero, c21 = zero;
        FloatVector c30 = zero, c31 = zero;
        FloatVector c40 = zero, c41 = zero;
        FloatVector c50 = zero, c51 = zero;
        FloatVector c60 = zero, c61 = zero;
        FloatVector c70 = zero, c71 = zero;
        for (int p = 0; p < kc; p++) {
            int ai = aBase + p * MR_8X2;
            int bi = bBase + p * NR_8X2;
            FloatVector b0 = FloatVector.fromArray(SPECIES, bp, bi);
            FloatVector b1 = FloatVector.fromArray(SPECIES, bp, bi + 1 * VL);
            FloatVector a;
            a = FloatVector.broadcast(SPECIES, ap[ai + 0]);
            c00 = a.fma(b0, c00); c01 = a.fma(b1, c01);
            a = FloatVector.broadcast(SPECIES, ap[ai + 1]);
            c10 = a.fma(b0, c10); c11 = a.fma(b1, c11);
            a = FloatVector.broadcast(SPECIES, ap[ai + 2]);
            c20 = a.fma(b0, c20); c21 = a.fma(b1, c21);
            a = FloatVector.broadcast(SPECIES, ap[ai + 3]);
            c30 = a.fma(b0, c30); c31 = a.fma(b1, c31);
            a = FloatVector.broadcast(SPECIES, ap[ai + 4]);
            c40 = a.fma(b0, c40); c41 = a.fma(b1, c41);
            a = FloatVector.broadcast(SPECIES, ap[ai + 5]);
            c50 = a.fma(b0, c50); c51 = a.fma(b1, c51);
            a = FloatVector.broadcast(SPECIES, ap[ai + 6]);
            c60 = a.fma(b0, c60); c61 = a.fma(b1, c61);
            a = FloatVector.broadcast(SPECIES, ap[ai + 7]);
            c70 = a.fma(b0, c70); c71 = a.fma(b1, c71);
        }
        c00.intoArray(tile, 0 * NR_8X2 + 0 * VL);
        c01.intoArray(tile, 0 * NR_8X2 + 1 * VL);
        c10.intoArray(tile, 1 * NR_8X2 + 0 * VL);
        c11.intoArray(tile, 1 * NR_8X2 + 1 * VL);
        c20.intoArray(tile, 2 * NR_8X2 + 0 * VL);
        c21.intoArray(tile, 2 * NR_8X2 + 1 * VL);
        c30.intoArray(tile, 3 * NR_8X2 + 0 * VL);
        c31.intoArray(tile, 3 * NR_8X2 + 1 * VL);
        c40.intoArray(tile, 4 * NR_8X2 + 0 * VL);
        c41.intoArray(tile, 4 * NR_8X2 + 1 * VL);
        c50.intoArray(tile, 5 * NR_8X2 + 0 * VL);
        c51.intoArray(tile, 5 * NR_8X2 + 1 * VL);
        c60.intoArray(tile, 6 * NR_8X2 + 0 * VL);
        c61.intoArray(tile, 6 * NR_8X2 + 1 * VL);
        c70.intoArray(tile, 7 * NR_8X2 + 0 * VL);
        c71.intoArray(tile, 7 * NR_8X2 + 1 * VL);
    }

    /**
     * {@link #microKernel} with the A sliver read in place: 8 rows of a row-major A starting at
     * {@code aRow}, row stride {@code lda}, columns 0..kc-1 of the current K panel.
     */
    private static void microKernelDirect(int kc, float[] a, int aRow, int lda, float[] bp, int bBase, float[] tile) {
        int r0 = aRow, r1 = r0 + lda, r2 = r1 + lda, r3 = r2 + lda, r4 = r3 + lda, r5 = r4 + lda, r6 = r5 + lda, r7 = r6 + lda;
        FloatVector zero = FloatVector.zero(SPECIES);
        FloatVector c00 = zero, c01 = zero;
        FloatVector c10 = zero, c11 = zero;
        FloatVector c20 = zero, c21 = zero;
        FloatVector c30 = zero, c31 = zero;
        FloatVector c40 = zero, c41 = zero;
        FloatVector c50 = zero, c51 = zero;
        FloatVector c60 = zero, c61 = zero;
        FloatVector c70 = zero, c71 = zero;
        for (int p = 0; p < kc; p++) {
            int bi = bBase + p * NR_8X2;
            FloatVector b0 = FloatVector.fromArray(SPECIES, bp, bi);
            FloatVector b1 = FloatVector.fromArray(SPECIES, bp, bi + 1 * VL);
            FloatVector v;
            v = FloatVector.broadcast(SPECIES, a[r0 + p]);
            c00 = v.fma(b0, c00); c01 = v.fma(b1, c01);
            v = FloatVector.broadcast(SPECIES, a[r1 + p]);
            c10 = v.fma(b0, c10); c11 = v.fma(b1, c11);
            v = FloatVector.broadcast(SPECIES, a[r2 + p]);
            c20 = v.fma(b0, c20); c21 = v.fma(b1, c21);
            v = FloatVector.broadcast(SPECIES, a[r3 + p]);
            c30 = v.fma(b0, c30); c31 = v.fma(b1, c31);
            v = FloatVector.broadcast(SPECIES, a[r4 + p]);
            c40 = v.fma(b0, c40); c41 = v.fma(b1, c41);
            v = FloatVector.broadcast(SPECIES, a[r5 + p]);
            c50 = v.fma(b0, c50); c51 = v.fma(b1, c51);
            v = FloatVector.broadcast(SPECIES, a[r6 + p]);
            c60 = v.fma(b0, c60); c61 = v.fma(b1, c61);
            v = FloatVector.broadcast(SPECIES, a[r7 + p]);
            c70 = v.fma(b0, c70); c71 = v.fma(b1, c71);
        }
        // Stores written out, not in a helper: passing 16 vectors to a method defeats C2's inlining
        // and boxes them (measured: 5x slower), so this block repeats microKernel's.
        c00.intoArray(tile, 0 * NR_8X2 + 0 * VL);
        c01.intoArray(tile, 0 * NR_8X2 + 1 * VL);
        c10.intoArray(tile, 1 * NR_8X2 + 0 * VL);
        c11.intoArray(tile, 1 * NR_8X2 + 1 * VL);
        c20.intoArray(tile, 2 * NR_8X2 + 0 * VL);
        c21.intoArray(tile, 2 * NR_8X2 + 1 * VL);
        c30.intoArray(tile, 3 * NR_8X2 + 0 * VL);
        c31.intoArray(tile, 3 * NR_8X2 + 1 * VL);
        c40.intoArray(tile, 4 * NR_8X2 + 0 * VL);
        c41.intoArray(tile, 4 * NR_8X2 + 1 * VL);
        c50.intoArray(tile, 5 * NR_8X2 + 0 * VL);
        c51.intoArray(tile, 5 * NR_8X2 + 1 * VL);
        c60.intoArray(tile, 6 * NR_8X2 + 0 * VL);
        c61.intoArray(tile, 6 * NR_8X2 + 1 * VL);
        c70.intoArray(tile, 7 * NR_8X2 + 0 * VL);
        c71.intoArray(tile, 7 * NR_8X2 + 1 * VL);
    }

    /**
     * The 6x4 register-blocked kernel: tile[6 x 4VL] = A sliver . B sliver, where A is a 6-row sliver
     * (kc x 6, k-major) and B a 4VL-column sliver (kc x 4VL, row-major). Per k step: 4 vector loads
     * of B, 6 broadcasts of scalars just loaded from A, 24 independent FMAs into 24 accumulators.
     * Written out like {@link #microKernel} and for the same reasons (a small method, all
     * accumulators in locals, affine indices so C2 hoists the bounds checks out of the loop).
     */
    private static void microKernel6x4(int kc, float[] ap, int aBase, float[] bp, int bBase, float[] tile) {
        FloatVector zero = FloatVector.zero(SPECIES);
        FloatVector c00 = zero, c01 = zero, c02 = zero, c03 = zero;
        FloatVector c10 = zero, c11 = zero, c12 = zero, c13 = zero;
        FloatVector c20 = zero, c21 = zero, c22 = zero, c23 = zero;
        FloatVector c30 = zero, c31 = zero, c32 = zero, c33 = zero;
        FloatVector c40 = zero, c41 = zero, c42 = zero, c43 = zero;
        FloatVector c50 = zero, c51 = zero, c52 = zero, c53 = zero;
        for (int p = 0; p < kc; p++) {
            int ai = aBase + p * MR_6X4;
            int bi = bBase + p * NR_6X4;
            FloatVector b0 = FloatVector.fromArray(SPECIES, bp, bi);
            FloatVector b1 = FloatVector.fromArray(SPECIES, bp, bi + 1 * VL);
            FloatVector b2 = FloatVector.fromArray(SPECIES, bp, bi + 2 * VL);
            FloatVector b3 = FloatVector.fromArray(SPECIES, bp, bi + 3 * VL);
            FloatVector a;
            a = FloatVector.broadcast(SPECIES, ap[ai + 0]);
            c00 = a.fma(b0, c00); c01 = a.fma(b1, c01); c02 = a.fma(b2, c02); c03 = a.fma(b3, c03);
            a = FloatVector.broadcast(SPECIES, ap[ai + 1]);
            c10 = a.fma(b0, c10); c11 = a.fma(b1, c11); c12 = a.fma(b2, c12); c13 = a.fma(b3, c13);
            a = FloatVector.broadcast(SPECIES, ap[ai + 2]);
            c20 = a.fma(b0, c20); c21 = a.fma(b1, c21); c22 = a.fma(b2, c22); c23 = a.fma(b3, c23);
            a = FloatVector.broadcast(SPECIES, ap[ai + 3]);
            c30 = a.fma(b0, c30); c31 = a.fma(b1, c31); c32 = a.fma(b2, c32); c33 = a.fma(b3, c33);
            a = FloatVector.broadcast(SPECIES, ap[ai + 4]);
            c40 = a.fma(b0, c40); c41 = a.fma(b1, c41); c42 = a.fma(b2, c42); c43 = a.fma(b3, c43);
            a = FloatVector.broadcast(SPECIES, ap[ai + 5]);
            c50 = a.fma(b0, c50); c51 = a.fma(b1, c51); c52 = a.fma(b2, c52); c53 = a.fma(b3, c53);
        }
        c00.intoArray(tile, 0 * NR_6X4 + 0 * VL);
        c01.intoArray(tile, 0 * NR_6X4 + 1 * VL);
        c02.intoArray(tile, 0 * NR_6X4 + 2 * VL);
        c03.intoArray(tile, 0 * NR_6X4 + 3 * VL);
        c10.intoArray(tile, 1 * NR_6X4 + 0 * VL);
        c11.intoArray(tile, 1 * NR_6X4 + 1 * VL);
        c12.intoArray(tile, 1 * NR_6X4 + 2 * VL);
        c13.intoArray(tile, 1 * NR_6X4 + 3 * VL);
        c20.intoArray(tile, 2 * NR_6X4 + 0 * VL);
        c21.intoArray(tile, 2 * NR_6X4 + 1 * VL);
        c22.intoArray(tile, 2 * NR_6X4 + 2 * VL);
        c23.intoArray(tile, 2 * NR_6X4 + 3 * VL);
        c30.intoArray(tile, 3 * NR_6X4 + 0 * VL);
        c31.intoArray(tile, 3 * NR_6X4 + 1 * VL);
        c32.intoArray(tile, 3 * NR_6X4 + 2 * VL);
        c33.intoArray(tile, 3 * NR_6X4 + 3 * VL);
        c40.intoArray(tile, 4 * NR_6X4 + 0 * VL);
        c41.intoArray(tile, 4 * NR_6X4 + 1 * VL);
        c42.intoArray(tile, 4 * NR_6X4 + 2 * VL);
        c43.intoArray(tile, 4 * NR_6X4 + 3 * VL);
        c50.intoArray(tile, 5 * NR_6X4 + 0 * VL);
        c51.intoArray(tile, 5 * NR_6X4 + 1 * VL);
        c52.intoArray(tile, 5 * NR_6X4 + 2 * VL);
        c53.intoArray(tile, 5 * NR_6X4 + 3 * VL);
    }

    /**
     * {@link #microKernel} with the A sliver as 8 rows of the transposed formulation's row buffer:
     * row r of the tile at a[aRow + r * ROW_STRIDE + p] for p in [0, kc). The fixed stride makes
     * the 8 reads displacements of one index. The tile goes to {@code acc} from {@code accOff}.
     */
    private static void microKernelRows(int kc, float[] a, int aRow, float[] bp, int bBase, float[] acc, int accOff) {
        final int s = ROW_STRIDE;
        FloatVector zero = FloatVector.zero(SPECIES);
        FloatVector c00 = zero;
        FloatVector c01 = zero;
        FloatVector c10 = zero;
        FloatVector c11 = zero;
        FloatVector c20 = zero;
        FloatVector c21 = zero;
        FloatVector c30 = zero;
        FloatVector c31 = zero;
        FloatVector c40 = zero;
        FloatVector c41 = zero;
        FloatVector c50 = zero;
        FloatVector c51 = zero;
        FloatVector c60 = zero;
        FloatVector c61 = zero;
        FloatVector c70 = zero;
        FloatVector c71 = zero;
        for (int p = 0; p < kc; p++) {
            int ai = aRow + p;
            int bi = bBase + p * NR_8X2;
            FloatVector b0 = FloatVector.fromArray(SPECIES, bp, bi);
            FloatVector b1 = FloatVector.fromArray(SPECIES, bp, bi + 1 * VL);
            FloatVector v;
            v = FloatVector.broadcast(SPECIES, a[ai]);
            c00 = v.fma(b0, c00); c01 = v.fma(b1, c01);
            v = FloatVector.broadcast(SPECIES, a[ai + s]);
            c10 = v.fma(b0, c10); c11 = v.fma(b1, c11);
            v = FloatVector.broadcast(SPECIES, a[ai + 2 * s]);
            c20 = v.fma(b0, c20); c21 = v.fma(b1, c21);
            v = FloatVector.broadcast(SPECIES, a[ai + 3 * s]);
            c30 = v.fma(b0, c30); c31 = v.fma(b1, c31);
            v = FloatVector.broadcast(SPECIES, a[ai + 4 * s]);
            c40 = v.fma(b0, c40); c41 = v.fma(b1, c41);
            v = FloatVector.broadcast(SPECIES, a[ai + 5 * s]);
            c50 = v.fma(b0, c50); c51 = v.fma(b1, c51);
            v = FloatVector.broadcast(SPECIES, a[ai + 6 * s]);
            c60 = v.fma(b0, c60); c61 = v.fma(b1, c61);
            v = FloatVector.broadcast(SPECIES, a[ai + 7 * s]);
            c70 = v.fma(b0, c70); c71 = v.fma(b1, c71);
        }
        // Stores written out, as in microKernel (a helper taking 16 vectors would box them).
        c00.intoArray(acc, accOff + 0 * NR_8X2 + 0 * VL);
        c01.intoArray(acc, accOff + 0 * NR_8X2 + 1 * VL);
        c10.intoArray(acc, accOff + 1 * NR_8X2 + 0 * VL);
        c11.intoArray(acc, accOff + 1 * NR_8X2 + 1 * VL);
        c20.intoArray(acc, accOff + 2 * NR_8X2 + 0 * VL);
        c21.intoArray(acc, accOff + 2 * NR_8X2 + 1 * VL);
        c30.intoArray(acc, accOff + 3 * NR_8X2 + 0 * VL);
        c31.intoArray(acc, accOff + 3 * NR_8X2 + 1 * VL);
        c40.intoArray(acc, accOff + 4 * NR_8X2 + 0 * VL);
        c41.intoArray(acc, accOff + 4 * NR_8X2 + 1 * VL);
        c50.intoArray(acc, accOff + 5 * NR_8X2 + 0 * VL);
        c51.intoArray(acc, accOff + 5 * NR_8X2 + 1 * VL);
        c60.intoArray(acc, accOff + 6 * NR_8X2 + 0 * VL);
        c61.intoArray(acc, accOff + 6 * NR_8X2 + 1 * VL);
        c70.intoArray(acc, accOff + 7 * NR_8X2 + 0 * VL);
        c71.intoArray(acc, accOff + 7 * NR_8X2 + 1 * VL);
    }

    /**
     * The 4x2 register-blocked kernel: tile[4 x 2VL] = A sliver . B sliver (A: kc x 4, k-major; B:
     * kc x 2VL, row-major). 8 accumulators, 2 B vectors and the broadcasts fit the 16 registers of
     * AVX2, where the 8x2 tile spills accumulators to the stack: each spilled one is a loop-carried
     * store/load chain, and the 8x2 kernel ran at about half the FMA peak (docs/benchmarks.md).
     */
    private static void microKernel4x2(int kc, float[] ap, int aBase, float[] bp, int bBase, float[] tile) {
        FloatVector zero = FloatVector.zero(SPECIES);
        FloatVector c00 = zero;
        FloatVector c01 = zero;
        FloatVector c10 = zero;
        FloatVector c11 = zero;
        FloatVector c20 = zero;
        FloatVector c21 = zero;
        FloatVector c30 = zero;
        FloatVector c31 = zero;
        for (int p = 0; p < kc; p++) {
            int ai = aBase + p * MR_4X2;
            int bi = bBase + p * NR_4X2;
            FloatVector b0 = FloatVector.fromArray(SPECIES, bp, bi);
            FloatVector b1 = FloatVector.fromArray(SPECIES, bp, bi + 1 * VL);
            FloatVector v;
            v = FloatVector.broadcast(SPECIES, ap[ai + 0]);
            c00 = v.fma(b0, c00); c01 = v.fma(b1, c01);
            v = FloatVector.broadcast(SPECIES, ap[ai + 1]);
            c10 = v.fma(b0, c10); c11 = v.fma(b1, c11);
            v = FloatVector.broadcast(SPECIES, ap[ai + 2]);
            c20 = v.fma(b0, c20); c21 = v.fma(b1, c21);
            v = FloatVector.broadcast(SPECIES, ap[ai + 3]);
            c30 = v.fma(b0, c30); c31 = v.fma(b1, c31);
        }
        c00.intoArray(tile, 0 * NR_4X2 + 0 * VL);
        c01.intoArray(tile, 0 * NR_4X2 + 1 * VL);
        c10.intoArray(tile, 1 * NR_4X2 + 0 * VL);
        c11.intoArray(tile, 1 * NR_4X2 + 1 * VL);
        c20.intoArray(tile, 2 * NR_4X2 + 0 * VL);
        c21.intoArray(tile, 2 * NR_4X2 + 1 * VL);
        c30.intoArray(tile, 3 * NR_4X2 + 0 * VL);
        c31.intoArray(tile, 3 * NR_4X2 + 1 * VL);
    }

    /** {@link #microKernel4x2} with the A sliver read in place: 4 rows of a row-major A from {@code aRow}, stride {@code lda}. */
    private static void microKernel4x2Direct(int kc, float[] a, int aRow, int lda, float[] bp, int bBase, float[] tile) {
        int r0 = aRow, r1 = r0 + lda, r2 = r1 + lda, r3 = r2 + lda;
        FloatVector zero = FloatVector.zero(SPECIES);
        FloatVector c00 = zero;
        FloatVector c01 = zero;
        FloatVector c10 = zero;
        FloatVector c11 = zero;
        FloatVector c20 = zero;
        FloatVector c21 = zero;
        FloatVector c30 = zero;
        FloatVector c31 = zero;
        for (int p = 0; p < kc; p++) {
            int bi = bBase + p * NR_4X2;
            FloatVector b0 = FloatVector.fromArray(SPECIES, bp, bi);
            FloatVector b1 = FloatVector.fromArray(SPECIES, bp, bi + 1 * VL);
            FloatVector v;
            v = FloatVector.broadcast(SPECIES, a[r0 + p]);
            c00 = v.fma(b0, c00); c01 = v.fma(b1, c01);
            v = FloatVector.broadcast(SPECIES, a[r1 + p]);
            c10 = v.fma(b0, c10); c11 = v.fma(b1, c11);
            v = FloatVector.broadcast(SPECIES, a[r2 + p]);
            c20 = v.fma(b0, c20); c21 = v.fma(b1, c21);
            v = FloatVector.broadcast(SPECIES, a[r3 + p]);
            c30 = v.fma(b0, c30); c31 = v.fma(b1, c31);
        }
        c00.intoArray(tile, 0 * NR_4X2 + 0 * VL);
        c01.intoArray(tile, 0 * NR_4X2 + 1 * VL);
        c10.intoArray(tile, 1 * NR_4X2 + 0 * VL);
        c11.intoArray(tile, 1 * NR_4X2 + 1 * VL);
        c20.intoArray(tile, 2 * NR_4X2 + 0 * VL);
        c21.intoArray(tile, 2 * NR_4X2 + 1 * VL);
        c30.intoArray(tile, 3 * NR_4X2 + 0 * VL);
        c31.intoArray(tile, 3 * NR_4X2 + 1 * VL);
    }

    /**
     * {@link #microKernel4x2} on 4 rows of the transposed formulation's row buffer (row r at
     * a[aRow + r * ROW_STRIDE + p]); the tile goes to {@code acc} from {@code accOff}.
     */
    private static void microKernel4x2Rows(int kc, float[] a, int aRow, float[] bp, int bBase, float[] acc, int accOff) {
        final int s = ROW_STRIDE;
        FloatVector zero = FloatVector.zero(SPECIES);
        FloatVector c00 = zero;
        FloatVector c01 = zero;
        FloatVector c10 = zero;
        FloatVector c11 = zero;
        FloatVector c20 = zero;
        FloatVector c21 = zero;
        FloatVector c30 = zero;
        FloatVector c31 = zero;
        for (int p = 0; p < kc; p++) {
            int ai = aRow + p;
            int bi = bBase + p * NR_4X2;
            FloatVector b0 = FloatVector.fromArray(SPECIES, bp, bi);
            FloatVector b1 = FloatVector.fromArray(SPECIES, bp, bi + 1 * VL);
            FloatVector v;
            v = FloatVector.broadcast(SPECIES, a[ai]);
            c00 = v.fma(b0, c00); c01 = v.fma(b1, c01);
            v = FloatVector.broadcast(SPECIES, a[ai + 1 * s]);
            c10 = v.fma(b0, c10); c11 = v.fma(b1, c11);
            v = FloatVector.broadcast(SPECIES, a[ai + 2 * s]);
            c20 = v.fma(b0, c20); c21 = v.fma(b1, c21);
            v = FloatVector.broadcast(SPECIES, a[ai + 3 * s]);
            c30 = v.fma(b0, c30); c31 = v.fma(b1, c31);
        }
        c00.intoArray(acc, accOff + 0 * NR_4X2 + 0 * VL);
        c01.intoArray(acc, accOff + 0 * NR_4X2 + 1 * VL);
        c10.intoArray(acc, accOff + 1 * NR_4X2 + 0 * VL);
        c11.intoArray(acc, accOff + 1 * NR_4X2 + 1 * VL);
        c20.intoArray(acc, accOff + 2 * NR_4X2 + 0 * VL);
        c21.intoArray(acc, accOff + 2 * NR_4X2 + 1 * VL);
        c30.intoArray(acc, accOff + 3 * NR_4X2 + 0 * VL);
        c31.intoArray(acc, accOff + 3 * NR_4X2 + 1 * VL);
    }

    /**
     * {@link #microKernel6x4} with the A sliver as 6 rows of a row-buffer product: row r of the tile
     * at a[aRow + r * s + p] for p in [0, kc), where they are stored (s = ldb or lda) or in the
     * copy at s = {@link #ROW_STRIDE}. The tile goes to {@code acc} from {@code accOff}, added to
     * what is there when {@code add} (a later k step).
     */
    private static void microKernel6x4Rows(int kc, float[] a, int aRow, int s, float[] bp, int bBase, float[] acc, int accOff, boolean add) {
        FloatVector zero = FloatVector.zero(SPECIES);
        FloatVector c00 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 0 * NR_6X4 + 0 * VL) : zero;
        FloatVector c01 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 0 * NR_6X4 + 1 * VL) : zero;
        FloatVector c02 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 0 * NR_6X4 + 2 * VL) : zero;
        FloatVector c03 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 0 * NR_6X4 + 3 * VL) : zero;
        FloatVector c10 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 1 * NR_6X4 + 0 * VL) : zero;
        FloatVector c11 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 1 * NR_6X4 + 1 * VL) : zero;
        FloatVector c12 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 1 * NR_6X4 + 2 * VL) : zero;
        FloatVector c13 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 1 * NR_6X4 + 3 * VL) : zero;
        FloatVector c20 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 2 * NR_6X4 + 0 * VL) : zero;
        FloatVector c21 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 2 * NR_6X4 + 1 * VL) : zero;
        FloatVector c22 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 2 * NR_6X4 + 2 * VL) : zero;
        FloatVector c23 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 2 * NR_6X4 + 3 * VL) : zero;
        FloatVector c30 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 3 * NR_6X4 + 0 * VL) : zero;
        FloatVector c31 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 3 * NR_6X4 + 1 * VL) : zero;
        FloatVector c32 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 3 * NR_6X4 + 2 * VL) : zero;
        FloatVector c33 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 3 * NR_6X4 + 3 * VL) : zero;
        FloatVector c40 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 4 * NR_6X4 + 0 * VL) : zero;
        FloatVector c41 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 4 * NR_6X4 + 1 * VL) : zero;
        FloatVector c42 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 4 * NR_6X4 + 2 * VL) : zero;
        FloatVector c43 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 4 * NR_6X4 + 3 * VL) : zero;
        FloatVector c50 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 5 * NR_6X4 + 0 * VL) : zero;
        FloatVector c51 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 5 * NR_6X4 + 1 * VL) : zero;
        FloatVector c52 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 5 * NR_6X4 + 2 * VL) : zero;
        FloatVector c53 = add ? FloatVector.fromArray(SPECIES, acc, accOff + 5 * NR_6X4 + 3 * VL) : zero;
        for (int p = 0; p < kc; p++) {
            int ai = aRow + p;
            int bi = bBase + p * NR_6X4;
            FloatVector b0 = FloatVector.fromArray(SPECIES, bp, bi);
            FloatVector b1 = FloatVector.fromArray(SPECIES, bp, bi + 1 * VL);
            FloatVector b2 = FloatVector.fromArray(SPECIES, bp, bi + 2 * VL);
            FloatVector b3 = FloatVector.fromArray(SPECIES, bp, bi + 3 * VL);
            FloatVector v;
            v = FloatVector.broadcast(SPECIES, a[ai]);
            c00 = v.fma(b0, c00); c01 = v.fma(b1, c01); c02 = v.fma(b2, c02); c03 = v.fma(b3, c03);
            v = FloatVector.broadcast(SPECIES, a[ai + s]);
            c10 = v.fma(b0, c10); c11 = v.fma(b1, c11); c12 = v.fma(b2, c12); c13 = v.fma(b3, c13);
            v = FloatVector.broadcast(SPECIES, a[ai + 2 * s]);
            c20 = v.fma(b0, c20); c21 = v.fma(b1, c21); c22 = v.fma(b2, c22); c23 = v.fma(b3, c23);
            v = FloatVector.broadcast(SPECIES, a[ai + 3 * s]);
            c30 = v.fma(b0, c30); c31 = v.fma(b1, c31); c32 = v.fma(b2, c32); c33 = v.fma(b3, c33);
            v = FloatVector.broadcast(SPECIES, a[ai + 4 * s]);
            c40 = v.fma(b0, c40); c41 = v.fma(b1, c41); c42 = v.fma(b2, c42); c43 = v.fma(b3, c43);
            v = FloatVector.broadcast(SPECIES, a[ai + 5 * s]);
            c50 = v.fma(b0, c50); c51 = v.fma(b1, c51); c52 = v.fma(b2, c52); c53 = v.fma(b3, c53);
        }
        // Stores written out, as in microKernel6x4.
        c00.intoArray(acc, accOff + 0 * NR_6X4 + 0 * VL);
        c01.intoArray(acc, accOff + 0 * NR_6X4 + 1 * VL);
        c02.intoArray(acc, accOff + 0 * NR_6X4 + 2 * VL);
        c03.intoArray(acc, accOff + 0 * NR_6X4 + 3 * VL);
        c10.intoArray(acc, accOff + 1 * NR_6X4 + 0 * VL);
        c11.intoArray(acc, accOff + 1 * NR_6X4 + 1 * VL);
        c12.intoArray(acc, accOff + 1 * NR_6X4 + 2 * VL);
        c13.intoArray(acc, accOff + 1 * NR_6X4 + 3 * VL);
        c20.intoArray(acc, accOff + 2 * NR_6X4 + 0 * VL);
        c21.intoArray(acc, accOff + 2 * NR_6X4 + 1 * VL);
        c22.intoArray(acc, accOff + 2 * NR_6X4 + 2 * VL);
        c23.intoArray(acc, accOff + 2 * NR_6X4 + 3 * VL);
        c30.intoArray(acc, accOff + 3 * NR_6X4 + 0 * VL);
        c31.intoArray(acc, accOff + 3 * NR_6X4 + 1 * VL);
        c32.intoArray(acc, accOff + 3 * NR_6X4 + 2 * VL);
        c33.intoArray(acc, accOff + 3 * NR_6X4 + 3 * VL);
        c40.intoArray(acc, accOff + 4 * NR_6X4 + 0 * VL);
        c41.intoArray(acc, accOff + 4 * NR_6X4 + 1 * VL);
        c42.intoArray(acc, accOff + 4 * NR_6X4 + 2 * VL);
        c43.intoArray(acc, accOff + 4 * NR_6X4 + 3 * VL);
        c50.intoArray(acc, accOff + 5 * NR_6X4 + 0 * VL);
        c51.intoArray(acc, accOff + 5 * NR_6X4 + 1 * VL);
        c52.intoArray(acc, accOff + 5 * NR_6X4 + 2 * VL);
        c53.intoArray(acc, accOff + 5 * NR_6X4 + 3 * VL);
    }

    /**
     * C[ci.., mr x nr, row stride ldc] = alpha * tile + beta * C (C is not read when beta == 0) for
     * the valid mr x nr part of a tileM x tileN tile at {@code tile[tileOff..]}. A full tile goes
     * vector by vector; a tail tile (its padded lanes hold zero products) float by float.
     */
    private static void mergeTile(int mr, int nr, int tileM, int tileN, float[] tile, int tileOff, float[] c, int ci, int ldc,
                                  float alpha, float beta) {
        if (mr == tileM && nr == tileN) {
            FloatVector alphaV = FloatVector.broadcast(SPECIES, alpha);
            FloatVector betaV = FloatVector.broadcast(SPECIES, beta);
            for (int r = 0; r < tileM; r++) {
                for (int j = 0; j < tileN; j += VL) {
                    int idx = ci + r * ldc + j;
                    FloatVector v = FloatVector.fromArray(SPECIES, tile, tileOff + r * tileN + j).mul(alphaV);
                    if (beta != 0f) v = FloatVector.fromArray(SPECIES, c, idx).fma(betaV, v);
                    v.intoArray(c, idx);
                }
            }
            return;
        }
        for (int r = 0; r < mr; r++) {
            int row = ci + r * ldc;
            for (int j = 0; j < nr; j++) {
                float old = beta == 0f ? 0f : beta * c[row + j];
                c[row + j] = alpha * tile[tileOff + r * tileN + j] + old;
            }
        }
    }

    /**
     * C[ci + j*ldc + r] = alpha * tile[r][j] + beta * C (C not read when beta == 0) for the valid
     * mr x nr part of a tile with rows of tileN floats: the tile merged transposed. Full tiles
     * gather each column into a vector. On dev (1 and 2 threads) the transposed 256 x 1280 x 1280
     * product ran 1.12x faster in a timing-only build that skipped the merge than with the scalar
     * loop below, and the gathers made it 1.04-1.05x faster than that loop. Partial tiles take the
     * scalar loop.
     */
    private static void mergeTransposed(int mr, int nr, int tileN, float[] tile, int tileOff, float[] c, int ci, int ldc, float alpha,
                                        float beta, boolean registerTransposes) {
        if (mr == MR_4X2 && tileN == NR_4X2) {
            int j4 = 0;
            if (registerTransposes) {
                for (; j4 + 4 <= nr; j4 += 4) mergeColumns4(tile, tileOff + j4, c, ci + j4 * ldc, ldc, alpha, beta);
            }
            for (int j = j4; j < nr; j++) {
                int row = ci + j * ldc;
                FloatVector v = FloatVector.fromArray(FOUR, tile, tileOff + j, COLUMN_4X2, 0).mul(alpha);
                if (beta != 0f) v = v.add(FloatVector.fromArray(FOUR, c, row).mul(beta));
                v.intoArray(c, row);
            }
            return;
        }
        int j0 = 0;
        if (mr == MR_6X4 && tileN == NR_6X4 && registerTransposes) {
            // 8 columns at a time through an 8 x 8 register transpose (rows 6 and 7 zero) instead
            // of 8 masked gathers: on the Xeon gathers cost far more than the 24 lane selections.
            for (; j0 + 8 <= nr; j0 += 8) mergeColumns6(tile, tileOff + j0, c, ci + j0 * ldc, ldc, alpha, beta);
        }
        if (mr == MR_8X2 && tileN == NR_8X2 || mr == MR_6X4 && tileN == NR_6X4) {
            // A full tile: column j (one float per B row) gathered into one 8-lane vector (6 lanes
            // for 6x4) and stored as C row j's consecutive floats. The same two roundings as below.
            int[] column = mr == MR_8X2 ? COLUMN_8X2 : COLUMN_6X4;
            VectorMask<Float> rows = mr == MR_8X2 ? EIGHT.maskAll(true) : SIX_OF_EIGHT;
            for (int j = j0; j < nr; j++) {
                int row = ci + j * ldc;
                FloatVector v = FloatVector.fromArray(EIGHT, tile, tileOff + j, column, 0, rows).mul(alpha);
                if (beta != 0f) v = v.add(FloatVector.fromArray(EIGHT, c, row, rows).mul(beta));
                v.intoArray(c, row, rows);
            }
            return;
        }
        for (int j = 0; j < nr; j++) {
            int row = ci + j * ldc;
            for (int r = 0; r < mr; r++) {
                float old = beta == 0f ? 0f : beta * c[row + r];
                c[row + r] = alpha * tile[tileOff + r * tileN + j] + old;
            }
        }
    }

    /**
     * {@link #mergeTransposed} of 8 columns of a full 6x4 tile (6 rows of {@code NR_6X4} floats from
     * {@code t}): the 6 x 8 block, with two zero rows, transposed in registers as {@link
     * Transpose#block8} does, and each column stored as C row j's 6 consecutive floats (row j at
     * {@code ci + j * ldc}); the same two roundings as the gathers.
     */
    private static void mergeColumns6(float[] tile, int t, float[] c, int ci, int ldc, float alpha, float beta) {
        FloatVector r0 = FloatVector.fromArray(EIGHT, tile, t);
        FloatVector r1 = FloatVector.fromArray(EIGHT, tile, t + NR_6X4);
        FloatVector r2 = FloatVector.fromArray(EIGHT, tile, t + 2 * NR_6X4);
        FloatVector r3 = FloatVector.fromArray(EIGHT, tile, t + 3 * NR_6X4);
        FloatVector r4 = FloatVector.fromArray(EIGHT, tile, t + 4 * NR_6X4);
        FloatVector r5 = FloatVector.fromArray(EIGHT, tile, t + 5 * NR_6X4);
        FloatVector r6 = FloatVector.zero(EIGHT), r7 = r6, x;
        // chunks of 4
        x = Transpose.LO8_4.selectFrom(r0, r4); r4 = Transpose.HI8_4.selectFrom(r0, r4); r0 = x;
        x = Transpose.LO8_4.selectFrom(r1, r5); r5 = Transpose.HI8_4.selectFrom(r1, r5); r1 = x;
        x = Transpose.LO8_4.selectFrom(r2, r6); r6 = Transpose.HI8_4.selectFrom(r2, r6); r2 = x;
        x = Transpose.LO8_4.selectFrom(r3, r7); r7 = Transpose.HI8_4.selectFrom(r3, r7); r3 = x;
        // chunks of 2
        x = Transpose.LO8_2.selectFrom(r0, r2); r2 = Transpose.HI8_2.selectFrom(r0, r2); r0 = x;
        x = Transpose.LO8_2.selectFrom(r1, r3); r3 = Transpose.HI8_2.selectFrom(r1, r3); r1 = x;
        x = Transpose.LO8_2.selectFrom(r4, r6); r6 = Transpose.HI8_2.selectFrom(r4, r6); r4 = x;
        x = Transpose.LO8_2.selectFrom(r5, r7); r7 = Transpose.HI8_2.selectFrom(r5, r7); r5 = x;
        // chunks of 1
        x = Transpose.LO8_1.selectFrom(r0, r1); r1 = Transpose.HI8_1.selectFrom(r0, r1); r0 = x;
        x = Transpose.LO8_1.selectFrom(r2, r3); r3 = Transpose.HI8_1.selectFrom(r2, r3); r2 = x;
        x = Transpose.LO8_1.selectFrom(r4, r5); r5 = Transpose.HI8_1.selectFrom(r4, r5); r4 = x;
        x = Transpose.LO8_1.selectFrom(r6, r7); r7 = Transpose.HI8_1.selectFrom(r6, r7); r6 = x;
        storeColumn6(r0, c, ci, alpha, beta);
        storeColumn6(r1, c, ci + ldc, alpha, beta);
        storeColumn6(r2, c, ci + 2 * ldc, alpha, beta);
        storeColumn6(r3, c, ci + 3 * ldc, alpha, beta);
        storeColumn6(r4, c, ci + 4 * ldc, alpha, beta);
        storeColumn6(r5, c, ci + 5 * ldc, alpha, beta);
        storeColumn6(r6, c, ci + 6 * ldc, alpha, beta);
        storeColumn6(r7, c, ci + 7 * ldc, alpha, beta);
    }

    /**
     * {@link #mergeTransposed} of 4 columns of a full 4x2 tile (4 rows of {@code NR_4X2} floats from
     * {@code t}): the 4 x 4 block transposed in 128-bit registers, each column stored whole as C row
     * j's 4 consecutive floats (row j at {@code ci + j * ldc}); the same two roundings as the gathers.
     */
    private static void mergeColumns4(float[] tile, int t, float[] c, int ci, int ldc, float alpha, float beta) {
        FloatVector r0 = FloatVector.fromArray(FOUR, tile, t);
        FloatVector r1 = FloatVector.fromArray(FOUR, tile, t + NR_4X2);
        FloatVector r2 = FloatVector.fromArray(FOUR, tile, t + 2 * NR_4X2);
        FloatVector r3 = FloatVector.fromArray(FOUR, tile, t + 3 * NR_4X2);
        FloatVector x;
        x = Transpose.LO4_2.selectFrom(r0, r2); r2 = Transpose.HI4_2.selectFrom(r0, r2); r0 = x;
        x = Transpose.LO4_2.selectFrom(r1, r3); r3 = Transpose.HI4_2.selectFrom(r1, r3); r1 = x;
        x = Transpose.LO4_1.selectFrom(r0, r1); r1 = Transpose.HI4_1.selectFrom(r0, r1); r0 = x;
        x = Transpose.LO4_1.selectFrom(r2, r3); r3 = Transpose.HI4_1.selectFrom(r2, r3); r2 = x;
        storeColumn4(r0, c, ci, alpha, beta);
        storeColumn4(r1, c, ci + ldc, alpha, beta);
        storeColumn4(r2, c, ci + 2 * ldc, alpha, beta);
        storeColumn4(r3, c, ci + 3 * ldc, alpha, beta);
    }

    /** C[row .. row + 3] = alpha * v + beta * C (C not read when beta == 0). */
    private static void storeColumn4(FloatVector v, float[] c, int row, float alpha, float beta) {
        v = v.mul(alpha);
        if (beta != 0f) v = v.add(FloatVector.fromArray(FOUR, c, row).mul(beta));
        v.intoArray(c, row);
    }

    /** C[row .. row + 5] = alpha * v[0..5] + beta * C (C not read when beta == 0). */
    private static void storeColumn6(FloatVector v, float[] c, int row, float alpha, float beta) {
        v = v.mul(alpha);
        if (beta != 0f) v = v.add(FloatVector.fromArray(EIGHT, c, row, SIX_OF_EIGHT).mul(beta));
        v.intoArray(c, row, SIX_OF_EIGHT);
    }

    /**
     * Packs A[ic:ic+mc, pc:pc+kc] (op(A) coordinates) into slivers of tileM (= MR) rows: sliver s
     * holds rows ic + s*tileM ... as kc groups of tileM floats (k-major), zero-padded to tileM rows.
     */
    private static void packA(int tileM, boolean transA, float[] a, int aOff, int lda, int ic, int mc, int pc, int kc,
                              float[] ap) {
        for (int ir = 0; ir < mc; ir += tileM) {
            int mr = Math.min(tileM, mc - ir);
            int base = ir * kc;
            if (!transA) {
                // A stored [m,k]: op(A)(i,p) = a[aOff + i*lda + p]; each row is contiguous in p.
                for (int r = 0; r < mr; r++) {
                    int src = aOff + (ic + ir + r) * lda + pc;
                    for (int p = 0; p < kc; p++) ap[base + p * tileM + r] = a[src + p];
                }
            } else {
                // A stored [k,m]: op(A)(i,p) = a[aOff + p*lda + i]; tileM rows are contiguous per p.
                for (int p = 0; p < kc; p++) {
                    int src = aOff + (pc + p) * lda + ic + ir;
                    for (int r = 0; r < mr; r++) ap[base + p * tileM + r] = a[src + r];
                }
            }
            for (int r = mr; r < tileM; r++) {
                for (int p = 0; p < kc; p++) ap[base + p * tileM + r] = 0f;
            }
        }
    }

    /**
     * Packs B[0:k, jc:jc+nc] (op(B) coordinates) as consecutive K panels of kcStep rows (the last
     * may be shorter) of a packed strip {@code ncPad} columns wide: panel pc starts at pc * ncPad
     * and holds slivers of tileN (= NR) columns, sliver s = kc rows of tileN floats at s * kc * tileN
     * within the panel, zero-padded to tileN columns. Column jc of B goes to column {@code jDst} of
     * the strip (a multiple of tileN; 0 unless several threads pack parts of one strip).
     * Each source row (or, for B stored [n,k], each source column) is read in one run.
     */
    private static void packB(int tileN, boolean transB, float[] b, int bOff, int ldb, int k, int kcStep, int jc, int nc,
                              float[] bp, int bp0, int ncPad, int jDst, boolean registerTransposes) {
        if (transB) {
            // B stored [n,k] (nn.Linear weight layout): op(B)(p,j) = b[bOff + j*ldb + p]. A transposing
            // copy, in blocks of k-steps whose destination (block x tileN floats, 32 KiB) stays in L1
            // while the tileN source rows are read in runs of the block's length; a whole sliver (up to
            // kc x tileN, 160 KiB at k = 1280 for 8x2) would not fit, and every strided store went to
            // L2. Measured on dev for a 256 x 1280 B: 210 -> 100 us with 32-column slivers, 250 ->
            // 165 us with 64.
            // Square VL x VL blocks go through registers (Transpose); the rest, one float at a time.
            int square = registerTransposes && (VL == 16 || VL == 8) && tileN % VL == 0 ? VL : 0;
            int block = Math.max(16, TRANSPOSE_FLOATS / tileN);
            for (int jr = 0; jr < nc; jr += tileN) {
                int nr = Math.min(tileN, nc - jr);
                int jv = square == 0 ? 0 : nr / square * square; // columns j < jv: whole squares
                for (int pc = 0; pc < k; pc += kcStep) {
                    int kc = Math.min(kcStep, k - pc), sliver = bp0 + pc * ncPad + (jDst + jr) * kc;
                    for (int p0 = 0; p0 < kc; p0 += block) {
                        int p1 = Math.min(kc, p0 + block);
                        int pv = jv == 0 ? p0 : p0 + (p1 - p0) / square * square; // rows p < pv of columns j < jv: done in squares
                        for (int p = p0; p < pv; p += square) {
                            for (int j = 0; j < jv; j += square) {
                                int src = bOff + (jc + jr + j) * ldb + pc + p, dst = sliver + p * tileN + j;
                                if (VL == 16) Transpose.block16(b, src, ldb, bp, dst, tileN);
                                else Transpose.block8(b, src, ldb, bp, dst, tileN);
                            }
                        }
                        for (int j = 0; j < nr; j++) {
                            int src = bOff + (jc + jr + j) * ldb + pc, base = sliver + j;
                            for (int p = j < jv ? pv : p0; p < p1; p++) bp[base + p * tileN] = b[src + p];
                        }
                        for (int j = nr; j < tileN; j++) {
                            for (int p = p0; p < p1; p++) bp[sliver + j + p * tileN] = 0f;
                        }
                    }
                }
            }
        } else {
            // B stored [k,n]: op(B)(p,j) = b[bOff + p*ldb + j]; a row of the strip is contiguous.
            for (int pc = 0; pc < k; pc += kcStep) {
                int kc = Math.min(kcStep, k - pc);
                for (int p = 0; p < kc; p++) {
                    int row = bOff + (pc + p) * ldb + jc;
                    for (int jr = 0; jr < nc; jr += tileN) {
                        int nr = Math.min(tileN, nc - jr), dst = bp0 + pc * ncPad + (jDst + jr) * kc + p * tileN;
                        System.arraycopy(b, row + jr, bp, dst, nr);
                        if (nr < tileN) Arrays.fill(bp, dst + nr, dst + tileN, 0f);
                    }
                }
            }
        }
    }

    /** Floats of destination per block of packB's transposing copy (32 KiB, within a 48 KiB L1; see there). */
    private static final int TRANSPOSE_FLOATS = 8192;

    private static int ceilDiv(int x, int y) {
        return (x + y - 1) / y;
    }

    private static int roundUp(int x, int multiple) {
        return ceilDiv(x, multiple) * multiple;
    }
}
