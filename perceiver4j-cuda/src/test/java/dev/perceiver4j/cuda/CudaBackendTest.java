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

    @Test
    void backendsFindsTheProvider() {
        assertThat(Backends.create("cuda").name()).startsWith("cuda (");
    }

    @Test
    void notYetImplementedOpsSaySo() {
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> cuda.dropout(null, 0.1f, 1, 2, null))
                .isInstanceOf(UnsupportedOperationException.class)
                .hasMessage("CudaBackend: dropout not implemented yet");
    }
}
