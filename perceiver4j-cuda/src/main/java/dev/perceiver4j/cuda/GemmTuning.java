package dev.perceiver4j.cuda;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Which of cuBLASLt's candidate algorithms each matrix product uses, remembered on disk.
 *
 * <p>cuBLASLt's heuristic ranks algorithms by an estimate; for some shapes its first choice is
 * clearly not the fastest (on an H100 the products that add an fp32 C, the residual adds, run a
 * cooperative kernel whose fp32 epilogue does not overlap the next tile's main loop). {@link Gemm}
 * therefore times the heuristic's first {@link #candidates()} algorithms on the product's own operands
 * the first time a product shape is met outside a graph recording, and keeps the fastest (see
 * {@link Gemm}). Timings are noisy, so a choice made in one process is written here and read back
 * by the next: the same machine and library then run the same algorithm, and results repeat bit for
 * bit from run to run.
 *
 * <p>The file is {@code gemm-<device>-cublasLt<version>.tsv} in the kernel cache folder
 * ({@link CubinCache}: {@code -Dperceiver4j.cuda.cache=DIR|none}), one line per product:
 * {@code <index>\t<product key>}, where index is the position in the heuristic's list (which is
 * deterministic for one device, library version and product). Lines that do not parse are
 * ignored, so a damaged or foreign file costs only a new timing. {@code
 * -Dperceiver4j.cuda.gemm.tune=false} switches the timing off: every product then runs the
 * heuristic's first algorithm, as before the tuning existed.
 */
final class GemmTuning {
    /** Off with -Dperceiver4j.cuda.gemm.tune=false. */
    static final boolean ON = !"false".equals(System.getProperty("perceiver4j.cuda.gemm.tune"));
    /**
     * Algorithms asked of the heuristic and timed per product: {@code -Dperceiver4j.cuda.gemm.candidates=N}
     * (1 to {@value #MAX_CANDIDATES}, default {@value #DEFAULT_CANDIDATES}). A kept choice is an index into
     * the heuristic's list, which does not depend on how many were asked for.
     */
    static final int DEFAULT_CANDIDATES = 8, MAX_CANDIDATES = 64;
    /**
     * Products of fewer flops run the heuristic's first algorithm untimed: 2^26, about 67 MFLOP, some
     * 0.1 ms of tensor-core work at the least. Below that a product takes a few microseconds, launch
     * and memory latency decide its time, and a candidate that won the timing outside a graph
     * (back-to-back runs of one product) could lose inside one: the one-row products of cached
     * generation chose algorithms that made its replayed step slower (session 17, same call: 1,866-1,891
     * new bytes/s with them timed, 1,905-1,914 with no tuning at all, 1,943-1,946 with this bound).
     */
    static final long MIN_TUNED_FLOPS = 1L << 26;

    /** Whether a product of this many flops (2·m·n·k, times the batch) is timed at all. */
    static boolean worthTiming(long flops) {
        return flops >= MIN_TUNED_FLOPS;
    }

    /** A candidate replaces the heuristic's first only when it is at least this much faster (timing noise). */
    static final double MIN_GAIN = 0.03;
    /** Larger files are not read (the file holds one short line per product shape). */
    private static final long MAX_FILE_BYTES = 1 << 20;

    private final Path file;   // null: choices are not kept
    private final int candidates;
    private final Map<String, Integer> chosen = new LinkedHashMap<>();
    private int timed, changed;
    private double tuningMs;

    private GemmTuning(Path file, int candidates) {
        this.file = file;
        this.candidates = candidates;
        if (file == null || !Files.isRegularFile(file)) return;
        try {
            if (Files.size(file) > MAX_FILE_BYTES) {
                System.err.println("perceiver4j: ignoring the matrix-product tuning file " + file + " (larger than " + MAX_FILE_BYTES + " bytes)");
                return;
            }
            for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
                int tab = line.indexOf('\t');
                if (tab <= 0) continue;
                try {
                    int index = Integer.parseInt(line.substring(0, tab));
                    if (index >= 0 && index < MAX_CANDIDATES) chosen.put(line.substring(tab + 1), index);
                } catch (NumberFormatException ignored) {
                    // not a line of ours: skipped
                }
            }
        } catch (IOException e) {
            System.err.println("perceiver4j: cannot read the matrix-product tuning file " + file + " (" + e.getMessage() + "); timing again");
        }
    }

    /** The candidate count a property value asks for; the default for null; an error naming the property otherwise. */
    static int candidates(String value) {
        if (value == null) return DEFAULT_CANDIDATES;
        try {
            int n = Integer.parseInt(value.trim());
            if (n >= 1 && n <= MAX_CANDIDATES) return n;
        } catch (NumberFormatException ignored) {
            // reported below
        }
        throw new IllegalArgumentException("-Dperceiver4j.cuda.gemm.candidates=" + value + " is not a whole number from 1 to " + MAX_CANDIDATES);
    }

    /** The choices for this device and cuBLASLt version, from the kernel cache folder the environment selects. */
    static GemmTuning forDevice(String deviceName, long cublasLtVersion) {
        String device = deviceName.replaceAll("[^A-Za-z0-9]+", "-").replaceAll("^-|-$", "");
        return new GemmTuning(CubinCache.fromEnvironment().named("gemm-" + device + "-cublasLt" + cublasLtVersion + ".tsv"),
                candidates(System.getProperty("perceiver4j.cuda.gemm.candidates")));
    }

    /** Choices kept in {@code file} (tests), or only in memory when null. */
    static GemmTuning in(Path file) {
        return new GemmTuning(file, DEFAULT_CANDIDATES);
    }

    /** Algorithms to ask of the heuristic and time per product (see {@link #candidates(String)}). */
    int candidates() {
        return candidates;
    }

    /** The index chosen earlier for this product, or -1. */
    synchronized int choice(String key) {
        return chosen.getOrDefault(key, -1);
    }

    /** Remembers a timed choice and rewrites the file (atomically; a failure is said and ignored). */
    synchronized void remember(String key, int index, double ms) {
        chosen.put(key, index);
        timed++;
        if (index != 0) changed++;
        tuningMs += ms;
        if (file == null) return;
        StringBuilder sb = new StringBuilder();
        chosen.forEach((k, i) -> sb.append(i).append('\t').append(k).append('\n'));
        CubinCache.write(file, sb.toString().getBytes(StandardCharsets.UTF_8));
    }

    /** The index among timings {@code ms} (NaN: could not run) to use: the fastest, unless it beats index 0 by less than {@link #MIN_GAIN}. */
    static int pick(double[] ms) {
        int best = -1;
        for (int i = 0; i < ms.length; i++) {
            if (!Double.isNaN(ms[i]) && (best < 0 || ms[i] < ms[best])) best = i;
        }
        if (best < 0) return 0;
        return !Double.isNaN(ms[0]) && ms[best] > (1 - MIN_GAIN) * ms[0] ? 0 : best;
    }

    /** What this process timed, for a bench's report: products timed, how many left the heuristic's first, time spent. */
    synchronized String summary() {
        return String.format("matrix-product tuning: %d product shape%s timed in this process (%.0f ms), %d run another algorithm than cuBLASLt's first; %d choices known%s",
                timed, timed == 1 ? "" : "s", tuningMs, changed, chosen.size(), file == null ? " (not kept on disk)" : " (" + file + ")");
    }
}
