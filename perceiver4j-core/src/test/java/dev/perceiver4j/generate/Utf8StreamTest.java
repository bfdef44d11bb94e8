package dev.perceiver4j.generate;

import dev.perceiver4j.text.ByteTokenizer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class Utf8StreamTest {
    final ByteTokenizer tok = new ByteTokenizer();

    @Test
    void asciiComesOutImmediately() {
        Utf8Stream s = new Utf8Stream();
        for (char c : "Hello, world!\n".toCharArray()) assertThat(s.accept(c)).isEqualTo(String.valueOf(c));
        assertThat(s.flush()).isEmpty();
    }

    @Test
    void multiByteCharactersComeOutWhenComplete() {
        Utf8Stream s = new Utf8Stream();
        // "€" = E2 82 AC, "😀" = F0 9F 98 80
        assertThat(s.accept(0xE2)).isEmpty();
        assertThat(s.accept(0x82)).isEmpty();
        assertThat(s.pending()).isTrue();
        assertThat(s.accept(0xAC)).isEqualTo("€");
        assertThat(s.pending()).isFalse();
        assertThat(s.accept('!')).isEqualTo("!");
        assertThat(s.accept(0xF0)).isEmpty();
        assertThat(s.accept(0x9F)).isEmpty();
        assertThat(s.accept(0x98)).isEmpty();
        assertThat(s.accept(0x80)).isEqualTo("😀");
        for (String text : List.of("Grüße, 世界 😀🎉 €100 — naïve café", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u0000 \u007f \u0080 \u07ff \u0800 \uffff \uD800\uDC00 \uDBFF\uDFFF")) {
            assertThat(streamed(text.getBytes(StandardCharsets.UTF_8))).isEqualTo(text);
        }
    }

    @Test
    void invalidBytesAreDecidedAsSoonAsPossible() {
        Utf8Stream s = new Utf8Stream();
        assertThat(s.accept(0xE2)).isEmpty();
        assertThat(s.accept(0x82)).isEmpty();
        assertThat(s.accept('A')).isEqualTo("\uFFFDA");         // truncated sequence, then the ASCII byte at once
        assertThat(s.accept(0x80)).isEqualTo("\uFFFD");          // stray continuation byte
        assertThat(s.accept(0xC0)).isEqualTo("\uFFFD");          // never a lead byte (overlong 2-byte)
        assertThat(s.accept(0xFF)).isEqualTo("\uFFFD");
        assertThat(s.accept(0xE0)).isEmpty();
        assertThat(s.accept(0x80)).isEqualTo("\uFFFD\uFFFD");    // overlong 3-byte: E0 then 80 is two subparts
        assertThat(s.accept(0xED)).isEmpty();
        assertThat(s.accept(0xA0)).isEqualTo("\uFFFD\uFFFD");    // encoded surrogate
        assertThat(s.accept(0xC3)).isEmpty();
        assertThat(s.accept(0xC3)).isEqualTo("\uFFFD");          // a new lead byte ends the previous sequence
        assertThat(s.accept(0xA9)).isEqualTo("é");
        assertThat(s.accept(0xF4)).isEmpty();
        assertThat(s.accept(0x90)).isEqualTo("\uFFFD\uFFFD");    // above U+10FFFF
        assertThat(s.accept(0xF0)).isEmpty();
        assertThat(s.flush()).isEqualTo("\uFFFD");               // truncated at the end
        assertThat(s.flush()).isEmpty();
        assertThat(s.accept('x')).isEqualTo("x");                // reusable after flush
    }

    @Test
    void matchesTheTokenizerOnEdgeCases() {
        int[][] cases = {
            {0xE2, 0x82}, {0xFF, 0x41}, {0xE2, 0x82, 0x41, 0xC3}, {0xF0, 0x9F, 0x98}, {0xF0, 0x9F, 0x98, 0x41},
            {0xC0, 0x80}, {0xC1, 0xBF}, {0xE0, 0x80, 0x80}, {0xE0, 0x9F, 0xBF}, {0xF0, 0x80, 0x80, 0x80}, {0xF0, 0x8F, 0xBF, 0xBF},
            {0xED, 0xA0, 0x80}, {0xED, 0xBF, 0xBF}, {0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80}, {0xED, 0x9F, 0xBF},
            {0x80}, {0xBF, 0x80, 0x80}, {0xF5, 0x80, 0x80, 0x80}, {0xF4, 0x90, 0x80, 0x80}, {0xF4, 0x8F, 0xBF, 0xBF},
            {0xF8, 0x88, 0x80, 0x80, 0x80}, {0xFE}, {0xE1, 0x80}, {0xF1, 0x80, 0x80}, {0xC2}, {},
        };
        for (int[] c : cases) {
            byte[] bytes = new byte[c.length];
            for (int i = 0; i < c.length; i++) bytes[i] = (byte) c[i];
            assertThat(streamed(bytes)).as(hex(bytes)).isEqualTo(tokenizerDecode(bytes));
        }
    }

    @Test
    void matchesTheTokenizerOnRandomBytes() {
        SplittableRandom r = new SplittableRandom(7);
        int[] interesting = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF,
            0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
        byte[] valid = "aé€😀世".getBytes(StandardCharsets.UTF_8);
        for (int trial = 0; trial < 20_000; trial++) {
            byte[] bytes = new byte[r.nextInt(24)];
            for (int i = 0; i < bytes.length; i++) {
                int kind = r.nextInt(4);
                bytes[i] = (byte) switch (kind) {
                    case 0 -> r.nextInt(256);
                    case 1 -> interesting[r.nextInt(interesting.length)];
                    case 2 -> 0x80 + r.nextInt(64); // continuation bytes
                    default -> valid[r.nextInt(valid.length)];
                };
            }
            assertThat(streamed(bytes)).as(hex(bytes)).isEqualTo(tokenizerDecode(bytes));
        }
    }

    @Test
    void everyPrefixIsAPrefixOfTheFinalText() {
        // what has been printed is never taken back
        SplittableRandom r = new SplittableRandom(8);
        for (int trial = 0; trial < 2000; trial++) {
            byte[] bytes = new byte[r.nextInt(30)];
            for (int i = 0; i < bytes.length; i++) bytes[i] = (byte) (r.nextBoolean() ? r.nextInt(256) : 0x80 + r.nextInt(0x80));
            String whole = tokenizerDecode(bytes);
            Utf8Stream s = new Utf8Stream();
            StringBuilder out = new StringBuilder();
            for (byte b : bytes) {
                out.append(s.accept(b & 0xFF));
                assertThat(whole).startsWith(out.toString());
            }
        }
    }

    @Test
    void rejectsValuesThatAreNotBytes() {
        assertThatThrownBy(() -> new Utf8Stream().accept(256)).hasMessageContaining("256");
        assertThatThrownBy(() -> new Utf8Stream().accept(-1)).hasMessageContaining("-1");
    }

    private static String streamed(byte[] bytes) {
        Utf8Stream s = new Utf8Stream();
        List<String> parts = new ArrayList<>();
        for (byte b : bytes) parts.add(s.accept(b & 0xFF));
        parts.add(s.flush());
        return String.join("", parts);
    }

    private String tokenizerDecode(byte[] bytes) {
        int[] ids = new int[bytes.length];
        for (int i = 0; i < bytes.length; i++) ids[i] = (bytes[i] & 0xFF) + ByteTokenizer.OFFSET;
        return tok.decode(ids, false);
    }

    private static String hex(byte[] bytes) {
        StringBuilder sb = new StringBuilder();
        for (byte b : bytes) sb.append(String.format("%02X ", b & 0xFF));
        return sb.toString().trim();
    }
}
