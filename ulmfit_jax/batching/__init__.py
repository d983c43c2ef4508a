"""Batches for training: the LM stream (BPTT windows), classifier batches, corpora."""
