"""Task models on ELMo features and the program that trains them."""
