"""The training state every program checkpoints: one pytree, built and placed in one place.

    {"step": int32[], "params": ..., "opt_state": ..., "key": uint32[...] (RNG key data),
     "lstm_state": ...}      # only for streams that carry their LSTM state across batches

Checkpointing this dict together with the data position resumes a run bit for bit
(`ulmfit_jax.core.training.run.train_loop`). On a mesh, everything is replicated except the
carried LSTM state, which is split by rows like the batch (its batch axis is 0 for the
AWD-LSTM's `((h, c), ...)`, 2 for ELMo's `[layer, direction, batch, ...]`).

Example (flax's `examples/sst2` `create_train_state`, as a dict):

    state = create_train_state(params, optimizer, seed=0, mesh=mesh)
    state, metrics = train_step(state, batch)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ulmfit_jax.core.training import sharding


def create_train_state(
    params: Any,
    optimizer: optax.GradientTransformation,
    *,
    seed: int,
    lstm_state: Any = None,
    key_impl: str | None = None,
    mesh: jax.sharding.Mesh | None = None,
    state_batch_axis: int = 0,
) -> dict[str, Any]:
    """The step-0 state: fresh optimiser state, an RNG key from `seed` (of `key_impl`, e.g.
    "rbg", or JAX's default), and the carried `lstm_state` when given; placed on `mesh` when
    given (`place_train_state`)."""
    state = {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "opt_state": optimizer.init(params),
        "key": jax.random.key_data(jax.random.key(seed, impl=key_impl)),
    }
    if lstm_state is not None:
        state["lstm_state"] = lstm_state
    if mesh is not None:
        state = place_train_state(state, mesh, state_batch_axis=state_batch_axis)
    return state


def place_train_state(
    state: Mapping[str, Any], mesh: jax.sharding.Mesh, *, state_batch_axis: int = 0
) -> dict[str, Any]:
    """Put a state holding global values (a fresh one, or a template to restore a checkpoint
    into) on `mesh`: `lstm_state` split on `state_batch_axis`, everything else replicated."""
    shardings = sharding.state_shardings(state, mesh, {"lstm_state": state_batch_axis})
    return sharding.put_tree(dict(state), shardings)
