"""The ULMFiT models as pure functions: the AWD-LSTM language model and the text classifier."""
