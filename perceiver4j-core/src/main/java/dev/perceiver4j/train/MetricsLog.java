package dev.perceiver4j.train;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.core.json.JsonWriteFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.OutputStream;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Training metrics as JSON Lines: one object per line, keys in insertion order, values numbers,
 * strings or booleans, each line flushed as it is written.
 *
 * <pre>
 *   {"step":100,"loss":2.31,"lr":3.0E-4}
 *   {"step":200,"loss":1.97,"lr":3.0E-4,"eval_bpb":1.41}
 * </pre>
 * Non-finite doubles are written as the bare tokens {@code NaN}, {@code Infinity},
 * {@code -Infinity} (as Python's {@code json} module does) and read back as doubles. A reader
 * may run while training writes: an unparseable last line is taken for a write in progress, or
 * one torn by a crash, and skipped; an unparseable line anywhere else is an error naming the
 * file and line. Blank lines are skipped.
 */
public final class MetricsLog implements AutoCloseable {
    private static final ObjectMapper MAPPER = JsonMapper.builder()
            .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
            .disable(JsonWriteFeature.WRITE_NAN_AS_STRINGS)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    private final Path path;
    private OutputStream out;

    private MetricsLog(Path path, OutputStream out) {
        this.path = path;
        this.out = out;
    }

    /**
     * Opens {@code path} for appending (created if missing). If {@code resumeStep >= 0} the file
     * is first rewritten, atomically, keeping only the lines whose {@code "step"} is at most
     * {@code resumeStep} (lines without a numeric step are kept), so that a run resumed from a
     * checkpoint continues a consistent log. A torn last line is dropped in either case.
     *
     * @throws IOException naming the file and line if a line other than the last is not a JSON object
     */
    public static MetricsLog open(Path path, long resumeStep) throws IOException {
        if (resumeStep >= 0 && Files.exists(path)) truncateAfter(path, resumeStep);
        else if (Files.exists(path)) dropTornTail(path);
        return new MetricsLog(path, Files.newOutputStream(path, StandardOpenOption.CREATE, StandardOpenOption.APPEND, StandardOpenOption.WRITE));
    }

    /**
     * Appends one record as a line and flushes it. Values must be {@link Number}, {@link String}
     * or {@link Boolean}; pass a {@link LinkedHashMap} to fix the key order.
     */
    public void write(Map<String, Object> record) throws IOException {
        if (out == null) throw new IOException(path + ": metrics log is closed");
        ObjectNode node = MAPPER.createObjectNode();
        for (Map.Entry<String, Object> e : record.entrySet()) {
            String key = e.getKey();
            switch (e.getValue()) {
                case Integer v -> node.put(key, v);
                case Long v -> node.put(key, v);
                case Short v -> node.put(key, v);
                case Byte v -> node.put(key, v.intValue());
                case Float v -> node.put(key, v);
                case Double v -> node.put(key, v);
                case BigInteger v -> node.put(key, v);
                case BigDecimal v -> node.put(key, v);
                case String v -> node.put(key, v);
                case Boolean v -> node.put(key, v);
                case null -> throw new IllegalArgumentException("metric '" + key + "' is null");
                default -> throw new IllegalArgumentException("metric '" + key + "' has type " + e.getValue().getClass().getName()
                        + "; only numbers, strings and booleans are logged");
            }
        }
        byte[] line = (MAPPER.writeValueAsString(node) + "\n").getBytes(StandardCharsets.UTF_8);
        out.write(line); // one write per line, so a concurrent reader sees whole lines or a torn last one
        out.flush();
    }

    /**
     * Every record of {@code path}, in file order. Values come back as Integer, Long, BigInteger,
     * Double, String or Boolean.
     *
     * @throws IOException naming the file and line if a line other than the last is not a flat JSON object
     */
    public static List<Map<String, Object>> read(Path path) throws IOException {
        List<Map<String, Object>> records = new ArrayList<>();
        for (Line line : parse(path)) records.add(toMap(path, line));
        return records;
    }

    @Override
    public void close() throws IOException {
        if (out == null) return;
        try {
            out.close();
        } finally {
            out = null;
        }
    }

    /** One parsed line: 1-based number, original text, JSON object. */
    private record Line(int number, String text, ObjectNode json) {}

    /** Parses every non-blank line; an unparseable last line is dropped, any other is an IOException. */
    private static List<Line> parse(Path path) throws IOException {
        // decoded with replacement, not readAllLines: a torn last line may end inside a character
        String all = new String(Files.readAllBytes(path), StandardCharsets.UTF_8);
        List<String> texts = new ArrayList<>();
        for (String text : all.split("\n", -1)) texts.add(text.endsWith("\r") ? text.substring(0, text.length() - 1) : text);
        int lastNonBlank = texts.size() - 1;
        while (lastNonBlank >= 0 && texts.get(lastNonBlank).isBlank()) lastNonBlank--;
        List<Line> lines = new ArrayList<>();
        for (int i = 0; i <= lastNonBlank; i++) {
            String text = texts.get(i);
            if (text.isBlank()) continue;
            ObjectNode json = parseObject(text);
            if (json == null) {
                if (i == lastNonBlank) break; // torn write
                throw new IOException(path + ": line " + (i + 1) + " is not a JSON object: " + abbreviate(text));
            }
            lines.add(new Line(i + 1, text, json));
        }
        return lines;
    }

    private static ObjectNode parseObject(String text) {
        try {
            return MAPPER.readTree(text) instanceof ObjectNode object ? object : null;
        } catch (JacksonException e) {
            return null;
        }
    }

    private static Map<String, Object> toMap(Path path, Line line) throws IOException {
        Map<String, Object> map = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : line.json().properties()) {
            JsonNode v = e.getValue();
            Object value;
            if (v.isNumber()) value = v.isFloatingPointNumber() ? (Object) v.doubleValue() : v.numberValue();
            else if (v.isTextual()) value = v.textValue();
            else if (v.isBoolean()) value = v.booleanValue();
            else throw new IOException(path + ": line " + line.number() + ": metric '" + e.getKey() + "' is not a number, string or boolean");
            map.put(e.getKey(), value);
        }
        return map;
    }

    private static void truncateAfter(Path path, long resumeStep) throws IOException {
        StringBuilder kept = new StringBuilder();
        for (Line line : parse(path)) {
            JsonNode step = line.json().get("step");
            boolean keep = step == null || !step.isNumber()
                    || (step.isIntegralNumber() ? step.bigIntegerValue().compareTo(BigInteger.valueOf(resumeStep)) <= 0 : step.doubleValue() <= resumeStep);
            if (keep) kept.append(line.text()).append('\n');
        }
        replace(path, kept.toString().getBytes(StandardCharsets.UTF_8));
    }

    /**
     * Before appending: bytes after the last newline are a line torn by a crash unless they
     * parse; a torn one is cut off, a whole one gets its newline, so that the next record starts
     * a line of its own.
     */
    private static void dropTornTail(Path path) throws IOException {
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            long size = ch.size();
            long tailStart = size;
            ByteBuffer one = ByteBuffer.allocate(1);
            while (tailStart > 0) {
                one.clear();
                ch.read(one, tailStart - 1);
                if (one.get(0) == '\n') break;
                tailStart--;
            }
            if (tailStart == size) return;
            ByteBuffer tail = ByteBuffer.allocate(Math.toIntExact(size - tailStart));
            while (tail.hasRemaining() && ch.read(tail, tailStart + tail.position()) >= 0) { }
            String text = new String(tail.array(), StandardCharsets.UTF_8);
            if (text.isBlank() || parseObject(text) == null) ch.truncate(tailStart);
            else ch.write(ByteBuffer.wrap(new byte[] {'\n'}), size);
        }
    }

    /** Replaces {@code path} with {@code bytes}: temp file in the same directory, forced to disk, then an atomic move. */
    private static void replace(Path path, byte[] bytes) throws IOException {
        Path dir = path.toAbsolutePath().getParent();
        Path tmp = Files.createTempFile(dir, "." + path.getFileName() + ".", ".tmp");
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                ByteBuffer buf = ByteBuffer.wrap(bytes);
                while (buf.hasRemaining()) ch.write(buf);
                ch.force(true);
            }
            Files.move(tmp, path, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    private static String abbreviate(String s) {
        return s.length() <= 80 ? s : s.substring(0, 77) + "...";
    }
}
