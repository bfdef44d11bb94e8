package dev.perceiver4j.generate;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class StopStringsTest {
    @Test
    void findsAStopStringAfterAnOverlappingPrefix() {
        StopStrings s = new StopStrings(List.of("aab"));
        assertThat(s.accept('a')).isFalse();
        assertThat(s.accept('a')).isFalse();
        assertThat(s.accept('a')).isFalse();
        assertThat(s.matchedLength()).isZero();
        assertThat(s.accept('b')).isTrue();
        assertThat(s.matchedLength()).isEqualTo(3);
        assertThat(s.accept('x')).isFalse();
        assertThat(s.matchedLength()).isZero();
    }

    @Test
    void matchesMultiByteStopStringsOnTheirLastByte() {
        StopStrings s = new StopStrings(List.of("世界", "\n\n"));
        byte[] text = "hello 世界".getBytes(StandardCharsets.UTF_8);
        for (int i = 0; i < text.length; i++) assertThat(s.accept(text[i] & 0xFF)).as("byte %d", i).isEqualTo(i == text.length - 1);
        assertThat(s.matchedLength()).isEqualTo(6);
        StopStrings emoji = new StopStrings(List.of("😀"));
        for (byte b : "a😀".getBytes(StandardCharsets.UTF_8)) emoji.accept(b & 0xFF);
        assertThat(emoji.matchedLength()).isEqualTo(4);
    }

    @Test
    void reportsTheLongestOfSeveralMatches() {
        StopStrings s = new StopStrings(List.of("b", "ab", "xab"));
        assertThat(s.accept('a')).isFalse();
        assertThat(s.accept('b')).isTrue();
        assertThat(s.matchedLength()).isEqualTo(2);
    }

    @Test
    void agreesWithBruteForceOnRandomText() {
        SplittableRandom r = new SplittableRandom(5);
        for (int trial = 0; trial < 300; trial++) {
            List<String> stops = List.of(randomText(r, 1 + r.nextInt(4)), randomText(r, 1 + r.nextInt(6)));
            StopStrings s = new StopStrings(stops);
            byte[] text = randomText(r, 200).getBytes(StandardCharsets.UTF_8);
            for (int i = 0; i < text.length; i++) {
                byte[] soFar = Arrays.copyOf(text, i + 1);
                int longest = 0;
                for (String stop : stops) {
                    byte[] b = stop.getBytes(StandardCharsets.UTF_8);
                    if (b.length <= soFar.length && Arrays.equals(b, 0, b.length, soFar, soFar.length - b.length, soFar.length)) longest = Math.max(longest, b.length);
                }
                assertThat(s.accept(text[i] & 0xFF)).isEqualTo(longest > 0);
                assertThat(s.matchedLength()).isEqualTo(longest);
            }
        }
    }

    @Test
    void noStopStringsNeverStop() {
        StopStrings s = new StopStrings(List.of());
        assertThat(s.isEmpty()).isTrue();
        for (int b = 0; b < 256; b++) assertThat(s.accept(b)).isFalse();
        assertThat(new StopStrings(List.of("x")).isEmpty()).isFalse();
    }

    @Test
    void rejectsEmptyAndNullStopStringsAndNonBytes() {
        assertThatThrownBy(() -> new StopStrings(List.of("ok", ""))).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("stop string 1 is empty");
        assertThatThrownBy(() -> new StopStrings(Arrays.asList("ok", null))).hasMessageContaining("stop string 1");
        assertThatThrownBy(() -> new StopStrings(List.of("x")).accept(300)).hasMessageContaining("300");
    }

    private static String randomText(SplittableRandom r, int length) {
        String alphabet = "aab€\n";
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < length; i++) sb.append(alphabet.charAt(r.nextInt(alphabet.length())));
        return sb.toString();
    }
}
