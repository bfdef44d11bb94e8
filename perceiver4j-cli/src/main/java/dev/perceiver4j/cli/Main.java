package dev.perceiver4j.cli;

import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.cpu.gemm.JavaSgemm;
import dev.perceiver4j.cuda.MatmulPrecision;
import dev.perceiver4j.model.io.PerceiverForMaskedLM;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;

/** Entry point of the {@code perceiver4j} command line. */
@Command(name = "perceiver4j", mixinStandardHelpOptions = true, version = "perceiver4j 0.1.0-SNAPSHOT",
        description = "Perceiver IO and Perceiver AR in pure Java.",
        subcommands = {TrainCommand.class, GenerateCommand.class, EvalCommand.class, DemoCommand.class, FillMaskCommand.class, PredictCommand.class, InspectCommand.class, BenchCommand.class,
                InfoCommand.class, CommandLine.HelpCommand.class},
        footer = {"", "Examples:",
                "  ./perceiver4j train                train Perceiver AR on Gutenberg (about 10 minutes on 2 cores)",
                "  ./perceiver4j generate --model runs/gutenberg \"The whale\"",
                "  ./perceiver4j eval --model runs/gutenberg --latents 256",
                "  ./perceiver4j demo                 train the end-to-end demo (about a minute on 2 cores)",
                "  ./perceiver4j demo --steps 2000    train longer",
                "  ./perceiver4j fill-mask --model DIR \"The sky is<mask:5>.\"",
                "  ./perceiver4j predict --model DIR --input in.safetensors --output out.safetensors",
                "  ./perceiver4j inspect DIR          config, tensors and parameter count of a checkpoint",
                "  ./perceiver4j bench --threads 2    time the language-perceiver forward pass",
                "  ./perceiver4j info                 show the backend, SGEMM and thread choice",
                "  ./perceiver4j jmh SgemmBench       JMH kernel benchmarks"})
public final class Main implements Runnable {

    /** Options every command shares; applied before the backend is first used. */
    public static final class Common {
        @Option(names = "--backend", description = "auto | cpu | reference | cuda (default: auto; reference = slow double-precision oracle)", defaultValue = "auto")
        String backend;

        @Option(names = "--threads", description = "CPU threads (default: one per core)")
        Integer threads;

        @Option(names = "--gemm", description = "auto | java | cblas | naive: matrix-product implementation on the CPU (default: auto)")
        String gemm;

        @Option(names = "--gemm-kernel", description = "8x2 | 6x4 | 4x2 | auto: register tile of the pure-Java SGEMM (default: auto, or -Dperceiver4j.sgemm.kernel; auto is 4x2 with 256-bit vectors (AVX2), 6x4 on Intel cores with AVX-512, 8x2 on other AVX-512 cores)")
        String gemmKernel;

        @Option(names = "--precision", description = "fp32 | tf32 | bf16: matrix products on the GPU (default: fp32, exact, or -Dperceiver4j.cuda.precision;"
                + " bf16 = mixed precision, the fastest for training; ignored on the CPU)")
        String precision;

        void apply() {
            System.setProperty("perceiver4j.backend", backend);
            if (threads != null) {
                if (threads < 1) throw new CommandLine.ParameterException(new CommandLine(new Main()), "--threads must be >= 1, got " + threads);
                System.setProperty("perceiver4j.threads", threads.toString());
            }
            if (gemm != null) System.setProperty("perceiver4j.gemm", gemm);
            if (gemmKernel != null) {
                try {
                    if (!gemmKernel.trim().equals("auto")) JavaSgemm.Kernel.parse(gemmKernel);
                } catch (IllegalArgumentException e) {
                    throw new CommandLine.ParameterException(new CommandLine(new Main()), "--gemm-kernel must be 8x2, 6x4, 4x2 or auto, got " + gemmKernel);
                }
                // JavaSgemm reads the property once, when it is first used: after apply(), as the backend is created.
                System.setProperty(JavaSgemm.KERNEL_PROPERTY, gemmKernel.trim());
            }
            if (precision != null) {
                try {
                    MatmulPrecision.parse(precision);
                } catch (IllegalArgumentException e) {
                    throw new CommandLine.ParameterException(new CommandLine(new Main()), "--precision must be fp32, tf32 or bf16, got " + precision);
                }
                // The CUDA backend reads it when it is created: after apply().
                System.setProperty(MatmulPrecision.PROPERTY, precision.trim());
            }
        }
    }

    @Override
    public void run() {
        new CommandLine(this).usage(System.out);
    }

    /** Loads an HF masked-LM directory, reporting how long it took on stderr. */
    static PerceiverForMaskedLM loadMaskedLm(Backend be, Path model) {
        long t0 = System.nanoTime();
        System.err.print("loading " + model + " ... ");
        try {
            PerceiverForMaskedLM m = PerceiverForMaskedLM.load(be, model);
            System.err.printf(java.util.Locale.ROOT, "%,d parameters in %.1f s%n", m.params().parameterCount(), (System.nanoTime() - t0) / 1e9);
            return m;
        } catch (IOException e) {
            System.err.println("failed");
            throw new UncheckedIOException(e.getMessage(), e);
        }
    }

    public static void main(String[] args) {
        // One plain line per log record ("Using cpu (...)"), unless the user configured logging.
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            System.setProperty("java.util.logging.SimpleFormatter.format", "%5$s%6$s%n");
        }
        System.exit(run(args));
    }

    /** Runs one command line and returns its exit code (errors print one clear line; PERCEIVER4J_DEBUG=1 adds the stack trace). */
    public static int run(String... args) {
        return new CommandLine(new Main())
                .setExecutionExceptionHandler((ex, cl, parsed) -> {
                    cl.getErr().println("perceiver4j: " + ex.getMessage());
                    if (System.getenv("PERCEIVER4J_DEBUG") != null) ex.printStackTrace(cl.getErr());
                    return 1;
                })
                .execute(args);
    }
}
