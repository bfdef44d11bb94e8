package dev.perceiver4j.cli;

import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.Backends;
import jdk.incubator.vector.FloatVector;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

/** Prints what this machine gives perceiver4j: JVM, vector width, backend, SGEMM. */
@Command(name = "info", mixinStandardHelpOptions = true, description = "Show the JVM, vector width, backend and SGEMM in use.")
final class InfoCommand implements Runnable {
    @Mixin
    Main.Common common = new Main.Common();

    @Override
    public void run() {
        common.apply();
        Backend b = Backends.get();
        System.out.println("java      " + Runtime.version() + " (" + System.getProperty("java.vm.name") + ")");
        System.out.println("cores     " + Runtime.getRuntime().availableProcessors());
        System.out.println("vector    " + FloatVector.SPECIES_PREFERRED.length() + " floats (" + FloatVector.SPECIES_PREFERRED.vectorBitSize() + " bits)");
        System.out.println("backend   " + b.name());
    }
}
