package dev.perceiver4j.nn;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** A folded value is reused exactly while its parameters keep their bits, and computed again after any write. */
class ParameterFoldTest {
    static final CpuPool POOL = CpuPool.create(1);
    final Backend be = new CpuBackend(POOL, new JavaSgemm(POOL));

    @Test
    void keptWhileTheParametersKeepTheirBitsAndComputedAgainAfterAnyWrite() {
        Params root = Params.root(be, 3);
        Tensor a = root.weight("a", Shape.of(3, 5), Init.normal(1.0));
        Tensor b = root.weight("b", Shape.of(5), Init.normal(1.0));
        root.pack();                                                   // a and b become views into one slab, as in training
        ParameterFold fold = new ParameterFold(a, b);
        AtomicInteger computed = new AtomicInteger();
        Supplier<Tensor> sum = () -> {                                  // a + b (b broadcast over a's rows)
            computed.incrementAndGet();
            return F.add(a, b);
        };
        try (var ng = Autograd.noGrad()) {
            assertThat(fold.applies()).isTrue();
            float[] first;
            try (Scope s = Scope.open()) {
                first = fold.get(sum).toFloatArray();
            }
            // The kept value outlives the scope that computed it (the scope's buffers go back to the pool and get reused).
            try (Scope s = Scope.open()) {
                F.add(be.zeros(Shape.of(3, 5), dev.perceiver4j.tensor.DType.F32), b);
                assertThat(fold.get(sum).toFloatArray()).containsExactly(first);
            }
            assertThat(computed).hasValue(1);

            // Every element of every source counts, the last ones too, and a write of the same bits does not.
            int[][] writes = {{0, 0}, {0, 14}, {1, 4}};
            for (int[] w : writes) {
                Tensor t = w[0] == 0 ? a : b;
                float[] data = t.floats();
                int at = t.offset() + w[1];
                float old = data[at];
                data[at] = old;
                fold.get(sum);
                int before = computed.get();
                data[at] = old + 1f;
                float[] now = fold.get(sum).toFloatArray();
                assertThat(computed.get()).as("write to %s[%d]", t == a ? "a" : "b", w[1]).isEqualTo(before + 1);
                int row = w[0] == 0 ? w[1] / 5 : 0, col = w[1] % 5;
                assertThat(now[row * 5 + col]).isEqualTo(a.floats()[a.offset() + row * 5 + col] + b.floats()[b.offset() + col]);
            }
            // 0.0 and -0.0 are different bits (a product by them can differ in sign: 1/x).
            b.floats()[b.offset() + 2] = 0f;
            fold.get(sum);
            int before = computed.get();
            b.floats()[b.offset() + 2] = -0f;
            fold.get(sum);
            assertThat(computed.get()).isEqualTo(before + 1);
        }
    }

    @Test
    void appliesOnlyWithoutGradients() {
        Params root = Params.root(be, 3);
        Tensor a = root.weight("a", Shape.of(4), Init.ones());
        ParameterFold fold = new ParameterFold(a);
        assertThat(Autograd.enabled()).isTrue();
        assertThat(fold.applies()).as("gradients recorded: the kept value would not pass them on").isFalse();
        assertThatThrownBy(() -> fold.get(() -> a)).isInstanceOf(IllegalStateException.class).hasMessageContaining("gradients off");
        assertThatThrownBy(() -> new ParameterFold()).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("no source");
    }
}
