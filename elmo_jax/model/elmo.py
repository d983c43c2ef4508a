"""ELMo representations: the biLM layers mixed by task-specific `ScalarMix`es (AllenNLP `Elmo`).

    bilm_params, config = load_allennlp(options_file, weight_file)
    params = init_elmo(bilm_params, config, num_output_representations=2)
    reps, mask, state = elmo_apply(params, config, batch_to_ids(sentences), train=True, rng=key)

`params = {"bilm": <biLM params>, "scalar_mix_0": ..., "scalar_mix_{n-1}": ...}`. The biLM runs
once; each output representation has its own mix (e.g. one at the input and one at the output of
a task encoder, as in the paper's SQuAD model). The biLM is frozen in the paper and in AllenNLP
by default: keep `params["bilm"]` out of the optimiser (`optax.masked` / `optax.set_to_zero`) or
wrap it in `jax.lax.stop_gradient`, which `elmo_apply` does unless `finetune_bilm=True`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from elmo_jax.model.bilm import bilm_apply, remove_sentence_boundaries
from elmo_jax.model.config import BiLMConfig
from elmo_jax.model.lstmp import State
from elmo_jax.model.scalar_mix import init_scalar_mix, scalar_mix

Params = dict


def init_elmo(
    bilm_params: Params,
    config: BiLMConfig,
    num_output_representations: int,
    scalar_mix_parameters: Sequence[float] | None = None,
) -> Params:
    """ELMo parameters: the biLM's plus `num_output_representations` scalar mixes."""
    params: Params = {"bilm": bilm_params}
    for k in range(num_output_representations):
        params[f"scalar_mix_{k}"] = init_scalar_mix(config.num_output_layers, scalar_mix_parameters)
    return params


def elmo_mix(
    params: Params,
    layers: Sequence[jax.Array],
    mask: jax.Array,
    *,
    do_layer_norm: bool = False,
    dropout: float = 0.5,
    keep_sentence_boundaries: bool = False,
    train: bool = False,
    rng: jax.Array | None = None,
) -> tuple[list[jax.Array], jax.Array]:
    """The part of `elmo_apply` after the biLM (for biLM layers computed another way, e.g. from
    the token-embedding cache). Arguments as in `elmo_apply`."""
    num = sum(1 for k in params if k.startswith("scalar_mix_"))
    if train and dropout > 0.0 and rng is None:
        raise ValueError("train=True with dropout needs an rng")
    keys = jax.random.split(rng, num) if (train and dropout > 0.0) else [None] * num
    reps = []
    out_mask = mask
    for k in range(num):
        mixed = scalar_mix(params[f"scalar_mix_{k}"], layers, mask, do_layer_norm=do_layer_norm)
        if not keep_sentence_boundaries:
            mixed, out_mask = remove_sentence_boundaries(mixed, mask)
        if keys[k] is not None:
            # Plain (not variational) dropout, one mask per representation, as torch's Dropout.
            keep = jax.random.bernoulli(keys[k], 1.0 - dropout, mixed.shape)
            mixed = jnp.where(keep, mixed / (1.0 - dropout), 0.0)
        reps.append(mixed)
    if num == 0 and not keep_sentence_boundaries:
        out_mask = remove_sentence_boundaries(layers[0], mask)[1]
    return reps, out_mask


def elmo_apply(
    params: Params,
    config: BiLMConfig,
    char_ids: jax.Array,
    state: State | None = None,
    *,
    do_layer_norm: bool = False,
    dropout: float = 0.5,
    keep_sentence_boundaries: bool = False,
    finetune_bilm: bool = False,
    train: bool = False,
    rng: jax.Array | None = None,
) -> tuple[list[jax.Array], jax.Array, State]:
    """ELMo representations for a batch.

    Args:
      params: from `init_elmo`.
      config: the biLM config.
      char_ids: int[B, T, max_characters_per_token] from `batch_to_ids`.
      state: None (stateless) or the previous call's state (stateful, see `bilm_apply`).
      do_layer_norm: AllenNLP's batch-level layer norm before mixing (see `scalar_mix`).
      dropout: dropout rate on each representation, applied only when `train`.
      keep_sentence_boundaries: keep the `<S>`/`</S>` steps (T + 2 steps).
      finetune_bilm: let gradients reach the biLM (AllenNLP's `requires_grad=True`).
      train: apply dropout.
      rng: dropout key, needed when `train` and `dropout > 0`.

    Returns:
      `(representations, mask, new_state)`: a list of num_output_representations arrays
      float[B, T, 2 * projection_dim] (zero at padding; T + 2 with boundaries), the bool mask of
      matching shape, and the biLM state.
    """
    bilm_params = params["bilm"]
    if not finetune_bilm:
        bilm_params = jax.lax.stop_gradient(bilm_params)
    layers, mask, new_state = bilm_apply(bilm_params, config, char_ids, state)
    reps, out_mask = elmo_mix(
        params,
        layers,
        mask,
        do_layer_norm=do_layer_norm,
        dropout=dropout,
        keep_sentence_boundaries=keep_sentence_boundaries,
        train=train,
        rng=rng,
    )
    return reps, out_mask, new_state
