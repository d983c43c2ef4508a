"""Training in phases of gradual unfreezing, resuming exactly where a checkpoint left off.

Every stage trains in *phases*: `(trainable_groups, epochs, lr)` triples, `trainable_groups`
counting layer groups from the top (0 = all). Each phase starts a fresh optimiser state, as
fastai's `freeze_to` does, with discriminative learning rates (`lr / lr_mult**k` for the k-th
group below the top) and the configured schedule (STLR or 1cycle) over the phase's steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from ulmfit_jax.core.training.run import Run, train_loop
from ulmfit_jax.core.training.train_state import create_train_state, place_train_state
from ulmfit_jax.data.lm_stream import LoaderState
from ulmfit_jax.training import lr_find as lr_find_lib
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


def find_lr(
    config,
    workdir: str | Path,
    *,
    params: Any,
    labels: Any,
    make_step: Callable,
    loader,
    mesh: jax.sharding.Mesh,
    lstm_state: Any = None,
) -> dict:
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
        config, labels, phase, 1, lr=f.start_lr, schedule="constant", lr_mult=None, accumulate=1
    )
    state = create_train_state(params, finder, seed=config.seed, lstm_state=lstm_state, mesh=mesh)
    trainable = optim.trainable_groups(labels, phase.trainable_groups or None)
    result = lr_find_lib.lr_find(
        make_step(finder)(trainable),
        state,
        lambda epoch: loader.iterator(LoaderState(epoch, 0, loader.seed), num_epochs=epoch + 1),
        set_lr=lr_find_lib.set_optimizer_lr,
        get_lr=lr_find_lib.optimizer_lr,
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
    after_epoch: Callable[[int, dict], bool] | None = None,
) -> dict:
    """Train through every phase of `config.phases`, one epoch at a time, resuming exactly.

    Steps are counted globally across phases; phase k starts with a fresh optimiser state
    (fastai's `freeze_to` clears it) and its own schedule over its steps. Every epoch ends with
    a checkpoint and `after_epoch(epoch, state)` (the validation pass; it returns True to stop
    early). A run killed at any step resumes to the same final state as an uninterrupted one:
    inside an epoch from that epoch's checkpoint; at an epoch's end from the finished epoch's
    state (evaluated first if the kill came before its evaluation), which at a phase boundary
    moves to the next phase exactly as an uninterrupted run does.

    Args:
      make_step: `optimizer -> (trainable -> step_fn)` for `train_loop`.
      loader: an `LMStream` or `ClassifierBatches`; epoch e is a pure function of its seed.
      mesh: the devices the state is placed on.
      lstm_state: the carried LSTM state of a streaming LM (None for classifiers).
      after_epoch: `(global_epoch, state) -> stop`; it must tolerate being called again for
        an epoch it has already seen (a resumed run may repeat the call).
    """
    all_phases = phases(config)
    spe = loader.num_batches()
    phase_of_epoch = [i for i, p in enumerate(all_phases) for _ in range(p.epochs)]
    phase_first_epoch = [phase_of_epoch.index(i) for i in range(len(all_phases))]
    total_epochs = len(phase_of_epoch)
    optimizer = make_phase_optimizer(config, labels, all_phases[0], all_phases[0].epochs * spe)
    state = create_train_state(
        params, optimizer, seed=config.seed, lstm_state=lstm_state, mesh=mesh
    )
    resume_step = run.checkpointer.latest_step() if run.resume else None
    first_epoch, mid_epoch = 0, False
    if resume_step is not None:
        first_epoch, mid_epoch = divmod(resume_step, spe)[0], resume_step % spe != 0
        if not mid_epoch:
            # Killed at an epoch's end: continue from that epoch's final state.
            state, _ = run.checkpointer.restore(place_train_state(state, mesh))
            run.log(f"resumed from step {resume_step}, the end of epoch {first_epoch}")
            run.resume = False
            if first_epoch and after_epoch is not None and after_epoch(first_epoch - 1, state):
                return state
    train_step = make_step(optimizer)
    step_fns = {}
    for epoch in range(first_epoch, total_epochs):
        index = phase_of_epoch[epoch]
        phase = all_phases[index]
        start = phase_first_epoch[index] * spe
        resuming_inside = mid_epoch and epoch == first_epoch
        if epoch == phase_first_epoch[index] and not resuming_inside:
            state["opt_state"] = optim.new_stage(
                optimizer,
                state["opt_state"],
                state["params"],
                lr=phase.lr,
                total_steps=updates(config, phase.epochs * spe),
                lr_mult=config.optim.lr_mult,
                schedule=config.optim.schedule,
            )
            state["step"] = jnp.asarray(start, jnp.int32)
            state = place_train_state(state, mesh)
            run.log(
                f"phase {index + 1}/{len(all_phases)}: top {phase.trainable_groups or 'all'} "
                f"groups, {phase.epochs} epoch(s), lr {phase.lr:g}, steps "
                f"{start}..{start + phase.epochs * spe}"
            )
        if index not in step_fns:
            step_fns[index] = train_step(
                optim.trainable_groups(labels, phase.trainable_groups or None)
            )

        def make_iterator(position, epoch=epoch):
            position = position or LoaderState(epoch, 0, loader.seed).to_dict()
            return loader.iterator(LoaderState.from_dict(position), num_epochs=epoch + 1)

        state = train_loop(
            run,
            state=state,
            step_fn=step_fns[index],
            make_iterator=make_iterator,
            iterator_position=lambda it: it.state.to_dict(),
            num_steps=(epoch + 1) * spe,
            checkpoint_every=config.train.checkpoint_every,
            log_every=config.train.log_every,
            meta=dict(meta, phase=index, epoch=epoch),
            on_epoch_start=reset_lstm_state if "lstm_state" in state else None,
            desc=f"phase {index + 1}/{len(all_phases)} epoch {epoch + 1}/{total_epochs}",
        )
        run.resume = False  # the interrupted epoch is done; later ones start fresh
        if after_epoch is not None and after_epoch(epoch, state):
            run.log(f"early stop after epoch {epoch + 1}")
            break
    return state
