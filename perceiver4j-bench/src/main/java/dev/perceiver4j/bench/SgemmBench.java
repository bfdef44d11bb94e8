package dev.perceiver4j.bench;

import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.CblasSgemm;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.backend.cpu.gemm.Sgemm;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * SGEMM throughput: C[M,N] = A[M,K] . op(B), pure Java vs the system CBLAS, on 1 and 2 threads.
 *
 * <p>{@code shape} is {@code MxKxN}. {@code transB=false}: B stored [K,N]; {@code transB=true}: B
 * stored [N,K] (the nn.Linear weight layout, y = x W^T). The score is microseconds per product;
 * GFLOP/s = 2*M*N*K / (score_us * 1e3). {@link #main} prints that conversion for a JMH CSV result:
 * <pre>
 *   java -jar perceiver4j-bench/target/perceiver4j-bench.jar SgemmBench -rf csv -rff sgemm.csv
 *   java -cp perceiver4j-bench/target/perceiver4j-bench.jar dev.perceiver4j.bench.SgemmBench sgemm.csv
 * </pre>
 * {@code impl=cblas} needs a CBLAS ({@code scripts/fetch-openblas.sh}); without one that
 * configuration fails in setup and JMH moves on to the next.
 *
 * <p>{@code kernel} is the register tile of the pure-Java SGEMM ({@link JavaSgemm.Kernel}: {@code 8x2},
 * {@code 6x4} or {@code 4x2}; see {@code -Dperceiver4j.sgemm.kernel}), so one run compares them in the
 * same process. It means nothing to {@code impl=cblas}: that configuration runs for {@code kernel=8x2}
 * only and fails in setup (skipped) for the others, rather than measuring the same thing again.
 * For example, every tile at the nn.Linear shape:
 * <pre>
 *   java -jar perceiver4j-bench/target/perceiver4j-bench.jar SgemmBench -wi 2 -i 3 \
 *       -p impl=java -p transB=true -p shape=256x1280x1280
 * </pre>
 *
 * <p>{@code form} is the formulation of impl=java: {@code auto} (the default: {@code A . B^T} with
 * the larger B runs transposed, B's rows copied whole, see {@link JavaSgemm}) or {@code packed} (always
 * the usual formulation, which packs all of B); like {@code kernel}, impl=cblas runs for
 * {@code auto} only. {@code weights} is the number of distinct B matrices cycled through, one per
 * call: 1 keeps B hot in cache; 64 x 6.5 MB at 1280 x 1280 makes every call read its B from
 * memory, as a model's forward pass does. For example, the two forms on cold weights:
 * <pre>
 *   java -jar perceiver4j-bench/target/perceiver4j-bench.jar SgemmBench -wi 3 -i 5 \
 *       -p impl=java -p kernel=8x2 -p transB=true -p shape=256x1280x1280 -p form=auto,packed -p weights=64
 * </pre>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx2g"})
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class SgemmBench {

    @Param({"java", "cblas"})
    public String impl;

    /** Register tile of impl=java: 8x2 or 6x4. */
    @Param({"8x2", "6x4", "4x2"})
    public String kernel;

    @Param({"1", "2"})
    public int threads;

    /** M x K x N. */
    @Param({"256x1280x1280", "2048x768x256", "2048x768x1280", "2048x256x768"})
    public String shape;

    /** false: B stored [K,N]; true: B stored [N,K] (nn.Linear weight). */
    @Param({"false", "true"})
    public boolean transB;

    /** Formulation of impl=java: auto (transposed where it pays) or packed (always pack B). */
    @Param({"auto"})
    public String form;

    /** Distinct B matrices, one per call in turn (1: B stays in cache; many: B comes from memory). */
    @Param({"1"})
    public int weights;

    private CpuPool pool;
    private Sgemm gemm;
    private int m, n, k;
    private float[] a, c;
    private float[][] bs;
    private int next;

    @Setup(Level.Trial)
    public void setUp() {
        int[] s = parseShape(shape);
        m = s[0];
        k = s[1];
        n = s[2];
        JavaSgemm.Kernel tile = JavaSgemm.Kernel.parse(kernel);
        if (impl.equals("cblas") && tile != JavaSgemm.Kernel.K8X2) {
            throw new IllegalStateException("kernel=" + kernel + " applies to impl=java only (cblas runs with kernel=8x2): skipped");
        }
        boolean transposedForm = switch (form) {
            case "auto" -> true;
            case "packed" -> false;
            default -> throw new IllegalArgumentException("form must be auto or packed, got " + form);
        };
        if (impl.equals("cblas") && !transposedForm) {
            throw new IllegalStateException("form=" + form + " applies to impl=java only (cblas runs with form=auto): skipped");
        }
        if (weights < 1) throw new IllegalArgumentException("weights must be >= 1, got " + weights);
        pool = CpuPool.create(threads);
        gemm = switch (impl) {
            case "java" -> new JavaSgemm(pool, tile, transposedForm);
            case "cblas" -> CblasSgemm.load(pool)
                    .orElseThrow(() -> new IllegalStateException("no CBLAS found: run scripts/fetch-openblas.sh"));
            default -> throw new IllegalArgumentException("impl must be java or cblas, got " + impl);
        };
        SplittableRandom rnd = new SplittableRandom(1);
        a = new float[m * k];                       // A[M,K]
        bs = new float[weights][k * n];             // each B[K,N] or B[N,K]
        c = new float[m * n];                       // C[M,N]
        for (int i = 0; i < a.length; i++) a[i] = (float) (rnd.nextDouble() - 0.5);
        for (float[] b : bs) {
            for (int i = 0; i < b.length; i++) b[i] = (float) (rnd.nextDouble() - 0.5);
        }
        System.out.println("# " + gemm.name() + " shape " + shape + " transB=" + transB + " form=" + form + " weights=" + weights);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        pool.close();
    }

    @Benchmark
    public float[] sgemm() {
        float[] b = bs[next];
        next = next + 1 == bs.length ? 0 : next + 1;
        gemm.sgemm(false, transB, m, n, k, 1f, a, 0, k, b, 0, transB ? k : n, 0f, c, 0, n);
        return c;
    }

    static int[] parseShape(String shape) {
        String[] p = shape.split("x");
        if (p.length != 3) throw new IllegalArgumentException("a shape is MxKxN, got " + shape);
        return new int[] {Integer.parseInt(p[0]), Integer.parseInt(p[1]), Integer.parseInt(p[2])};
    }

    /** GFLOP/s = 2*M*N*K / time; reads a JMH CSV file (-rf csv) and prints one line per result. */
    public static void main(String[] args) throws java.io.IOException {
        if (args.length != 1) {
            System.err.println("usage: SgemmBench <jmh-result.csv>   (prints GFLOP/s per configuration)");
            System.exit(2);
        }
        List<String> lines = java.nio.file.Files.readAllLines(java.nio.file.Path.of(args[0]));
        String[] head = splitCsv(lines.getFirst());
        int score = indexOf(head, "Score"), unit = indexOf(head, "Unit");
        int pImpl = indexOf(head, "Param: impl"), pThreads = indexOf(head, "Param: threads");
        int pShape = indexOf(head, "Param: shape"), pTrans = indexOf(head, "Param: transB");
        int pKernel = List.of(head).indexOf("Param: kernel"); // absent from CSVs written before the param existed
        int pForm = List.of(head).indexOf("Param: form"), pWeights = List.of(head).indexOf("Param: weights"); // likewise
        for (String line : lines.subList(1, lines.size())) {
            String[] f = splitCsv(line);
            if (!f[unit].equals("us/op")) continue;
            int[] s = parseShape(f[pShape]);
            double us = Double.parseDouble(f[score]);
            double gflops = 2.0 * s[0] * s[1] * s[2] / (us * 1e3);
            String tile = f[pImpl].equals("java") && pKernel >= 0 ? f[pKernel] : "-";
            String formulation = pForm >= 0 ? f[pForm] : "auto";
            String cycled = pWeights >= 0 ? f[pWeights] : "1";
            System.out.printf("%-6s kernel=%-3s threads=%s shape=%-14s transB=%-5s form=%-6s weights=%-3s %10.1f us  %7.1f GFLOP/s%n",
                    f[pImpl], tile, f[pThreads], f[pShape], f[pTrans], formulation, cycled, us, gflops);
        }
    }

    private static String[] splitCsv(String line) {
        String[] f = line.split(",");
        for (int i = 0; i < f.length; i++) f[i] = f[i].replace("\"", "").trim();
        return f;
    }

    private static int indexOf(String[] head, String name) {
        for (int i = 0; i < head.length; i++) if (head[i].equals(name)) return i;
        throw new IllegalArgumentException("column '" + name + "' not in the CSV header");
    }
}
