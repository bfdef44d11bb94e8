package dev.perceiver4j.train;

/** Linear warm-up to the peak rate, then cosine decay to {@code minRatio}·peak at {@code totalSteps}. */
public record LrSchedule(float peak, int warmupSteps, int totalSteps, float minRatio) {
    public LrSchedule {
        if (totalSteps < 1) throw new IllegalArgumentException("totalSteps must be >= 1, got " + totalSteps);
        if (warmupSteps < 0 || warmupSteps > totalSteps) throw new IllegalArgumentException("warmupSteps must be in [0, totalSteps], got " + warmupSteps);
        if (minRatio < 0 || minRatio > 1) throw new IllegalArgumentException("minRatio must be in [0, 1], got " + minRatio);
    }

    /** Learning rate for 1-based step {@code step}. */
    public float at(long step) {
        if (step <= warmupSteps) return peak * step / Math.max(1, warmupSteps);
        double t = (double) (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
        t = Math.min(1, t);
        double cos = 0.5 * (1 + Math.cos(Math.PI * t));
        return (float) (peak * (minRatio + (1 - minRatio) * cos));
    }
}
