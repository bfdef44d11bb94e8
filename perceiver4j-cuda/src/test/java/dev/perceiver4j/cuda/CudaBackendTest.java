package dev.perceiver4j.cuda;

import dev.perceiver4j.backend.Backends;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.RefBackend;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Every implemented op of {@link CudaBackend} (forward and backward) against the CPU oracle,
 * through the checks {@link GpuSelfTest} runs ({@link OpParity}: odd shapes, gradients starting
 * non-zero, tolerances stated there: 1e-5 fp32, exact for copies and casts). Needs a GPU:
 * {@code mvn -B -o -Pgpu -pl perceiver4j-cuda test}.
 */
@Tag("gpu")
class CudaBackendTest {
    private static CudaBackend cuda;
    private static final RefBackend REF = new RefBackend(CpuPool.common());

    @BeforeAll
    static void start() {
        cuda = CudaBackend.create();
    }

    @AfterAll
    static void report() {
        if (cuda != null) System.out.println(cuda.allocator().report());
    }

    @TestFactory
    Stream<DynamicTest> parityWithTheReference() {
        return OpParity.checks(cuda, REF, 42).stream().map(c -> DynamicTest.dynamicTest(c.op(), () -> {
            OpParity.Result r = c.run();
            assertThat(r.pass()).as(r.toString()).isTrue();
        }));
    }

    @TestFactory
    Stream<DynamicTest> tf32MatmulsWithinOnePercent() {
        CudaBackend tf = new CudaBackend(cuda.context(), true);
        return OpParity.matmulChecks(tf, REF, 7, 1e-2).stream().map(c -> DynamicTest.dynamicTest(c.op(), () -> {
            OpParity.Result r = c.run();
            assertThat(r.pass()).as(r.toString()).isTrue();
        }));
    }

    @TestFactory
    Stream<DynamicTest> modelsOnTheGpu() {
        // The training check always; the fixtures from perceiver4j-core's test resources when they are there.
        java.util.List<OpParity.Check> checks = new java.util.ArrayList<>(ModelParity.trainingChecks(cuda,
                new dev.perceiver4j.backend.cpu.CpuBackend(CpuPool.common(), new dev.perceiver4j.backend.cpu.gemm.JavaSgemm(CpuPool.common()))));
        java.nio.file.Path fixtures = java.nio.file.Path.of("../perceiver4j-core/src/test/resources/fixtures");
        if (java.nio.file.Files.isDirectory(fixtures)) checks.addAll(ModelParity.fixtureChecks(cuda, fixtures));
        return checks.stream().map(c -> DynamicTest.dynamicTest(c.op(), () -> {
            OpParity.Result r = c.run();
            assertThat(r.pass()).as(r.toString()).isTrue();
        }));
    }

    @Test
    void backendsFindsTheProvider() {
        assertThat(Backends.create("cuda").name()).startsWith("cuda (");
    }

    @Test
    void tooLargeHeadDimsSaySo() {
        var s = dev.perceiver4j.backend.AttentionShape.of(1, 1, 2, 2, 300, 8);
        var q = cuda.zeros(dev.perceiver4j.tensor.Shape.of(1, 2, 300), dev.perceiver4j.tensor.DType.F32);
        var v = cuda.zeros(dev.perceiver4j.tensor.Shape.of(1, 2, 8), dev.perceiver4j.tensor.DType.F32);
        var lse = cuda.zeros(dev.perceiver4j.tensor.Shape.of(1, 1, 2), dev.perceiver4j.tensor.DType.F32);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> cuda.attention(s, q, q, v, null, v, lse))
                .isInstanceOf(UnsupportedOperationException.class)
                .hasMessageContaining("not implemented yet (at most 256)");
    }
}
