"""Task models on ELMo features (a sentence classifier, a BiLSTM-CRF tagger) and the programs
that train them."""
