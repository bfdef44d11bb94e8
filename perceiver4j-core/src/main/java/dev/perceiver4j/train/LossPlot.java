package dev.perceiver4j.train;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.geom.Ellipse2D;
import java.awt.geom.Line2D;
import java.awt.geom.Path2D;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import javax.imageio.ImageIO;

/**
 * Loss curves as a 900×540 PNG, drawn with Java2D into an image (no window system needed):
 * title, legend row, axes with about five round tick values each, light grid, one line per
 * series (plus point markers when a series has fewer than 20 points).
 *
 * <pre>
 *            title
 *                          ── train  ── eval     legend row
 *      2.5 ┤‾‾‾\‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾┐
 *  y   2.0 ┤     \__                          │
 *      1.5 ┤        ‾‾‾‾‾‾‾‾‾‾‾‾‾────────────   │
 *          └────┬──────┬──────┬──────┬──────┘
 *              200    400    600    800
 *                         x
 * </pre>
 * Sets {@code java.awt.headless=true} when the property is unset, before any AWT class is used
 * here; a program that touches AWT earlier and has no display should set it itself.
 */
public final class LossPlot {
    static {
        if (System.getProperty("java.awt.headless") == null) System.setProperty("java.awt.headless", "true");
    }

    static final int WIDTH = 900, HEIGHT = 540;
    /** Plot-area margins; the top margin grows by one legend row per extra row. */
    static final int LEFT = 80, RIGHT = 24, BOTTOM = 62, TOP = 62;
    private static final int LEGEND_ROW = 18, POINT_MARKERS_BELOW = 20;
    private static final Color TEXT = new Color(0x222222), AXIS = new Color(0x555555), GRID = new Color(0xE4E4E4);

    /** One curve; {@code x} and {@code y} have the same length; non-finite points are skipped. */
    public record Series(String label, Color color, double[] x, double[] y) {
        public Series {
            Objects.requireNonNull(label, "label");
            Objects.requireNonNull(color, "color");
            Objects.requireNonNull(x, "x");
            Objects.requireNonNull(y, "y");
            if (x.length != y.length) throw new IllegalArgumentException("series '" + label + "': " + x.length + " x values but " + y.length + " y values");
        }

        int finitePoints() {
            int n = 0;
            for (int i = 0; i < x.length; i++) if (Double.isFinite(x[i]) && Double.isFinite(y[i])) n++;
            return n;
        }
    }

    private LossPlot() {}

    /**
     * Draws {@code series} on one chart and writes it to {@code png}, replacing it atomically
     * (temp file in the same directory, then a move). Series without a finite point are left
     * out; with none left, the axes are drawn with a "no data yet" note. The y range is the
     * data's with 5% padding on each side.
     */
    public static void write(Path png, String title, String xLabel, String yLabel, List<Series> series) throws IOException {
        BufferedImage image = render(title, xLabel, yLabel, series);
        Path dir = png.toAbsolutePath().getParent();
        Path tmp = Files.createTempFile(dir, "." + png.getFileName() + ".", ".tmp");
        try {
            if (!ImageIO.write(image, "png", tmp.toFile())) throw new IOException("no PNG writer in this JVM");
            Files.move(tmp, png, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    static BufferedImage render(String title, String xLabel, String yLabel, List<Series> series) {
        List<Series> drawn = new ArrayList<>();
        for (Series s : series) if (s.finitePoints() > 0) drawn.add(s);

        BufferedImage image = new BufferedImage(WIDTH, HEIGHT, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = image.createGraphics();
        try {
            g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
            g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
            g.setRenderingHint(RenderingHints.KEY_STROKE_CONTROL, RenderingHints.VALUE_STROKE_PURE);
            g.setColor(Color.WHITE);
            g.fillRect(0, 0, WIDTH, HEIGHT);

            Font plain = new Font(Font.SANS_SERIF, Font.PLAIN, 13);
            g.setFont(new Font(Font.SANS_SERIF, Font.BOLD, 16));
            g.setColor(TEXT);
            drawCentered(g, title, WIDTH / 2.0, 26);

            g.setFont(plain);
            int top = TOP + legend(g, drawn);
            int left = LEFT, right = WIDTH - RIGHT, bottom = HEIGHT - BOTTOM;

            double[] xr = range(drawn, true), yr = range(drawn, false);
            if (drawn.isEmpty()) { xr = new double[] {0, 1}; yr = new double[] {0, 1}; }
            double pad = 0.05 * (yr[1] - yr[0]);
            yr = new double[] {yr[0] - pad, yr[1] + pad};
            Axis x = new Axis(xr[0], xr[1], left, right), y = new Axis(yr[0], yr[1], bottom, top);

            // grid, ticks and tick labels
            FontMetrics fm = g.getFontMetrics();
            for (double t : ticks(x.lo, x.hi)) {
                float px = (float) x.px(t);
                g.setColor(GRID);
                g.draw(new Line2D.Float(px, top, px, bottom));
                g.setColor(AXIS);
                g.draw(new Line2D.Float(px, bottom, px, bottom + 5));
                g.setColor(TEXT);
                drawCentered(g, label(t, tickStep(x.lo, x.hi)), px, bottom + 8 + fm.getAscent());
            }
            for (double t : ticks(y.lo, y.hi)) {
                float py = (float) y.px(t);
                g.setColor(GRID);
                g.draw(new Line2D.Float(left, py, right, py));
                g.setColor(AXIS);
                g.draw(new Line2D.Float(left - 5, py, left, py));
                g.setColor(TEXT);
                String s = label(t, tickStep(y.lo, y.hi));
                g.drawString(s, left - 8 - fm.stringWidth(s), py + fm.getAscent() / 2f - 2);
            }
            g.setColor(AXIS);
            g.drawRect(left, top, right - left, bottom - top);

            // axis labels
            g.setColor(TEXT);
            drawCentered(g, xLabel, (left + right) / 2.0, HEIGHT - 14);
            Graphics2D r = (Graphics2D) g.create();
            r.translate(18, (top + bottom) / 2.0);
            r.rotate(-Math.PI / 2);
            drawCentered(r, yLabel, 0, fm.getAscent() / 2.0);
            r.dispose();

            if (drawn.isEmpty()) {
                g.setColor(AXIS);
                drawCentered(g, "no data yet", (left + right) / 2.0, (top + bottom) / 2.0);
                return image;
            }

            Graphics2D c = (Graphics2D) g.create();
            c.clipRect(left, top, right - left + 1, bottom - top + 1);
            c.setStroke(new BasicStroke(2f, BasicStroke.CAP_ROUND, BasicStroke.JOIN_ROUND));
            for (Series s : drawn) {
                c.setColor(s.color());
                Path2D.Double path = new Path2D.Double();
                boolean first = true;
                for (int i = 0; i < s.x().length; i++) {
                    if (!Double.isFinite(s.x()[i]) || !Double.isFinite(s.y()[i])) continue;
                    double px = x.px(s.x()[i]), py = y.px(s.y()[i]);
                    if (first) path.moveTo(px, py); else path.lineTo(px, py);
                    first = false;
                }
                c.draw(path);
                if (s.finitePoints() < POINT_MARKERS_BELOW) {
                    for (int i = 0; i < s.x().length; i++) {
                        if (!Double.isFinite(s.x()[i]) || !Double.isFinite(s.y()[i])) continue;
                        c.fill(new Ellipse2D.Double(x.px(s.x()[i]) - 3.5, y.px(s.y()[i]) - 3.5, 7, 7));
                    }
                }
            }
            c.dispose();
            return image;
        } finally {
            g.dispose();
        }
    }

    /** Data coordinate ↔ pixel along one axis ({@code p0} is the pixel of {@code lo}). */
    private record Axis(double lo, double hi, double p0, double p1) {
        double px(double v) {
            return p0 + (v - lo) / (hi - lo) * (p1 - p0);
        }
    }

    /** Legend entries right-aligned in rows above the plot area; returns the extra height beyond one row. */
    private static int legend(Graphics2D g, List<Series> drawn) {
        if (drawn.isEmpty()) return 0;
        FontMetrics fm = g.getFontMetrics();
        int maxRow = WIDTH - LEFT - RIGHT, sample = 22, gap = 18;
        List<List<Series>> rows = new ArrayList<>();
        List<Integer> widths = new ArrayList<>();
        List<Series> row = new ArrayList<>();
        int w = 0;
        for (Series s : drawn) {
            int entry = sample + 6 + fm.stringWidth(s.label());
            if (!row.isEmpty() && w + gap + entry > maxRow) {
                rows.add(row);
                widths.add(w);
                row = new ArrayList<>();
                w = 0;
            }
            w += (row.isEmpty() ? 0 : gap) + entry;
            row.add(s);
        }
        rows.add(row);
        widths.add(w);
        Graphics2D c = (Graphics2D) g.create();
        c.setStroke(new BasicStroke(2.5f, BasicStroke.CAP_ROUND, BasicStroke.JOIN_ROUND));
        for (int r = 0; r < rows.size(); r++) {
            float base = 50 + r * LEGEND_ROW;
            float px = WIDTH - RIGHT - widths.get(r);
            for (Series s : rows.get(r)) {
                c.setColor(s.color());
                c.draw(new Line2D.Float(px, base - 4, px + sample, base - 4));
                c.setColor(TEXT);
                c.drawString(s.label(), px + sample + 6, base);
                px += sample + 6 + fm.stringWidth(s.label()) + gap;
            }
        }
        c.dispose();
        return (rows.size() - 1) * LEGEND_ROW;
    }

    /** [min, max] of the finite points' x (or y) values; a single value is widened to a unit-size interval. */
    private static double[] range(List<Series> drawn, boolean xs) {
        double lo = Double.POSITIVE_INFINITY, hi = Double.NEGATIVE_INFINITY;
        for (Series s : drawn) {
            for (int i = 0; i < s.x().length; i++) {
                if (!Double.isFinite(s.x()[i]) || !Double.isFinite(s.y()[i])) continue;
                double v = xs ? s.x()[i] : s.y()[i];
                lo = Math.min(lo, v);
                hi = Math.max(hi, v);
            }
        }
        if (lo == hi) {
            double half = lo == 0 ? 0.5 : Math.abs(lo) * 0.05;
            lo -= half;
            hi += half;
        }
        return new double[] {lo, hi};
    }

    /** A round step (1, 2 or 5 times a power of ten) whose ticks over [lo, hi] number closest to five. */
    static double tickStep(double lo, double hi) {
        double magnitude = Math.pow(10, Math.floor(Math.log10((hi - lo) / 5)));
        double best = magnitude;
        long bestMiss = Long.MAX_VALUE;
        for (double m : new double[] {1, 2, 5, 10}) {
            double step = m * magnitude;
            long count = (long) Math.floor(hi / step + 1e-9) - (long) Math.ceil(lo / step - 1e-9) + 1;
            if (Math.abs(count - 5) < bestMiss) {
                bestMiss = Math.abs(count - 5);
                best = step;
            }
        }
        return best;
    }

    /** Multiples of {@link #tickStep} inside [lo, hi]. */
    static List<Double> ticks(double lo, double hi) {
        double step = tickStep(lo, hi);
        List<Double> ticks = new ArrayList<>();
        for (long k = (long) Math.ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * step; k++) ticks.add(k * step);
        return ticks;
    }

    /** Tick label with as many decimals as the step needs ("0.2", "1.5", "2000"). */
    static String label(double value, double step) {
        int decimals = 0;
        while (decimals < 10 && Math.abs(step * Math.pow(10, decimals) - Math.rint(step * Math.pow(10, decimals))) > 1e-6 * step * Math.pow(10, decimals)) decimals++;
        if (Math.abs(value) < step * 1e-9) value = 0; // no "-0.0"
        return String.format(Locale.ROOT, "%." + decimals + "f", value);
    }

    private static void drawCentered(Graphics2D g, String s, double cx, double baseline) {
        g.drawString(s, (float) (cx - g.getFontMetrics().stringWidth(s) / 2.0), (float) baseline);
    }
}
