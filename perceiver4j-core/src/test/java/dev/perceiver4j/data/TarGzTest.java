package dev.perceiver4j.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** The minimal tar.gz reader on archives built here: normal ones and hostile ones. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class TarGzTest {
    @TempDir
    Path dir;

    /** Extracts every regular entry into dir/out (flattened) and returns name → content. */
    private Map<String, String> extractAll(Path archive) throws IOException {
        Path out = Files.createDirectories(dir.resolve("out"));
        Map<String, String> seen = new TreeMap<>();
        TarGz.extract(archive, name -> {
            Path target = out.resolve(name.replace('/', '_'));
            seen.put(name, "");
            return target;
        });
        for (String name : seen.keySet()) {
            seen.put(name, Files.readString(out.resolve(name.replace('/', '_'))));
        }
        return seen;
    }

    @Test
    void extractsRegularFilesWithPrefixLongNamesAndPaxPaths() throws IOException {
        String deep = "package/" + "d".repeat(60) + "/" + "e".repeat(60) + "/file.txt";
        String gnu = "package/" + "g".repeat(120) + ".txt";
        String pax = "package/" + "p".repeat(130) + ".txt";
        byte[] big = new byte[70_000];
        Arrays.fill(big, (byte) 'z');
        Path archive = new TarBuilder()
                .directory("package/")
                .file("package/a.txt", "alpha")
                .file("package/empty.txt", "")
                .file("package/big.bin", big)
                .file(deep, "deep")
                .gnuLongName(gnu, "gnu")
                .paxPath(pax, "pax")
                .forged("package/link", '2', new byte[0], 0)
                .file("package/z.txt", "last")
                .write(dir.resolve("a.tgz"));
        Map<String, String> files = extractAll(archive);
        assertThat(files).containsOnlyKeys("package/a.txt", "package/empty.txt", "package/big.bin", deep, gnu, pax,
                "package/z.txt");
        assertThat(files.get("package/a.txt")).isEqualTo("alpha");
        assertThat(files.get("package/empty.txt")).isEmpty();
        assertThat(files.get("package/big.bin")).hasSize(70_000).matches("z+");
        assertThat(files.get(deep)).isEqualTo("deep");
        assertThat(files.get(gnu)).isEqualTo("gnu");
        assertThat(files.get(pax)).isEqualTo("pax");
        assertThat(files.get("package/z.txt")).isEqualTo("last");
    }

    @Test
    void onlyWantedEntriesAreWritten() throws IOException {
        Path archive = new TarBuilder().file("package/a.txt", "a").file("package/b.md", "b").write(dir.resolve("a.tgz"));
        Path out = Files.createDirectories(dir.resolve("only"));
        int n = TarGz.extract(archive, name -> name.endsWith(".txt") ? out.resolve("a.txt") : null);
        assertThat(n).isEqualTo(1);
        try (var files = Files.list(out)) {
            assertThat(files.map(p -> p.getFileName().toString())).containsExactly("a.txt");
        }
    }

    @Test
    void rejectsPathTraversalNamingTheEntry() {
        for (String evil : new String[] {"../evil.txt", "package/../../evil.txt", "/etc/evil.txt", "package/..",
                "a\\..\\b.txt", "C:/evil.txt"}) {
            Path archive = new TarBuilder().file("package/ok.txt", "ok").file(evil, "x")
                    .write(dir.resolve("evil" + Math.abs(evil.hashCode()) + ".tgz"));
            // even when the caller would skip the entry
            assertThatThrownBy(() -> TarGz.extract(archive, name -> null))
                    .isInstanceOf(IOException.class)
                    .hasMessageContaining(evil)
                    .hasMessageContaining("unsafe entry name");
        }
        Path viaLongName = new TarBuilder().gnuLongName("../" + "x".repeat(120), "x").write(dir.resolve("l.tgz"));
        assertThatThrownBy(() -> extractAll(viaLongName)).hasMessageContaining("unsafe entry name '../xxx");
        Path viaPax = new TarBuilder().paxPath("/abs/" + "x".repeat(120), "x").write(dir.resolve("p.tgz"));
        assertThatThrownBy(() -> extractAll(viaPax)).hasMessageContaining("unsafe entry name '/abs/");
    }

    @Test
    void truncatedArchivesFail() throws IOException {
        byte[] content = new byte[5000];
        new java.util.Random(1).nextBytes(content); // incompressible, so a cut gzip cuts the data
        byte[] tgz = new TarBuilder().file("package/a.bin", content).file("package/b.txt", "b").tarGz();
        for (int keep : new int[] {tgz.length / 2, tgz.length - 30, 20, 5}) {
            Path cut = dir.resolve("cut" + keep + ".tgz");
            Files.write(cut, Arrays.copyOf(tgz, keep));
            assertThatThrownBy(() -> extractAll(cut))
                    .as("cut at %d of %d bytes", keep, tgz.length)
                    .isInstanceOf(IOException.class)
                    .hasMessageContaining(cut.toString());
        }
        // a tar stream cut inside an entry's data, properly gzipped
        byte[] tar = new TarBuilder().file("package/a.bin", content).tar();
        Path cutTar = dir.resolve("cut-tar.tgz");
        Files.write(cutTar, TarBuilder.gzip(Arrays.copyOf(tar, 512 + 1000)));
        assertThatThrownBy(() -> extractAll(cutTar))
                .hasMessageContaining("truncated archive")
                .hasMessageContaining("package/a.bin")
                .hasMessageContaining("declares 5000 bytes");
        // ... and cut inside a header
        Path cutHeader = dir.resolve("cut-header.tgz");
        Files.write(cutHeader, TarBuilder.gzip(Arrays.copyOf(tar, 300)));
        assertThatThrownBy(() -> extractAll(cutHeader)).hasMessageContaining("truncated header at offset 0");
    }

    @Test
    void forgedHugeSizesFailWithoutAllocating() throws IOException {
        byte[] small = "tiny".getBytes(StandardCharsets.UTF_8);
        Path huge = new TarBuilder().forged("package/huge.txt", '0', small, 077777777777L).write(dir.resolve("h.tgz"));
        assertThatThrownBy(() -> extractAll(huge))
                .hasMessageContaining("package/huge.txt")
                .hasMessageContaining("declares 8589934591 bytes")
                .hasMessageContaining("limit");
        Path base256 = new TarBuilder().base256Size("package/b256.txt", small, Long.MAX_VALUE)
                .write(dir.resolve("b.tgz"));
        assertThatThrownBy(() -> extractAll(base256)).hasMessageContaining("package/b256.txt").hasMessageContaining("limit");
        // under the limit but far beyond the stream: streamed, then reported as truncated
        Path beyond = new TarBuilder().forged("package/beyond.txt", '0', small, 200L << 20).write(dir.resolve("c.tgz"));
        assertThatThrownBy(() -> extractAll(beyond))
                .hasMessageContaining("truncated archive")
                .hasMessageContaining("package/beyond.txt");
        // the same for entries that are skipped, and for long-name headers
        assertThatThrownBy(() -> TarGz.extract(beyond, name -> null)).hasMessageContaining("truncated archive");
        Path longName = new TarBuilder().forged("././@LongLink", 'L', small, 077777777777L).write(dir.resolve("d.tgz"));
        assertThatThrownBy(() -> extractAll(longName)).hasMessageContaining("GNU long name").hasMessageContaining("limit");
    }

    @Test
    void rejectsNonTarContent() throws IOException {
        Path notGzip = dir.resolve("plain.tgz");
        Files.writeString(notGzip, "this is not gzip at all");
        assertThatThrownBy(() -> extractAll(notGzip)).isInstanceOf(IOException.class);
        Path notTar = dir.resolve("not-tar.tgz");
        byte[] garbage = new byte[2048];
        Arrays.fill(garbage, (byte) 'x');
        Files.write(notTar, TarBuilder.gzip(garbage));
        assertThatThrownBy(() -> extractAll(notTar))
                .hasMessageContaining(notTar.toString())
                .hasMessageContaining("offset 0");
    }
}
