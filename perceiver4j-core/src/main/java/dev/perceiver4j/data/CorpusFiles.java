package dev.perceiver4j.data;

import java.io.IOException;
import java.nio.file.FileSystems;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.PathMatcher;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * One non-built-in element of a corpus spec: a file, a folder (every regular file below, hidden
 * names skipped) or a glob. Documents are named by their path as written in the spec (relative
 * stays relative), with {@code /} separators.
 */
final class CorpusFiles {
    private CorpusFiles() {}

    /** The documents of {@code element}, sorted by name; relative paths resolve against {@code workingDir}. */
    static List<Document> read(String element, Path workingDir) throws IOException {
        List<String> names = isGlob(element) ? glob(element, workingDir) : fileOrFolder(element, workingDir);
        List<Document> docs = new ArrayList<>(names.size());
        for (String name : names) {
            Path file = workingDir.resolve(name);
            try {
                long size = Files.size(file);
                if (size > Corpus.MAX_TOTAL_BYTES) {
                    throw new IOException(size + " bytes is more than the in-memory limit of " + Corpus.MAX_TOTAL_BYTES);
                }
                docs.add(new Document(name, Files.readAllBytes(file)));
            } catch (IOException e) {
                throw new IOException("cannot read '" + name + "' (from corpus spec element '" + element + "'): " + e, e);
            }
        }
        return docs;
    }

    static boolean isGlob(String element) {
        for (char c : element.toCharArray()) {
            if (c == '*' || c == '?' || c == '[' || c == '{') {
                return true;
            }
        }
        return false;
    }

    private static List<String> fileOrFolder(String element, Path workingDir) throws IOException {
        Path path;
        try {
            path = Path.of(element);
        } catch (InvalidPathException e) {
            throw new IOException("corpus spec element '" + element + "' is not a valid path: " + e.getMessage(), e);
        }
        Path absolute = workingDir.resolve(path);
        String name = slashes(path.normalize());
        if (Files.isRegularFile(absolute)) {
            return List.of(name);
        }
        if (!Files.isDirectory(absolute)) {
            throw new IOException(Files.exists(absolute)
                    ? "corpus spec element '" + element + "' is neither a regular file nor a folder"
                    : "corpus spec element '" + element + "': no such file or folder (" + absolute + ")");
        }
        List<String> names = walk(absolute, name, Integer.MAX_VALUE);
        if (names.isEmpty()) {
            throw new IOException("corpus spec element '" + element + "': folder " + absolute
                    + " contains no regular (non-hidden) files");
        }
        return names;
    }

    private static List<String> glob(String element, Path workingDir) throws IOException {
        String pattern = element.replace('\\', '/');
        int firstGlob = 0;
        while (!isGlob(String.valueOf(pattern.charAt(firstGlob)))) {
            firstGlob++;
        }
        int slash = pattern.lastIndexOf('/', firstGlob);
        // the fixed folder before the first glob character: "" (working dir), "/" or "texts/sub"
        String prefix = slash < 0 ? "" : slash == 0 ? "/" : pattern.substring(0, slash);
        String rest = pattern.substring(slash + 1);
        int maxDepth = rest.contains("**") ? Integer.MAX_VALUE : 1 + (int) rest.chars().filter(c -> c == '/').count();
        PathMatcher matcher;
        try {
            matcher = FileSystems.getDefault().getPathMatcher("glob:" + pattern);
        } catch (IllegalArgumentException e) { // PatternSyntaxException among them
            throw new IOException("corpus spec element '" + element + "' is not a valid glob: " + e.getMessage(), e);
        }
        Path root = workingDir.resolve(prefix.isEmpty() ? "." : prefix);
        List<String> names = new ArrayList<>();
        if (Files.isDirectory(root)) {
            for (String name : walk(root, prefix, maxDepth)) {
                if (matcher.matches(Path.of(name))) {
                    names.add(slashes(Path.of(name).normalize()));
                }
            }
        }
        if (names.isEmpty()) {
            throw new IOException("corpus spec element '" + element + "': the glob matches no regular (non-hidden) files"
                    + " below " + root.normalize());
        }
        return names.stream().distinct().sorted().toList();
    }

    /**
     * Regular files below {@code dir}, at most {@code maxDepth} levels down (symbolic links to
     * files included, linked folders not entered), hidden names skipped, as
     * {@code prefix/relative/path}, sorted.
     */
    private static List<String> walk(Path dir, String prefix, int maxDepth) throws IOException {
        TreeSet<String> found = new TreeSet<>();
        Files.walkFileTree(dir, Set.of(), maxDepth, new SimpleFileVisitor<>() {
            @Override
            public FileVisitResult preVisitDirectory(Path d, BasicFileAttributes attrs) {
                return !d.equals(dir) && hidden(d) ? FileVisitResult.SKIP_SUBTREE : FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult visitFile(Path f, BasicFileAttributes attrs) {
                if (hidden(f) || !(attrs.isRegularFile() || (attrs.isSymbolicLink() && Files.isRegularFile(f)))) {
                    return FileVisitResult.CONTINUE;
                }
                String rel = slashes(dir.relativize(f));
                String name = prefix.isEmpty() || prefix.equals(".") ? rel
                        : prefix.endsWith("/") ? prefix + rel : prefix + "/" + rel;
                found.add(name);
                return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult visitFileFailed(Path f, IOException e) throws IOException {
                if (e instanceof NoSuchFileException) {
                    return FileVisitResult.CONTINUE; // vanished while walking
                }
                throw new IOException("cannot read " + f + ": " + e.getMessage(), e);
            }
        });
        return new ArrayList<>(found);
    }

    private static boolean hidden(Path p) {
        Path last = p.getFileName();
        return last != null && last.toString().startsWith(".");
    }

    private static String slashes(Path p) {
        return p.toString().replace('\\', '/');
    }
}
