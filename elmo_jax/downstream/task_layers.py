"""The layers both ELMo task models are made of: the sentence classifier
(`elmo_jax.downstream.models`) and the tagger (`elmo_jax.downstream.tagger`).

    layers [B, L, T, D] -> mix_layers (ScalarMix, then the ELMo dropout) -> mixed [B, T, D]
      -> bilstm (one or more) -> ... -> the output layer (`init_output_layer`, Glorot)

Functional, on nested dicts of arrays, so the same parameters serve the jitted training steps
and the NNX modules; `TaskModule` is what those modules (`elmo_jax.downstream.nnx_models.
TaskClassifier`, `elmo_jax.downstream.tagger.ElmoTagger`) share: a call on cached biLM layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from elmo_jax.model.scalar_mix import scalar_mix
from ulmfit_jax.core.nn.dropout import dropout
from ulmfit_jax.core.nn.lstm import init_lstm_params, lstm_layer
from ulmfit_jax.core.nn.nnx_params import DropoutParamTree, Rngs

Params = dict


def mix_layers(
    scalar_mix_params: Params,
    layers: jax.Array,
    mask: jax.Array,
    config: Any,
    num_layers: int,
    *,
    train: bool,
    rng: jax.Array | None,
) -> tuple[jax.Array, jax.Array | None]:
    """The scalar mix of the biLM layers, then the ELMo dropout (AllenNLP's `Elmo`).

    Args:
      scalar_mix_params: `init_scalar_mix(num_layers)`'s weights and gamma.
      layers: float[B, num_layers, T, input_dim], the selected biLM layers without sentence
        boundaries, zero at padding.
      mask: bool[B, T].
      config: the task model's config (`SentenceClassifierConfig`, `TaggerConfig`): its
        `input_dim`, `do_layer_norm` (AllenNLP's `ScalarMix(do_layer_norm=...)`) and
        `elmo_dropout` (the dropout rate on the mixed vectors).
      num_layers: how many biLM layers `layers` holds (checked, with `input_dim`: a clear
        error otherwise).
      train: apply dropout.
      rng: dropout key (needed when `train`).

    Returns:
      `(mixed float[B, T, input_dim], rest)`: `rest` is the key for the task model's other
      dropouts (None unless `train`). `rng` splits in two: the first half for the ELMo
      dropout, the second is `rest`.
    """
    if layers.shape[1] != num_layers or layers.shape[-1] != config.input_dim:
        raise ValueError(
            f"layers must be float[B, {num_layers}, T, {config.input_dim}], "
            f"got {tuple(layers.shape)}"
        )
    if train and rng is None:
        raise ValueError("train=True needs an rng for dropout")
    elmo_key, rest = jax.random.split(rng) if train else (None, None)
    mixed = scalar_mix(
        scalar_mix_params, jnp.moveaxis(layers, 1, 0), mask, do_layer_norm=config.do_layer_norm
    )  # [B, T, D]
    if train and config.elmo_dropout > 0.0:
        mixed = dropout(elmo_key, config.elmo_dropout, mixed)
    return mixed, rest


def init_bilstm(
    forward_key: jax.Array, backward_key: jax.Array, input_dim: int, hidden: int
) -> Params:
    """`{"forward", "backward"}`: two LSTMs of `hidden` units (PyTorch-style init)."""
    return {
        "forward": init_lstm_params(forward_key, input_dim, hidden),
        "backward": init_lstm_params(backward_key, input_dim, hidden),
    }


def bilstm(params: Params, inputs: jax.Array, lengths: jax.Array) -> jax.Array:
    """A bidirectional LSTM layer: inputs float[B, T, D], lengths int32[B] (right-padded rows)
    -> float[B, T, 2H], the forward and backward outputs side by side, zero at padding."""
    forward, _ = lstm_layer(params["forward"], inputs, lengths=lengths)
    backward, _ = lstm_layer(params["backward"], inputs, lengths=lengths, reverse=True)
    return jnp.concatenate([forward, backward], axis=-1)


def init_output_layer(key: jax.Array, fan_in: int, fan_out: int) -> Params:
    """`{"w": float32[fan_in, fan_out] Glorot-uniform, "b": zeros[fan_out]}`."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return {
        "w": jax.random.uniform(key, (fan_in, fan_out), jnp.float32, -limit, limit),
        "b": jnp.zeros((fan_out,), jnp.float32),
    }


class TaskModule(DropoutParamTree):
    """An ELMo task model as an NNX module whose functional forward pass from the selected biLM
    layers is `forward_from_layers(params, config, layers, mask, *, train, rng)`
    (`classifier_logits`, `tagger_emissions`)."""

    forward_from_layers: Callable[..., jax.Array]

    def from_layers(
        self,
        layers: jax.Array,
        mask: jax.Array,
        *,
        deterministic: bool | None = None,
        rngs: Rngs = None,
    ) -> jax.Array:
        """The forward pass from cached biLM layers float[B, L, T, input_dim] (no sentence
        boundaries, zero at padding; a `LayerCache.batch`) and mask bool[B, T]; training mode
        draws one dropout key (`DropoutParamTree.dropout_key`)."""
        rng = self.dropout_key(deterministic, rngs)
        return type(self).forward_from_layers(
            self.to_params(), self.config, layers, mask, train=rng is not None, rng=rng
        )
