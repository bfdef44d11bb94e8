package dev.perceiver4j.cuda;

import dev.perceiver4j.backend.Backend;
import dev.perceiver4j.backend.BackendProvider;

/** Registers "cuda" with {@code Backends} through META-INF/services (ServiceLoader). */
public final class CudaBackendProvider implements BackendProvider {

    @Override
    public String name() {
        return "cuda";
    }

    @Override
    public Backend create() {
        return CudaBackend.create();
    }
}
