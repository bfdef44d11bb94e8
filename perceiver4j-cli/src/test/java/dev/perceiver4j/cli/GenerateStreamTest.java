package dev.perceiver4j.cli;

import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.generate.Sampler;
import dev.perceiver4j.model.ar.PerceiverAR;
import dev.perceiver4j.model.ar.PerceiverArConfig;
import dev.perceiver4j.model.ar.PerceiverArGenerator;
import dev.perceiver4j.text.ByteTokenizer;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/** Streaming generation: a stop string ends the text exactly before it, and nothing after it is printed. */
class GenerateStreamTest {
    static final CpuPool POOL = CpuPool.create(2);

    /** A random model whose output bias favours lower-case letters, so greedy text is ASCII and varied. */
    static PerceiverAR model() {
        PerceiverArConfig c = PerceiverArConfig.krasserm(2, 1, 1, 2, 0f, ByteTokenizer.VOCAB, 64, 8, 32, false, true);
        PerceiverAR m = new PerceiverAR(new CpuBackend(POOL, new JavaSgemm(POOL)), c, 11L);
        float[] bias = m.params().trainable().get("output_adapter.bias").floats();
        SplittableRandom r = new SplittableRandom(2);
        for (int ch = 'a'; ch <= 'z'; ch++) bias[ByteTokenizer.OFFSET + ch] = 6f + (float) r.nextDouble();
        float[] emb = m.params().trainable().get("input_adapter.txt_embedding.weight").floats();
        for (int i = 0; i < emb.length; i++) emb[i] = (float) r.nextGaussian() * 0.5f;
        return m;
    }

    static String generate(PerceiverAR m, List<String> stops, int[] count) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        PrintStream ps = new PrintStream(out, true, StandardCharsets.UTF_8);
        count[0] = GenerateCommand.stream(m, ByteTokenizer.ids("abc".getBytes(StandardCharsets.UTF_8)), 80, new Sampler.Config(0.7f, 0, 1f, 5L),
                stops, PerceiverArGenerator.Options.defaults(m.config()), ps);
        return out.toString(StandardCharsets.UTF_8);
    }

    @Test
    void stopStringCutsTheStreamRightBeforeIt() {
        PerceiverAR m = model();
        int[] n = new int[1];
        String full = generate(m, List.of(), n);
        assertThat(n[0]).isEqualTo(80);
        assertThat(full).hasSize(80).matches("[a-z]+");
        String stop = full.substring(30, 33);
        int at = full.indexOf(stop);
        String cut = generate(m, List.of(stop), n);
        assertThat(cut).isEqualTo(full.substring(0, at));
        assertThat(n[0]).isEqualTo(at + stop.length());
        // A stop string that never occurs changes nothing.
        assertThat(generate(m, List.of("ZZZ"), n)).isEqualTo(full);
    }
}
