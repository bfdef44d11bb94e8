package dev.perceiver4j.cli;

import dev.perceiver4j.io.SafetensorsReader;
import dev.perceiver4j.io.TensorSource;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/** The commands end to end, in process, on the shared HF fixture model. */
class CliTest {
    static final Path MODEL = Path.of("../perceiver4j-core/src/test/resources/fixtures/hf-perceiver-mlm-tiny");

    private final PrintStream origOut = System.out, origErr = System.err;
    private ByteArrayOutputStream out, err;

    @BeforeEach
    void capture() {
        out = new ByteArrayOutputStream();
        err = new ByteArrayOutputStream();
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
    }

    @AfterEach
    void restore() {
        System.setOut(origOut);
        System.setErr(origErr);
    }

    String stdout() {
        return out.toString(StandardCharsets.UTF_8);
    }

    String stderr() {
        return err.toString(StandardCharsets.UTF_8);
    }

    @Test
    void predictReproducesTheFixtureLogits(@TempDir Path tmp) throws Exception {
        Path io = MODEL.resolve("io.safetensors"), result = tmp.resolve("logits.safetensors");
        int code = Main.run("predict", "--model", MODEL.toString(), "--input", io.toString(), "--output", result.toString(), "--batch-size", "2", "--threads", "2");
        assertThat(code).as(stderr()).isZero();
        try (TensorSource want = SafetensorsReader.open(io); TensorSource got = SafetensorsReader.open(result)) {
            assertThat(got.info("logits").shape()).isEqualTo(want.info("logits").shape());
            float[] a = want.readFloats("logits"), b = got.readFloats("logits");
            double max = 0;
            for (int i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
            assertThat(max).isLessThanOrEqualTo(1e-4);
        }
    }

    @Test
    void fillMaskReplacesEveryMaskAndReportsEachSpan() {
        int code = Main.run("fill-mask", "--model", MODEL.toString(), "--top-k", "2", "ab<mask:3>cd[MASK]");
        assertThat(code).as(stderr()).isZero();
        String[] lines = stdout().split("\n");
        // filled text: the 4 masked bytes replaced by predictions, the rest kept
        assertThat(lines[0]).startsWith("ab").contains("cd").doesNotContain("[MASK]").doesNotContain("<mask");
        assertThat(stdout()).contains("span bytes 2-4:").contains("span bytes 7-7:");
        assertThat(stdout().lines().filter(l -> l.trim().matches("[0-9.e+-]+%\\s+\".*\""))).hasSize(4); // 2 candidates × 2 spans
    }

    @Test
    void inspectListsTensorsAndCounts() {
        assertThat(Main.run("inspect", MODEL.resolve("pytorch_model.bin").toString())).as(stderr()).isZero();
        assertThat(stdout()).contains("\"d_latents\" : 64").contains("perceiver.embeddings.latents").contains("73 tensors, 127,190 parameters");
    }

    @Test
    void badInputGivesOneClearLineAndExitCode1(@TempDir Path tmp) throws Exception {
        assertThat(Main.run("fill-mask", "--model", MODEL.toString(), "no mask")).isEqualTo(1);
        assertThat(stderr()).contains("no [MASK]");
        assertThat(Main.run("predict", "--model", tmp.toString(), "--input", MODEL.resolve("io.safetensors").toString(), "--output", tmp.resolve("o").toString())).isEqualTo(1);
        assertThat(stderr()).contains("config.json");
        Path bad = tmp.resolve("bad.safetensors");
        Files.write(bad, new byte[] {1, 2, 3});
        assertThat(Main.run("predict", "--model", MODEL.toString(), "--input", bad.toString(), "--output", tmp.resolve("o").toString())).isEqualTo(1);
        assertThat(stderr()).contains("bad.safetensors");
        assertThat(Main.run("fill-mask", "--model", MODEL.toString(), "x".repeat(60) + "[MASK]")).isEqualTo(1);
        assertThat(stderr()).contains("at most 40");
    }
}
