"""The ELMo biLM as pure functions: characters, char-CNN, LSTMP stack, ScalarMix, `elmo_apply`."""
