package dev.perceiver4j.data;

import java.util.List;
import java.util.Objects;

/**
 * Train and validation byte streams of a {@link Corpus#split split}: each is its part's documents
 * concatenated in name order (no separators). The document lists name the documents of each part;
 * when a single document is split by bytes, both lists hold its name and {@code description} says
 * so.
 */
public record Split(
        byte[] train,
        byte[] validation,
        List<String> trainDocuments,
        List<String> validationDocuments,
        String description) {
    public Split {
        Objects.requireNonNull(train, "train");
        Objects.requireNonNull(validation, "validation");
        trainDocuments = List.copyOf(trainDocuments);
        validationDocuments = List.copyOf(validationDocuments);
        Objects.requireNonNull(description, "description");
    }

    @Override
    public String toString() {
        return "Split[" + description + "]";
    }
}
