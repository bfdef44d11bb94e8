package dev.perceiver4j.train;

import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Recording;
import dev.perceiver4j.backend.cpu.CpuBackend;
import dev.perceiver4j.backend.cpu.CpuPool;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import org.junit.jupiter.api.Test;

import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * RecordedStep's protocol: the first run op by op, the second records (the body queues its ops with
 * that run's seed) and every run from then on replays with its seed minus the recorded one; a backend
 * that does not record, or a failed recording, leaves every run op by op with its own seed.
 */
class RecordedStepTest {

    /** A backend that only records: record() runs the body once and returns a recording that logs its replays. */
    private static Backend recordingBackend(List<String> log, boolean fail) {
        return (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class}, (proxy, method, args) -> {
            if (!method.getName().equals("record")) throw new UnsupportedOperationException(method.getName());
            if (fail) throw new IllegalStateException("capture refused");
            log.add("record");
            ((Runnable) args[0]).run();
            return new Recording() {
                @Override
                public void replay(long seedShift) {
                    log.add("replay " + seedShift);
                }

                @Override
                public int ops() {
                    return 7;
                }

                @Override
                public void close() {
                    log.add("close");
                }
            };
        });
    }

    @Test
    void replaysShiftTheRecordedSeed() {
        List<String> log = new ArrayList<>();
        RecordedStep step = new RecordedStep(recordingBackend(log, false), seed -> log.add("body " + seed), "test step");
        step.run(100);
        assertFalse(step.recorded());
        step.run(250);
        step.run(40);
        step.run(Long.MIN_VALUE);
        assertTrue(step.recorded());
        assertEquals(7, step.recordedOps());
        step.close();
        // The last shift wraps: 250 + (MIN_VALUE − 250) is MIN_VALUE mod 2^64, as the kernels add it.
        assertEquals(List.of("body 100", "record", "body 250", "replay 0", "replay -210", "replay " + (Long.MIN_VALUE - 250), "close"), log);
    }

    @Test
    void afterCloseTheNextRunsRecordAgain() {
        List<String> log = new ArrayList<>();
        RecordedStep step = new RecordedStep(recordingBackend(log, false), seed -> log.add("body " + seed), "test step");
        step.run(1);
        step.run(2);
        step.close();
        step.run(3);
        step.run(4);
        assertEquals(List.of("body 1", "record", "body 2", "replay 0", "close", "body 3", "record", "body 4", "replay 0"), log);
    }

    @Test
    void aFailedRecordingLeavesEveryRunOpByOp() {
        List<String> log = new ArrayList<>();
        RecordedStep step = new RecordedStep(recordingBackend(log, true), seed -> log.add("body " + seed), "test step");
        for (long s = 1; s <= 4; s++) step.run(s * 10);
        assertFalse(step.recorded());
        assertEquals(0, step.recordedOps());
        assertEquals(List.of("body 10", "body 20", "body 30", "body 40"), log);
    }

    @Test
    void onTheCpuEveryRunIsOpByOpWithItsSeed() {
        List<Long> seeds = new ArrayList<>();
        Backend cpu = new CpuBackend(CpuPool.common(), new JavaSgemm(CpuPool.common()));
        try (RecordedStep step = new RecordedStep(cpu, seeds::add, "test step")) {
            for (long s = 5; s <= 8; s++) step.run(s);
            assertFalse(step.recorded());
        }
        assertEquals(List.of(5L, 6L, 7L, 8L), seeds);
    }
}
