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

    static final Path AR = Path.of("../perceiver4j-core/src/test/resources/fixtures/kr-perceiver-ar");

    @Test
    void predictRunsPerceiverArCheckpointsForEveryPrefixLength(@TempDir Path tmp) throws Exception {
        Path io = AR.resolve("io.safetensors");
        for (int p : new int[] {48, 20, 0}) {
            Path result = tmp.resolve("ar" + p + ".safetensors");
            int code = Main.run("predict", "--model", AR.toString(), "--input", io.toString(), "--output", result.toString(),
                    "--prefix-len", Integer.toString(p), "--threads", "2");
            assertThat(code).as(stderr()).isZero();
            try (TensorSource want = SafetensorsReader.open(io); TensorSource got = SafetensorsReader.open(result)) {
                assertThat(got.info("logits").shape()).isEqualTo(want.info("logits_prefix" + p).shape());
                float[] a = want.readFloats("logits_prefix" + p), b = got.readFloats("logits");
                double max = 0;
                for (int i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));   // every row and position, padded ones too
                assertThat(max).as("prefix %d", p).isLessThanOrEqualTo(1e-4);
            }
        }
    }

    @Test
    void benchComparesTwoSgemmsInOneProcess() {
        // The full language-perceiver (201M parameters) on 32 bytes: one pass with each SGEMM per round.
        int code = Main.run("bench", "--threads", "2", "--length", "32", "--warmup", "0", "--reps", "2", "--compare-gemm", "packed");
        assertThat(code).as(stderr()).isZero();
        String o = stdout();
        assertThat(o).contains("A = ").contains("B = ").contains("B always packed")
                .contains("mlm-forward A batch 1 x 32 bytes").contains("mlm-forward B batch 1 x 32 bytes");
        java.util.regex.Matcher r = java.util.regex.Pattern.compile("B / A = ([0-9.]+) \\(mean time\\); B faster in ([0-9]) of 2 rounds").matcher(o);
        assertThat(r.find()).as(o).isTrue();
        assertThat(Double.parseDouble(r.group(1))).isPositive().isFinite();

        assertThat(Main.run("bench", "--compare-gemm", "4x4", "--length", "32")).isEqualTo(1);
        assertThat(stderr()).contains("--compare-gemm must be packed, static, 8x2, 6x4, 4x2, cblas or a formulation such as unaligned+scalarpack, got 4x4");
        assertThat(Main.run("bench", "--workload", "ar-train", "--compare-gemm", "packed")).isEqualTo(1);
        assertThat(stderr()).contains("--compare-gemm applies to --workload mlm-forward only");
    }

    @Test
    void pacedBenchRunsOnePassPerInputLineAndStopsAtTheEndOfInput() {
        // Two lines on standard input, --reps 5: two timed passes, each reported as it ends, then the summary of those two.
        java.io.InputStream origIn = System.in;
        try {
            System.setIn(new java.io.ByteArrayInputStream("go\ngo\n".getBytes(StandardCharsets.UTF_8)));
            int code = Main.run("bench", "--threads", "2", "--length", "32", "--warmup", "1", "--reps", "5", "--paced");
            assertThat(code).as(stderr()).isZero();
            String o = stdout();
            assertThat(o).contains("paced: ready").contains("pass 1: ").contains("pass 2: ").doesNotContain("pass 3: ");
            assertThat(o.indexOf("paced: ready")).isLessThan(o.indexOf("pass 1: "));
            java.util.regex.Matcher m = java.util.regex.Pattern.compile("mlm-forward batch 1 x 32 bytes: mean ([0-9.]+) ms, min ([0-9.]+) ms over 2 reps").matcher(o);
            assertThat(m.find()).as(o).isTrue();
            java.util.regex.Matcher p = java.util.regex.Pattern.compile("pass [12]: ([0-9.]+) ms").matcher(o);
            double sum = 0;
            int passes = 0;
            while (p.find()) {
                sum += Double.parseDouble(p.group(1));
                passes++;
            }
            assertThat(passes).isEqualTo(2);
            assertThat(Double.parseDouble(m.group(1))).isCloseTo(sum / 2, org.assertj.core.data.Offset.offset(0.1)); // the summary is of the printed passes

            System.setIn(new java.io.ByteArrayInputStream(new byte[0]));
            assertThat(Main.run("bench", "--threads", "2", "--length", "32", "--warmup", "0", "--paced")).isEqualTo(1);
            assertThat(stderr()).contains("--paced: standard input ended before the first timed pass");
            assertThat(Main.run("bench", "--workload", "ar-train", "--paced")).isEqualTo(1);
            assertThat(stderr()).contains("--paced applies to --workload mlm-forward alone");
        } finally {
            System.setIn(origIn);
        }
    }

    @Test
    void trainResumeGenerateAndEvalEndToEnd(@TempDir Path tmp) throws Exception {
        Path text = tmp.resolve("text");
        Files.createDirectories(text);
        for (int d = 0; d < 4; d++) Files.writeString(text.resolve("doc" + d + ".txt"), "the quick brown fox jumps over the lazy dog. ".repeat(40 + d));
        Path run = tmp.resolve("run");
        String[] train = {"train", "--corpus", text.toString(), "--run", run.toString(), "--channels", "32", "--heads", "2", "--layers", "1",
                "--seq-len", "64", "--latents", "16", "--batch", "4", "--eval-every", "5", "--eval-windows", "2", "--checkpoint-every", "5",
                "--warmup", "2", "--lr", "3e-3", "--validation-fraction", "0.3", "--sample-bytes", "20", "--threads", "2"};
        String[] first = java.util.Arrays.copyOf(train, train.length + 2);
        first[train.length] = "--steps";
        first[train.length + 1] = "5";
        assertThat(Main.run(first)).as(stderr()).isZero();
        assertThat(stdout()).contains("validation").contains("bits per byte").contains("sample");
        String[] more = first.clone();
        more[more.length - 1] = "10";
        assertThat(Main.run(more)).as(stderr()).isZero();
        assertThat(stderr()).contains("resuming").contains("step 5 of 10");
        assertThat(run.resolve("checkpoints/step-000010/optimizer.safetensors")).exists();
        assertThat(run.resolve("loss.png")).exists();

        out.reset();
        int code = Main.run("generate", "--model", run.toString(), "--temperature", "0", "--max-bytes", "30", "--threads", "2", "the quick");
        assertThat(code).as(stderr()).isZero();
        assertThat(stdout()).startsWith("the quick");
        assertThat(stderr()).contains("generated 30 bytes").contains("bytes/s");

        out.reset();
        assertThat(Main.run("eval", "--model", run.toString(), "--corpus", text.toString(), "--validation-fraction", "0.3", "--latents", "8",
                "--windows", "2", "--threads", "2")).as(stderr()).isZero();
        assertThat(stdout()).contains("bits per byte").contains("8 latents");

        String[] changed = more.clone();
        changed[java.util.Arrays.asList(changed).indexOf("--channels") + 1] = "48";
        assertThat(Main.run(changed)).isEqualTo(1);
        assertThat(stderr()).contains("num_channels").contains("new --run folder");
    }

    @Test
    void generateExplainsAMissingPrompt() {
        assertThat(Main.run("generate", "--model", AR.toString())).isEqualTo(1);
        assertThat(stderr()).contains("give a prompt");
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

    @Test
    void rejectsAnUnknownGemmKernel() {
        assertRejectedLeavingProperty("--gemm-kernel", "4x4", "--gemm-kernel must be 8x2, 6x4, 4x2 or auto, got 4x4", "perceiver4j.sgemm.kernel");
    }

    @Test
    void rejectsAnUnknownPrecision() {
        assertRejectedLeavingProperty("--precision", "fp16", "--precision must be fp32, tf32 or bf16, got fp16", "perceiver4j.cuda.precision");
    }

    /** {@code info option value} fails with {@code message} and leaves the system property it would set as it was. */
    private void assertRejectedLeavingProperty(String option, String value, String message, String property) {
        String before = System.getProperty(property);
        assertThat(Main.run("info", option, value)).isNotZero();
        assertThat(stderr()).contains(message);
        assertThat(System.getProperty(property)).isEqualTo(before);
    }
}
