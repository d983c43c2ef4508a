"""Text datasets as random-access `(text, label)` records: TFDS, local files, data specs."""
