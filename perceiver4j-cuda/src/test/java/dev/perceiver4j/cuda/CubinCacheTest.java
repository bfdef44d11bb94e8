package dev.perceiver4j.cuda;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The on-disk kernel cache: keys follow source, options, compiler and architecture; writes are whole or absent. */
class CubinCacheTest {
    private static final List<String> OPTS = List.of("--gpu-architecture=sm_90", "--std=c++17");

    @Test
    void theKeyChangesWithEverythingThatShapesTheCubin(@TempDir Path dir) {
        CubinCache c = CubinCache.in(dir);
        Path base = c.file("src", OPTS, "nvrtc 13.0", 90);
        assertEquals(base, c.file("src", OPTS, "nvrtc 13.0", 90));
        assertNotEquals(base, c.file("src ", OPTS, "nvrtc 13.0", 90));
        assertNotEquals(base, c.file("src", List.of("--gpu-architecture=sm_90"), "nvrtc 13.0", 90));
        assertNotEquals(base, c.file("src", OPTS, "nvrtc 12.8", 90));
        assertNotEquals(base, c.file("src", OPTS, "nvrtc 13.0", 100));
        assertEquals(dir, base.getParent());
        assertTrue(base.getFileName().toString().matches("kernels-sm_90-[0-9a-f]{32}\\.cubin"), base.toString());
    }

    @Test
    void writeThenReadGivesTheBytesBackAndLeavesNoTemporaryFile(@TempDir Path dir) throws IOException {
        Path f = CubinCache.in(dir.resolve("nested")).file("src", OPTS, "nvrtc 13.0", 90);
        assertTrue(CubinCache.read(f).isEmpty());
        byte[] cubin = {0x7f, 'E', 'L', 'F', 1, 2, 3};
        CubinCache.write(f, cubin);
        assertArrayEquals(cubin, CubinCache.read(f).orElseThrow());
        try (var files = Files.list(f.getParent())) {
            assertEquals(List.of(f), files.toList());
        }
        CubinCache.discard(f);
        assertTrue(CubinCache.read(f).isEmpty());
    }

    @Test
    void anEmptyFileCountsAsMissing(@TempDir Path dir) throws IOException {
        Path f = CubinCache.in(dir).file("src", OPTS, "nvrtc 13.0", 90);
        Files.write(f, new byte[0]);
        assertTrue(CubinCache.read(f).isEmpty());
    }

    @Test
    void anUnwritableFolderOnlyCostsTheCompile(@TempDir Path dir) throws IOException {
        Path blocker = Files.writeString(dir.resolve("file"), "not a folder");
        Path f = CubinCache.in(blocker.resolve("sub")).file("src", OPTS, "nvrtc 13.0", 90);
        CubinCache.write(f, new byte[] {1, 2, 3});   // said on stderr, not thrown
        assertTrue(CubinCache.read(f).isEmpty());
    }

    @Test
    void switchedOffThereIsNoFile() {
        assertNull(CubinCache.in(null).file("src", OPTS, "nvrtc 13.0", 90));
        String old = System.getProperty("perceiver4j.cuda.cache");
        try {
            System.setProperty("perceiver4j.cuda.cache", "none");
            assertNull(CubinCache.fromEnvironment().file("src", OPTS, "nvrtc 13.0", 90));
        } finally {
            if (old == null) System.clearProperty("perceiver4j.cuda.cache");
            else System.setProperty("perceiver4j.cuda.cache", old);
        }
    }
}
