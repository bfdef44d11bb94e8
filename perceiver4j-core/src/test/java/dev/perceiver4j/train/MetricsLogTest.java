package dev.perceiver4j.train;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class MetricsLogTest {
    @TempDir Path dir;

    @Test
    void roundTripsRecordsInKeyOrder() throws IOException {
        Path file = dir.resolve("metrics.jsonl");
        Map<String, Object> first = record(1L, 2.5);
        first.put("lr", 3e-4f);
        first.put("phase", "warmup");
        first.put("eval", false);
        first.put("tokens", 4096);
        first.put("big", 1L << 40);
        Map<String, Object> second = record(2L, Double.NaN);
        second.put("grad_norm", Double.POSITIVE_INFINITY);
        second.put("text", "line\nbreak \"quoted\" ünï");
        try (MetricsLog log = MetricsLog.open(file, -1)) {
            log.write(first);
            log.write(second);
        }
        assertThat(Files.readAllLines(file)).hasSize(2).first().asString()
                .isEqualTo("{\"step\":1,\"loss\":2.5,\"lr\":3.0E-4,\"phase\":\"warmup\",\"eval\":false,\"tokens\":4096,\"big\":1099511627776}");
        List<Map<String, Object>> read = MetricsLog.read(file);
        assertThat(read).hasSize(2);
        assertThat(read.get(0).keySet()).containsExactly("step", "loss", "lr", "phase", "eval", "tokens", "big");
        assertThat(read.get(0)).containsEntry("step", 1).containsEntry("loss", 2.5).containsEntry("phase", "warmup")
                .containsEntry("eval", false).containsEntry("tokens", 4096).containsEntry("big", 1L << 40);
        assertThat((Double) read.get(0).get("lr")).isEqualTo(3e-4, org.assertj.core.data.Offset.offset(1e-12));
        assertThat((Double) read.get(1).get("loss")).isNaN();
        assertThat(read.get(1)).containsEntry("grad_norm", Double.POSITIVE_INFINITY).containsEntry("text", "line\nbreak \"quoted\" ünï");

        try (MetricsLog log = MetricsLog.open(file, -1)) { // plain reopen appends
            log.write(record(3L, 1.0));
        }
        assertThat(MetricsLog.read(file)).extracting(m -> m.get("step")).containsExactly(1, 2, 3);
    }

    @Test
    void resumeDropsLinesAfterTheResumeStep() throws IOException {
        Path file = dir.resolve("metrics.jsonl");
        try (MetricsLog log = MetricsLog.open(file, -1)) {
            Map<String, Object> header = new LinkedHashMap<>();
            header.put("run", "demo");
            log.write(header); // no step: kept
            for (long s = 1; s <= 10; s++) log.write(record(s, 10.0 / s));
        }
        try (MetricsLog log = MetricsLog.open(file, 5)) {
            assertThat(MetricsLog.read(file)).extracting(m -> m.get("step")).containsExactly(null, 1, 2, 3, 4, 5);
            log.write(record(6L, 0.5));
        }
        assertThat(MetricsLog.read(file)).extracting(m -> m.get("step")).containsExactly(null, 1, 2, 3, 4, 5, 6);
        assertThat(MetricsLog.read(file).get(6)).containsEntry("loss", 0.5);
        try (MetricsLog log = MetricsLog.open(file, 0)) {
            assertThat(MetricsLog.read(file)).extracting(m -> m.get("step")).containsExactly((Object) null);
        }
        try (MetricsLog log = MetricsLog.open(dir.resolve("new.jsonl"), 100)) { // nothing to resume: a new file
            log.write(record(101L, 1.0));
        }
        assertThat(MetricsLog.read(dir.resolve("new.jsonl"))).hasSize(1);
        assertNoTempFiles();
    }

    @Test
    void tornLastLineIsDroppedAndTheNextRecordStartsItsOwnLine() throws IOException {
        Path file = dir.resolve("metrics.jsonl");
        try (MetricsLog log = MetricsLog.open(file, -1)) {
            for (long s = 1; s <= 3; s++) log.write(record(s, 1.0));
        }
        byte[] euro = "€".getBytes(StandardCharsets.UTF_8);
        byte[] torn = ("{\"step\":4,\"note\":\"" + (char) 0).getBytes(StandardCharsets.UTF_8);
        Files.write(file, torn, StandardOpenOption.APPEND);
        Files.write(file, new byte[] {euro[0]}, StandardOpenOption.APPEND); // torn inside a character, too
        assertThat(MetricsLog.read(file)).hasSize(3);

        try (MetricsLog log = MetricsLog.open(file, -1)) {
            log.write(record(4L, 0.9));
        }
        assertThat(MetricsLog.read(file)).extracting(m -> m.get("step")).containsExactly(1, 2, 3, 4);

        Files.writeString(file, "{\"step\":5,\"lo", StandardOpenOption.APPEND);
        try (MetricsLog log = MetricsLog.open(file, 4)) {
            log.write(record(5L, 0.8));
        }
        assertThat(MetricsLog.read(file)).extracting(m -> m.get("step")).containsExactly(1, 2, 3, 4, 5);

        // a whole last line without its newline is kept, and the next record goes on a line of its own
        Files.writeString(file, "{\"step\":6}", StandardOpenOption.APPEND);
        try (MetricsLog log = MetricsLog.open(file, -1)) {
            log.write(record(7L, 0.7));
        }
        assertThat(MetricsLog.read(file)).extracting(m -> m.get("step")).containsExactly(1, 2, 3, 4, 5, 6, 7);
        assertNoTempFiles();
    }

    @Test
    void corruptLineInTheMiddleIsAnErrorNamingFileAndLine() throws IOException {
        Path file = dir.resolve("bad.jsonl");
        Files.writeString(file, "{\"step\":1,\"loss\":2.0}\n{\"step\":2,\"lo\n{\"step\":3,\"loss\":1.0}\n");
        assertThatThrownBy(() -> MetricsLog.read(file)).isInstanceOf(IOException.class)
                .hasMessageContaining("bad.jsonl").hasMessageContaining("line 2");
        assertThatThrownBy(() -> MetricsLog.open(file, 1)).isInstanceOf(IOException.class).hasMessageContaining("line 2");
        Files.writeString(file, "{\"step\":1}\n[1,2]\n{\"step\":3}\n");
        assertThatThrownBy(() -> MetricsLog.read(file)).hasMessageContaining("line 2");
        Files.writeString(file, "{\"step\":1}\n{\"step\":2}{\"step\":2}\n{\"step\":3}\n");
        assertThatThrownBy(() -> MetricsLog.read(file)).hasMessageContaining("line 2");
        Files.writeString(file, "{\"step\":1}\n\n{\"step\":2,\"nested\":{\"a\":1}}\n");
        assertThatThrownBy(() -> MetricsLog.read(file)).hasMessageContaining("line 3").hasMessageContaining("nested");
        assertThat(Files.readString(file)).contains("nested"); // a failed resume leaves the file alone
    }

    @Test
    void rejectsValuesItCannotLogAndWritesAfterClose() throws IOException {
        Path file = dir.resolve("m.jsonl");
        MetricsLog log = MetricsLog.open(file, -1);
        Map<String, Object> bad = record(1L, 1.0);
        bad.put("list", List.of(1, 2));
        assertThatThrownBy(() -> log.write(bad)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("list");
        Map<String, Object> nul = record(1L, 1.0);
        nul.put("missing", null);
        assertThatThrownBy(() -> log.write(nul)).hasMessageContaining("missing");
        log.close();
        log.close();
        assertThatThrownBy(() -> log.write(record(1L, 1.0))).isInstanceOf(IOException.class).hasMessageContaining("closed");
        assertThat(MetricsLog.read(file)).isEmpty();
    }

    private void assertNoTempFiles() throws IOException {
        try (Stream<Path> files = Files.list(dir)) {
            assertThat(files.map(p -> p.getFileName().toString())).allMatch(n -> n.endsWith(".jsonl"));
        }
    }

    private static Map<String, Object> record(long step, double loss) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("step", step);
        m.put("loss", loss);
        return m;
    }
}
