"""Text to tokens to ids: fastai's tokenizer, SentencePiece, vocabularies, the token cache."""
