package dev.perceiver4j.backend;

import dev.perceiver4j.autograd.F;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.RefBackend;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Runs the same differentiable graph, touching every Backend op, on the fast CPU backend and on
 * the reference backend (double-precision oracle) and compares the loss and every gradient. New
 * backends (CUDA) join this test by being added to {@link #candidates()}.
 */
class BackendParityTest {
    static final CpuPool POOL = CpuPool.create(3);
    static final Backend REF = new RefBackend(POOL);

    static List<Backend> candidates() {
        return List.of(new CpuBackend(POOL, new JavaSgemm(POOL)));
    }

    /** Inputs as plain arrays so each backend builds its own tensors from identical values. */
    record Inputs(int b, int n, int d, int heads, int vocab, float[][] params, int[] ids, int[] targets, int[] positions, byte[] pad) {}

    static Inputs inputs(long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        int b = 2, n = 9, d = 16, heads = 2, vocab = 13;
        int[][] shapes = {{vocab, d}, {n, d}, {d}, {d}, {3 * d, d}, {3 * d}, {d, d}, {vocab, d}, {d}};
        float[][] p = new float[shapes.length][];
        for (int i = 0; i < shapes.length; i++) {
            int size = 1;
            for (int s : shapes[i]) size *= s;
            p[i] = new float[size];
            for (int j = 0; j < size; j++) p[i][j] = (float) ((rng.nextDouble() * 2 - 1) * 0.7);
        }
        int[] ids = new int[b * n], tg = new int[b * n], pos = new int[b * n];
        byte[] pad = new byte[b * n];
        for (int i = 0; i < b * n; i++) {
            ids[i] = rng.nextInt(vocab);
            tg[i] = i % 5 == 3 ? -100 : rng.nextInt(vocab);
            pos[i] = i % n;
        }
        pad[n] = pad[n + 1] = 1; // row 1 left-padded by 2
        return new Inputs(b, n, d, heads, vocab, p, ids, tg, pos, pad);
    }

    static final int[][] SHAPES = {{13, 16}, {9, 16}, {16}, {16}, {48, 16}, {48}, {16, 16}, {13, 16}, {16}};

    /** Builds and runs the graph on {@code be}; returns [loss, grads...] flattened per parameter. */
    static List<float[]> run(Backend be, Inputs in) {
        List<Tensor> ps = new ArrayList<>();
        for (int i = 0; i < in.params().length; i++) ps.add(be.fromFloats(in.params()[i], Shape.of(SHAPES[i])).requiresGrad(true));
        Tensor table = ps.get(0), pos = ps.get(1), gamma = ps.get(2), beta = ps.get(3), w1 = ps.get(4), b1 = ps.get(5);
        Tensor wo = ps.get(6), head = ps.get(7), gate = ps.get(8);
        int b = in.b(), n = in.n(), d = in.d();
        Tensor ids = be.fromInts(in.ids(), Shape.of(b, n));
        Tensor targets = be.fromInts(in.targets(), Shape.of(b * n));
        Tensor positions = be.fromInts(in.positions(), Shape.of(b * n));
        Tensor invFreq = be.fromFloats(new float[] {1f, 0.3f, 0.05f}, Shape.of(3));
        Tensor keyPad = be.zeros(Shape.of(b, n), DType.BOOL);
        System.arraycopy(in.pad(), 0, keyPad.bools(), 0, in.pad().length);

        Tensor x = F.add(F.embedding(table, ids), pos);                               // [B, N, D]
        Tensor h = F.layerNorm(x, gamma, beta, 1e-5f);
        Tensor qkv = F.linear(h, w1, b1, Activation.GELU);                             // [B, N, 3D]
        Tensor q = F.rotary(F.narrow(qkv, 2, 0, d), positions, invFreq, in.heads(), 6);
        Tensor k = F.rotary(F.narrow(qkv, 2, d, d), positions, invFreq, in.heads(), 6);
        Tensor v = F.narrow(qkv, 2, 2 * d, d);
        Tensor latents = F.narrow(q, 1, n - 4, 4);                                     // last 4 positions attend all
        Tensor a1 = F.attention(latents, k, v, keyPad, in.heads(), true, 0.2f, 11L, 3L); // [B, 4, D]
        Tensor a2 = F.add(F.attention(q, k, v, keyPad, in.heads(), false, 0f, 0L, 0L), // [B, N, D]: padded keys, and
                F.attention(q, k, v, null, in.heads(), false, 0f, 0L, 0L));             // none (the CPU's materialized forward)
        Tensor y = F.concat(1, F.narrow(a2, 1, 0, n - 4), F.add(a1, F.narrow(a2, 1, n - 4, 4)));
        y = F.linear(y, wo, null, Activation.SQUARED_RELU);
        y = F.mul(F.dropout(F.add(y, x), 0.1f, 5L, 1L), gate);
        Tensor logits = F.matmul(y.reshape(b * n, d), false, head, true, null, Activation.NONE);
        Tensor loss = F.crossEntropy(logits, targets, -100, 1e-2f);
        loss.backward();

        List<float[]> out = new ArrayList<>();
        out.add(new float[] {loss.item()});
        for (Tensor p : ps) out.add(p.grad().toFloatArray());
        Tensor sm = be.empty(logits.shape(), DType.F32);
        be.softmax(logits, sm);
        out.add(sm.toFloatArray());
        return out;
    }

    @Test
    void everyOpForwardAndBackwardMatchesTheReference() {
        for (long seed : new long[] {1, 2, 3}) {
            Inputs in = inputs(seed);
            List<float[]> want = run(REF, in);
            for (Backend be : candidates()) {
                List<float[]> got = run(be, in);
                for (int t = 0; t < want.size(); t++) {
                    float[] w = want.get(t), g = got.get(t);
                    double scale = 0;
                    for (float v : w) scale = Math.max(scale, Math.abs(v));
                    for (int i = 0; i < w.length; i++) {
                        // float32 kernels vs a double oracle through a ~15-op graph: relative 1e-4 of the tensor's scale
                        assertThat((double) Math.abs(g[i] - w[i])).as("%s tensor %d [%d] seed %d: %s vs reference %s", be.name(), t, i, seed, g[i], w[i])
                                .isLessThanOrEqualTo(1e-4 * Math.max(scale, 1e-3));
                    }
                }
            }
        }
    }

    @Test
    void adamwAndReductionsMatchTheReference() {
        SplittableRandom rng = new SplittableRandom(9);
        float[] p = new float[1001], g = new float[1001];
        for (int i = 0; i < p.length; i++) {
            p[i] = (float) rng.nextGaussian();
            g[i] = (float) rng.nextGaussian();
        }
        List<float[]> want = adamRun(REF, p, g);
        for (Backend be : candidates()) {
            List<float[]> got = adamRun(be, p, g);
            for (int t = 0; t < want.size(); t++) {
                for (int i = 0; i < want.get(t).length; i++) {
                    assertThat((double) got.get(t)[i]).isCloseTo(want.get(t)[i], org.assertj.core.data.Offset.offset(1e-5 * Math.max(1, Math.abs(want.get(t)[i]))));
                }
            }
        }
    }

    /**
     * scatterRows writes row i of src to the row rows[i] says and touches nothing else: with
     * consecutive indices it equals unnarrow; a permutation puts each row where it names; BOOL
     * rows (padding masks) move too; a bad index names itself.
     */
    @Test
    void scatterRowsEqualsUnnarrowAndHonoursEveryIndex() {
        SplittableRandom rng = new SplittableRandom(4);
        float[] base = new float[7 * 5], rows = new float[3 * 5];
        for (int i = 0; i < base.length; i++) base[i] = (float) rng.nextGaussian();
        for (int i = 0; i < rows.length; i++) rows[i] = (float) rng.nextGaussian();
        for (Backend be : List.of(REF, candidates().get(0))) {
            Tensor viaUnnarrow = be.fromFloats(base, Shape.of(1, 7, 5)), viaScatter = be.fromFloats(base, Shape.of(1, 7, 5));
            Tensor src = be.fromFloats(rows, Shape.of(1, 3, 5));
            be.unnarrow(src, 1, 2, viaUnnarrow, false);
            be.scatterRows(src, be.fromInts(new int[] {2, 3, 4}, Shape.of(3)), viaScatter.reshape(7, 5));
            assertThat(viaScatter.toFloatArray()).containsExactly(viaUnnarrow.toFloatArray());

            Tensor permuted = be.fromFloats(base, Shape.of(7, 5));
            int[] to = {6, 0, 3};
            be.scatterRows(src, be.fromInts(to, Shape.of(3)), permuted);
            float[] got = permuted.toFloatArray();
            for (int r = 0; r < 7; r++) {
                int from = r == 6 ? 0 : r == 0 ? 1 : r == 3 ? 2 : -1;
                for (int c = 0; c < 5; c++) {
                    float want = from < 0 ? base[r * 5 + c] : rows[from * 5 + c];
                    assertThat(got[r * 5 + c]).as("%s row %d col %d", be.name(), r, c).isEqualTo(want);
                }
            }

            Tensor pad = be.fromBools(new boolean[] {true, true, true, true}, Shape.of(1, 4));
            be.scatterRows(be.zeros(Shape.of(1, 1), DType.BOOL), be.fromInts(new int[] {2}, Shape.of(1)), pad.reshape(4, 1));
            assertThat(pad.toFloatArray()).containsExactly(1f, 1f, 0f, 1f);

            Tensor idx = be.zeros(Shape.of(2, 3), DType.I32), mask = be.zeros(Shape.of(4), DType.BOOL);
            be.writeInts(new int[] {4, -2, 9}, idx.alias(3, Shape.of(3)));
            be.writeBools(new boolean[] {false, true, true, false}, mask);
            assertThat(idx.toFloatArray()).containsExactly(0f, 0f, 0f, 4f, -2f, 9f);
            assertThat(mask.toFloatArray()).containsExactly(0f, 1f, 1f, 0f);
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> be.writeInts(new int[] {1, 2}, idx)).hasMessageContaining("2 values");

            Tensor bad = be.fromInts(new int[] {1, 7, 0}, Shape.of(3));
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> be.scatterRows(src, bad, permuted))
                    .hasMessageContaining("row index 7 at position 1");
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> be.scatterRows(src, bad, be.zeros(Shape.of(7, 4), DType.F32)))
                    .hasMessageContaining("row width");
        }
    }

    static List<float[]> adamRun(Backend be, float[] p0, float[] g0) {
        Shape s = Shape.of(p0.length);
        Tensor p = be.fromFloats(p0, s), g = be.fromFloats(g0, s), m = be.zeros(s, DType.F32), v = be.zeros(s, DType.F32);
        for (int step = 1; step <= 3; step++) be.adamw(p, g, m, v, 1e-2f, 0.9f, 0.99f, 1e-8f, 0.1f, step);
        Tensor norm = be.zeros(Shape.of(1), DType.F32);
        be.l2Norm(g, norm);
        return List.of(p.toFloatArray(), m.toFloatArray(), v.toFloatArray(), norm.toFloatArray());
    }
}
