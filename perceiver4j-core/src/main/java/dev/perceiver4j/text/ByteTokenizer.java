package dev.perceiver4j.text;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The byte-level tokenizer of Perceiver IO (identical to HF {@code PerceiverTokenizer}): six
 * special ids, then every UTF-8 byte b as id b + 6 (vocabulary 262).
 *
 * <pre>
 *   [PAD]=0 [BOS]=1 [EOS]=2 [MASK]=3 [CLS]=4 [SEP]=5, byte b → b + 6
 *   encode("hi")  →  [CLS] h i [SEP]  =  4 110 111 5
 * </pre>
 * The literal text {@code [MASK]} (and the other special-token strings) inside the input becomes
 * the special id, as in HF. Decoding turns invalid UTF-8 into U+FFFD.
 */
public final class ByteTokenizer {
    public static final int PAD = 0, BOS = 1, EOS = 2, MASK = 3, CLS = 4, SEP = 5;
    public static final int OFFSET = 6;
    public static final int VOCAB = 256 + OFFSET;
    private static final String[] SPECIAL = {"[PAD]", "[BOS]", "[EOS]", "[MASK]", "[CLS]", "[SEP]"};

    /** Token ids and attention mask (1 = real token, 0 = padding) of one or more sequences. */
    public record Encoding(int[] ids, int[] attentionMask) {}

    /** Token ids of raw bytes (b → b + 6), no special-token parsing: what byte-level language models are trained on. */
    public static int[] ids(byte[] bytes) {
        int[] r = new int[bytes.length];
        for (int i = 0; i < bytes.length; i++) r[i] = (bytes[i] & 0xFF) + OFFSET;
        return r;
    }

    /** ids of {@code text} without [CLS]/[SEP]: special-token strings map to their ids, the rest to bytes. */
    public int[] encodeRaw(String text) {
        List<Integer> out = new ArrayList<>();
        int i = 0;
        StringBuilder pending = new StringBuilder();
        while (i < text.length()) {
            int special = specialAt(text, i);
            if (special >= 0) {
                flushBytes(pending, out);
                out.add(special);
                i += SPECIAL[special].length();
            } else {
                pending.append(text.charAt(i++));
            }
        }
        flushBytes(pending, out);
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    /** [CLS] text [SEP], as HF encodes one sequence. */
    public int[] encode(String text) {
        int[] raw = encodeRaw(text);
        int[] ids = new int[raw.length + 2];
        ids[0] = CLS;
        System.arraycopy(raw, 0, ids, 1, raw.length);
        ids[ids.length - 1] = SEP;
        return ids;
    }

    /**
     * [CLS] text [SEP] padded with [PAD] (mask 0) to {@code length}; longer inputs are an error
     * naming the length (silent truncation would lose data).
     */
    public Encoding encodePadded(String text, int length) {
        int[] ids = encode(text);
        if (ids.length > length) {
            throw new IllegalArgumentException("text encodes to " + ids.length + " tokens ([CLS] + " + (ids.length - 2)
                    + " bytes + [SEP]) but the model takes at most " + length);
        }
        int[] padded = Arrays.copyOf(ids, length); // PAD = 0
        int[] mask = new int[length];
        Arrays.fill(mask, 0, ids.length, 1);
        return new Encoding(padded, mask);
    }

    /**
     * Text of {@code ids}: byte ids become UTF-8 (invalid sequences → U+FFFD); special ids
     * become their strings unless {@code skipSpecial}.
     */
    public String decode(int[] ids, boolean skipSpecial) {
        StringBuilder sb = new StringBuilder();
        ByteBuffer bytes = ByteBuffer.allocate(ids.length);
        for (int id : ids) {
            if (id < 0 || id >= VOCAB) throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, " + VOCAB + ")");
            if (id < OFFSET) {
                flushText(bytes, sb);
                if (!skipSpecial) sb.append(SPECIAL[id]);
            } else {
                bytes.put((byte) (id - OFFSET));
            }
        }
        flushText(bytes, sb);
        return sb.toString();
    }

    /** The special-token string of id {@code id} (< 6), for display. */
    public static String specialName(int id) {
        return SPECIAL[id];
    }

    private static int specialAt(String text, int i) {
        if (text.charAt(i) != '[') return -1;
        for (int s = 0; s < SPECIAL.length; s++) if (text.startsWith(SPECIAL[s], i)) return s;
        return -1;
    }

    private static void flushBytes(StringBuilder pending, List<Integer> out) {
        if (pending.isEmpty()) return;
        for (byte b : pending.toString().getBytes(StandardCharsets.UTF_8)) out.add((b & 0xFF) + OFFSET);
        pending.setLength(0);
    }

    /**
     * Decodes UTF-8 replacing each maximal ill-formed subpart with one U+FFFD (the Unicode
     * "best practice" that Python's {@code errors="replace"}, and so HF, follow).
     */
    static void appendUtf8(byte[] b, int n, StringBuilder sb) {
        int i = 0;
        while (i < n) {
            int b0 = b[i] & 0xFF;
            if (b0 < 0x80) {
                sb.append((char) b0);
                i++;
                continue;
            }
            int len, lo = 0x80, hi = 0xBF, cp;
            if (b0 >= 0xC2 && b0 <= 0xDF) { len = 2; cp = b0 & 0x1F; }
            else if (b0 == 0xE0) { len = 3; lo = 0xA0; cp = 0; }
            else if (b0 >= 0xE1 && b0 <= 0xEF) { len = 3; if (b0 == 0xED) hi = 0x9F; cp = b0 & 0x0F; }
            else if (b0 == 0xF0) { len = 4; lo = 0x90; cp = 0; }
            else if (b0 >= 0xF1 && b0 <= 0xF3) { len = 4; cp = b0 & 0x07; }
            else if (b0 == 0xF4) { len = 4; hi = 0x8F; cp = 4; }
            else { sb.append('\uFFFD'); i++; continue; }
            int j = i + 1;
            boolean ok = true;
            for (int k = 1; k < len; k++, j++) {
                int lower = k == 1 ? lo : 0x80, upper = k == 1 ? hi : 0xBF;
                if (j >= n || (b[j] & 0xFF) < lower || (b[j] & 0xFF) > upper) {
                    ok = false;
                    break;
                }
                cp = (cp << 6) | (b[j] & 0x3F);
            }
            if (ok) sb.appendCodePoint(cp); else sb.append('\uFFFD');
            i = j; // resume at the first byte that did not fit
        }
    }

    private static void flushText(ByteBuffer bytes, StringBuilder sb) {
        if (bytes.position() == 0) return;
        appendUtf8(bytes.array(), bytes.position(), sb);
        bytes.clear();
    }
}
