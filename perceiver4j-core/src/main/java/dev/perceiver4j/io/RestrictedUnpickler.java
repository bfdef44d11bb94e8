package dev.perceiver4j.io;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * A pickle interpreter that understands only what a PyTorch state dict needs. It never executes anything:
 * globals are resolved against a fixed allow-list to inert markers, and REDUCE only "calls" the few allowed
 * markers (OrderedDict, tensor rebuild functions), which build plain Java values. Every other global and
 * every opcode outside the supported set is rejected with the byte position where it occurs. Sizes are
 * checked against the remaining input before anything is allocated; memo, stack, mark depth and object count
 * are bounded.
 */
public final class RestrictedUnpickler {
    /** Stack entries (values plus marks) at most. */
    public static final int MAX_STACK = 1_000_000;
    /** Open MARKs at most. */
    public static final int MAX_MARK_DEPTH = 1_000;
    /** Memo entries at most. */
    public static final int MAX_MEMO = 10_000_000;
    /** Objects created at most. */
    public static final long MAX_OBJECTS = 20_000_000;
    /** Tensor rank at most. */
    public static final int MAX_RANK = 64;

    /** A global resolved from the allow-list. */
    public record Global(String module, String name) {
        String qualified() {
            return module + "." + name;
        }
    }

    /** An immutable Python tuple. */
    public record Tuple(List<Object> items) {
        public Tuple {
            items = List.copyOf(items.stream().map(o -> o == null ? NONE : o).toList());
        }

        Object get(int i) {
            Object o = items.get(i);
            return o == NONE ? null : o;
        }

        int size() {
            return items.size();
        }
    }

    /** A storage reference from a persistent id ('storage', type, key, location, numel). */
    public record StorageRef(StoredDType dtype, String key, String location, long numel) {}

    /** A rebuilt tensor: a view of a storage, contiguous, in elements. */
    public record TensorRef(StorageRef storage, long storageOffset, long[] shape) {
        public TensorRef {
            shape = shape.clone();
        }

        @Override
        public long[] shape() {
            return shape.clone();
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof TensorRef t && storage.equals(t.storage) && storageOffset == t.storageOffset
                    && Arrays.equals(shape, t.shape);
        }

        @Override
        public int hashCode() {
            return Objects.hash(storage, storageOffset, Arrays.hashCode(shape));
        }
    }

    private static final Object MARK = new Object() {
        @Override
        public String toString() {
            return "MARK";
        }
    };
    private static final Object NONE = new Object() {
        @Override
        public String toString() {
            return "None";
        }
    };

    private static final Map<String, StoredDType> STORAGE_TYPES = Map.of(
            "FloatStorage", StoredDType.F32,
            "HalfStorage", StoredDType.F16,
            "BFloat16Storage", StoredDType.BF16,
            "DoubleStorage", StoredDType.F64,
            "LongStorage", StoredDType.I64,
            "IntStorage", StoredDType.I32,
            "ShortStorage", StoredDType.I16,
            "CharStorage", StoredDType.I8,
            "ByteStorage", StoredDType.U8,
            "BoolStorage", StoredDType.BOOL);
    private static final Map<String, StoredDType> DTYPES = Map.of(
            "float32", StoredDType.F32,
            "float16", StoredDType.F16,
            "bfloat16", StoredDType.BF16,
            "float64", StoredDType.F64,
            "int64", StoredDType.I64,
            "int32", StoredDType.I32,
            "int16", StoredDType.I16,
            "int8", StoredDType.I8,
            "uint8", StoredDType.U8,
            "bool", StoredDType.BOOL);
    private static final Set<String> FUNCTIONS = Set.of(
            "collections.OrderedDict",
            "torch._utils._rebuild_tensor_v2",
            "torch._utils._rebuild_tensor",
            "torch._utils._rebuild_parameter");

    private final String where;
    private final byte[] in;
    private int pos;
    private int opPos;
    private final ArrayList<Object> stack = new ArrayList<>();
    private final ArrayList<Integer> marks = new ArrayList<>();
    private final HashMap<Long, Object> memo = new HashMap<>();
    private long objects;

    private RestrictedUnpickler(String where, byte[] in) {
        this.where = where;
        this.in = in;
    }

    /**
     * Interprets a pickle and returns its top-level value: a {@code Map<Object,Object>} (dict/OrderedDict),
     * {@code List<Object>}, {@link Tuple}, String, Long, Double, Boolean, null, {@link TensorRef},
     * {@link StorageRef} or {@link Global}.
     *
     * @param where prefix for error messages, e.g. "pytorch_model.bin: data.pkl"
     */
    public static Object load(String where, byte[] pickle) throws CheckpointFormatException {
        RestrictedUnpickler u = new RestrictedUnpickler(where, pickle);
        try {
            Object v = u.run();
            return v == NONE ? null : v;
        } catch (CheckpointFormatException e) {
            throw e;
        } catch (RuntimeException | StackOverflowError | OutOfMemoryError e) {
            throw new CheckpointFormatException(where + " byte " + u.opPos + ": malformed pickle (" + e + ")", e);
        }
    }

    private CheckpointFormatException fail(String what) {
        return new CheckpointFormatException(where + " byte " + opPos + ": " + what);
    }

    private Object run() throws CheckpointFormatException {
        while (true) {
            if (pos >= in.length) {
                opPos = pos;
                throw fail("pickle ends without STOP (truncated)");
            }
            opPos = pos;
            int op = in[pos++] & 0xFF;
            switch (op) {
                case 0x80 -> { // PROTO
                    int p = u8();
                    if (p < 2 || p > 5) {
                        throw fail("unsupported pickle protocol " + p);
                    }
                }
                case 0x95 -> { // FRAME: length is advisory
                    long len = u64();
                    if (len < 0 || len > in.length - pos) {
                        throw fail("FRAME length " + Long.toUnsignedString(len) + " exceeds the remaining "
                                + (in.length - pos) + " bytes");
                    }
                }
                case '}' -> push(new LinkedHashMap<Object, Object>());
                case ']' -> push(new ArrayList<Object>());
                case ')' -> push(new Tuple(List.of()));
                case '(' -> {
                    if (marks.size() >= MAX_MARK_DEPTH) {
                        throw fail("MARK nesting deeper than " + MAX_MARK_DEPTH);
                    }
                    marks.add(stack.size());
                    push(MARK);
                }
                case 't' -> push(new Tuple(popMark()));
                case 0x85 -> {
                    Object a = pop();
                    push(new Tuple(List.of(a)));
                }
                case 0x86 -> {
                    Object b = pop();
                    Object a = pop();
                    push(new Tuple(List.of(a, b)));
                }
                case 0x87 -> {
                    Object c = pop();
                    Object b = pop();
                    Object a = pop();
                    push(new Tuple(List.of(a, b, c)));
                }
                case 'J' -> push((long) i32());
                case 'K' -> push((long) u8());
                case 'M' -> push((long) u16());
                case 0x8a -> push(long1());
                case 'G' -> {
                    need(8);
                    double d = ByteBuffer.wrap(in, pos, 8).order(ByteOrder.BIG_ENDIAN).getDouble();
                    pos += 8;
                    push(d);
                }
                case 'X' -> push(utf8(u32()));
                case 0x8c -> push(utf8(u8()));
                case 0x8d -> push(utf8(u64()));
                case 0x88 -> push(Boolean.TRUE);
                case 0x89 -> push(Boolean.FALSE);
                case 'N' -> push(NONE);
                case 'q' -> memoPut(u8());
                case 'r' -> memoPut(u32());
                case 0x94 -> memoPut(memo.size());
                case 'h' -> memoGet(u8());
                case 'j' -> memoGet(u32());
                case 's' -> {
                    Object v = pop();
                    Object k = pop();
                    dictPut(top("SETITEM"), k, v);
                }
                case 'u' -> {
                    List<Object> items = popMark();
                    if (items.size() % 2 != 0) {
                        throw fail("SETITEMS with an odd number (" + items.size() + ") of items");
                    }
                    Object d = top("SETITEMS");
                    for (int i = 0; i < items.size(); i += 2) {
                        dictPut(d, items.get(i), items.get(i + 1));
                    }
                }
                case 'a' -> {
                    Object v = pop();
                    listOf(top("APPEND"), "APPEND").add(v);
                }
                case 'e' -> {
                    List<Object> items = popMark();
                    listOf(top("APPENDS"), "APPENDS").addAll(items);
                }
                case 'c' -> {
                    String module = line();
                    String name = line();
                    push(global(module, name));
                }
                case 0x93 -> {
                    Object name = pop();
                    Object module = pop();
                    if (!(module instanceof String m) || !(name instanceof String n)) {
                        throw fail("STACK_GLOBAL needs two strings, got " + typeName(module) + " and "
                                + typeName(name));
                    }
                    push(global(m, n));
                }
                case 'R' -> {
                    Object args = pop();
                    Object fn = pop();
                    push(reduce(fn, args));
                }
                case 'Q' -> push(persistentLoad(pop()));
                case 'b' -> {
                    Object state = pop();
                    Object target = top("BUILD");
                    if (!(target instanceof Map)) {
                        throw fail("BUILD on a " + typeName(target) + " is not allowed (only dict state)");
                    }
                    if (state != NONE && !(state instanceof Map)) {
                        throw fail("BUILD with a " + typeName(state) + " state is not allowed");
                    }
                    // OrderedDict attribute state (torch's _metadata) carries nothing we need: ignored.
                }
                case '0' -> pop(); // POP
                case '.' -> {
                    if (stack.size() != 1 || !marks.isEmpty()) {
                        throw fail("STOP with " + stack.size() + " stack entries and " + marks.size()
                                + " open marks (expected exactly one value)");
                    }
                    return stack.get(0);
                }
                default -> throw fail(opcodeName(op) + " is not allowed in a state dict");
            }
        }
    }

    private static String opcodeName(int op) {
        String name = switch (op) {
            case 'i' -> "INST";
            case 'o' -> "OBJ";
            case 0x81 -> "NEWOBJ";
            case 0x92 -> "NEWOBJ_EX";
            case 0x82 -> "EXT1";
            case 0x83 -> "EXT2";
            case 0x84 -> "EXT4";
            case 'P' -> "PERSID";
            case 'S' -> "STRING";
            case 'V' -> "UNICODE";
            case 'I' -> "INT";
            case 'L' -> "LONG";
            case 'F' -> "FLOAT";
            case 'd' -> "DICT";
            case 'l' -> "LIST";
            case 'p' -> "PUT";
            case 'g' -> "GET";
            case '1' -> "POP_MARK";
            case '2' -> "DUP";
            case 'B' -> "BINBYTES";
            case 'C' -> "SHORT_BINBYTES";
            case 0x8e -> "BINBYTES8";
            case 0x96 -> "BYTEARRAY8";
            case 0x97 -> "NEXT_BUFFER";
            case 0x98 -> "READONLY_BUFFER";
            case 0x8b -> "LONG4";
            case 0x8f -> "EMPTY_SET";
            case 0x90 -> "ADDITEMS";
            case 0x91 -> "FROZENSET";
            default -> null;
        };
        String hex = String.format("0x%02x", op);
        return name == null ? "unknown opcode " + hex : "opcode " + name + " (" + hex + ")";
    }

    // ---- input ----

    private void need(long n) throws CheckpointFormatException {
        if (n < 0 || n > in.length - pos) {
            throw fail("needs " + Long.toUnsignedString(n) + " bytes but only " + (in.length - pos)
                    + " remain (truncated or forged length)");
        }
    }

    private int u8() throws CheckpointFormatException {
        need(1);
        return in[pos++] & 0xFF;
    }

    private int u16() throws CheckpointFormatException {
        need(2);
        int v = (in[pos] & 0xFF) | (in[pos + 1] & 0xFF) << 8;
        pos += 2;
        return v;
    }

    private int i32() throws CheckpointFormatException {
        need(4);
        int v = ByteBuffer.wrap(in, pos, 4).order(ByteOrder.LITTLE_ENDIAN).getInt();
        pos += 4;
        return v;
    }

    private long u32() throws CheckpointFormatException {
        return i32() & 0xFFFFFFFFL;
    }

    private long u64() throws CheckpointFormatException {
        need(8);
        long v = ByteBuffer.wrap(in, pos, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        pos += 8;
        return v;
    }

    private Long long1() throws CheckpointFormatException {
        int n = u8();
        if (n > 8) {
            throw fail("LONG1 of " + n + " bytes does not fit in 64 bits");
        }
        need(n);
        long v = 0;
        for (int i = 0; i < n; i++) {
            v |= (in[pos + i] & 0xFFL) << (8 * i);
        }
        if (n > 0 && n < 8 && (in[pos + n - 1] & 0x80) != 0) {
            v |= -1L << (8 * n); // sign-extend
        }
        pos += n;
        return v;
    }

    private String utf8(long len) throws CheckpointFormatException {
        need(len);
        CharsetDecoder dec = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        try {
            CharBuffer cb = dec.decode(ByteBuffer.wrap(in, pos, (int) len));
            pos += (int) len;
            return cb.toString();
        } catch (CharacterCodingException e) {
            throw fail("string of " + len + " bytes is not valid UTF-8");
        }
    }

    private String line() throws CheckpointFormatException {
        int start = pos;
        int limit = Math.min(in.length, pos + 256);
        for (int i = start; i < limit; i++) {
            if (in[i] == '\n') {
                pos = i + 1;
                for (int j = start; j < i; j++) {
                    if (in[j] < 0x20 || in[j] > 0x7e) {
                        throw fail("GLOBAL name contains a non-printable byte");
                    }
                }
                return new String(in, start, i - start, StandardCharsets.US_ASCII);
            }
        }
        throw fail("GLOBAL name not terminated by a newline within 256 bytes");
    }

    // ---- stack / memo ----

    private void push(Object o) throws CheckpointFormatException {
        if (stack.size() >= MAX_STACK) {
            throw fail("stack deeper than " + MAX_STACK);
        }
        if (++objects > MAX_OBJECTS) {
            throw fail("more than " + MAX_OBJECTS + " objects");
        }
        stack.add(o);
    }

    private Object pop() throws CheckpointFormatException {
        int n = stack.size();
        int floor = marks.isEmpty() ? 0 : marks.get(marks.size() - 1) + 1;
        if (n <= floor) {
            throw fail(n == 0 ? "stack underflow" : "pop across a MARK");
        }
        return stack.remove(n - 1);
    }

    private Object top(String op) throws CheckpointFormatException {
        int n = stack.size();
        int floor = marks.isEmpty() ? 0 : marks.get(marks.size() - 1) + 1;
        if (n <= floor) {
            throw fail(op + " on an empty stack");
        }
        return stack.get(n - 1);
    }

    private List<Object> popMark() throws CheckpointFormatException {
        if (marks.isEmpty()) {
            throw fail("no MARK on the stack");
        }
        int m = marks.remove(marks.size() - 1);
        List<Object> sub = stack.subList(m + 1, stack.size());
        List<Object> items = new ArrayList<>(sub);
        stack.subList(m, stack.size()).clear();
        return items;
    }

    private void memoPut(long index) throws CheckpointFormatException {
        Object v = top("PUT");
        if (memo.size() >= MAX_MEMO && !memo.containsKey(index)) {
            throw fail("memo larger than " + MAX_MEMO + " entries");
        }
        memo.put(index, v);
    }

    private void memoGet(long index) throws CheckpointFormatException {
        Object v = memo.get(index);
        if (v == null) {
            throw fail("memo index " + index + " was never stored");
        }
        push(v);
    }

    @SuppressWarnings("unchecked")
    private void dictPut(Object d, Object k, Object v) throws CheckpointFormatException {
        if (!(d instanceof Map)) {
            throw fail("SETITEM on a " + typeName(d) + ", expected a dict");
        }
        if (!(k instanceof String || k instanceof Long || k instanceof Boolean || k instanceof Double || k == NONE)) {
            throw fail("dict key of type " + typeName(k) + " is not allowed (only str, int, float, bool, None)");
        }
        ((Map<Object, Object>) d).put(k, v);
    }

    @SuppressWarnings("unchecked")
    private List<Object> listOf(Object l, String op) throws CheckpointFormatException {
        if (!(l instanceof List)) {
            throw fail(op + " on a " + typeName(l) + ", expected a list");
        }
        return (List<Object>) l;
    }

    // ---- globals, calls, persistent ids ----

    private Object global(String module, String name) throws CheckpointFormatException {
        String q = module + "." + name;
        if (FUNCTIONS.contains(q)) {
            return new Global(module, name);
        }
        if (module.equals("torch") && (STORAGE_TYPES.containsKey(name) || DTYPES.containsKey(name))) {
            return new Global(module, name);
        }
        throw fail("global '" + SafetensorsReader.clip(q) + "' is not allowed in a state dict");
    }

    private Object reduce(Object fn, Object args) throws CheckpointFormatException {
        if (!(fn instanceof Global g)) {
            throw fail("REDUCE on a " + typeName(fn) + " (only allow-listed globals can be called)");
        }
        if (!(args instanceof Tuple t)) {
            throw fail("REDUCE arguments must be a tuple, got " + typeName(args));
        }
        switch (g.qualified()) {
            case "collections.OrderedDict" -> {
                if (t.size() != 0) {
                    throw fail("OrderedDict called with " + t.size() + " arguments (expected none)");
                }
                return new LinkedHashMap<Object, Object>();
            }
            case "torch._utils._rebuild_tensor_v2" -> {
                if (t.size() < 6 || t.size() > 7) {
                    throw fail("_rebuild_tensor_v2 takes 6 or 7 arguments, got " + t.size());
                }
                return rebuildTensor(t);
            }
            case "torch._utils._rebuild_tensor" -> {
                if (t.size() != 4) {
                    throw fail("_rebuild_tensor takes 4 arguments, got " + t.size());
                }
                return rebuildTensor(t);
            }
            case "torch._utils._rebuild_parameter" -> {
                if (t.size() != 3 || !(t.get(0) instanceof TensorRef tr)) {
                    throw fail("_rebuild_parameter expects (tensor, requires_grad, hooks)");
                }
                return tr;
            }
            default -> throw fail("global '" + g.qualified() + "' cannot be called");
        }
    }

    private TensorRef rebuildTensor(Tuple t) throws CheckpointFormatException {
        if (!(t.get(0) instanceof StorageRef storage)) {
            throw fail("tensor rebuild: first argument must be a storage, got " + typeName(t.get(0)));
        }
        if (!(t.get(1) instanceof Long offset) || offset < 0) {
            throw fail("tensor rebuild: storage offset must be a non-negative int");
        }
        long[] size = longs(t.get(2), "size");
        long[] stride = longs(t.get(3), "stride");
        if (size.length != stride.length) {
            throw fail("tensor rebuild: size has " + size.length + " dims but stride " + stride.length);
        }
        long numel = 1;
        for (long d : size) {
            if (d < 0) {
                throw fail("tensor rebuild: negative size " + Arrays.toString(size));
            }
            try {
                numel = Math.multiplyExact(numel, d);
            } catch (ArithmeticException e) {
                throw fail("tensor rebuild: size " + Arrays.toString(size) + " overflows");
            }
        }
        if (numel > 0) {
            long expect = 1;
            for (int i = size.length - 1; i >= 0; i--) {
                if (size[i] != 1 && stride[i] != expect) {
                    throw fail("tensor rebuild: size " + Arrays.toString(size) + " with stride "
                            + Arrays.toString(stride) + " is not contiguous (only contiguous tensors are supported)");
                }
                expect *= size[i];
            }
        }
        if (offset + numel > storage.numel() || offset + numel < 0) {
            throw fail("tensor rebuild: storage offset " + offset + " + " + numel + " elements exceeds storage '"
                    + storage.key() + "' of " + storage.numel() + " elements");
        }
        if (t.size() >= 5 && !(t.get(4) instanceof Boolean)) {
            throw fail("tensor rebuild: requires_grad must be a bool");
        }
        if (t.size() >= 6 && t.get(5) != null && !(t.get(5) instanceof Map)) {
            throw fail("tensor rebuild: backward hooks must be a dict");
        }
        return new TensorRef(storage, offset, size);
    }

    private long[] longs(Object o, String what) throws CheckpointFormatException {
        if (!(o instanceof Tuple t)) {
            throw fail("tensor rebuild: " + what + " must be a tuple, got " + typeName(o));
        }
        if (t.size() > MAX_RANK) {
            throw fail("tensor rebuild: " + what + " has " + t.size() + " dims (limit " + MAX_RANK + ")");
        }
        long[] out = new long[t.size()];
        for (int i = 0; i < out.length; i++) {
            if (!(t.get(i) instanceof Long v)) {
                throw fail("tensor rebuild: " + what + " entry " + i + " is a " + typeName(t.get(i)));
            }
            out[i] = v;
        }
        return out;
    }

    private Object persistentLoad(Object pid) throws CheckpointFormatException {
        if (!(pid instanceof Tuple t) || t.size() != 5 || !"storage".equals(t.get(0))) {
            throw fail("persistent id must be ('storage', type, key, location, numel)");
        }
        StoredDType dtype;
        if (t.get(1) instanceof Global g && g.module().equals("torch") && STORAGE_TYPES.containsKey(g.name())) {
            dtype = STORAGE_TYPES.get(g.name());
        } else if (t.get(1) instanceof Global g && g.module().equals("torch") && DTYPES.containsKey(g.name())) {
            dtype = DTYPES.get(g.name());
        } else {
            throw fail("persistent id: storage type must be a torch storage class, got " + typeName(t.get(1)));
        }
        if (!(t.get(2) instanceof String key) || key.isEmpty() || key.length() > 64
                || !key.chars().allMatch(c -> c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
                        || c == '_' || c == '-')) {
            throw fail("persistent id: storage key must be a short alphanumeric string");
        }
        if (!(t.get(3) instanceof String location)) {
            throw fail("persistent id: location must be a string");
        }
        if (!(t.get(4) instanceof Long numel) || numel < 0) {
            throw fail("persistent id: numel must be a non-negative int");
        }
        return new StorageRef(dtype, key, location, numel);
    }

    static String typeName(Object o) {
        if (o == null || o == NONE) {
            return "None";
        }
        if (o == MARK) {
            return "MARK";
        }
        if (o instanceof Map) {
            return "dict";
        }
        if (o instanceof List) {
            return "list";
        }
        if (o instanceof Tuple) {
            return "tuple";
        }
        if (o instanceof String) {
            return "str";
        }
        if (o instanceof Long) {
            return "int";
        }
        if (o instanceof Double) {
            return "float";
        }
        if (o instanceof Boolean) {
            return "bool";
        }
        if (o instanceof Global g) {
            return "global '" + g.qualified() + "'";
        }
        if (o instanceof StorageRef) {
            return "storage";
        }
        if (o instanceof TensorRef) {
            return "tensor";
        }
        return o.getClass().getSimpleName();
    }

    /** True when {@code o} is the pickle None (values inside dicts and lists use this marker). */
    static boolean isNone(Object o) {
        return o == null || o == NONE;
    }
}
