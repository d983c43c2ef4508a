"""Contextual embeddings of files of sentences (the `elmo-jax embed` command) and the
token-embedding cache."""
