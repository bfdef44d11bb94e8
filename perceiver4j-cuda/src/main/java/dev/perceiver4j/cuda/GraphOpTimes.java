package dev.perceiver4j.cuda;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.AttentionShape;
import dev.perceiver4j.backend.Recording;
import dev.perceiver4j.tensor.DType;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.tensor.Tensor;

import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Developer tool: the device time of each op of a Perceiver AR decoding step as it runs inside a
 * CUDA graph, where {@code bench --profile} cannot look (it waits after every op, so its floor is the
 * host round trip). Each op is recorded {@value #COPIES} times into one graph; the graph is replayed
 * and timed, and the time is divided by the copies. The first row (a one-element fill) is the floor
 * a graph node costs.
 *
 * <pre>java -cp perceiver4j-cuda-…-selftest.jar dev.perceiver4j.cuda.GraphOpTimes [channels] [context] [latents] [heads]</pre>
 */
public final class GraphOpTimes {
    private static final int COPIES = 50, REPLAYS = 40;

    private GraphOpTimes() {}

    public static void main(String[] args) {
        int ch = args.length > 0 ? Integer.parseInt(args[0]) : 512;
        int ctx = args.length > 1 ? Integer.parseInt(args[1]) : 4096;
        int lat = args.length > 2 ? Integer.parseInt(args[2]) : 512;
        int heads = args.length > 3 ? Integer.parseInt(args[3]) : 8;
        CudaBackend be = new CudaBackend(CudaContext.create(0), MatmulPrecision.fromSystemProperties());
        System.out.println("device: " + be.name());
        SplittableRandom r = new SplittableRandom(1);
        Tensor x = rand(be, r, 1, 1, ch), w = rand(be, r, ch, ch), up = rand(be, r, 4 * ch, ch), down = rand(be, r, ch, 4 * ch);
        Tensor emb = rand(be, r, 262, ch), bias = rand(be, r, 262), gamma = rand(be, r, ch), beta = rand(be, r, ch);
        Tensor h4 = be.persistentZeros(Shape.of(1, 1, 4 * ch), DType.F32), y = be.persistentZeros(Shape.of(1, 1, ch), DType.F32);
        Tensor logits = be.persistentZeros(Shape.of(1, 262), DType.F32), pre4 = be.persistentZeros(Shape.of(1, 1, 4 * ch), DType.F32);
        Tensor mean = be.persistentZeros(Shape.of(1), DType.F32), rstd = be.persistentZeros(Shape.of(1), DType.F32);
        Tensor crossK = rand(be, r, 1, ctx, ch), crossV = rand(be, r, 1, ctx, ch), selfK = rand(be, r, 1, lat, ch), selfV = rand(be, r, 1, lat, ch);
        Tensor crossPad = be.persistentZeros(Shape.of(1, ctx), DType.BOOL), selfPad = be.persistentZeros(Shape.of(1, lat), DType.BOOL);
        Tensor row = be.fromInts(new int[] {ctx / 2}, Shape.of(1)), ids = be.fromInts(new int[] {7}, Shape.of(1));
        Tensor invFreq = rand(be, r, ch / heads / 4), lse = be.persistentZeros(Shape.of(1, heads, 1), DType.F32);
        int d = ch / heads;

        System.out.printf(Locale.ROOT, "%-52s %10s%n", "op (" + COPIES + " copies per graph, " + REPLAYS + " replays)", "µs per op");
        time(be, "fill [1] (a graph node's floor)", () -> be.fill(mean, 1f));
        time(be, "matmul 1x" + ch + "x" + ch + " tB", () -> be.matmul(x, false, w, true, null, Activation.NONE, y, null));
        time(be, "matmul 1x" + ch + "x" + 4 * ch + " tB GELU", () -> be.matmul(x, false, up, true, null, Activation.GELU, h4, pre4));
        time(be, "matmul 1x" + 4 * ch + "x" + ch + " tB", () -> be.matmul(h4, false, down, true, null, Activation.NONE, y, null));
        time(be, "matmul 1x" + ch + "x262 tB +bias (logits)", () -> be.matmul(x.reshape(1, ch), false, emb, true, bias, Activation.NONE, logits, null));
        time(be, "layerNorm [1, " + ch + "]", () -> be.layerNorm(x, gamma, beta, 1e-5f, y, mean, rstd));
        time(be, "add [1, " + ch + "]", () -> be.add(x, y, y));
        time(be, "scatterRows [1, " + ch + "] -> [" + ctx + ", " + ch + "]", () -> be.scatterRows(x.reshape(1, ch), row, crossK.reshape(ctx, ch)));
        time(be, "rotary [1, " + ch + "] " + heads + " heads, rot " + d / 2, () -> be.rotary(x.reshape(1, ch), row, invFreq, heads, d / 2, y.reshape(1, ch)));
        time(be, "embedding [1, " + ch + "]", () -> be.embedding(emb, ids, y.reshape(1, ch)));
        AttentionShape cross = new AttentionShape(1, heads, 1, ctx, d, d, (float) (1 / Math.sqrt(d)), true, 0f, 0L, 0L);
        time(be, "attention q1 k" + ctx + " (decode kernels)", () -> be.attention(cross, x, crossK, crossV, crossPad, y, lse));
        AttentionShape self = new AttentionShape(1, heads, 1, lat, d, d, (float) (1 / Math.sqrt(d)), true, 0f, 0L, 0L);
        time(be, "attention q1 k" + lat + " (decode kernels)", () -> be.attention(self, x, selfK, selfV, selfPad, y, lse));
    }

    private static Tensor rand(CudaBackend be, SplittableRandom r, int... dims) {
        Shape s = Shape.of(dims);
        float[] v = new float[s.size()];
        for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextGaussian() * 0.1);
        return be.fromFloats(v, s);
    }

    private static void time(CudaBackend be, String label, Runnable op) {
        try (Recording g = be.record(() -> {
            for (int i = 0; i < COPIES; i++) op.run();
        })) {
            g.replay();
            be.synchronize();
            long t0 = System.nanoTime();
            for (int i = 0; i < REPLAYS; i++) g.replay();
            be.synchronize();
            double us = (System.nanoTime() - t0) / 1e3 / REPLAYS / COPIES;
            System.out.printf(Locale.ROOT, "%-52s %10.2f   (%d graph nodes per copy)%n", label, us, g.ops() / COPIES);
        }
    }
}
