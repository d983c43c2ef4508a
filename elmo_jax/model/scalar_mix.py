"""AllenNLP's `ScalarMix`: `gamma * sum_k softmax(w)_k * layer_k`, optionally layer-normalised.

Parameters: `{"scalar_parameters": float[num_layers], "gamma": float[]}`, initialised to zeros
(equal weights) and 1.0.

The optional layer normalisation is AllenNLP's, not a per-token LayerNorm: each layer is
normalised by ONE mean and variance computed over all unmasked elements of the whole batch (all
tokens and features), with no learned scale or shift. It therefore depends on the batch.

    >>> import jax.numpy as jnp
    >>> p = init_scalar_mix(3)
    >>> float(scalar_mix(p, [jnp.ones((1, 2, 4)) * k for k in range(3)])[0, 0, 0])
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

Params = dict

# `allennlp.nn.util.tiny_value_of_dtype(float32)`.
_TINY = 1e-13


def init_scalar_mix(
    num_layers: int, initial_scalar_parameters: Sequence[float] | None = None
) -> Params:
    """Mixing weights (pre-softmax) and gamma.

    Args:
      num_layers: number of layers mixed (3 for the released models).
      initial_scalar_parameters: pre-softmax weights, e.g. `[-9e10, 1, -9e10]` to use only the
        first LSTM layer; zeros (an even average) by default. To keep them fixed, as AllenNLP's
        `trainable=False`, leave this subtree out of the optimiser.
    """
    if initial_scalar_parameters is None:
        initial_scalar_parameters = [0.0] * num_layers
    if len(initial_scalar_parameters) != num_layers:
        raise ValueError(
            f"initial_scalar_parameters has {len(initial_scalar_parameters)} values for "
            f"{num_layers} layers"
        )
    return {
        "scalar_parameters": jnp.asarray(initial_scalar_parameters, jnp.float32),
        "gamma": jnp.asarray(1.0, jnp.float32),
    }


def _masked_layer_norm(x: jax.Array, mask: jax.Array) -> jax.Array:
    keep = mask[..., None].astype(x.dtype)
    count = jnp.sum(mask).astype(x.dtype) * x.shape[-1]
    mean = jnp.sum(x * keep) / count
    variance = jnp.sum(((x * keep - mean) * keep) ** 2) / count
    return (x - mean) / jnp.sqrt(variance + _TINY)


def scalar_mix(
    params: Params,
    layers: Sequence[jax.Array] | jax.Array,
    mask: jax.Array | None = None,
    *,
    do_layer_norm: bool = False,
) -> jax.Array:
    """Mix layers.

    Args:
      params: from `init_scalar_mix`.
      layers: a sequence of `num_layers` arrays float[..., dim] (or one stacked array with the
        layers on axis 0).
      mask: bool[...] (the layers' shape without `dim`); needed only with `do_layer_norm`.
      do_layer_norm: normalise each layer first (see the module docstring).

    Returns:
      float[..., dim].
    """
    weights = params["scalar_parameters"]
    if len(layers) != weights.shape[0]:
        raise ValueError(f"{len(layers)} layers given to a mix of {weights.shape[0]}")
    if do_layer_norm and mask is None:
        raise ValueError("do_layer_norm=True needs the mask")
    normed = jax.nn.softmax(weights)
    total = 0.0
    for k in range(weights.shape[0]):
        layer = _masked_layer_norm(layers[k], mask) if do_layer_norm else layers[k]
        total = total + normed[k] * layer
    return params["gamma"] * total
