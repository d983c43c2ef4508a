"""Optimisation (fastai Adam, STLR/1cycle, discriminative rates, gradual unfreezing), the jitted
steps and the ULMFiT training stages."""
