package dev.perceiver4j.train;

import dev.perceiver4j.backend.Activation;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.data.Split;
import dev.perceiver4j.io.SafetensorsReader;
import dev.perceiver4j.io.TensorSource;
import dev.perceiver4j.model.ar.PerceiverArConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Training a tiny Perceiver AR end to end: it learns, resumes exactly, and refuses a mismatched resume. */
class ClmTrainerTest {
    static final CpuPool POOL = CpuPool.create(2);

    static Backend be() {
        return new CpuBackend(POOL, new JavaSgemm(POOL));
    }

    static PerceiverArConfig model(float prefixDropout) {
        return new PerceiverArConfig(2, null, 1, 1, 2, 2, prefixDropout, 0f, 0.1f, false, false,
                262, 48, 16, 32, false, true, true, 0.02f, Activation.GELU, true, PerceiverArConfig.PrefixDropoutMode.SUBSET, null);
    }

    /** A text with strong, learnable byte statistics. */
    static Split data() {
        StringBuilder train = new StringBuilder(), valid = new StringBuilder();
        String[] words = {"the cat sat on the mat. ", "a dog ran in the fog. ", "the sun is hot. "};
        java.util.SplittableRandom r = new java.util.SplittableRandom(4);
        for (int i = 0; i < 400; i++) train.append(words[r.nextInt(3)]);
        for (int i = 0; i < 60; i++) valid.append(words[r.nextInt(3)]);
        return new Split(train.toString().getBytes(StandardCharsets.US_ASCII), valid.toString().getBytes(StandardCharsets.US_ASCII),
                List.of("train.txt"), List.of("valid.txt"), "test split");
    }

    static ClmTrainer.Config config(int steps) {
        return new ClmTrainer.Config(4, 2, steps, 3e-3f, 5, 0.1f, 0.01f, 1.0, 1e-4f, 0.25f, 4, 4, 3, 2, 77L);
    }

    @Test
    void learnsTheTextWellBelowTheUntrainedBitsPerByte(@TempDir Path run) throws IOException {
        Split d = data();
        ClmTrainer.Result r = new ClmTrainer(be(), model(0.5f), config(200), d, "test", run, null).run();
        assertThat(r.step()).isEqualTo(200);
        assertThat(r.initialValidationBitsPerByte()).isGreaterThan(7.0);          // ≈ log2(262) untrained
        // A model that uses context must beat the best context-free (unigram) code of the validation text by a wide margin.
        double unigram = unigramBits(d.validation());
        System.out.printf("tiny Perceiver AR: validation %.3f bits/byte, unigram entropy %.3f%n", r.validationBitsPerByte(), unigram);
        assertThat(r.validationBitsPerByte()).isLessThan(unigram - 1.0);
        assertThat(run.resolve("model/config.json")).exists();
        assertThat(run.resolve("model/model.safetensors")).exists();
        assertThat(run.resolve("loss.png")).exists();
        List<Map<String, Object>> metrics = MetricsLog.read(run.resolve("metrics.jsonl"));
        assertThat(metrics.stream().filter(m -> m.containsKey("loss")).count()).isEqualTo(200);
        assertThat(metrics.stream().filter(m -> m.containsKey("val_bits_per_byte")).count()).isEqualTo(1 + 200 / 4);
    }

    static double unigramBits(byte[] text) {
        int[] count = new int[256];
        for (byte b : text) count[b & 0xFF]++;
        double h = 0;
        for (int c : count) if (c > 0) h -= c / (double) text.length * Math.log(c / (double) text.length) / Math.log(2);
        return h;
    }

    /** Parameters and both AdamW moments of the run's latest checkpoint, by name. */
    static Map<String, float[]> state(Path run) throws IOException {
        Path ckpt = new CheckpointDir(run.resolve("checkpoints"), 1).latest().orElseThrow();
        Map<String, float[]> out = new java.util.TreeMap<>();
        for (String f : List.of("model.safetensors", "optimizer.safetensors")) {
            try (TensorSource src = SafetensorsReader.open(ckpt.resolve(f))) {
                for (String n : src.names()) out.put(f + ":" + n, src.readFloats(n));
            }
        }
        return out;
    }

    @Test
    void aResumedRunReproducesTheUninterruptedOneBitForBit(@TempDir Path a, @TempDir Path b) throws IOException {
        ClmTrainer.Result whole = new ClmTrainer(be(), model(0.5f), config(8), data(), "test", a, null).run();

        // Interrupted after step 5 (as Ctrl-C does), then resumed by a fresh trainer with the same settings.
        ClmTrainer[] first = new ClmTrainer[1];
        first[0] = new ClmTrainer(be(), model(0.5f), config(8), data(), "test", b, new ClmTrainer.Listener() {
            @Override
            public void step(ClmTrainer.StepStats s) {
                if (s.step() == 5) first[0].requestStop();
            }
        });
        ClmTrainer.Result stopped = first[0].run();
        assertThat(stopped.interrupted()).isTrue();
        assertThat(stopped.step()).isEqualTo(5);
        ClmTrainer.Result resumed = new ClmTrainer(be(), model(0.5f), config(8), data(), "test", b, null).run();
        assertThat(resumed.step()).isEqualTo(8);

        Map<String, float[]> sa = state(a), sb = state(b);
        assertThat(sb.keySet()).isEqualTo(sa.keySet());
        for (String k : sa.keySet()) assertThat(sb.get(k)).as(k).containsExactly(sa.get(k));
        assertThat(resumed.validationBitsPerByte()).isEqualTo(whole.validationBitsPerByte());

        // The metrics log of the resumed run has each step exactly once.
        List<Long> steps = MetricsLog.read(b.resolve("metrics.jsonl")).stream().filter(m -> m.containsKey("loss"))
                .map(m -> ((Number) m.get("step")).longValue()).toList();
        assertThat(steps).containsExactly(1L, 2L, 3L, 4L, 5L, 6L, 7L, 8L);
    }

    @Test
    void refusesToResumeWithADifferentModel(@TempDir Path run) throws IOException {
        new ClmTrainer(be(), model(0.5f), config(3), data(), "test", run, null).run();
        assertThatThrownBy(() -> new ClmTrainer(be(), model(0.25f), config(6), data(), "test", run, null).run())
                .hasMessageContaining("cross_attention_dropout").hasMessageContaining("new --run folder");
    }

    @Test
    void randomTruncationDrawsLengthsInRangeDeterministically(@TempDir Path run) {
        ClmTrainer t = new ClmTrainer(be(), model(0.5f), config(3), data(), "test", run, null);
        int shorter = 0;
        for (long draw = 0; draw < 2000; draw++) {
            int n = t.truncatedLength(draw, 48);
            assertThat(n).isBetween(1, 48).isEqualTo(t.truncatedLength(draw, 48));
            if (n < 48) shorter++;
        }
        assertThat(shorter / 2000.0).isBetween(0.20, 0.30);   // the configured 0.25, less the draws of n = 48 itself
        ClmTrainer.Config c = config(3);
        ClmTrainer none = new ClmTrainer(be(), model(0.5f), new ClmTrainer.Config(c.batch(), c.accumulation(), c.steps(), c.lr(), c.warmup(),
                c.minLrRatio(), c.weightDecay(), c.clip(), c.zLoss(), 0f, c.evalEvery(), c.evalWindows(), c.checkpointEvery(),
                c.keepCheckpoints(), c.seed()), data(), "test", run, null);
        for (long draw = 0; draw < 100; draw++) assertThat(none.truncatedLength(draw, 48)).isEqualTo(48);
        assertThat(ClmTrainer.firstColumns(new int[] {1, 2, 3, 4, 5, 6}, 3, 2)).containsExactly(1, 2, 4, 5);
    }

    @Test
    void tooLittleTextIsAClearError() {
        Split tiny = new Split(new byte[10], new byte[100], List.of("a"), List.of("b"), "tiny");
        assertThatThrownBy(() -> new ClmTrainer(be(), model(0f), config(3), tiny, "test", Path.of("unused"), null))
                .hasMessageContaining("10 bytes").hasMessageContaining("--seq-len");
    }
}
