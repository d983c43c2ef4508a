"""Inverted dropout on a whole array (PyTorch's `nn.Dropout` in training mode), for the ELMo
task models; AWD-LSTM's variational dropouts (one mask per sequence) are in
`ulmfit_jax.models.awd_lstm`."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def dropout(key: jax.Array, rate: float, x: jax.Array) -> jax.Array:
    """Each element of `x` zeroed with probability `rate`, the rest scaled by 1 / (1 - rate)
    so the expectation is unchanged; `x` of any shape."""
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)
