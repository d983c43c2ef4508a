"""Defaults shared by every ULMFiT stage config; they live in the library
(`ulmfit_jax.stages.defaults`) so that the Python API builds the same configs."""

from ulmfit_jax.stages.defaults import VARIANTS, base_config, check_variant, tiny

__all__ = ["VARIANTS", "base_config", "check_variant", "tiny"]
