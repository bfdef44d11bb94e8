package dev.perceiver4j.train;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class CheckpointDirTest {
    @Test
    void savesPointsLatestAndPrunes(@TempDir Path root) throws IOException {
        CheckpointDir c = new CheckpointDir(root, 2);
        assertThat(c.latest()).isEmpty();
        for (long s : new long[] {10, 20, 30}) c.save(s, d -> Files.writeString(d.resolve("f"), "step " + s));
        assertThat(c.latest()).contains(root.resolve("step-000030"));
        assertThat(c.list()).extracting(p -> p.getFileName().toString()).containsExactly("step-000020", "step-000030");
        assertThat(Files.readString(c.latest().orElseThrow().resolve("f"))).isEqualTo("step 30");
    }

    @Test
    void aFailedSaveLeavesThePreviousCheckpointAndNoTemporaries(@TempDir Path root) throws IOException {
        CheckpointDir c = new CheckpointDir(root, 2);
        c.save(1, d -> Files.writeString(d.resolve("f"), "one"));
        assertThatThrownBy(() -> c.save(2, d -> {
            Files.writeString(d.resolve("f"), "half");
            throw new IOException("disk full");
        })).hasMessageContaining("disk full");
        assertThat(c.latest()).contains(root.resolve("step-000001"));
        try (Stream<Path> s = Files.list(root)) {
            assertThat(s.map(p -> p.getFileName().toString())).containsExactlyInAnyOrder("step-000001", "latest");
        }
    }

    @Test
    void aDanglingPointerIsReportedClearly(@TempDir Path root) throws IOException {
        Files.writeString(root.resolve("latest"), "step-000042\n");
        assertThatThrownBy(() -> new CheckpointDir(root, 1).latest()).hasMessageContaining("step-000042").hasMessageContaining("does not exist");
    }
}
