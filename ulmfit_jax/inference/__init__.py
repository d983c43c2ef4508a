"""Inference from exported models, with no optimiser or training code: `Predictor`."""
