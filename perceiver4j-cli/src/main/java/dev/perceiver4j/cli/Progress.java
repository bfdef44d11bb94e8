package dev.perceiver4j.cli;

import java.io.PrintStream;
import java.util.Locale;

/**
 * A one-line progress bar on stderr: bar, count, rate, ETA and a caller's status text. Redraws in
 * place on a terminal; when output is redirected it prints a plain line every few seconds instead.
 */
final class Progress {
    private static final int WIDTH = 28;
    private final String label;
    private final long total;
    private final long start = System.nanoTime();
    private final boolean tty = System.console() != null && System.console().isTerminal();   // not when redirected
    private final PrintStream out = System.err;
    private long lastPrint;

    Progress(String label, long total) {
        this.label = label;
        this.total = Math.max(1, total);
    }

    void update(long done, String status) {
        long now = System.nanoTime();
        boolean last = done >= total;
        if (!last && now - lastPrint < (tty ? 100_000_000L : 5_000_000_000L)) return;
        lastPrint = now;
        double secs = (now - start) / 1e9;
        double rate = done / Math.max(1e-9, secs);
        double eta = (total - done) / Math.max(1e-9, rate);
        int filled = (int) (WIDTH * done / total);
        String line = String.format(Locale.ROOT, "%s %3d%% [%s%s] %d/%d %.1f/s ETA %s %s", label, 100 * done / total,
                "=".repeat(filled), " ".repeat(WIDTH - filled), done, total, rate, clock(eta), status);
        if (tty) out.print("\r" + line + "\u001b[K"); else out.println(line);
        out.flush();
    }

    /** Prints a message line above the bar (the bar is redrawn on the next update). */
    void interject(String message) {
        if (tty) out.print("\r\u001b[K");
        out.println(message);
        lastPrint = 0;
        out.flush();
    }

    void finish() {
        if (tty) out.println();
    }

    private static String clock(double s) {
        long t = Math.round(s);
        return t >= 3600 ? String.format(Locale.ROOT, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60)
                : String.format(Locale.ROOT, "%d:%02d", t / 60, t % 60);
    }
}
