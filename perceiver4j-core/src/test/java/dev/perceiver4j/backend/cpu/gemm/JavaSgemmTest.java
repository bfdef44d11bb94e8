package dev.perceiver4j.backend.cpu.gemm;

import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm.Kernel;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class JavaSgemmTest {

    /** Every kernel shape on 1, 2 and 3 threads (3: uneven splits of the slivers). */
    static Stream<Arguments> kernelsAndThreads() {
        List<Arguments> all = new ArrayList<>();
        for (Kernel kernel : Kernel.values()) {
            for (int threads = 1; threads <= 3; threads++) all.add(Arguments.of(kernel, threads));
        }
        return all.stream();
    }

    @ParameterizedTest(name = "{0} kernel, {1} threads")
    @MethodSource("kernelsAndThreads")
    void matchesNaiveOnAllLayouts(Kernel kernel, int threads) {
        try (CpuPool pool = CpuPool.create(threads)) {
            int checked = SgemmChecks.compareAll(new JavaSgemm(pool, kernel), 42 + threads);
            assertThat(checked).isEqualTo(SgemmChecks.SHAPES.length * 4 * 3);
            // the blocked algorithm alone (A packed or read in place, B in K panels)
            checked = SgemmChecks.compareAll(new JavaSgemm(pool, kernel, JavaSgemm.Formulation.PACKED), 43 + threads);
            assertThat(checked).isEqualTo(SgemmChecks.SHAPES.length * 4 * 3);
        }
    }

    @ParameterizedTest(name = "{0} kernel, {1} threads")
    @MethodSource("kernelsAndThreads")
    void crossesEveryBlockBoundary(Kernel kernel, int threads) {
        // Larger than MC, KC and NC in every dimension, with tails, so that several K panels
        // accumulate, several N panels and M blocks are visited and the thread split is uneven.
        int m = kernel.mc + 2 * kernel.mr + 1;
        int k = 2 * kernel.kc + 3;
        int n = kernel.nc + kernel.nr + 5;
        SplittableRandom rnd = new SplittableRandom(7);
        try (CpuPool pool = CpuPool.create(threads)) {
            Sgemm g = new JavaSgemm(pool, kernel);
            SgemmChecks.compare(g, false, false, m, n, k, 1f, 0f, 1, rnd);
            SgemmChecks.compare(g, true, true, m, n, k, 0.5f, 0.5f, 0, rnd);
            SgemmChecks.compare(g, false, true, n, m, k, 1f, 1f, 2, rnd);
        }
    }

    /**
     * Tails of both tiles: m not a multiple of 6 or 8, n not a multiple of 2 or 4 vectors (64 / 32
     * floats with AVX-512), k odd and above one K panel (several panels, the last one shorter), on
     * column strips (n >= m) and row strips (m > n) when threaded.
     */
    @ParameterizedTest(name = "{0} kernel, {1} threads")
    @MethodSource("kernelsAndThreads")
    void handlesTileTails(Kernel kernel, int threads) {
        int[][] shapes = {
                {13, 130, 301}, {35, 191, 513}, {7, 65, 259}, {385, 100, 257}, {1, 64, 300},
                {6, 63, 1}, {47, 200, 129}, {130, 97, 385},
        };
        SplittableRandom rnd = new SplittableRandom(11 + threads);
        try (CpuPool pool = CpuPool.create(threads)) {
            Sgemm g = new JavaSgemm(pool, kernel);
            for (int[] s : shapes) {
                for (int combo = 0; combo < 4; combo++) {
                    boolean ta = (combo & 1) != 0, tb = (combo & 2) != 0;
                    SgemmChecks.compare(g, ta, tb, s[0], s[1], s[2], 1.5f, 0f, rnd.nextInt(4), rnd);
                    SgemmChecks.compare(g, ta, tb, s[0], s[1], s[2], 1f, 0.5f, rnd.nextInt(4), rnd);
                }
            }
        }
    }

    /**
     * A . B^T with the larger B runs transposed: several blocks of B's rows with an MR tail (zero
     * rows in the copy), A's rows not a multiple of NR (a padded sliver), two K panels (the second
     * shorter), every beta, on uneven thread splits; m = 1 too (one row padded to a sliver), and a
     * product small enough to run inline. Each is checked with the transposed form on and off
     * (the latter must pack B as before).
     */
    @ParameterizedTest(name = "{0} kernel, {1} threads")
    @MethodSource("kernelsAndThreads")
    void transposedFormulationMatchesNaive(Kernel kernel, int threads) {
        int[][] shapes = {
                {JavaSgemm.SPECIES.length() * 3 + 5, 2 * JavaSgemm.Formulation.BLOCK_ROWS + kernel.mr + 3, JavaSgemm.TRANSPOSED_KC + 37},
                {1, 100, 300}, {3, 40, 20}, {kernel.nr, kernel.nr + 1, 7},
        };
        SplittableRandom rnd = new SplittableRandom(19 + threads);
        try (CpuPool pool = CpuPool.create(threads)) {
            for (boolean transposed : new boolean[] {true, false}) {
                Sgemm g = new JavaSgemm(pool, kernel, transposed);
                for (int[] s : shapes) {
                    assertThat(JavaSgemm.transposedPays(false, true, s[0], s[1])).as("shape %s", List.of(s[0], s[1], s[2])).isTrue();
                    for (float beta : new float[] {0f, 1f, 0.5f}) {
                        SgemmChecks.compare(g, false, true, s[0], s[1], s[2], beta == 1f ? 1f : 1.5f, beta, rnd.nextInt(4), rnd);
                    }
                }
            }
        }
        assertThat(JavaSgemm.transposedPays(false, true, 256, 256)).as("square").isTrue();
        assertThat(JavaSgemm.transposedPays(false, true, 300, 256)).as("A larger").isFalse();
        assertThat(JavaSgemm.transposedPays(true, true, 8, 64)).as("A stored [k,m]").isFalse();
        assertThat(JavaSgemm.transposedPays(false, false, 8, 64)).as("B stored [k,n]").isFalse();
    }

    @Test
    void squareProductsRunTransposed() {
        // 64 x 64 x 200 (2 column strips with NR = 32) on 5 threads: uneven splits of the transposed form.
        int n = 2 * Kernel.K8X2.nr;
        SplittableRandom rnd = new SplittableRandom(23);
        try (CpuPool pool = CpuPool.create(5)) {
            assertThat(JavaSgemm.transposedPays(false, true, n, n)).isTrue();
            for (Kernel kernel : Kernel.values()) {
                SgemmChecks.compare(new JavaSgemm(pool, kernel), false, true, n, n, 200, 1.5f, 0.5f, 1, rnd);
            }
        }
    }

    @Test
    void kernelNamesParse() {
        assertThat(Kernel.parse("8x2")).isEqualTo(Kernel.K8X2);
        assertThat(Kernel.parse(" 6x4 ")).isEqualTo(Kernel.K6X4);
        assertThatThrownBy(() -> Kernel.parse("4x4"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(JavaSgemm.KERNEL_PROPERTY + "=4x4")
                .hasMessageContaining("8x2, 6x4");
    }

    @Test
    void defaultKernelComesFromTheProperty() {
        try (CpuPool pool = CpuPool.create(1)) {
            assertThat(new JavaSgemm(pool).kernel()).isEqualTo(JavaSgemm.DEFAULT_KERNEL);
            assertThat(new JavaSgemm(pool, Kernel.K6X4).kernel()).isEqualTo(Kernel.K6X4);
        }
        if (System.getProperty(JavaSgemm.KERNEL_PROPERTY) == null) {
            assertThat(JavaSgemm.DEFAULT_KERNEL).isEqualTo(Kernel.forCpu(JavaSgemm.cpuVendor(), JavaSgemm.SPECIES.length()));
        }
    }

    @Test
    void autoKernelIs6x4OnIntelWith512BitVectorsAnd4x2With256Bit() {
        assertThat(Kernel.forCpu("GenuineIntel", 16)).isEqualTo(Kernel.K6X4);
        assertThat(Kernel.forCpu("GenuineIntel", 8)).as("AVX2: 16 registers, 6x4 and 8x2 would spill").isEqualTo(Kernel.K4X2);
        assertThat(Kernel.forCpu("AuthenticAMD", 8)).isEqualTo(Kernel.K4X2);
        assertThat(Kernel.forCpu(null, 8)).isEqualTo(Kernel.K4X2);
        assertThat(Kernel.forCpu("AuthenticAMD", 16)).isEqualTo(Kernel.K8X2);
        assertThat(Kernel.forCpu(null, 16)).isEqualTo(Kernel.K8X2);
    }

    /** Formulation "always" runs A . B^T transposed whatever the sizes (n <= m here, where "auto" would not). */
    @ParameterizedTest(name = "{0} kernel, {1} threads")
    @MethodSource("kernelsAndThreads")
    void alwaysTransposedMatchesNaive(Kernel kernel, int threads) {
        int m = 3 * kernel.nr + 3, n = 2 * kernel.mr + 1, k = kernel.kc + 19;
        assertThat(JavaSgemm.transposedPays(false, true, m, n)).isFalse();
        try (CpuPool pool = CpuPool.create(threads)) {
            SgemmChecks.compare(new JavaSgemm(pool, kernel, JavaSgemm.Formulation.ALWAYS), false, true, m, n, k, 0.5f, 1f, 0,
                    new SplittableRandom(5));
        }
    }

    /** The transposed formulation's L1-sized k steps only split the FMA chain through memory: same bits as one pass. */
    @ParameterizedTest(name = "{0} kernel, {1} threads")
    @MethodSource("kernelsAndThreads")
    void kStepsGiveTheSameBitsAsOnePass(Kernel kernel, int threads) {
        int m = 2 * kernel.nr + 5, n = m + 5 * kernel.mr + 1, k = 2 * kernel.kc + 37; // n > m: transposed; 3 steps (6x4)
        assertThat(JavaSgemm.transposedPays(false, true, m, n)).isTrue();
        SplittableRandom rnd = new SplittableRandom(11);
        float[] a = SgemmChecks.random(m * k, rnd), b = SgemmChecks.random(n * k, rnd), c0 = SgemmChecks.random(m * n, rnd);
        float[] stepped = c0.clone(), onePass = c0.clone();
        try (CpuPool pool = CpuPool.create(threads)) {
            Sgemm steps = new JavaSgemm(pool, kernel, JavaSgemm.Formulation.DEFAULT);
            steps.sgemm(false, true, m, n, k, 1.25f, a, 0, k, b, 0, k, 0.75f, stepped, 0, n);
            new JavaSgemm(pool, kernel, JavaSgemm.Formulation.ONE_PASS).sgemm(false, true, m, n, k, 1.25f, a, 0, k, b, 0, k, 0.75f, onePass, 0, n);
            SgemmChecks.compare(steps, false, true, m, n, k, 1.25f, 0.75f, 0, rnd); // and right, against the oracle
        }
        assertThat(stepped).containsExactly(onePass);
    }

    /**
     * A row-buffer product ({@code rows}: A's rows copied, B packed once in one K panel) runs each
     * tile's FMA chain over k as the transposed formulation does with the operands' roles swapped
     * (an FMA's two factors commute), so with alpha = 1 and beta = 0 it gives the bits of
     * {@code always}, on any thread count, with row blocks and L1 steps that leave tails; and it is
     * right against the oracle on every layout it takes (A stored [m,k], B either way), with
     * alpha and beta. Reading full tiles in place ({@code inplace}) instead of from the row
     * buffer, and a block's first sliver in one pass or in steps ({@code nofirstpass}), move no
     * arithmetic: the same bits again. With K panels of 100 rows ({@code panel100}) both merge a
     * partial sum per panel, in the same order.
     */
    @ParameterizedTest(name = "{0} kernel, {1} threads")
    @MethodSource("kernelsAndThreads")
    void rowBufferProductsFollowTheTransposedChain(Kernel kernel, int threads) {
        int[][] shapes = {
                {2 * JavaSgemm.Formulation.ROWS_BLOCK_ROWS + kernel.mr + 3, 2 * kernel.nr + 5, JavaSgemm.TRANSPOSED_KC + 37}, // two K panels
                {40 * kernel.mr + 5, kernel.nr + 3, kernel.kc + 7}, {13, 130, 301}, {1, 64, 300}, {7, 3, 1}};
        String[][] pairs = {{"packed+rows", "always"}, {"packed+rows+rowblock13+step5", "always+block13+step5"},
                {"packed+rows+inplace+rowblock13+step5", "always+inplace"}, {"packed+rows", "always+inplace+block13"},
                {"packed+rows+inplace+nofirstpass+step5", "always+noinplace+block13+step5"},
                {"packed+rows+panel100", "always+inplace+panel100"}};
        SplittableRandom rnd = new SplittableRandom(29 + threads);
        try (CpuPool pool = CpuPool.create(threads)) {
            for (String[] pair : pairs) {
                Sgemm rows = new JavaSgemm(pool, kernel, JavaSgemm.Formulation.parse(pair[0]));
                Sgemm transposed = new JavaSgemm(pool, kernel, JavaSgemm.Formulation.parse(pair[1]));
                for (int[] s : shapes) {
                    int m = s[0], n = s[1], k = s[2];
                    float[] a = SgemmChecks.random(m * k, rnd), b = SgemmChecks.random(n * k, rnd);
                    float[] viaRows = new float[m * n], viaTransposed = new float[m * n];
                    rows.sgemm(false, true, m, n, k, 1f, a, 0, k, b, 0, k, 0f, viaRows, 0, n);
                    transposed.sgemm(false, true, m, n, k, 1f, a, 0, k, b, 0, k, 0f, viaTransposed, 0, n);
                    assertThat(viaRows).as("%dx%dx%d, %s", m, n, k, pair[0]).containsExactly(viaTransposed);
                    for (boolean transB : new boolean[] {false, true}) {
                        SgemmChecks.compare(rows, false, transB, m, n, k, 1.5f, 0.5f, rnd.nextInt(4), rnd);
                        SgemmChecks.compare(rows, false, transB, m, n, k, 1f, 1f, rnd.nextInt(4), rnd);
                    }
                }
            }
            assertThat(SgemmChecks.compareAll(new JavaSgemm(pool, kernel, JavaSgemm.Formulation.parse("rows")), 31 + threads))
                    .isEqualTo(SgemmChecks.SHAPES.length * 4 * 3);
        }
    }

    /**
     * Claimed pieces only change which thread computes a tile, never how: the same bits as fixed
     * strips, for the transposed formulation (n > m) and for row strips over a shared B (m > n),
     * with many more pieces than threads.
     */
    @ParameterizedTest(name = "{0} kernel")
    @EnumSource(Kernel.class)
    void claimedPiecesGiveTheSameBitsAsFixedStrips(Kernel kernel) {
        int[][] shapes = {
                {kernel.nr + 3, 40 * kernel.mr + 1, kernel.kc + 19},   // transposed: 41 MR tiles of B's rows
                {40 * kernel.mr + 5, kernel.nr + 3, kernel.kc + 7}};   // row strips, B packed once and shared
        SplittableRandom rnd = new SplittableRandom(17);
        try (CpuPool pool = CpuPool.create(3)) {
            Sgemm claimed = new JavaSgemm(pool, kernel, JavaSgemm.Formulation.DEFAULT);
            Sgemm fixed = new JavaSgemm(pool, kernel, JavaSgemm.Formulation.STATIC);
            for (int[] s : shapes) {
                int m = s[0], n = s[1], k = s[2];
                float[] a = SgemmChecks.random(m * k, rnd), b = SgemmChecks.random(n * k, rnd), c0 = SgemmChecks.random(m * n, rnd);
                float[] viaClaimed = c0.clone(), viaFixed = c0.clone();
                claimed.sgemm(false, true, m, n, k, 0.5f, a, 0, k, b, 0, k, 1f, viaClaimed, 0, n);
                fixed.sgemm(false, true, m, n, k, 0.5f, a, 0, k, b, 0, k, 1f, viaFixed, 0, n);
                assertThat(viaClaimed).as("%dx%dx%d", m, n, k).containsExactly(viaFixed);
                SgemmChecks.compare(claimed, false, true, m, n, k, 0.5f, 1f, 0, rnd);
            }
        }
    }

    /**
     * Where the packed operands start within a cache line, and whether transposing copies go
     * through registers, only move data: every packing choice gives the bits of session 23's
     * packing (unaligned, one float at a time), for the transposed formulation's A^T (n > m), row
     * strips over a shared B (m > n) and packed strips of a weight B (transA, each thread packing
     * its own), with partial squares, a partial last sliver and k steps that are not a multiple of
     * a square; and the default is right against the oracle.
     */
    @ParameterizedTest(name = "{0} kernel")
    @EnumSource(Kernel.class)
    void packingChoicesGiveTheSameBits(Kernel kernel) {
        int[][] shapes = {
                {kernel.nr + 3, 40 * kernel.mr + 1, 2 * kernel.kc + 19, 0},
                {2 * kernel.nr + 13, 40 * kernel.mr + 1, 2 * kernel.kc + 19, 0},
                {40 * kernel.mr + 5, kernel.nr + 3, kernel.kc + 7, 0},
                {40 * kernel.mr + 5, 3 * kernel.nr - 5, 300, 0},
                {4 * kernel.nr + 7, 5 * kernel.nr, 300, 0}, // m > 128: chunks of 128 rows (6x4) against all of A at once
                {3 * kernel.mr + 1, 5 * kernel.nr + 2, kernel.kc + 3, 1}};
        // chunk1 / chunkNR+1 / chunk128: A's rows in chunks of one / two NR slivers / 128 rows (6x4; other tiles take all
        // of A): the same tiles, so the same bits
        List<String> choices = new ArrayList<>(List.of("auto", "scalarpack", "unaligned", "chunk1", "chunk" + (kernel.nr + 1), "chunk128"));
        for (int offset = 0; offset < 64; offset += 8) choices.add("line" + offset);
        SplittableRandom rnd = new SplittableRandom(19);
        try (CpuPool pool = CpuPool.create(2)) {
            Sgemm before = new JavaSgemm(pool, kernel, JavaSgemm.Formulation.parse("unaligned+scalarpack"));
            for (int[] s : shapes) {
                int m = s[0], n = s[1], k = s[2];
                boolean transA = s[3] == 1;
                int lda = transA ? m : k;
                float[] a = SgemmChecks.random(m * k, rnd), b = SgemmChecks.random(n * k, rnd), c0 = SgemmChecks.random(m * n, rnd);
                float[] expected = c0.clone();
                before.sgemm(transA, true, m, n, k, 0.5f, a, 0, lda, b, 0, k, 1f, expected, 0, n);
                for (String choice : choices) {
                    float[] c = c0.clone();
                    new JavaSgemm(pool, kernel, JavaSgemm.Formulation.parse(choice)).sgemm(transA, true, m, n, k, 0.5f, a, 0, lda, b, 0, k, 1f, c, 0, n);
                    assertThat(c).as("%dx%dx%d, %s", m, n, k, choice).containsExactly(expected);
                }
                SgemmChecks.compare(new JavaSgemm(pool, kernel), transA, true, m, n, k, 0.5f, 1f, 0, rnd);
            }
        }
    }

    @Test
    void formulationsCombineABaseWithPackingChoices() {
        assertThat(JavaSgemm.Formulation.parse("auto")).isEqualTo(JavaSgemm.Formulation.DEFAULT);
        assertThat(JavaSgemm.Formulation.parse("unaligned")).isEqualTo(JavaSgemm.Formulation.UNALIGNED);
        assertThat(JavaSgemm.Formulation.parse("scalarpack")).isEqualTo(JavaSgemm.Formulation.SCALAR_PACKING);
        JavaSgemm.Formulation before24 = JavaSgemm.Formulation.parse("unaligned+scalarpack");
        assertThat(before24.lineOffset()).isEqualTo(-1);
        assertThat(before24.registerTransposes()).isFalse();
        assertThat(before24.transposed()).isTrue();
        JavaSgemm.Formulation packed16 = JavaSgemm.Formulation.parse(" packed + line16 ");
        assertThat(packed16.transposed()).isFalse();
        assertThat(packed16.lineOffset()).isEqualTo(16);
        assertThatThrownBy(() -> JavaSgemm.Formulation.parse("packed+static")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("one of auto, packed");
        assertThatThrownBy(() -> JavaSgemm.Formulation.parse("auto+fast")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("got auto+fast");
        for (int offset = 0; offset < 64; offset += 8) assertThat(JavaSgemm.Formulation.parse("line" + offset).lineOffset()).isEqualTo(offset);
        for (String bad : new String[] {"line12", "line", "line-8", "line64"}) {
            assertThatThrownBy(() -> JavaSgemm.Formulation.parse(bad)).as(bad).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("lineN takes N = 0, 8, ..., 56");
        }
        JavaSgemm.Formulation tuned = JavaSgemm.Formulation.parse("packed+rows+step64+block48+rowblock96+inplace");
        assertThat(tuned.transposed()).isFalse();
        assertThat(tuned.rows()).isTrue();
        assertThat(tuned.inPlace()).isTrue();
        assertThat(tuned.l1Step()).isEqualTo(64);
        assertThat(tuned.blockRows()).isEqualTo(48);
        assertThat(tuned.rowsBlockRows()).isEqualTo(96);
        assertThat(JavaSgemm.Formulation.parse("rowblock7").blockRows()).isEqualTo(JavaSgemm.Formulation.DEFAULT.blockRows());
        assertThat(JavaSgemm.Formulation.parse("onepass+step96").l1Step()).as("a step overrides the base").isEqualTo(96);
        assertThat(JavaSgemm.Formulation.parse("norows").rows()).isFalse();
        assertThat(JavaSgemm.Formulation.parse("nofirstpass").firstPass()).isFalse();
        assertThat(JavaSgemm.Formulation.parse("noinplace").inPlace()).isFalse();
        assertThat(JavaSgemm.Formulation.DEFAULT.firstPass() && JavaSgemm.Formulation.DEFAULT.inPlace() && JavaSgemm.Formulation.DEFAULT.rows())
                .as("the defaults").isTrue();
        assertThat(JavaSgemm.Formulation.parse("rows").rows()).isTrue();
        for (String bad : new String[] {"step0", "step", "step2049", "stepx"}) {
            assertThatThrownBy(() -> JavaSgemm.Formulation.parse(bad)).as(bad).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("stepN takes N = 1 to " + JavaSgemm.TRANSPOSED_KC);
        }
        assertThat(JavaSgemm.Formulation.parse("panel320").panelRows()).isEqualTo(320);
        assertThat(JavaSgemm.Formulation.DEFAULT.panelRows()).as("one K panel for k <= 2048").isEqualTo(JavaSgemm.TRANSPOSED_KC);
        for (String bad : new String[] {"panel0", "panel", "panel2049", "panelx"}) {
            assertThatThrownBy(() -> JavaSgemm.Formulation.parse(bad)).as(bad).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("panelN takes N = 1 to " + JavaSgemm.TRANSPOSED_KC);
        }
        assertThat(JavaSgemm.Formulation.DEFAULT.chunkRows()).as("all of A at once").isZero();
        assertThat(JavaSgemm.Formulation.parse("chunk128").chunkRows()).isEqualTo(128);
        assertThat(JavaSgemm.Formulation.parse("chunk128+chunk0")).isEqualTo(JavaSgemm.Formulation.DEFAULT);
        for (String bad : new String[] {"chunk-1", "chunk", "chunk65537", "chunkx"}) {
            assertThatThrownBy(() -> JavaSgemm.Formulation.parse(bad)).as(bad).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("chunkN takes N = 0 (all of A at once) to " + JavaSgemm.MAX_CHUNK_ROWS);
        }
        for (String bad : new String[] {"block0", "block", "block1025", "rowblock0", "rowblock"}) {
            assertThatThrownBy(() -> JavaSgemm.Formulation.parse(bad)).as(bad).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("blockN takes N = 1 to " + JavaSgemm.MAX_BLOCK_ROWS);
        }
    }

    /**
     * Products sharing A (q, k and v of self-attention): the same bits as each product alone, where
     * A^T is packed once for all (n_i >= m) and where one product does not take the transposed
     * formulation (n < m: all run one by one).
     */
    @ParameterizedTest(name = "{0} kernel, {1} threads")
    @MethodSource("kernelsAndThreads")
    void sharedAGivesTheSameBitsAsEachProductAlone(Kernel kernel, int threads) {
        int m = kernel.nr + 3, k = kernel.kc + 19;
        int[][] groups = {{m, m + 5, 40 * kernel.mr + 1}, {m + 1, m - 1}};
        SplittableRandom rnd = new SplittableRandom(23);
        float[] a = SgemmChecks.random(m * k + 7, rnd);
        try (CpuPool pool = CpuPool.create(threads)) {
            JavaSgemm gemm = new JavaSgemm(pool, kernel);
            // A's rows in chunks of one NR sliver (m = NR + 3: two chunks) give the same bits too
            JavaSgemm chunked = new JavaSgemm(pool, kernel, JavaSgemm.Formulation.parse("chunk1"));
            for (int[] n : groups) {
                int count = n.length;
                float[][] b = new float[count][], shared = new float[count][];
                int[] bOff = new int[count], cOff = new int[count];
                for (int i = 0; i < count; i++) {
                    bOff[i] = i + 1;
                    cOff[i] = 2 * i;
                    b[i] = SgemmChecks.random(bOff[i] + n[i] * k, rnd);
                    shared[i] = SgemmChecks.random(cOff[i] + m * n[i] + 3, rnd); // overwritten inside, untouched around
                }
                float[][] alone = new float[count][];
                for (int i = 0; i < count; i++) alone[i] = shared[i].clone();
                float[][] sharedChunked = new float[count][];
                for (int i = 0; i < count; i++) sharedChunked[i] = shared[i].clone();
                gemm.sgemmSharedA(m, k, a, 7, k, b, bOff, n, shared, cOff);
                chunked.sgemmSharedA(m, k, a, 7, k, b, bOff, n, sharedChunked, cOff);
                for (int i = 0; i < count; i++) {
                    gemm.sgemm(false, true, m, n[i], k, 1f, a, 7, k, b[i], bOff[i], k, 0f, alone[i], cOff[i], n[i]);
                    assertThat(shared[i]).as("product %d of %s", i, java.util.Arrays.toString(n)).containsExactly(alone[i]);
                    assertThat(sharedChunked[i]).as("chunked product %d of %s", i, java.util.Arrays.toString(n)).containsExactly(alone[i]);
                }
            }
            assertThatThrownBy(() -> gemm.sgemmSharedA(m, k, a, 0, k, new float[2][], new int[2], new int[1], new float[2][], new int[2]))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("one entry per product");
        }
    }

    @Test
    void tileSizesFitTheBlocking() {
        for (Kernel kernel : Kernel.values()) {
            assertThat(kernel.nr % JavaSgemm.SPECIES.length()).as(kernel + " NR").isZero();
            assertThat(kernel.nc % kernel.nr).as(kernel + " NC").isZero();
            assertThat(kernel.mc % kernel.mr).as(kernel + " MC").isZero();
        }
        assertThat(Kernel.K8X2.mr).isEqualTo(8);
        assertThat(Kernel.K8X2.nr).isEqualTo(2 * JavaSgemm.SPECIES.length());
        assertThat(Kernel.K6X4.mr).isEqualTo(6);
        assertThat(Kernel.K6X4.nr).isEqualTo(4 * JavaSgemm.SPECIES.length());
        assertThat(Kernel.K4X2.mr).isEqualTo(4);
        assertThat(Kernel.K4X2.nr).isEqualTo(2 * JavaSgemm.SPECIES.length());
    }

    @Test
    void reusesWorkspacesAcrossCallsOfDifferentSizesAndKernels() {
        // The per-thread workspaces are shared by both kernels: alternate them on the same threads.
        try (CpuPool pool = CpuPool.create(2)) {
            Sgemm g = new JavaSgemm(pool, Kernel.K8X2);
            Sgemm w = new JavaSgemm(pool, Kernel.K6X4);
            SplittableRandom rnd = new SplittableRandom(3);
            SgemmChecks.compare(g, false, false, 300, 300, 300, 1f, 0f, 0, rnd);
            SgemmChecks.compare(w, false, false, 300, 300, 300, 1f, 0f, 0, rnd);
            SgemmChecks.compare(g, false, false, 9, 11, 13, 1f, 0f, 0, rnd);
            SgemmChecks.compare(w, false, false, 9, 11, 13, 1f, 0f, 0, rnd);
            SgemmChecks.compare(w, true, false, 300, 300, 300, 1f, 0f, 0, rnd);
            SgemmChecks.compare(g, true, false, 300, 300, 300, 1f, 0f, 0, rnd);
        }
    }

    @Test
    void zeroSizesAndTrivialCases() {
        try (CpuPool pool = CpuPool.create(2)) {
            Sgemm g = new JavaSgemm(pool);
            float[] c = {Float.NaN, 2f, 3f, 4f};
            // k == 0: C = beta * C; beta == 0 overwrites the NaN.
            g.sgemm(false, false, 2, 2, 0, 1f, new float[0], 0, 0, new float[0], 0, 2, 0f, c, 0, 2);
            assertThat(c).containsExactly(0f, 0f, 0f, 0f);
            float[] d = {1f, 2f};
            g.sgemm(false, false, 1, 2, 0, 1f, new float[0], 0, 0, new float[0], 0, 2, 2f, d, 0, 2);
            assertThat(d).containsExactly(2f, 4f);
            // m == 0 / n == 0: nothing is touched.
            g.sgemm(false, false, 0, 2, 3, 1f, new float[0], 0, 3, new float[6], 0, 2, 0f, d, 0, 2);
            assertThat(d).containsExactly(2f, 4f);
        }
    }

    @Test
    void rejectsBadArguments() {
        try (CpuPool pool = CpuPool.create(1)) {
            Sgemm g = new JavaSgemm(pool);
            float[] x = new float[100];
            assertThatThrownBy(() -> g.sgemm(false, false, -1, 2, 2, 1f, x, 0, 2, x, 0, 2, 0f, x, 0, 2))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("m must be >= 0");
            assertThatThrownBy(() -> g.sgemm(false, false, 2, 2, -3, 1f, x, 0, 2, x, 0, 2, 0f, x, 0, 2))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("k must be >= 0");
            assertThatThrownBy(() -> g.sgemm(false, false, 2, 3, 4, 1f, x, 0, 3, x, 0, 3, 0f, x, 0, 3))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("lda (3) must be >= k (4)");
            assertThatThrownBy(() -> g.sgemm(true, false, 5, 3, 4, 1f, x, 0, 4, x, 0, 3, 0f, x, 0, 3))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("lda (4) must be >= m (5)");
            assertThatThrownBy(() -> g.sgemm(false, true, 2, 3, 4, 1f, x, 0, 4, x, 0, 3, 0f, x, 0, 3))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("ldb (3) must be >= k (4)");
            assertThatThrownBy(() -> g.sgemm(false, false, 2, 3, 4, 1f, x, 0, 4, x, 0, 3, 0f, x, 0, 2))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("ldc (2) must be >= n (3)");
            assertThatThrownBy(() -> g.sgemm(false, false, 10, 10, 10, 1f, x, 1, 10, x, 0, 10, 0f, x, 0, 10))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("A needs 101 floats");
            assertThatThrownBy(() -> g.sgemm(false, false, 2, 2, 2, 1f, x, 0, 2, x, -1, 2, 0f, x, 0, 2))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("offset of B");
            assertThatThrownBy(() -> g.sgemm(false, false, 10, 10, 10, 1f, x, 0, 10, x, 0, 10, 0f, new float[99], 0, 10))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("C needs 100 floats");
        }
    }

    @Test
    void nameMentionsThreadsAndKernel() {
        try (CpuPool pool = CpuPool.create(2)) {
            assertThat(new JavaSgemm(pool).name()).startsWith("java-vector(2 threads");
            assertThat(new JavaSgemm(pool, Kernel.K6X4).name()).startsWith("java-vector(2 threads").endsWith(", 6x4 kernel)");
            assertThat(new JavaSgemm(pool, Kernel.K8X2).name()).endsWith(", 8x2 kernel)");
            assertThat(new JavaSgemm(pool, Kernel.K8X2, false).name()).endsWith(", 8x2 kernel, B always packed)");
            assertThat(new JavaSgemm(pool, Kernel.K6X4, false).name()).endsWith(", 6x4 kernel, B always packed)");
            if (System.getProperty(JavaSgemm.TRANSPOSED_PROPERTY) == null) {
                assertThat(new JavaSgemm(pool).name()).doesNotContain("always packed");
            }
        }
    }
}
