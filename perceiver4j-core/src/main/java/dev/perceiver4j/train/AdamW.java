package dev.perceiver4j.train;

import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Slab;
import dev.perceiver4j.tensor.Tensor;

import java.util.List;

/**
 * AdamW with decoupled weight decay (Loshchilov &amp; Hutter; PyTorch semantics) over a parameter
 * slab and its gradient slab. Moments live in two more slabs of the same layout. Weight decay
 * applies to matrices and embeddings (rank ≥ 2) only, not to biases and norm gains.
 */
public final class AdamW {
    /** Hyper-parameters; {@code lr} is the peak rate, schedules scale it per step. */
    public record Config(float lr, float beta1, float beta2, float eps, float weightDecay) {
        public Config {
            if (!(lr >= 0)) throw new IllegalArgumentException("learning rate must be >= 0, got " + lr);
            if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw new IllegalArgumentException("betas must be in [0, 1): " + beta1 + ", " + beta2);
            if (!(eps > 0)) throw new IllegalArgumentException("eps must be > 0, got " + eps);
            if (!(weightDecay >= 0)) throw new IllegalArgumentException("weight decay must be >= 0, got " + weightDecay);
        }

        public static Config defaults(float lr) {
            return new Config(lr, 0.9f, 0.999f, 1e-8f, 0.01f);
        }
    }

    private final Backend backend;
    private final Config config;
    private final Slab params, grads, m, v;
    private final Tensor norm;   // F32 [1]: the last clipGradNorm's gradient norm
    private long step;

    public AdamW(Backend backend, Config config, Slab params, Slab grads) {
        if (params.totalElements() != grads.totalElements()) throw new IllegalArgumentException("parameter and gradient slabs differ in size");
        this.backend = backend;
        this.config = config;
        this.params = params;
        this.grads = grads;
        this.m = params.like(backend);
        this.v = params.like(backend);
        this.norm = backend.persistentZeros(Shape.of(1), DType.F32);
    }

    /** Steps taken so far. */
    public long step() {
        return step;
    }

    /** Restores the step counter (resume). */
    public void setStep(long s) {
        this.step = s;
    }

    /** First-moment slab (for checkpoints). */
    public Slab firstMoment() {
        return m;
    }

    /** Second-moment slab (for checkpoints). */
    public Slab secondMoment() {
        return v;
    }

    /**
     * One update with learning rate {@code lr} (from a schedule). Gradients are left as they are.
     * Weight decay applies to matrices (rank ≥ 2) only; consecutive slab members with the same
     * decay are updated by one call over their contiguous range (the update is elementwise, so
     * this equals one call per member, with far fewer kernel launches on a GPU).
     */
    public void step(float lr) {
        step++;
        List<Slab.Entry> entries = params.entries();
        int i = 0;
        while (i < entries.size()) {
            float wd = decay(entries.get(i));
            int start = entries.get(i).offset(), end = start;
            while (i < entries.size() && decay(entries.get(i)) == wd && entries.get(i).offset() == end) {
                end += entries.get(i).shape().size();
                i++;
            }
            Shape run = Shape.of(end - start);
            backend.adamw(params.data().alias(start, run), grads.data().alias(start, run), m.data().alias(start, run),
                    v.data().alias(start, run), lr, config.beta1(), config.beta2(), config.eps(), wd, step);
        }
    }

    private float decay(Slab.Entry e) {
        return e.shape().rank() >= 2 ? config.weightDecay() : 0f;
    }

    /**
     * Zeroes every gradient (one fill over the slab). On the CUDA backend the fill is lazy: each gradient's
     * first contribution then writes it instead of adding to zeros (call it inside a recorded step for that
     * saving at every replay; outside, the pending zeros are filled before the next replay).
     */
    public void zeroGrad() {
        backend.fill(grads.data(), 0f);
    }

    /**
     * Scales gradients so their global L2 norm is at most {@code maxNorm}; {@code maxNorm <= 0} only
     * measures. Returns the norm before clipping as a [1] tensor this optimizer owns and overwrites at
     * the next call: the norm and the clipping stay on the device, so a GPU step does not wait here;
     * read it with {@code item()} once the step is queued.
     */
    public Tensor clipGradNorm(double maxNorm) {
        Tensor g = grads.data();
        backend.l2Norm(g, norm);
        if (maxNorm > 0) backend.clipByNorm(g, norm, (float) maxNorm);
        return norm;
    }
}
