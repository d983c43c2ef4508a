"""ULMFiT's training stages (pretrain, finetune_lm, classify) on the shared loop, their jitted
steps and config defaults."""
