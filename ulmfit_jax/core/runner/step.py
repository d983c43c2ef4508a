"""The one step contract of every training program: `(state, batch) -> (state, metrics)`.

`state` is a `TrainState` (`ulmfit_jax.core.runner.train_state`); `batch` is a NamedTuple
holding everything that varies from step to step: the arrays of this host's rows (tokens,
targets, lengths, masks, weights) and the per-step scalars and flags (the learning-rate scale of
a variable-length window, the trainable layer groups of a phase of gradual unfreezing). A step
builder returns a `TrainStep`: the jitted function, the mesh it runs on and how the batch's
fields are placed on it, frozen together.

Example (flax's `examples/lm1b/train.py`):

    step = make_lm_train_step(model, optimizer, mesh=mesh)      # a TrainStep
    state, metrics = step(state, LMStepBatch(tokens, targets, lengths, 1.0, trainable))

Calling a `TrainStep` places the state (replicated, a carried LSTM state split by rows) and the
batch on the mesh: the fields named in `row_fields` hold this host's rows and are assembled
into the global batch (`sharding.put_batch`), the others are replicated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from ulmfit_jax.core.runner import sharding
from ulmfit_jax.core.runner.train_state import TrainState


@dataclasses.dataclass(frozen=True)
class TrainStep:
    """A jitted training step and where it runs.

    Attributes:
      jitted: `(state, batch) -> (state, metrics)`, jitted with the state donated; the batch
        already on the mesh.
      mesh: the devices the step runs on.
      row_fields: the batch fields that hold rows (split over the mesh on `row_axis`); every
        other field is replicated.
      row_axis: the rows' axis in those fields (1 for ELMo's `[direction, batch, ...]`).
      state_batch_axis: the rows' axis of the state's carried `lstm_state`.
      what: how an error names the batch's rows ("language-model batch size (rows)").
    """

    jitted: Callable[[TrainState, Any], tuple[TrainState, Mapping[str, jax.Array]]]
    mesh: jax.sharding.Mesh
    row_fields: tuple[str, ...]
    row_axis: int = 0
    state_batch_axis: int = 0
    what: str = "batch size"

    def place_batch(self, batch: NamedTuple) -> NamedTuple:
        """This host's batch -> the global batch on the mesh (rows split, the rest
        replicated). A `ValueError` names the problem when the rows do not split evenly."""
        first = np.shape(getattr(batch, self.row_fields[0]))
        if len(first) > self.row_axis:
            rows = first[self.row_axis] * jax.process_count()
            sharding.check_batch(self.mesh, rows, self.what)
        placed = {
            name: sharding.put_batch(value, self.mesh, self.row_axis)
            if name in self.row_fields
            else sharding.put_replicated(_as_array(value), self.mesh)
            for name, value in batch._asdict().items()
        }
        return type(batch)(**placed)

    def __call__(
        self, state: TrainState, batch: NamedTuple
    ) -> tuple[TrainState, Mapping[str, jax.Array]]:
        state = sharding.put_tree(state, state.shardings(self.mesh, self.state_batch_axis))
        return self.jitted(state, self.place_batch(batch))


def _as_array(value: Any) -> Any:
    """Python scalars as float32/int32 arrays, so the jitted step sees one dtype every call."""
    if isinstance(value, float):
        return np.float32(value)
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, int):
        return np.int32(value)
    return value
