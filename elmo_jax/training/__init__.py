"""Training a biLM from scratch: batches, sampled softmax, the jitted step, the pretrain program."""
