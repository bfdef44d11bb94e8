package dev.perceiver4j.data;

/** One text document: a name (file path or archive entry) and its raw bytes. */
public record Document(String name, byte[] bytes) {}
