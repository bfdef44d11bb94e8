package dev.perceiver4j.generate;

/**
 * Decodes UTF-8 arriving one byte at a time, returning text as soon as it is decided, so that
 * generated text can be printed while it is produced without ever showing half a character.
 *
 * <p>The concatenation of every {@link #accept} result and a final {@link #flush} equals the
 * one-shot decoding of {@code dev.perceiver4j.text.ByteTokenizer}: each maximal ill-formed
 * subpart becomes one U+FFFD (the Unicode best practice that Python's {@code errors="replace"}
 * follows). A byte is held back only while it may still start or continue a valid character:
 *
 * <pre>
 *   accept('h') → "h"        accept(0xE2) → ""   accept(0x82) → ""   accept(0xAC) → "€"
 *   accept(0xE2) → ""        accept('A')  → "\uFFFDA"   (truncated sequence, then the ASCII byte)
 * </pre>
 * Not thread-safe.
 */
public final class Utf8Stream {
    /** Bytes of the pending character; 0 when none is pending. */
    private int have;
    /** Total length of the pending character. */
    private int need;
    /** Allowed range of the next byte (only the second byte of some sequences is narrower than 80..BF). */
    private int lower, upper;
    /** Code point bits gathered so far. */
    private int codePoint;

    /**
     * Takes byte {@code b} (0..255) and returns the text that became complete: "" while a
     * character is pending, otherwise one or two characters, or a U+FFFD followed by what
     * {@code b} starts.
     */
    public String accept(int b) {
        if (b < 0 || b > 0xFF) throw new IllegalArgumentException("byte must be in [0, 255], got " + b);
        if (have == 0) return start(b);
        if (b < lower || b > upper) {
            reset();
            return "\uFFFD" + start(b); // the pending prefix is one ill-formed subpart; b starts afresh
        }
        codePoint = (codePoint << 6) | (b & 0x3F);
        have++;
        lower = 0x80;
        upper = 0xBF;
        if (have < need) return "";
        String complete = Character.toString(codePoint);
        reset();
        return complete;
    }

    /** Ends the input: a pending incomplete character becomes U+FFFD; the stream is then empty and reusable. */
    public String flush() {
        if (have == 0) return "";
        reset();
        return "\uFFFD";
    }

    /** True while bytes of an incomplete character are held back. */
    public boolean pending() {
        return have > 0;
    }

    private String start(int b) {
        if (b < 0x80) return Character.toString(b);
        lower = 0x80;
        upper = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) { need = 2; codePoint = b & 0x1F; }
        else if (b == 0xE0) { need = 3; codePoint = 0; lower = 0xA0; }           // no overlong 3-byte forms
        else if (b >= 0xE1 && b <= 0xEF) { need = 3; codePoint = b & 0x0F; if (b == 0xED) upper = 0x9F; } // no surrogates
        else if (b == 0xF0) { need = 4; codePoint = 0; lower = 0x90; }           // no overlong 4-byte forms
        else if (b >= 0xF1 && b <= 0xF3) { need = 4; codePoint = b & 0x07; }
        else if (b == 0xF4) { need = 4; codePoint = 4; upper = 0x8F; }           // nothing above U+10FFFF
        else return "\uFFFD";                                                   // 80..C1, F5..FF never start a character
        have = 1;
        return "";
    }

    private void reset() {
        have = 0;
        need = 0;
        codePoint = 0;
    }
}
