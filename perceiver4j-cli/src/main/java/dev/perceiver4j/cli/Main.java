package dev.perceiver4j.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Entry point of the {@code perceiver4j} command line. */
@Command(name = "perceiver4j", mixinStandardHelpOptions = true, version = "perceiver4j 0.1.0-SNAPSHOT",
        description = "Perceiver IO and Perceiver AR in pure Java.",
        subcommands = {DemoCommand.class, InfoCommand.class, CommandLine.HelpCommand.class},
        footer = {"", "Examples:",
                "  ./perceiver4j demo                 train the end-to-end demo (about a minute on 2 cores)",
                "  ./perceiver4j demo --steps 2000    train longer",
                "  ./perceiver4j info                 show the backend, SGEMM and thread choice",
                "  ./perceiver4j bench SgemmBench     JMH kernel benchmarks"})
public final class Main implements Runnable {

    /** Options every command shares; applied before the backend is first used. */
    public static final class Common {
        @Option(names = "--backend", description = "auto | cpu | reference | cuda (default: auto; reference = slow double-precision oracle)", defaultValue = "auto")
        String backend;

        @Option(names = "--threads", description = "CPU threads (default: one per core)")
        Integer threads;

        @Option(names = "--gemm", description = "auto | java | cblas | naive: matrix-product implementation on the CPU (default: auto)")
        String gemm;

        void apply() {
            System.setProperty("perceiver4j.backend", backend);
            if (threads != null) {
                if (threads < 1) throw new CommandLine.ParameterException(new CommandLine(new Main()), "--threads must be >= 1, got " + threads);
                System.setProperty("perceiver4j.threads", threads.toString());
            }
            if (gemm != null) System.setProperty("perceiver4j.gemm", gemm);
        }
    }

    @Override
    public void run() {
        new CommandLine(this).usage(System.out);
    }

    public static void main(String[] args) {
        int code = new CommandLine(new Main())
                .setExecutionExceptionHandler((ex, cl, parsed) -> {
                    cl.getErr().println("perceiver4j: " + ex.getMessage());
                    if (System.getenv("PERCEIVER4J_DEBUG") != null) ex.printStackTrace(cl.getErr());
                    return 1;
                })
                .execute(args);
        System.exit(code);
    }
}
