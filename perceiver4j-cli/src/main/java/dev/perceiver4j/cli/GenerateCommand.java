package dev.perceiver4j.cli;

import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Backends;
import dev.perceiver4j.generate.Sampler;
import dev.perceiver4j.generate.StopStrings;
import dev.perceiver4j.generate.Utf8Stream;
import dev.perceiver4j.model.ar.PerceiverAR;
import dev.perceiver4j.model.ar.PerceiverArGenerator;
import dev.perceiver4j.text.ByteTokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.BitSet;
import java.util.List;
import java.util.Locale;

/** Streams text from a Perceiver AR model with exact cached generation. */
@Command(name = "generate", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Generate text with a Perceiver AR model, streaming it as it is produced.",
                "Cached and exact: every byte is sampled from the logits an uncached forward pass over the same window gives."},
        footer = {"", "Examples:",
                "  ./perceiver4j generate --model runs/gutenberg \"The whale\"",
                "  ./perceiver4j generate --model runs/gutenberg --temperature 0 --max-bytes 200 \"Chapter 1\"",
                "  echo 'Once upon a time' | ./perceiver4j generate --model DIR --prompt-file - --top-p 0.9 --seed 7",
                "  ./perceiver4j generate --model DIR --latents 64 --stop $'\\n\\n' \"Q: \""})
final class GenerateCommand implements Runnable {
    @Mixin
    Main.Common common = new Main.Common();

    @Option(names = "--model", required = true, description = "model folder (config.json + weights), a checkpoint folder, or a run folder (uses its model/)")
    Path model;

    @Parameters(index = "0", arity = "0..1", description = "prompt text (or use --prompt-file)")
    String prompt;

    @Option(names = "--prompt-file", description = "read the prompt's bytes from a file, - for standard input")
    String promptFile;

    @Option(names = "--max-bytes", defaultValue = "500", description = "bytes to generate (default: ${DEFAULT-VALUE})")
    int maxBytes;

    @Option(names = "--temperature", defaultValue = "0.8", description = "sampling temperature, 0 = greedy (default: ${DEFAULT-VALUE})")
    float temperature;

    @Option(names = "--top-k", defaultValue = "0", description = "keep the k most likely bytes, 0 = off (default: ${DEFAULT-VALUE})")
    int topK;

    @Option(names = "--top-p", defaultValue = "1.0", description = "nucleus sampling threshold, 1 = off (default: ${DEFAULT-VALUE})")
    float topP;

    @Option(names = "--seed", defaultValue = "0", description = "sampling seed (default: ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--stop", description = "stop when this text has been generated (not printed); repeatable")
    List<String> stops = List.of();

    @Option(names = "--latents", description = "latent positions at generation time (default: the model's max_latents)")
    Integer latents;

    @Option(names = "--latent-stride", description = "latents dropped at once when they overflow; 1 = always exactly the last N positions, "
            + "but every byte then recomputes all latents (default: latents / 8, about 10x faster)")
    Integer latentStride;

    @Option(names = "--window-stride", description = "positions dropped at once when the context exceeds max_seq_len (default: max_seq_len / 8)")
    Integer windowStride;

    @Option(names = "--no-echo", description = "do not print the prompt before the generated text")
    boolean noEcho;

    @Override
    public void run() {
        common.apply();
        if (maxBytes < 0) throw new IllegalArgumentException("--max-bytes must be >= 0, got " + maxBytes);
        byte[] promptBytes = promptBytes();
        Backend be = Backends.get();
        PerceiverAR m = load(be, model);
        PerceiverArGenerator.Options d = PerceiverArGenerator.Options.defaults(m.config(), latents == null ? m.config().maxLatents() : latents);
        PerceiverArGenerator.Options o = new PerceiverArGenerator.Options(d.latents(), latentStride == null ? d.latentStride() : latentStride,
                windowStride == null ? d.windowStride() : windowStride);
        if (!noEcho) {
            System.out.print(new String(promptBytes, StandardCharsets.UTF_8));
            System.out.flush();
        }
        long t0 = System.nanoTime();
        int n = 0;
        String step = "";
        if (maxBytes > 0) {
            try (PerceiverArGenerator g = new PerceiverArGenerator(m, o)) {
                n = stream(g, m, ByteTokenizer.ids(promptBytes), maxBytes, new Sampler.Config(temperature, topK, topP, seed), stops, System.out);
                if (g.stepRecorded()) step = ", each byte's step replayed as a recording of " + g.recordedOps() + " ops";
            }
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        System.out.println();
        System.err.printf(Locale.ROOT, "generated %d bytes in %.2f s (%.1f bytes/s, %d latents, context up to %d bytes%s)%n",
                n, secs, n / Math.max(secs, 1e-9), o.latents(), m.config().maxSeqLen(), step);
    }

    private byte[] promptBytes() {
        if (prompt != null && promptFile != null) throw new IllegalArgumentException("give the prompt as an argument or with --prompt-file, not both");
        try {
            if (promptFile != null) {
                byte[] b = promptFile.equals("-") ? System.in.readAllBytes() : Files.readAllBytes(Path.of(promptFile));
                if (b.length == 0) throw new IllegalArgumentException("the prompt from " + (promptFile.equals("-") ? "standard input" : promptFile) + " is empty");
                return b;
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the prompt: " + e.getMessage(), e);
        }
        if (prompt == null || prompt.isEmpty()) throw new IllegalArgumentException("give a prompt (an argument, or --prompt-file FILE, or --prompt-file - for stdin)");
        return prompt.getBytes(StandardCharsets.UTF_8);
    }

    /** The model folder {@code path} names: itself, or a run folder's {@code model/} subfolder. */
    static Path modelFolder(Path path) {
        return Files.isRegularFile(path.resolve("model").resolve("config.json")) ? path.resolve("model") : path;
    }

    /** A model folder, a training checkpoint, or a run folder (its model/ subfolder). */
    static PerceiverAR load(Backend be, Path path) {
        Path dir = modelFolder(path);
        long t0 = System.nanoTime();
        try {
            PerceiverAR m = PerceiverAR.load(be, dir);
            System.err.printf(Locale.ROOT, "loaded %s: %,d parameters in %.1f s on %s%n", dir, m.params().parameterCount(), (System.nanoTime() - t0) / 1e9, be.name());
            return m;
        } catch (IOException e) {
            throw new UncheckedIOException(e.getMessage(), e);
        }
    }

    /**
     * Samples up to {@code maxBytes} bytes after {@code prompt}, printing complete UTF-8 characters as
     * they arrive. Output that could still become a stop string is held back until it cannot; a
     * matched stop string ends generation and is not printed. Returns the bytes generated.
     */
    static int stream(PerceiverAR m, int[] prompt, int maxBytes, Sampler.Config sc, List<String> stops,
                      PerceiverArGenerator.Options o, PrintStream out) {
        if (maxBytes == 0) return 0;
        try (PerceiverArGenerator g = new PerceiverArGenerator(m, o)) {
            return stream(g, m, prompt, maxBytes, sc, stops, out);
        }
    }

    private static int stream(PerceiverArGenerator g, PerceiverAR m, int[] prompt, int maxBytes, Sampler.Config sc, List<String> stops,
                              PrintStream out) {
        Sampler sampler = new Sampler(sc);
        BitSet specials = new BitSet();
        specials.set(0, ByteTokenizer.OFFSET);                 // byte-level text: never emit special ids
        int vocab = m.config().vocabSize();
        specials.set(Math.min(vocab, ByteTokenizer.VOCAB), Math.max(vocab, ByteTokenizer.VOCAB));
        StopStrings stop = stops.isEmpty() ? null : new StopStrings(stops);
        int holdMax = 0;
        for (String s : stops) holdMax = Math.max(holdMax, s.getBytes(StandardCharsets.UTF_8).length - 1);
        Utf8Stream text = new Utf8Stream();
        ByteArrayOutputStream held = new ByteArrayOutputStream();
        float[] logits = g.start(prompt);
        int generated = 0;
        for (; generated < maxBytes; ) {
            int tok = sampler.sample(logits, 0, vocab, specials);
            int b = tok - ByteTokenizer.OFFSET;
            generated++;
            held.write(b);
            if (stop != null && stop.accept(b)) {
                byte[] h = held.toByteArray();
                emit(out, text, h, h.length - stop.matchedLength());
                held.reset();
                break;
            }
            byte[] h = held.toByteArray();
            int keep = stop == null ? 0 : Math.min(h.length, holdMax);
            emit(out, text, h, h.length - keep);
            held.reset();
            held.write(h, h.length - keep, keep);
            if (generated < maxBytes) logits = g.append(tok);
        }
        byte[] h = held.toByteArray();
        emit(out, text, h, h.length);
        out.print(text.flush());
        out.flush();
        return generated;
    }

    private static void emit(PrintStream out, Utf8Stream text, byte[] bytes, int count) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < count; i++) sb.append(text.accept(bytes[i] & 0xFF));
        out.print(sb);
        out.flush();
    }
}
