"""ULMFiT's stages on the one training loop: phases of gradual unfreezing, and the lr finder.

Every stage trains in *phases*: `(trainable_groups, epochs, lr)` triples, `trainable_groups`
counting layer groups from the top (0 = all). Each phase starts a fresh optimiser state, as
fastai's `freeze_to` does, with discriminative learning rates (`lr / lr_mult**k` for the k-th
group below the top) and the configured schedule (STLR or 1cycle) over the phase's steps: the
`GradualUnfreezing` callback of `ulmfit_jax.core.runner.fit.fit`, which owns the epochs, the
exact resume, validation, the best epoch and early stopping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from ulmfit_jax import optim
from ulmfit_jax.batching.lm_stream import LoaderState
from ulmfit_jax.core.runner import fit, sharding
from ulmfit_jax.core.runner.callbacks import Callback
from ulmfit_jax.core.runner.run import Run
from ulmfit_jax.core.runner.step import TrainStep
from ulmfit_jax.core.runner.train_state import create_train_state, place_train_state
from ulmfit_jax.optim import lr_find as lr_find_lib
from ulmfit_jax.stages.lm_steps import reset_lstm_state


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


def updates(config, micro_steps: int) -> int:
    """Optimiser updates in `micro_steps` batches with `train.accumulate` batches per update."""
    k = int(config.train.accumulate)
    if k < 1:
        raise ValueError(f"train.accumulate must be >= 1, got {k}")
    return max(1, micro_steps // k)


def make_phase_optimizer(config, labels, first: Phase, steps: int, **overrides):
    """One optimiser for every phase: later phases only change its state (`optim.new_stage`),
    so the jitted training step compiles once for a whole gradual-unfreezing schedule.
    `steps` counts batches; with `train.accumulate = k` the schedules count updates."""
    options = dict(
        lr=first.lr,
        total_steps=updates(config, steps),
        schedule=config.optim.schedule,
        lr_mult=config.optim.lr_mult,
        betas=tuple(config.optim.betas),
        moms=tuple(config.optim.moms),
        eps=config.optim.eps,
        weight_decay=config.optim.weight_decay,
        clip=config.optim.clip or None,
        accumulate=int(config.train.accumulate),
    )
    return optim.make_optimizer(labels, **(options | overrides))


@dataclasses.dataclass(frozen=True)
class StageModel:
    """What a ULMFiT stage trains, as `find_lr` and `fit_phases` both need it.

    Attributes:
      params: the initial parameters.
      labels: their layer groups (`ulmfit_jax.optim.param_groups`).
      make_step: `optimizer -> TrainStep` (`ulmfit_jax.core.runner.step`).
      loader: an `LMStream` or `ClassifierBatches`; epoch e is a pure function of its seed.
      mesh: the devices the state is placed on.
      lstm_state: the carried LSTM state of a streaming LM (None for classifiers); reset at
        each epoch's start.
    """

    params: Any
    labels: Any
    make_step: Callable[[Any], TrainStep]
    loader: Any
    mesh: jax.sharding.Mesh
    lstm_state: Any = None


def find_lr(config, workdir: str | Path, model: StageModel) -> dict:
    """fastai's `lr_find` for phase `lr_finder.phase` of the stage, instead of training.

    The sweep runs on a fresh state over a constant-rate copy of the stage's optimiser (every
    group at the swept rate, as fastai's `lr_find` does), with that phase's trainable groups;
    it writes `WORKDIR/lr_find.json` and `WORKDIR/lr_find.png` and returns the suggestions.
    """
    f = config.lr_finder
    all_phases = phases(config)
    if not 0 <= f.phase < len(all_phases):
        raise ValueError(f"lr_finder.phase={f.phase}: the stage has {len(all_phases)} phase(s)")
    phase = all_phases[f.phase]
    finder = make_phase_optimizer(
        config,
        model.labels,
        phase,
        1,
        lr=f.start_lr,
        schedule="constant",
        lr_mult=None,
        accumulate=1,
    )
    lstm_state, loader = model.lstm_state, model.loader
    state = create_train_state(
        model.params, finder, seed=config.seed, lstm_state=lstm_state, mesh=model.mesh
    )
    trainable = optim.trainable_groups(model.labels, phase.trainable_groups or None)
    train_step = model.make_step(finder)
    trainable = sharding.put_replicated(trainable, train_step.mesh)

    def batches(epoch: int):
        start = LoaderState(epoch, 0, loader.seed)
        for batch in loader.iterator(start, num_epochs=epoch + 1):
            yield batch._replace(trainable=trainable)

    result = lr_find_lib.lr_find(
        train_step,
        state,
        batches,
        start_lr=f.start_lr,
        end_lr=f.end_lr,
        num_it=f.num_it,
        reset_state=reset_lstm_state if lstm_state is not None else None,
    )
    Path(workdir).mkdir(parents=True, exist_ok=True)
    lr_find_lib.write_lr_find(result, workdir)
    shown = ", ".join(f"{k} {v:.3g}" for k, v in result.suggestions.items() if v is not None)
    print(
        f"lr_find (phase {f.phase + 1}, {len(result.lrs)} steps): {shown}; wrote "
        f"{Path(workdir) / 'lr_find.json'} and lr_find.png",
        flush=True,
    )
    return {k: v for k, v in result.suggestions.items() if v is not None}


class LoaderEpochs:
    """An `LMStream` or `ClassifierBatches` as the loop's `EpochData` (epoch e a pure function of
    the loader's seed and e)."""

    def __init__(self, loader):
        self.loader = loader
        self.steps_per_epoch = loader.num_batches()

    def iterator(self, epoch: int, position: dict | None):
        start = position or LoaderState(epoch, 0, self.loader.seed).to_dict()
        return self.loader.iterator(LoaderState.from_dict(start), num_epochs=epoch + 1)

    def position(self, iterator) -> dict:
        return iterator.state.to_dict()


def loop_phases(config, labels, mesh: jax.sharding.Mesh) -> list[fit.Phase]:
    """`config.phases` as the loop's phases: each phase's trainable flags (placed on `mesh`)
    and peak lr."""
    return [
        fit.Phase(
            epochs=phase.epochs,
            trainable=sharding.put_replicated(
                optim.trainable_groups(labels, phase.trainable_groups or None), mesh
            ),
            lr=phase.lr,
            name=f"top {phase.trainable_groups or 'all'} groups",
        )
        for phase in phases(config)
    ]


class GradualUnfreezing(Callback):
    """Each phase starts a fresh optimiser state (fastai's `freeze_to` clears it), with the
    phase's peak lr and its own schedule over the phase's steps; the step count stays global.

    The optimiser is the one of `make_phase_optimizer`: only its state changes, so the jitted
    step compiles once for the whole schedule.
    """

    def __init__(self, config, optimizer, steps_per_epoch: int, mesh: jax.sharding.Mesh):
        self.config, self.optimizer = config, optimizer
        self.steps_per_epoch, self.mesh = steps_per_epoch, mesh

    def on_phase_start(self, loop: fit.Loop, phase: fit.Phase) -> None:
        state = loop.state
        opt_state = optim.new_stage(
            self.optimizer,
            state.opt_state,
            state.params,
            lr=phase.lr,
            total_steps=updates(self.config, phase.epochs * self.steps_per_epoch),
            lr_mult=self.config.optim.lr_mult,
            schedule=self.config.optim.schedule,
        )
        start = jnp.asarray(loop.first_step_of_phase(loop.phase_index), jnp.int32)
        loop.state = place_train_state(state.replace(opt_state=opt_state, step=start), self.mesh)


def fit_phases(run: Run, config, model: StageModel, **fit_options: Any) -> fit.FitResult:
    """Train through every phase of `config.phases` with `ulmfit_jax.core.runner.fit.fit`,
    resuming exactly (see there): one optimiser (`make_phase_optimizer`) whose state each phase
    renews (`GradualUnfreezing`, called before the user's callbacks).

    Args:
      model: what the stage trains (`StageModel`).
      fit_options: `fit`'s other arguments (`evaluate`, `monitor`, `patience`, `test`,
        `describe`, `callbacks`, `meta`).
    """
    all_phases = phases(config)
    data = LoaderEpochs(model.loader)
    optimizer = make_phase_optimizer(
        config, model.labels, all_phases[0], all_phases[0].epochs * data.steps_per_epoch
    )
    state = create_train_state(
        model.params, optimizer, seed=config.seed, lstm_state=model.lstm_state, mesh=model.mesh
    )
    unfreezing = GradualUnfreezing(config, optimizer, data.steps_per_epoch, model.mesh)
    callbacks = [unfreezing, *fit_options.pop("callbacks", ())]
    return fit.fit(
        run,
        state=state,
        train_step=model.make_step(optimizer),
        data=data,
        phases=loop_phases(config, model.labels, model.mesh),
        checkpoint_every=config.train.checkpoint_every,
        log_every=config.train.log_every,
        callbacks=callbacks,
        reset_state=reset_lstm_state if model.lstm_state is not None else None,
        count_tokens=lambda batch: batch.tokens.size,
        name=str(config.get("stage", "train")),
        **fit_options,
    )
