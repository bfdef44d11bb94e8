package dev.perceiver4j.io;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/** Jackson with limits: checkpoint headers and configs are parsed with bounded depth, string and number sizes. */
final class Json {
    static final int MAX_NESTING_DEPTH = 64;
    static final int MAX_STRING_LENGTH = 16 << 20;
    static final int MAX_NAME_LENGTH = 64 << 10;
    static final int MAX_NUMBER_LENGTH = 64;
    /** Largest JSON file (config, index) read from disk. */
    static final long MAX_JSON_FILE = 64L << 20;

    static final ObjectMapper MAPPER = JsonMapper.builder(JsonFactory.builder()
                    .streamReadConstraints(StreamReadConstraints.builder()
                            .maxNestingDepth(MAX_NESTING_DEPTH)
                            .maxStringLength(MAX_STRING_LENGTH)
                            .maxNameLength(MAX_NAME_LENGTH)
                            .maxNumberLength(MAX_NUMBER_LENGTH)
                            .build())
                    .build())
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    private Json() {}

    /** Parses JSON bytes; any parse or limit failure becomes a CheckpointFormatException prefixed by {@code where}. */
    static JsonNode parse(byte[] bytes, String where) throws CheckpointFormatException {
        try {
            JsonNode node = MAPPER.readTree(bytes);
            if (node == null || node.isMissingNode()) {
                throw new CheckpointFormatException(where + ": empty JSON");
            }
            return node;
        } catch (CheckpointFormatException e) {
            throw e;
        } catch (IOException | RuntimeException | StackOverflowError e) {
            throw new CheckpointFormatException(where + ": invalid JSON: " + oneLine(e.getMessage()), e);
        }
    }

    /** Reads and parses a JSON file of at most {@link #MAX_JSON_FILE} bytes. */
    static JsonNode readFile(Path file) throws IOException {
        if (!Files.isRegularFile(file)) {
            throw new NoSuchFileException(file.toString(), null, "no such file");
        }
        byte[] bytes;
        try (InputStream in = Files.newInputStream(file)) {
            bytes = in.readNBytes((int) MAX_JSON_FILE + 1);
        }
        if (bytes.length > MAX_JSON_FILE) {
            throw new CheckpointFormatException(file + ": JSON file larger than " + MAX_JSON_FILE + " bytes");
        }
        return parse(bytes, file.toString());
    }

    static String oneLine(String s) {
        if (s == null) {
            return "(no detail)";
        }
        String line = s.replace('\n', ' ').replace('\r', ' ');
        return line.length() > 300 ? line.substring(0, 300) + "…" : line;
    }
}
