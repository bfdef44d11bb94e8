package dev.perceiver4j.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledOnOs;
import org.junit.jupiter.api.condition.OS;
import org.junit.jupiter.api.io.TempDir;

/** External commands: output, failures with the command and stderr tail, and the timeout. */
@EnabledOnOs({OS.LINUX, OS.MAC})
class CommandsTest {
    @TempDir
    Path dir;

    @Test
    void returnsStdout() throws IOException {
        assertThat(Commands.run(List.of("sh", "-c", "echo hello"), dir, Duration.ofSeconds(30))).isEqualTo("hello\n");
        assertThat(Commands.onPath("sh")).isPresent();
        assertThat(Commands.onPath("no-such-command-perceiver4j")).isEmpty();
    }

    @Test
    void failureNamesTheCommandAndStderrTail() {
        assertThatThrownBy(() -> Commands.run(List.of("sh", "-c", "echo first >&2; echo 'npm ERR! 404 Not Found' >&2; exit 3"),
                        dir, Duration.ofSeconds(30)))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("`sh -c echo first")
                .hasMessageContaining("exit status 3")
                .hasMessageContaining("npm ERR! 404 Not Found");
        assertThatThrownBy(() -> Commands.run(List.of("no-such-command-perceiver4j"), dir, Duration.ofSeconds(30)))
                .hasMessageContaining("cannot start `no-such-command-perceiver4j`");
    }

    @Test
    void timeoutStopsTheProcess() {
        long t0 = System.nanoTime();
        assertThatThrownBy(() -> Commands.run(List.of("sh", "-c", "echo waiting >&2; sleep 30"), dir, Duration.ofMillis(500)))
                .hasMessageContaining("did not finish")
                .hasMessageContaining("waiting");
        assertThat((System.nanoTime() - t0) / 1e9).isLessThan(20);
    }
}
