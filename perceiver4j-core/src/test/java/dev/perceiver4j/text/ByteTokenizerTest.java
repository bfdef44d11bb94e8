package dev.perceiver4j.text;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class ByteTokenizerTest {
    final ByteTokenizer tok = new ByteTokenizer();

    @Test
    void matchesHfGoldenVectors() {
        // HF PerceiverTokenizer output, from shared/fixtures/README.md
        assertThat(tok.encode("Unicode €.")).containsExactly(4, 91, 116, 111, 105, 117, 106, 107, 38, 232, 136, 178, 52, 5);
        assertThat(tok.encode("e è é ê ë")).containsExactly(4, 107, 38, 201, 174, 38, 201, 175, 38, 201, 176, 38, 201, 177, 5);
    }

    @Test
    void literalSpecialTokensBecomeTheirIds() {
        assertThat(tok.encode("a[MASK][MASK]b")).containsExactly(4, 97 + 6, 3, 3, 98 + 6, 5);
        assertThat(tok.encodeRaw("[SEP][PAD][BOS][EOS][CLS]")).containsExactly(5, 0, 1, 2, 4);
        assertThat(tok.encodeRaw("[MASK")).containsExactly('[' + 6, 'M' + 6, 'A' + 6, 'S' + 6, 'K' + 6);
    }

    @Test
    void padsWithAMaskAndRefusesToTruncate() {
        ByteTokenizer.Encoding e = tok.encodePadded("hi", 6);
        assertThat(e.ids()).containsExactly(4, 110, 111, 5, 0, 0);
        assertThat(e.attentionMask()).containsExactly(1, 1, 1, 1, 0, 0);
        assertThatThrownBy(() -> tok.encodePadded("hello", 6)).hasMessageContaining("7 tokens").hasMessageContaining("at most 6");
    }

    @Test
    void decodesRoundTripAndSpecials() {
        String s = "Grüße, 世界 😀 [MASK]";
        assertThat(tok.decode(tok.encode(s), true)).isEqualTo(s.replace("[MASK]", ""));
        assertThat(tok.decode(tok.encode("x[MASK]"), false)).isEqualTo("[CLS]x[MASK][SEP]");
    }

    @Test
    void invalidUtf8BecomesReplacementCharactersLikePython() {
        // Expected strings are what Python's bytes.decode('utf-8', errors='replace') returns (HF decodes that way).
        assertThat(tok.decode(ids(0xe2, 0x82), true)).isEqualTo("\uFFFD");
        assertThat(tok.decode(ids(0xff, 0x41), true)).isEqualTo("\uFFFDA");
        assertThat(tok.decode(ids(0xe2, 0x82, 0x41, 0xc3), true)).isEqualTo("\uFFFDA\uFFFD");
        assertThat(tok.decode(ids(0xf0, 0x9f, 0x98, 0x80), true)).isEqualTo("\uD83D\uDE00");
        assertThat(tok.decode(ids(0xed, 0xa0, 0x80), true)).isEqualTo("\uFFFD\uFFFD\uFFFD");
        assertThatThrownBy(() -> tok.decode(new int[] {262}, true)).hasMessageContaining("262");
    }

    private static int[] ids(int... bytes) {
        int[] r = new int[bytes.length];
        for (int i = 0; i < bytes.length; i++) r[i] = bytes[i] + ByteTokenizer.OFFSET;
        return r;
    }
}
