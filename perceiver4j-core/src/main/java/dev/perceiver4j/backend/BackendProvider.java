package dev.perceiver4j.backend;

/**
 * A backend that lives in another module (e.g. perceiver4j-cuda), found through
 * {@link java.util.ServiceLoader}: the module lists its implementation in
 * {@code META-INF/services/dev.perceiver4j.backend.BackendProvider}. Core never names such a
 * module at compile time; {@link Backends#create(String)} asks the providers on the class path.
 */
public interface BackendProvider {

    /** The name {@code --backend} selects it by, lower case (e.g. "cuda"). */
    String name();

    /**
     * Creates the backend, or throws (with a message that says what is missing: a library, a
     * device) when it cannot run on this machine.
     */
    Backend create();
}
