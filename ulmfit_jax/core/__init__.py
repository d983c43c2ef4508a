"""What both model families share, importing neither: the functional LSTM (`nn`), the training
machinery (`training`: run/loop, checkpoints, sharding, train state) and the data sources
(`data`: TFDS and local files as `(text, label)` records)."""
