"""The one training loop of every program: epochs in phases, exact resume, validation, the best
epoch, early stopping, preemption, test once, metrics, progress and user callbacks.

    result = fit(run, state=state, train_step=step, data=EpochData(...), phases=[Phase(3)],
                 evaluate=lambda params: {"accuracy": ...}, monitor="accuracy", patience=2,
                 checkpoint_every=500)
    result.best_params, result.valid, result.test

Training runs in *phases* (`Phase(epochs, trainable, lr)`): a program without gradual unfreezing
is one phase; ULMFiT's stages have one per unfreezing step, and a callback's `on_phase_start`
gives each phase its fresh optimiser stage (fastai's `freeze_to`). Epochs and steps are counted
globally across phases, and epoch e of the data is a pure function of e (`EpochData`).

Every epoch runs through `run.train_loop` (checkpoints every `checkpoint_every` steps and at the
epoch's end, SIGTERM saves and exits, a NaN loss stops with the last good checkpoint kept), then
`evaluate(params)` (the `valid/*` metrics), the `BestKeeper` (the best epoch by `monitor` saved
aside; `patience` epochs without improvement stop the run) and the callbacks' `on_epoch_end`.

Exact resume (`Run(resume=True)`): a run killed at any step resumes to the final state of an
uninterrupted one. Killed inside an epoch, the epoch continues from its last checkpoint; killed
at an epoch's end (its checkpoint written), the loop restores that state, ends the epoch (its
validation, if the kill came first, and its callbacks), and goes on, which at a phase boundary
starts the next phase exactly as an uninterrupted run does. Callbacks' `state_dict()`s are saved
with each checkpoint and given back on resume (`ulmfit_jax.core.runner.callbacks`).

Test once: with a `test` function, the best epoch's parameters are scored on the test split once,
after training (`test/*` metrics, reported apart: they choose nothing). The stages pass one when
the config's `eval.test_at_end` holds and the data has a test split; the ULMFiT classifier's
default is False (the test split is the evaluate stage's), the ELMo sentence classifier's True.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from ulmfit_jax.core.runner.best import BestKeeper
from ulmfit_jax.core.runner.callbacks import CallbackList
from ulmfit_jax.core.runner.run import Run, train_loop
from ulmfit_jax.core.runner.train_state import step_of


@dataclasses.dataclass(frozen=True)
class Phase:
    """Epochs trained with one set of trainable layer groups.

    Attributes:
      epochs: how many (>= 1).
      trainable: the step's per-group flags for this phase, put into every batch's `trainable`
        field (None: the batches are given to the step as they are).
      lr: the phase's peak learning rate, for the callbacks that set up its optimiser stage.
      name: shown in the logs (e.g. "top 1 groups").
    """

    epochs: int
    trainable: Any = None
    lr: float | None = None
    name: str = ""


class EpochData(Protocol):
    """The training batches, resumable.

    `iterator(epoch, position)` yields epoch `epoch`'s batches (this host's rows), starting at
    `position` (a dict from `position(iterator)`, the position of the iterator's next batch;
    None: the epoch's start). A position with `"step": 0` marks an epoch's first batch (where
    `reset_state` applies).
    """

    steps_per_epoch: int

    def iterator(self, epoch: int, position: dict | None) -> Iterator: ...

    def position(self, iterator: Iterator) -> dict: ...


@dataclasses.dataclass
class Loop:
    """What callbacks see of the running loop (`loop.stop()` ends training after this epoch)."""

    run: Run
    state: Any
    phases: tuple[Phase, ...]
    steps_per_epoch: int
    epoch: int = 0
    phase_index: int = 0
    stop_requested: bool = False

    @property
    def phase(self) -> Phase:
        return self.phases[self.phase_index]

    @property
    def epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def first_step_of_phase(self, index: int) -> int:
        return sum(p.epochs for p in self.phases[:index]) * self.steps_per_epoch

    def stop(self) -> None:
        self.stop_requested = True


@dataclasses.dataclass(frozen=True)
class FitResult:
    """The outcome of `fit`.

    Attributes:
      state: the last state (the last epoch's, not the best).
      best_params: the best epoch's parameters (the last state's without an `evaluate`).
      best: `{"epoch", "step", "value", "monitor"}` of the best epoch (None without one).
      valid: the best epoch's validation metrics ({} without an `evaluate`).
      test: the test metrics ({} without a `test`).
      stopped_early: whether a callback or the patience ended training before its last epoch.
    """

    state: Any
    best_params: Any
    best: dict | None
    valid: dict[str, float]
    test: dict[str, float]
    stopped_early: bool


def _describe(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {float(v):.4f}" for k, v in metrics.items())


def fit(
    run: Run,
    *,
    state: Any,
    train_step: Callable[[Any, Any], tuple[Any, Mapping[str, Any]]],
    data: EpochData,
    phases: Sequence[Phase],
    checkpoint_every: int,
    log_every: int = 50,
    evaluate: Callable[[Any], dict[str, float]] | None = None,
    monitor: str = "loss",
    patience: int = 0,
    test: Callable[[Any], dict[str, float]] | None = None,
    describe: Callable[[Mapping[str, float]], str] = _describe,
    callbacks: Sequence[Any] = (),
    meta: Mapping[str, Any] | None = None,
    reset_state: Callable[[Any], Any] | None = None,
    count_tokens: Callable[[Any], int] | None = None,
    name: str = "train",
) -> FitResult:
    """Train through every phase, one epoch at a time, resuming exactly (module docstring).

    Args:
      run: the stage's `Run` (inside `with run:`, so that SIGTERM is handled).
      state: the step-0 `TrainState`, placed where the step wants it (also the template a
        checkpoint is restored into).
      train_step: `(state, batch) -> (state, metrics)`, e.g. a `TrainStep`.
      data: the training batches (`EpochData`).
      phases: the phases, in order.
      checkpoint_every, log_every: in steps (see `run.train_loop`).
      evaluate: `params -> metrics` on the validation split after every epoch; with it the best
        epoch by `monitor` is kept (`BestKeeper`), and `patience` > 0 stops after that many
        epochs without improvement.
      test: `params -> metrics`, scored once on the best epoch's parameters at the end.
      describe: how a log line shows the validation metrics.
      callbacks: `ulmfit_jax.core.runner.callbacks` objects, called in order.
      meta: JSON metadata saved with every checkpoint.
      reset_state: `state -> state` at the start of every epoch (a carried LSTM state's reset).
      count_tokens: the tokens of a batch, for the `tokens_per_s` metric.
      name: the progress bars' label.
    """
    phases = tuple(phases)
    if not phases or any(p.epochs < 1 for p in phases):
        raise ValueError(f"fit needs phases of at least one epoch, got {phases}")
    steps_per_epoch = int(data.steps_per_epoch)
    if steps_per_epoch < 1:
        raise ValueError("the training data is smaller than one batch: lower train.batch_size")
    meta = dict(meta or {})
    hooks = CallbackList(callbacks)
    loop = Loop(run, state, phases, steps_per_epoch)
    phase_of_epoch = [i for i, p in enumerate(phases) for _ in range(p.epochs)]
    keeper = None
    if evaluate is not None:
        keeper = BestKeeper(run.workdir, monitor, patience, fresh=not run.resume)

    def end_epoch(epoch: int) -> bool:
        """Validate (once: a repeated call reuses the recorded metrics), keep the best, call
        the callbacks; whether to stop."""
        metrics: dict[str, float] = {}
        if keeper is not None:
            if keeper.seen(epoch):
                metrics = keeper.metrics_of(epoch)
            else:
                metrics = evaluate(loop.state.params)
                step = step_of(loop.state)
                improved = keeper.update(epoch, step, metrics, loop.state.params)
                run.metrics.write(step, metrics, prefix="valid/")
                best = f" (best {monitor} so far)" if improved else ""
                run.log(f"epoch {epoch + 1}: valid {describe(metrics)}{best}")
        stop = hooks.call("on_epoch_end", loop, epoch, metrics)
        return stop or loop.stop_requested or (keeper is not None and keeper.should_stop)

    first_epoch, mid_epoch, stopped = 0, False, False
    resume_step = run.checkpointer.latest_step() if run.resume else None
    if resume_step is not None:
        first_epoch, within = divmod(resume_step, steps_per_epoch)
        mid_epoch = within != 0
        if not mid_epoch:
            # Killed at an epoch's end: continue from that epoch's final state, ending the
            # epoch first (its validation may not have happened).
            loop.state, saved_meta = run.checkpointer.restore(loop.state)
            hooks.load_state_dict(saved_meta.get("callbacks", {}))
            run.log(f"resumed from step {resume_step}, the end of epoch {first_epoch}")
            run.resume = False
            if first_epoch:
                loop.epoch = first_epoch - 1
                loop.phase_index = phase_of_epoch[min(first_epoch, len(phase_of_epoch)) - 1]
                stopped = end_epoch(first_epoch - 1)
    for epoch in range(first_epoch, 0 if stopped else len(phase_of_epoch)):
        index = phase_of_epoch[epoch]
        loop.epoch, loop.phase_index = epoch, index
        phase = phases[index]
        starts_phase = epoch == phase_of_epoch.index(index)
        if starts_phase and not (mid_epoch and epoch == first_epoch):
            if len(phases) > 1:
                start = loop.first_step_of_phase(index)
                run.log(
                    f"phase {index + 1}/{len(phases)}: {phase.name or 'all groups'}, "
                    f"{phase.epochs} epoch(s)"
                    + (f", lr {phase.lr:g}" if phase.lr is not None else "")
                    + f", steps {start}..{start + phase.epochs * steps_per_epoch}"
                )
            hooks.call("on_phase_start", loop, phase)
        hooks.call("on_epoch_start", loop, epoch)
        loop.state = train_loop(
            run,
            state=loop.state,
            step_fn=_with_trainable(train_step, phase.trainable),
            make_iterator=lambda position, epoch=epoch: data.iterator(epoch, position),
            iterator_position=data.position,
            num_steps=(epoch + 1) * steps_per_epoch,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
            meta=dict(meta, phase=index, epoch=epoch),
            on_epoch_start=reset_state,
            count_tokens=count_tokens,
            after_step=(
                (lambda step, metrics: hooks.call("on_step_end", loop, step, metrics))
                if hooks.has("on_step_end")
                else None
            ),
            extra_meta=lambda: {"callbacks": hooks.state_dict()},
            on_restore=lambda saved: hooks.load_state_dict(saved.get("callbacks", {})),
            desc=_progress_label(name, phases, index, epoch, len(phase_of_epoch)),
        )
        run.resume = False  # the interrupted epoch is done; later ones start fresh
        if end_epoch(epoch):
            stopped = epoch + 1 < len(phase_of_epoch)
            if stopped:
                run.log(f"early stop after epoch {epoch + 1}")
            break
    return _finish(run, loop, keeper, test, describe)


def _with_trainable(train_step, trainable):
    if trainable is None:
        return train_step
    return lambda state, batch: train_step(state, batch._replace(trainable=trainable))


def _progress_label(name: str, phases, index: int, epoch: int, epochs: int) -> str:
    where = f"phase {index + 1}/{len(phases)} " if len(phases) > 1 else ""
    return f"{name} {where}epoch {epoch + 1}/{epochs}"


def _finish(run: Run, loop: Loop, keeper: BestKeeper | None, test, describe) -> FitResult:
    """The best epoch's parameters, and the test split scored once with them."""
    best, best_params, valid = None, loop.state.params, {}
    stopped_early = loop.epoch + 1 < loop.epochs
    if keeper is not None:
        try:
            best, valid = dict(keeper.best), keeper.best_metrics
            best_params = keeper.best_params(loop.state.params)
        finally:
            keeper.close()
        run.log(f"best epoch {best['epoch'] + 1} by valid {best['monitor']} = {best['value']:.4f}")
    test_metrics = {}
    if test is not None:
        test_metrics = dict(test(best_params))
        run.metrics.write(step_of(loop.state), test_metrics, prefix="test/")
        run.log(f"test (once, at the end; chose nothing): {describe(test_metrics)}")
    return FitResult(loop.state, best_params, best, valid, test_metrics, stopped_early)
