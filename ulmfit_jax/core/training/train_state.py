"""The training state every program checkpoints: one pytree, built and placed in one place.

    {"step": int32[], "params": ..., "opt_state": ..., "key": uint32[...] (RNG key data),
     "lstm_state": ...}      # only for streams that carry their LSTM state across batches

Checkpointing this dict together with the data position resumes a run bit for bit
(`ulmfit_jax.core.training.run.train_loop`). On a mesh, everything is replicated except the
carried LSTM state, which is split by rows like the batch (its batch axis is 0 for the
AWD-LSTM's `((h, c), ...)`, 2 for ELMo's `[layer, direction, batch, ...]`).

Example (flax's `examples/sst2` `create_train_state` and `TrainState.apply_gradients`, as
dicts):

    state = create_train_state(params, optimizer, seed=0, mesh=mesh)
    # inside a jitted step:
    next_key, key = split_key(state)
    grads = jax.grad(loss_fn)(state["params"], batch, key)
    state = apply_gradients(state, grads, optimizer, next_key)
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


def split_key(state: Mapping[str, Any], key_impl: str | None = None) -> tuple[jax.Array, jax.Array]:
    """`(next_key, step_key)`: the key the next state carries and the one this step draws its
    randomness (dropout) from, split from the state's key data (of `key_impl`)."""
    next_key, step_key = jax.random.split(jax.random.wrap_key_data(state["key"], impl=key_impl))
    return next_key, step_key


def apply_gradients(
    state: Mapping[str, Any],
    grads: Any,
    optimizer: optax.GradientTransformation,
    next_key: jax.Array,
    *,
    trainable: Any = None,
    lr_scale: jax.Array | None = None,
    **replaced: Any,
) -> dict[str, Any]:
    """The next state: step + 1, the optimiser's update applied to the parameters, its new
    state, `next_key`'s data, and the entries in `replaced` (e.g. the carried `lstm_state`).

    `trainable`: the per-group flags of `ulmfit_jax.training.optim`'s optimisers, passed to
    `optimizer.update` (None: an optimiser without them). `lr_scale`: a scalar multiplying the
    updates (the AWD-LSTM's variable-length windows).
    """
    extra = {} if trainable is None else {"trainable": trainable}
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"], **extra)
    if lr_scale is not None:
        updates = jax.tree.map(lambda u: u * lr_scale.astype(u.dtype), updates)
    return {
        **state,
        "step": state["step"] + 1,
        "params": optax.apply_updates(state["params"], updates),
        "opt_state": opt_state,
        "key": jax.random.key_data(next_key),
        **replaced,
    }


def place_train_state(
    state: Mapping[str, Any], mesh: jax.sharding.Mesh, *, state_batch_axis: int = 0
) -> dict[str, Any]:
    """Put a state holding global values (a fresh one, or a template to restore a checkpoint
    into) on `mesh`: `lstm_state` split on `state_batch_axis`, everything else replicated."""
    shardings = sharding.state_shardings(state, mesh, {"lstm_state": state_batch_axis})
    return sharding.put_tree(dict(state), shardings)
