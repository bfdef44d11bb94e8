package dev.perceiver4j.train;

import java.awt.Color;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class LossPlotTest {
    static final Color TRAIN = new Color(214, 39, 40), EVAL = new Color(31, 119, 180);
    @TempDir Path dir;

    @Test
    void drawsADecreasingCurveFromUpperLeftToLowerRight() throws IOException {
        Path png = dir.resolve("loss.png");
        int n = 500;
        double[] x = new double[n], y = new double[n];
        for (int i = 0; i < n; i++) {
            x[i] = (i + 1) * 10;
            y[i] = 1.2 + 3.0 * Math.exp(-i / 80.0);
        }
        y[100] = Double.NaN; // skipped
        y[200] = Double.POSITIVE_INFINITY;
        double[] ex = {500, 1500, 2500, 3500, 4500}, ey = {3.0, 2.0, 1.6, 1.4, 1.35};
        LossPlot.write(png, "Perceiver AR on enwik8", "step", "bits per byte",
                List.of(new LossPlot.Series("train", TRAIN, x, y), new LossPlot.Series("eval", EVAL, ex, ey)));

        BufferedImage image = ImageIO.read(png.toFile());
        assertThat(image).isNotNull();
        assertThat(image.getWidth()).isEqualTo(900);
        assertThat(image.getHeight()).isEqualTo(540);
        double[] leftRight = meanYLeftAndRight(image, TRAIN);
        assertThat(leftRight[0]).isLessThan(leftRight[1] - 100); // decreasing: high on the left (small pixel y)
        assertThat(countPixels(image, EVAL, 0, LossPlot.WIDTH)).isGreaterThan(50);
        assertNoTempFiles();
    }

    @Test
    void emptyAndAllNaNSeriesStillGiveAValidPlot() throws IOException {
        Path png = dir.resolve("empty.png");
        LossPlot.write(png, "no data", "step", "loss", List.of());
        BufferedImage image = ImageIO.read(png.toFile());
        assertThat(image.getWidth()).isEqualTo(900);
        assertThat(image.getHeight()).isEqualTo(540);

        LossPlot.write(png, "nan", "step", "loss", List.of(
                new LossPlot.Series("nan", TRAIN, new double[] {1, 2}, new double[] {Double.NaN, Double.NaN}),
                new LossPlot.Series("empty", EVAL, new double[0], new double[0])));
        image = ImageIO.read(png.toFile());
        assertThat(image.getHeight()).isEqualTo(540);
        assertThat(countPixels(image, TRAIN, 0, LossPlot.WIDTH)).isZero();
        assertThat(countPixels(image, EVAL, 0, LossPlot.WIDTH)).isZero();
        assertNoTempFiles();
    }

    @Test
    void shortAndSinglePointSeriesAreDrawnWithMarkers() throws IOException {
        Path png = dir.resolve("one.png");
        LossPlot.write(png, "one point", "step", "loss", List.of(new LossPlot.Series("eval", EVAL, new double[] {100}, new double[] {2.0})));
        assertThat(countPixels(ImageIO.read(png.toFile()), EVAL, LossPlot.LEFT + 5, LossPlot.WIDTH - LossPlot.RIGHT - 5)).isGreaterThan(10);
    }

    @Test
    void replacesTheFileAtomically() throws IOException {
        Path png = dir.resolve("loss.png");
        Files.writeString(png, "old");
        for (int k = 1; k <= 3; k++) {
            double[] x = new double[k * 10], y = new double[k * 10];
            for (int i = 0; i < x.length; i++) { x[i] = i; y[i] = 5 - i * 0.1; }
            LossPlot.write(png, "run", "step", "loss", List.of(new LossPlot.Series("train", TRAIN, x, y)));
            assertThat(ImageIO.read(png.toFile()).getWidth()).isEqualTo(900);
        }
        assertNoTempFiles();
    }

    @Test
    void mismatchedSeriesAreRejected() {
        assertThatThrownBy(() -> new LossPlot.Series("s", TRAIN, new double[2], new double[3]))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("2 x values but 3 y values");
    }

    @Test
    void ticksAreRoundNumbers() {
        assertThat(LossPlot.ticks(0, 1)).containsExactly(0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0);
        assertThat(LossPlot.ticks(10, 5000)).containsExactly(1000.0, 2000.0, 3000.0, 4000.0, 5000.0);
        assertThat(LossPlot.ticks(1.13, 4.37)).containsExactly(1.5, 2.0, 2.5, 3.0, 3.5, 4.0);
        assertThat(LossPlot.tickStep(0, 1.1)).isEqualTo(0.2);
        assertThat(LossPlot.tickStep(0, 10)).isEqualTo(2.0);
        assertThat(LossPlot.tickStep(0.9, 1.02)).isEqualTo(0.02);
        assertThat(LossPlot.label(0.6000000000000001, 0.2)).isEqualTo("0.6");
        assertThat(LossPlot.label(2000, 1000)).isEqualTo("2000");
        assertThat(LossPlot.label(0.75, 0.25)).isEqualTo("0.75");
        assertThat(LossPlot.label(-1e-17, 0.1)).isEqualTo("0.0");
    }

    /** Mean pixel row of the series colour in the left and the right quarter of the plot area (legend row excluded). */
    private static double[] meanYLeftAndRight(BufferedImage image, Color c) {
        int left = LossPlot.LEFT, right = LossPlot.WIDTH - LossPlot.RIGHT, quarter = (right - left) / 4;
        return new double[] {meanY(image, c, left, left + quarter), meanY(image, c, right - quarter, right)};
    }

    private static double meanY(BufferedImage image, Color c, int x0, int x1) {
        double sum = 0;
        int n = 0;
        for (int y = LossPlot.TOP; y < LossPlot.HEIGHT - LossPlot.BOTTOM; y++) {
            for (int x = x0; x < x1; x++) if (near(image.getRGB(x, y), c)) { sum += y; n++; }
        }
        assertThat(n).as("pixels of the series colour in x [%d, %d)", x0, x1).isGreaterThan(20);
        return sum / n;
    }

    private static int countPixels(BufferedImage image, Color c, int x0, int x1) {
        int n = 0;
        for (int y = LossPlot.TOP; y < LossPlot.HEIGHT - LossPlot.BOTTOM; y++) for (int x = x0; x < x1; x++) if (near(image.getRGB(x, y), c)) n++;
        return n;
    }

    private static boolean near(int rgb, Color c) {
        return Math.abs(((rgb >> 16) & 0xFF) - c.getRed()) <= 8 && Math.abs(((rgb >> 8) & 0xFF) - c.getGreen()) <= 8 && Math.abs((rgb & 0xFF) - c.getBlue()) <= 8;
    }

    private void assertNoTempFiles() throws IOException {
        try (Stream<Path> files = Files.list(dir)) {
            assertThat(files.map(p -> p.getFileName().toString())).allMatch(n -> n.endsWith(".png"));
        }
    }
}
