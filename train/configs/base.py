"""Defaults shared by every ULMFiT stage config; they live in the library
(`ulmfit_jax.training.defaults`) so that the Python API builds the same configs."""

from ulmfit_jax.training.defaults import VARIANTS, base_config, check_variant, tiny

__all__ = ["VARIANTS", "base_config", "check_variant", "tiny"]
