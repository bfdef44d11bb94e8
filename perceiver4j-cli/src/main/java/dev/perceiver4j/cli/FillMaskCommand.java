package dev.perceiver4j.cli;

import dev.perceiver4j.autograd.Autograd;
import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Backends;
import dev.perceiver4j.model.io.PerceiverForMaskedLM;
import dev.perceiver4j.tensor.Scope;
import dev.perceiver4j.tensor.Shape;
import dev.perceiver4j.text.ByteTokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Fills masked byte spans of a text with a Perceiver IO masked language model. */
@Command(name = "fill-mask", mixinStandardHelpOptions = true,
        description = {"Predict the masked bytes of a text with a Perceiver IO masked LM (HF PerceiverForMaskedLM).",
                "Mark each masked byte with [MASK], or a span of N bytes with <mask:N>."},
        footer = {"", "Examples:",
                "  ./perceiver4j fill-mask --model ./language-perceiver \"This is an incomplete sentence where some words are<mask:9>\"",
                "  ./perceiver4j fill-mask --model ./language-perceiver --top-k 3 \"Paris is the capital of[MASK][MASK][MASK][MASK][MASK][MASK][MASK]\""})
final class FillMaskCommand implements Runnable {
    private static final Pattern SHORTHAND = Pattern.compile("<mask:(\\d{1,6})>");

    @Mixin
    Main.Common common = new Main.Common();

    @Option(names = "--model", required = true, description = "HF model directory (config.json + model.safetensors or pytorch_model.bin)")
    Path model;

    @Option(names = "--top-k", defaultValue = "5", description = "candidate strings shown per masked span (default: ${DEFAULT-VALUE})")
    int topK;

    @Parameters(index = "0", paramLabel = "TEXT", description = "text with [MASK] bytes and/or <mask:N> spans")
    String text;

    /** Replaces every {@code <mask:N>} with N literal [MASK] tokens. */
    static String expandShorthand(String s) {
        Matcher m = SHORTHAND.matcher(s);
        StringBuilder sb = new StringBuilder();
        while (m.find()) {
            int n = Integer.parseInt(m.group(1));
            if (n < 1) throw new IllegalArgumentException("<mask:" + n + "> must mask at least one byte");
            m.appendReplacement(sb, Matcher.quoteReplacement("[MASK]".repeat(n)));
        }
        m.appendTail(sb);
        return sb.toString();
    }

    /** A candidate string for one span with its log-probability. */
    record Candidate(int[] bytes, double logProb) {}

    @Override
    public void run() {
        common.apply();
        if (topK < 1) throw new IllegalArgumentException("--top-k must be >= 1, got " + topK);
        Backend be = Backends.get();
        ByteTokenizer tok = new ByteTokenizer();
        PerceiverForMaskedLM m = Main.loadMaskedLm(be, model);
        int p = m.config().maxPositionEmbeddings(), v = m.config().vocabSize();
        ByteTokenizer.Encoding enc = tok.encodePadded(expandShorthand(text), p);
        int[] ids = enc.ids();
        List<int[]> spans = new ArrayList<>(); // [start, end) of consecutive [MASK] ids
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] != ByteTokenizer.MASK) continue;
            int j = i;
            while (j < ids.length && ids[j] == ByteTokenizer.MASK) j++;
            spans.add(new int[] {i, j});
            i = j - 1;
        }
        if (spans.isEmpty()) throw new IllegalArgumentException("the text has no [MASK] or <mask:N>: nothing to fill");
        float[] logits;
        try (var ng = Autograd.noGrad(); Scope s = Scope.open()) {
            logits = m.forward(be.fromInts(ids, Shape.of(1, p)), be.fromInts(enc.attentionMask(), Shape.of(1, p)), false, 0L).toFloatArray();
        }
        int[] filled = ids.clone();
        StringBuilder report = new StringBuilder();
        for (int[] span : spans) {
            List<Candidate> best = beam(logits, v, span[0], span[1], topK);
            int[] top = best.get(0).bytes();
            for (int i = span[0]; i < span[1]; i++) filled[i] = top[i - span[0]] + ByteTokenizer.OFFSET;
            report.append(String.format(Locale.ROOT, "span bytes %d-%d:%n", span[0] - 1, span[1] - 2));
            for (Candidate c : best) {
                report.append(String.format(Locale.ROOT, "  %9.3g%%  \"%s\"%n", 100 * Math.exp(c.logProb()), printable(tok, c.bytes())));
            }
        }
        System.out.println(tok.decode(filled, true));
        System.out.print(report);
    }

    /**
     * The {@code k} most probable byte strings for positions [from, to): the model predicts each
     * position independently, so a beam of width k over positions finds them exactly.
     */
    static List<Candidate> beam(float[] logits, int v, int from, int to, int k) {
        List<Candidate> beams = List.of(new Candidate(new int[0], 0));
        for (int pos = from; pos < to; pos++) {
            double[] logp = byteLogProbs(logits, v, pos);
            List<Candidate> next = new ArrayList<>();
            for (Candidate c : beams) {
                for (int b = 0; b < 256; b++) {
                    int[] bytes = Arrays.copyOf(c.bytes(), c.bytes().length + 1);
                    bytes[bytes.length - 1] = b;
                    next.add(new Candidate(bytes, c.logProb() + logp[b]));
                }
            }
            next.sort(Comparator.comparingDouble(Candidate::logProb).reversed());
            beams = List.copyOf(next.subList(0, Math.min(k, next.size())));
        }
        return beams;
    }

    /** log-softmax over the 256 byte ids at {@code pos} (special ids excluded: a fill is bytes). */
    static double[] byteLogProbs(float[] logits, int v, int pos) {
        double max = Double.NEGATIVE_INFINITY;
        for (int b = 0; b < 256; b++) max = Math.max(max, logits[pos * v + ByteTokenizer.OFFSET + b]);
        double sum = 0;
        for (int b = 0; b < 256; b++) sum += Math.exp(logits[pos * v + ByteTokenizer.OFFSET + b] - max);
        double lse = max + Math.log(sum);
        double[] r = new double[256];
        for (int b = 0; b < 256; b++) r[b] = logits[pos * v + ByteTokenizer.OFFSET + b] - lse;
        return r;
    }

    private static String printable(ByteTokenizer tok, int[] bytes) {
        int[] ids = new int[bytes.length];
        for (int i = 0; i < bytes.length; i++) ids[i] = bytes[i] + ByteTokenizer.OFFSET;
        return tok.decode(ids, true).replace("\n", "\\n").replace("\"", "\\\"");
    }
}
