"""Training in phases of gradual unfreezing, resuming exactly where a checkpoint left off.

Every stage trains in *phases*: `(trainable_groups, epochs, lr)` triples, `trainable_groups`
counting layer groups from the top (0 = all). Each phase starts a fresh optimiser state, as
fastai's `freeze_to` does, with discriminative learning rates (`lr / lr_mult**k` for the k-th
group below the top) and the configured schedule (STLR or 1cycle) over the phase's steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ulmfit_jax.core.training.run import Run, train_loop
from ulmfit_jax.core.training.train_state import create_train_state, place_train_state
from ulmfit_jax.data.lm_stream import LoaderState
from ulmfit_jax.training import optim
from ulmfit_jax.training.lm_steps import reset_lstm_state


@dataclasses.dataclass(frozen=True)
class Phase:
    trainable_groups: int  # from the top; 0 means all
    epochs: int
    lr: float


def phases(config) -> list[Phase]:
    result = [Phase(int(t), int(e), float(lr)) for t, e, lr in config.phases]
    if not result or any(p.epochs < 1 or p.lr <= 0 for p in result):
        raise ValueError("config.phases must be (trainable_groups, epochs>=1, lr>0) triples")
    return result


def make_phase_optimizer(config, labels, first: Phase, steps: int):
    """One optimiser for every phase: later phases only change its state (`optim.new_stage`),
    so the jitted training step compiles once for a whole gradual-unfreezing schedule."""
    return optim.make_optimizer(
        labels,
        lr=first.lr,
        total_steps=steps,
        schedule=config.optim.schedule,
        lr_mult=config.optim.lr_mult,
        betas=tuple(config.optim.betas),
        moms=tuple(config.optim.moms),
        eps=config.optim.eps,
        weight_decay=config.optim.weight_decay,
        clip=config.optim.clip or None,
    )


def run_phases(
    run: Run,
    config,
    *,
    params: Any,
    labels: Any,
    make_step: Callable,
    loader,
    meta: dict,
    mesh: jax.sharding.Mesh,
    lstm_state: Any = None,
    after_phase: Callable[[int, dict], None] | None = None,
) -> dict:
    """Train through every phase of `config.phases`, resuming where a checkpoint left off.

    Steps are counted globally across phases; phase k starts with a fresh optimiser state
    (fastai's `freeze_to` clears it) and its own schedule over its steps. A run killed at any
    step resumes to the same final state as an uninterrupted one: inside a phase from that
    phase's checkpoint; at a phase boundary (a phase's last step is always checkpointed) from
    the finished phase's state, moved to the next phase exactly as an uninterrupted run does.

    Args:
      make_step: `optimizer -> (trainable -> step_fn)` for `train_loop`.
      loader: an `LMStream` or `ClassifierBatches` (epochs continue across phases).
      mesh: the devices the state is placed on.
      lstm_state: the carried LSTM state of a streaming LM (None for classifiers).
      after_phase: `(phase_index, state) -> None`, e.g. an evaluation.
    """
    all_phases = phases(config)
    steps_per_epoch = loader.num_batches()
    ends = np.cumsum([p.epochs * steps_per_epoch for p in all_phases]).tolist()
    starts = [0, *ends[:-1]]
    optimizer = make_phase_optimizer(config, labels, all_phases[0], ends[0])
    state = create_train_state(
        params, optimizer, seed=config.seed, lstm_state=lstm_state, mesh=mesh
    )
    resume_step = run.checkpointer.latest_step() if run.resume else None
    if resume_step is not None and resume_step in starts:
        # Killed at a phase boundary: continue from the finished phase's final state; the
        # next phase then starts from it as in an uninterrupted run.
        state, _ = run.checkpointer.restore(place_train_state(state, mesh))
        run.log(f"resumed from step {resume_step}, the end of a phase")
        run.resume = False
    train_step = make_step(optimizer)
    for index, phase in enumerate(all_phases):
        start, end = starts[index], ends[index]
        if resume_step is not None and resume_step >= end:
            continue  # finished before the interruption
        state["opt_state"] = optim.new_stage(
            optimizer,
            state["opt_state"],
            state["params"],
            lr=phase.lr,
            total_steps=end - start,
            lr_mult=config.optim.lr_mult,
            schedule=config.optim.schedule,
        )
        state["step"] = jnp.asarray(start, jnp.int32)
        state = place_train_state(state, mesh)
        trainable = optim.trainable_groups(labels, phase.trainable_groups or None)
        run.log(
            f"phase {index + 1}/{len(all_phases)}: top {phase.trainable_groups or 'all'} groups, "
            f"{phase.epochs} epoch(s), lr {phase.lr:g}, steps {start}..{end}"
        )
        first_epoch = start // steps_per_epoch

        def make_iterator(position, first_epoch=first_epoch, epochs=phase.epochs):
            position = position or LoaderState(first_epoch, 0, loader.seed).to_dict()
            return loader.iterator(LoaderState.from_dict(position), num_epochs=first_epoch + epochs)

        state = train_loop(
            run,
            state=state,
            step_fn=train_step(trainable),
            make_iterator=make_iterator,
            iterator_position=lambda it: it.state.to_dict(),
            num_steps=end,
            checkpoint_every=config.train.checkpoint_every,
            log_every=config.train.log_every,
            meta=dict(meta, phase=index),
            on_epoch_start=reset_lstm_state if "lstm_state" in state else None,
            desc=f"phase {index + 1}/{len(all_phases)}",
        )
        run.resume = False  # the interrupted phase is done; later ones start fresh
        if after_phase is not None:
            after_phase(index, state)
    if resume_step is not None and resume_step >= ends[-1]:
        # Everything was done: load the result.
        state, _ = run.checkpointer.restore(place_train_state(state, mesh))
    return state
