package dev.perceiver4j.io;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A checkpoint split into shards and described by an index file such as {@code model.safetensors.index.json}:
 * {@code {"metadata": {...}, "weight_map": {tensor name: shard file name}}}. Shard names must be plain file
 * names in the index's directory. Each shard is opened once; every mapped tensor must exist in its shard.
 */
public final class ShardedSafetensors extends IndexedSource<TensorSource> {

    /** Opens one shard file. */
    @FunctionalInterface
    interface ShardOpener {
        TensorSource open(Path shard) throws IOException;
    }

    private final List<TensorSource> shards;
    private final Map<String, String> metadata;

    private ShardedSafetensors(Path path, List<TensorSource> shards, Map<String, TensorSource> byName,
            Map<String, String> metadata) {
        super(path, byName);
        this.shards = shards;
        this.metadata = metadata;
    }

    /** Opens a sharded safetensors checkpoint from its index file. */
    public static ShardedSafetensors open(Path indexJson) throws IOException {
        return open(indexJson, SafetensorsReader::open);
    }

    static ShardedSafetensors open(Path indexJson, ShardOpener opener) throws IOException {
        String where = indexJson.toString();
        JsonNode root = Json.readFile(indexJson);
        if (!root.isObject()) {
            throw new CheckpointFormatException(where + ": index must be a JSON object");
        }
        JsonNode wm = root.get("weight_map");
        if (wm == null || !wm.isObject()) {
            throw new CheckpointFormatException(where + ": missing or non-object weight_map");
        }
        Map<String, String> metadata = new LinkedHashMap<>();
        JsonNode md = root.get("metadata");
        if (md != null && !md.isNull()) {
            if (!md.isObject()) {
                throw new CheckpointFormatException(where + ": metadata must be an object");
            }
            for (Map.Entry<String, JsonNode> e : md.properties()) {
                JsonNode v = e.getValue();
                if (!v.isValueNode()) {
                    throw new CheckpointFormatException(where + ": metadata '" + SafetensorsReader.clip(e.getKey())
                            + "' must be a string or number");
                }
                metadata.put(e.getKey(), v.asText());
            }
        }
        Path dir = indexJson.toAbsolutePath().getParent();
        Map<String, TensorSource> opened = new LinkedHashMap<>();
        Map<String, TensorSource> byName = new LinkedHashMap<>();
        boolean ok = false;
        try {
            for (Map.Entry<String, JsonNode> e : wm.properties()) {
                String name = e.getKey();
                String t = where + ": tensor '" + SafetensorsReader.clip(name) + "'";
                if (!e.getValue().isTextual()) {
                    throw new CheckpointFormatException(t + ": shard must be a file name string");
                }
                String shard = e.getValue().textValue();
                checkShardName(t, shard);
                TensorSource src = opened.get(shard);
                if (src == null) {
                    Path p = dir.resolve(shard);
                    if (!p.normalize().getParent().equals(dir.normalize())) {
                        throw new CheckpointFormatException(t + ": shard '" + shard + "' is outside " + dir);
                    }
                    src = opener.open(p);
                    opened.put(shard, src);
                }
                if (!src.contains(name)) {
                    throw new CheckpointFormatException(t + ": mapped to shard '" + shard
                            + "' but that shard has no such tensor");
                }
                byName.put(name, src);
            }
            ShardedSafetensors s = new ShardedSafetensors(indexJson, List.copyOf(opened.values()),
                    Collections.unmodifiableMap(byName), Collections.unmodifiableMap(metadata));
            ok = true;
            return s;
        } finally {
            if (!ok) {
                for (TensorSource s : opened.values()) {
                    try {
                        s.close();
                    } catch (IOException ignored) {
                        // already failing
                    }
                }
            }
        }
    }

    private static void checkShardName(String t, String shard) throws CheckpointFormatException {
        boolean bad = shard.isEmpty() || shard.equals(".") || shard.equals("..") || shard.indexOf('/') >= 0
                || shard.indexOf('\\') >= 0 || shard.indexOf('\0') >= 0 || shard.indexOf(':') >= 0
                || shard.length() > 255;
        if (!bad) {
            try {
                bad = Path.of(shard).isAbsolute() || Path.of(shard).getNameCount() != 1;
            } catch (RuntimeException e) {
                bad = true;
            }
        }
        if (bad) {
            throw new CheckpointFormatException(t + ": shard name '" + SafetensorsReader.clip(shard)
                    + "' must be a plain file name in the index's directory");
        }
    }

    /** Number of distinct shard files. */
    public int shardCount() {
        return shards.size();
    }





    @Override
    public TensorInfo info(String name) {
        return entry(name).info(name);
    }

    @Override
    public float[] readFloats(String name) throws IOException {
        return entry(name).readFloats(name);
    }

    @Override
    public long[] readLongs(String name) throws IOException {
        return entry(name).readLongs(name);
    }

    @Override
    public Map<String, String> metadata() {
        return metadata;
    }

    @Override
    public void close() throws IOException {
        IOException first = null;
        for (TensorSource s : shards) {
            try {
                s.close();
            } catch (IOException e) {
                if (first == null) {
                    first = e;
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }
}
