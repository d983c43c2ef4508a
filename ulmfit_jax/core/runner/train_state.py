"""The training state every program checkpoints: one pytree type, built and placed in one place.

    TrainState(step=int32[], params=..., opt_state=..., key=uint32[...] (RNG key data),
               lstm_state=...)   # only for streams that carry their LSTM state across batches

Checkpointing it together with the data position resumes a run bit for bit
(`ulmfit_jax.core.runner.run.train_loop`). On a mesh, everything is replicated except the
carried LSTM state, which is split by rows like the batch (its batch axis is 0 for the
AWD-LSTM's `((h, c), ...)`, 2 for ELMo's `[layer, direction, batch, ...]`).

Example (flax's `examples/lm1b` `TrainState.apply_gradients`):

    state = create_train_state(params, optimizer, seed=0, mesh=mesh)
    # inside a jitted step:
    next_key, key = state.split_key()
    grads = jax.grad(loss_fn)(state.params, batch, key)
    state = state.apply_gradients(grads, optimizer, next_key)

The optimiser is an argument of `apply_gradients`, not a field: the stages swap its state
between phases of gradual unfreezing (`ulmfit_jax.optim.optimizer.new_stage`) while one jitted
step serves them all, and a checkpoint template need not carry functions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ulmfit_jax.core.runner import sharding


class TrainState(struct.PyTreeNode):
    """What a training step reads and returns (a pytree: jit, donate and checkpoint it whole).

    Attributes:
      step: int32[] optimiser updates so far, counted over the whole stage.
      params: the model's parameters.
      opt_state: the optimiser's state.
      key: the RNG key's data (uint32[2] threefry, uint32[4] "rbg"), so that it checkpoints.
      lstm_state: the LSTM state a streaming language model carries from batch to batch; None
        for models that start every batch afresh.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    key: jax.Array
    lstm_state: Any = None

    def split_key(self, key_impl: str | None = None) -> tuple[jax.Array, jax.Array]:
        """`(next_key, step_key)`: the key the next state carries and the one this step draws
        its randomness (dropout) from, split from the state's key data (of `key_impl`)."""
        next_key, step_key = jax.random.split(jax.random.wrap_key_data(self.key, impl=key_impl))
        return next_key, step_key

    def apply_gradients(
        self,
        grads: Any,
        optimizer: optax.GradientTransformation,
        next_key: jax.Array,
        *,
        trainable: Any = None,
        lr_scale: jax.Array | None = None,
        **replaced: Any,
    ) -> TrainState:
        """The next state: step + 1, the optimiser's update applied to the parameters, its new
        state, `next_key`'s data, and the fields in `replaced` (e.g. the carried `lstm_state`).

        `trainable`: the per-group flags of `ulmfit_jax.optim.optimizer`'s optimisers, passed to
        `optimizer.update` (None: an optimiser without them). `lr_scale`: a scalar multiplying
        the updates (the AWD-LSTM's variable-length windows).
        """
        extra = {} if trainable is None else {"trainable": trainable}
        updates, opt_state = optimizer.update(grads, self.opt_state, self.params, **extra)
        if lr_scale is not None:
            updates = jax.tree.map(lambda u: u * lr_scale.astype(u.dtype), updates)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            opt_state=opt_state,
            key=jax.random.key_data(next_key),
            **replaced,
        )

    def shardings(self, mesh: jax.sharding.Mesh, state_batch_axis: int = 0) -> TrainState:
        """A sharding prefix of this state: `lstm_state` split by rows on `state_batch_axis`,
        everything else replicated."""
        rep = sharding.replicated(mesh)
        rows = sharding.batch_sharding(mesh, state_batch_axis)
        return TrainState(
            step=rep,
            params=rep,
            opt_state=rep,
            key=rep,
            lstm_state=None if self.lstm_state is None else rows,
        )


def step_of(state: Any) -> int:
    """The step count of a `TrainState`, or of a mapping with a "step" entry (the toy states
    of tests and tools)."""
    return int(state.step if isinstance(state, TrainState) else state["step"])


def create_train_state(
    params: Any,
    optimizer: optax.GradientTransformation,
    *,
    seed: int,
    lstm_state: Any = None,
    key_impl: str | None = None,
    mesh: jax.sharding.Mesh | None = None,
    state_batch_axis: int = 0,
) -> TrainState:
    """The step-0 state: fresh optimiser state, an RNG key from `seed` (of `key_impl`, e.g.
    "rbg", or JAX's default), and the carried `lstm_state` when given; placed on `mesh` when
    given (`place_train_state`)."""
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        key=jax.random.key_data(jax.random.key(seed, impl=key_impl)),
        lstm_state=lstm_state,
    )
    if mesh is not None:
        state = place_train_state(state, mesh, state_batch_axis=state_batch_axis)
    return state


def place_train_state(
    state: TrainState, mesh: jax.sharding.Mesh, *, state_batch_axis: int = 0
) -> TrainState:
    """Put a state holding global values (a fresh one, or a template to restore a checkpoint
    into) on `mesh`: `lstm_state` split on `state_batch_axis`, everything else replicated."""
    return sharding.put_tree(state, state.shardings(mesh, state_batch_axis))
