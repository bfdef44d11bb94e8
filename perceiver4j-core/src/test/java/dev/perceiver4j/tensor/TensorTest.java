package dev.perceiver4j.tensor;

import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.NaiveSgemm;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class TensorTest {
    static final Backend BE = new CpuBackend(CpuPool.create(1), new NaiveSgemm());

    /**
     * bf16Gradient: a BF16 tensor's gradient becomes BF16 (before it exists); an F32 tensor's stays F32; a
     * BF16 gradient is not handed to a tensor whose gradient is F32; F.bf16Gradient does nothing on a
     * backend without BF16 gradients (the CPU).
     */
    @Test
    void bf16GradientsOnlyForBf16TensorsAndNeverHandedToF32Ones() {
        Tensor h = BE.zeros(Shape.of(2, 3), DType.BF16).requiresGrad(true);
        dev.perceiver4j.autograd.F.bf16Gradient(h);
        assertThat(h.gradType()).as("the CPU takes no BF16 gradients").isEqualTo(DType.F32);
        h.bf16Gradient();
        assertThat(h.gradType()).isEqualTo(DType.BF16);
        assertThat(h.reshape(3, 2).gradOrZeros().dtype()).as("a view shares its base's gradient").isEqualTo(DType.BF16);
        Tensor f = BE.zeros(Shape.of(2, 3), DType.F32).requiresGrad(true);
        f.bf16Gradient();
        assertThat(f.gradType()).isEqualTo(DType.F32);
        Tensor g = BE.zeros(Shape.of(2, 3), DType.BF16).requiresGrad(true);
        g.gradOrZeros();
        g.bf16Gradient();
        assertThat(g.gradType()).as("too late: the gradient exists").isEqualTo(DType.F32);
        try (Scope s = Scope.open()) {
            Tensor from = BE.empty(Shape.of(2, 3), DType.BF16).requiresGrad(true), to = BE.empty(Shape.of(2, 3), DType.F32).requiresGrad(true);
            from.bf16Gradient();
            from.gradOrZeros();
            assertThat(dev.perceiver4j.autograd.Autograd.handOverGrad(from, to)).isFalse();
            assertThat(to.grad()).isNull();
        }
    }

    @Test
    void adjacentJoinsTensorsPackedBackToBackWithTheirGradients() {
        Tensor a = BE.fromFloats(new float[] {1, 2, 3, 4}, Shape.of(2, 2)).requiresGrad(true);
        Tensor b = BE.fromFloats(new float[] {5, 6}, Shape.of(1, 2)).requiresGrad(true);
        Tensor c = BE.fromFloats(new float[] {7, 8, 9, 10, 11, 12}, Shape.of(3, 2)).requiresGrad(true);
        Tensor v = BE.fromFloats(new float[] {0, 0, 0}, Shape.of(3)).requiresGrad(true);
        assertThat(Tensor.adjacent(a, b, c)).as("separate storages").isNull();
        Slab values = Slab.pack(BE, List.of(a, b, c, v)), grads = values.like(BE);
        for (int i = 0; i < 4; i++) List.of(a, b, c, v).get(i).setGrad(grads.view(i));
        Tensor abc = Tensor.adjacent(a, b, c);
        assertThat(abc.shape()).isEqualTo(Shape.of(6, 2));
        assertThat(abc.toFloatArray()).containsExactly(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12);
        assertThat(abc.requiresGrad()).isTrue();
        // its gradient is the parts' gradients: adding into it adds into theirs
        BE.axpy(1f, BE.fromFloats(new float[] {1, 1, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3}, Shape.of(6, 2)), abc.grad());
        assertThat(b.grad().toFloatArray()).containsExactly(2, 2);
        assertThat(c.grad().toFloatArray()).containsExactly(3, 3, 3, 3, 3, 3);
        assertThat(Tensor.adjacent(a, c)).as("a gap between them").isNull();
        assertThat(Tensor.adjacent(b, a)).as("out of order").isNull();
        assertThat(Tensor.adjacent(c, v)).as("other trailing dims").isNull();
        assertThat(Tensor.adjacent(a.reshape(4), b.reshape(2))).as("views").isNull();
        b.setGrad(null);
        assertThat(Tensor.adjacent(a, b, c)).as("only some parts have gradients").isNull();
    }

    @Test
    void reshapeIsAViewWithInference() {
        Tensor t = BE.fromFloats(new float[] {1, 2, 3, 4, 5, 6}, Shape.of(2, 3));
        Tensor v = t.reshape(3, -1);
        assertThat(v.shape()).isEqualTo(Shape.of(3, 2));
        assertThat(v.data()).isSameAs(t.data());
        assertThatThrownBy(() -> t.reshape(4, -1)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("[2, 3]");
        assertThatThrownBy(() -> t.reshape(5)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void shapeRejectsNegativeDimsAndReportsRows() {
        assertThatThrownBy(() -> Shape.of(2, -1)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("axis 1");
        assertThat(Shape.of(2, 3, 4).rows()).isEqualTo(6);
        assertThat(Shape.of(2, 3, 4).with(1, 7)).isEqualTo(Shape.of(2, 7, 4));
    }

    @Test
    void slabPacksTensorsIntoOneBufferKeepingValuesAndIdentity() {
        Tensor a = BE.fromFloats(new float[] {1, 2, 3}, Shape.of(3)).name("a");
        Tensor b = BE.fromFloats(new float[] {4, 5, 6, 7}, Shape.of(2, 2)).name("b");
        Slab slab = Slab.pack(BE, List.of(a, b));
        assertThat(slab.totalElements()).isEqualTo(7);
        assertThat(a.data()).isSameAs(b.data()).isSameAs(slab.data().data());
        assertThat(a.toFloatArray()).containsExactly(1, 2, 3);
        assertThat(b.toFloatArray()).containsExactly(4, 5, 6, 7);
        assertThat(slab.data().toFloatArray()).containsExactly(1, 2, 3, 4, 5, 6, 7);
        assertThat(slab.entries().get(1)).isEqualTo(new Slab.Entry("b", 3, Shape.of(2, 2)));
        BE.fill(slab.data(), 0f); // one fill zeroes every member
        assertThat(b.toFloatArray()).containsOnly(0f);
    }

    @Test
    void castsRoundToBf16AndBack() {
        Tensor f = BE.fromFloats(new float[] {1f, 1.00390625f, -3.5f, Float.NaN}, Shape.of(4));
        Tensor h = BE.empty(Shape.of(4), DType.BF16);
        BE.cast(f, h);
        Tensor back = BE.empty(Shape.of(4), DType.F32);
        BE.cast(h, back);
        float[] r = back.toFloatArray();
        assertThat(r[0]).isEqualTo(1f);
        assertThat(r[1]).isEqualTo(1f);        // 1 + 2^-8 is a tie: rounds to even (1.0)
        assertThat(r[2]).isEqualTo(-3.5f);
        assertThat(r[3]).isNaN();
    }

    @Test
    void keepHandsABufferToTheEnclosingScope() {
        try (Scope outer = Scope.open()) {
            Tensor kept, dropped;
            try (Scope inner = Scope.open()) {
                kept = inner.keep(BE.zeros(Shape.of(32), DType.F32));
                dropped = BE.zeros(Shape.of(32), DType.F32);
                assertThat(inner.buffersHeld()).isEqualTo(1);
            }
            assertThat(outer.buffersHeld()).isEqualTo(1);
            assertThat(Scope.owns(kept.data())).isTrue();
            // the released buffer is handed out again; the kept one is not
            Tensor next = BE.empty(Shape.of(32), DType.F32);
            assertThat(next.data()).isSameAs(dropped.data()).isNotSameAs(kept.data());
        }
    }

    @Test
    void scopeHandsBuffersBackAndNestsPerThread() {
        Object first;
        try (Scope outer = Scope.open()) {
            Tensor t = BE.empty(Shape.of(16), DType.F32);
            first = t.data();
            try (Scope inner = Scope.open()) {
                Tensor u = BE.empty(Shape.of(16), DType.F32);
                assertThat(u.data()).isNotSameAs(first);
                assertThat(Scope.owns(first)).isTrue();
            }
            Scope s1 = Scope.open();
            Scope s2 = Scope.open();
            assertThatThrownBy(s1::close).isInstanceOf(IllegalStateException.class).hasMessageContaining("innermost");
            s2.close();
            s1.close();
        }
        assertThat(Scope.current()).isNull();
        assertThat(Scope.owns(first)).isFalse();
    }
}
