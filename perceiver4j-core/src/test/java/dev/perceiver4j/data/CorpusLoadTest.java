package dev.perceiver4j.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Corpus specs of local files, folders and globs (no network: the built-ins are tested in CorpusCacheTest). */
class CorpusLoadTest {
    @TempDir
    Path dir;

    final List<String> log = new ArrayList<>();

    private void write(String name, String content) throws IOException {
        Path p = dir.resolve(name);
        Files.createDirectories(p.getParent());
        Files.writeString(p, content, StandardCharsets.UTF_8);
    }

    private Corpus load(String spec) throws IOException {
        return Corpus.load(spec, dir.resolve("cache"), log::add, dir);
    }

    private static List<String> names(Corpus c) {
        return c.documents().stream().map(Document::name).toList();
    }

    @Test
    void loadsFilesFoldersAndGlobsSortedByName() throws IOException {
        write("texts/b.txt", "bee");
        write("texts/a.txt", "ay");
        write("texts/sub/c.txt", "sea");
        write("texts/sub/d.md", "dee");
        write("texts/.hidden.txt", "hidden");
        write("texts/.git/config.txt", "hidden folder");
        write("texts/empty.txt", "");
        write("notes.md", "notes");
        write("data/x.md", "x");
        write("data/deep/er/y.md", "y");
        write("data/z.txt", "z");

        Corpus folder = load("texts");
        assertThat(names(folder)).containsExactly("texts/a.txt", "texts/b.txt", "texts/sub/c.txt", "texts/sub/d.md");
        assertThat(new String(folder.documents().get(2).bytes(), StandardCharsets.UTF_8)).isEqualTo("sea");
        assertThat(folder.totalBytes()).isEqualTo(2 + 3 + 3 + 3);
        assertThat(folder.description()).isEqualTo("texts: 4 documents, 11 bytes");

        assertThat(names(load("texts/*.txt"))).containsExactly("texts/a.txt", "texts/b.txt");
        assertThat(names(load("data/**.md"))).containsExactly("data/deep/er/y.md", "data/x.md");
        assertThat(names(load("*.md"))).containsExactly("notes.md");
        assertThat(names(load("./texts/*.txt"))).containsExactly("texts/a.txt", "texts/b.txt");
        assertThat(names(load("**/{c,z}.txt"))).containsExactly("data/z.txt", "texts/sub/c.txt");

        Corpus mixed = load("notes.md, texts/sub ,data/z.txt,texts/sub/c.txt");
        assertThat(names(mixed)).containsExactly("data/z.txt", "notes.md", "texts/sub/c.txt", "texts/sub/d.md");
        assertThat(mixed.description()).startsWith("notes.md, texts/sub ,data/z.txt,texts/sub/c.txt: 4 documents");

        assertThat(names(load(dir.resolve("texts/sub").toString())))
                .containsExactly(dir.resolve("texts/sub/c.txt").toString(), dir.resolve("texts/sub/d.md").toString());
        assertThat(names(load(dir.resolve("data").toString() + "/*.md"))).containsExactly(dir.resolve("data/x.md").toString());
        assertThat(log).isEmpty();
    }

    @Test
    void explicitlyNamedHiddenFileIsRead() throws IOException {
        write(".secret.txt", "s");
        assertThat(names(load(".secret.txt"))).containsExactly(".secret.txt");
    }

    @Test
    void errorsNameTheSpecElement() throws IOException {
        write("texts/a.txt", "a");
        Files.createDirectories(dir.resolve("emptyfolder"));
        write("only-empty/e.txt", "");

        assertThatThrownBy(() -> load("texts,missing.txt"))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("'missing.txt'")
                .hasMessageContaining("no such file or folder");
        assertThatThrownBy(() -> load("texts/*.md"))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("'texts/*.md'")
                .hasMessageContaining("matches no");
        assertThatThrownBy(() -> load("nowhere/*.txt")).hasMessageContaining("'nowhere/*.txt'");
        assertThatThrownBy(() -> load("emptyfolder"))
                .hasMessageContaining("'emptyfolder'")
                .hasMessageContaining("contains no regular");
        assertThatThrownBy(() -> load("only-empty")).hasMessageContaining("empty");
        assertThatThrownBy(() -> load(" , ")).hasMessageContaining("names no files");
        assertThatThrownBy(() -> load("")).hasMessageContaining("empty corpus spec");
        assertThatThrownBy(() -> load("texts/[a.txt")).hasMessageContaining("'texts/[a.txt'");
    }

    @Test
    void theSameFileReachedTwiceIsKeptOnce() throws IOException {
        write("a/x.txt", "one");
        assertThat(names(load("a,a/x.txt,a/*.txt"))).containsExactly("a/x.txt");
    }

    @Test
    void specElementsSplitAtCommasOutsideGlobBraces() {
        assertThat(Corpus.elements("gutenberg")).containsExactly("gutenberg");
        assertThat(Corpus.elements("a,b/{x,y}.txt, c ,,d/{e,{f,g}}")).containsExactly("a", "b/{x,y}.txt", " c ", "", "d/{e,{f,g}}");
    }

    @Test
    void documentsCompareByContent() {
        assertThat(new Document("a", new byte[] {1, 2})).isEqualTo(new Document("a", new byte[] {1, 2}))
                .hasSameHashCodeAs(new Document("a", new byte[] {1, 2}))
                .isNotEqualTo(new Document("a", new byte[] {1, 3}))
                .isNotEqualTo(new Document("b", new byte[] {1, 2}));
        assertThat(new Document("a", new byte[3])).hasToString("Document[a, 3 bytes]");
    }

    @Test
    void defaultCacheDirEndsInPerceiver4j() {
        Path p = Corpus.defaultCacheDir();
        assertThat(p.getFileName().toString()).isEqualTo("perceiver4j");
        assertThat(p.isAbsolute()).isTrue();
    }

    @Test
    void formatsSizesInDecimalUnits() {
        assertThat(Corpus.formatBytes(0)).isEqualTo("0 bytes");
        assertThat(Corpus.formatBytes(1)).isEqualTo("1 byte");
        assertThat(Corpus.formatBytes(999)).isEqualTo("999 bytes");
        assertThat(Corpus.formatBytes(1500)).isEqualTo("1.5 kB");
        assertThat(Corpus.formatBytes(999_949)).isEqualTo("999.9 kB");
        assertThat(Corpus.formatBytes(999_950)).isEqualTo("1.0 MB");
        assertThat(Corpus.formatBytes(11_793_318)).isEqualTo("11.8 MB");
        assertThat(Corpus.formatBytes(2_100_000_000L)).isEqualTo("2.1 GB");
    }
}
