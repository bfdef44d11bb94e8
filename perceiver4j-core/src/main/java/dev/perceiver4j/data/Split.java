package dev.perceiver4j.data;

import java.util.List;

/**
 * A corpus split by document: the training and validation byte streams (each part's documents
 * concatenated in name order) and which documents went where.
 */
public record Split(byte[] train, byte[] validation, List<String> trainDocuments, List<String> validationDocuments, String description) {}
