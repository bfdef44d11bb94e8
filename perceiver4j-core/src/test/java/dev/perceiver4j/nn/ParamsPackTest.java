package dev.perceiver4j.nn;

import dev.perceiver4j.backend.ProfilingBackend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Slab;
import dev.perceiver4j.tensor.Tensor;
import dev.perceiver4j.train.AdamW;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** The slab layout Params.pack chooses, and the AdamW update it makes cheap. */
class ParamsPackTest {
    static final CpuPool POOL = CpuPool.create(1);

    /**
     * Matrices first, then vectors, each in registration order; AdamW then updates the two runs
     * with one call each, and decays exactly the matrices (with zero gradients a decayed value
     * shrinks by lr·wd, an undecayed one stays).
     */
    @Test
    void matricesComeFirstSoAdamWNeedsTwoLaunches() {
        ProfilingBackend be = new ProfilingBackend(new CpuBackend(POOL, new JavaSgemm(POOL)));
        Params root = Params.root(be, 1);
        Tensor w1 = root.weight("a.weight", Shape.of(4, 3), Init.ones());
        Tensor b1 = root.weight("a.bias", Shape.of(4), Init.ones());
        Tensor w2 = root.weight("b.weight", Shape.of(2, 4), Init.ones());
        Tensor ln = root.weight("ln.weight", Shape.of(4), Init.ones());
        Slab slab = root.pack();
        assertThat(slab.entries().stream().map(Slab.Entry::name).toList())
                .containsExactly("a.weight", "b.weight", "a.bias", "ln.weight");
        assertThat(slab.entries().stream().map(Slab.Entry::offset).toList()).containsExactly(0, 12, 20, 24);

        float lr = 0.1f, wd = 0.5f;
        AdamW opt = new AdamW(be, new AdamW.Config(lr, 0.9f, 0.999f, 1e-8f, wd), slab, root.gradients());
        opt.zeroGrad();
        be.reset();
        opt.step(lr);
        String report = be.report(1);
        assertThat(report.lines().filter(l -> l.startsWith("adamw")).toList())
                .hasSize(2).anyMatch(l -> l.startsWith("adamw [20] ")).anyMatch(l -> l.startsWith("adamw [8] "));
        for (Tensor m : List.of(w1, w2)) assertThat(m.toFloatArray()).containsOnly(1f - lr * wd);
        for (Tensor v : List.of(b1, ln)) assertThat(v.toFloatArray()).containsOnly(1f);
    }
}
