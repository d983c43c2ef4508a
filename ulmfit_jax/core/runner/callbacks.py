"""Callbacks of the training loop (`ulmfit_jax.core.runner.fit.fit`), fastai- and Keras-style.

A callback is an object with any of these methods (subclass `Callback` to inherit no-ops):

    on_phase_start(loop, phase)            a phase starts (not again when a run resumes inside
                                           it); may replace `loop.state` (gradual unfreezing:
                                           a new optimiser stage)
    on_epoch_start(loop, epoch)            before the epoch's first step (also when a run
                                           resumes inside the epoch)
    on_step_end(loop, step, metrics)       after each step; `metrics` the step's device scalars
    on_epoch_end(loop, epoch, metrics)     after the epoch's validation (`metrics`: the
                                           `valid` metrics, {} without an `evaluate`); return
                                           True, or call `loop.stop()`, to stop training
    state_dict() -> dict                   JSON-able state to keep across `--resume`
    load_state_dict(state)                 its state back, when a run resumes

`loop` is the `fit.Loop`: `loop.run`, `loop.state`, `loop.phase`, `loop.epoch`,
`loop.steps_per_epoch`, `loop.stop()`. Epochs are global (counted over every phase, from 0).
A stop takes effect at the end of the epoch, after its validation, so the best epoch is
always a validated one.

State that survives a kill: the loop saves every callback's `state_dict()` with each
checkpoint (its JSON metadata, under the callback's `name`) and gives it back through
`load_state_dict` when the run resumes, so a resumed run's callbacks see what an uninterrupted
run's would have seen. An epoch whose end the killed run had not finished is ended again: its
`on_epoch_end` runs once on the restored state, with the recorded validation metrics.

Example, a custom early-stop rule:

    class StopAtAccuracy(Callback):
        def __init__(self, target):
            self.target, self.epochs_seen = target, 0

        def on_epoch_end(self, loop, epoch, metrics):
            self.epochs_seen += 1
            return metrics["accuracy"] >= self.target

        def state_dict(self):
            return {"epochs_seen": self.epochs_seen}

        def load_state_dict(self, state):
            self.epochs_seen = state["epochs_seen"]

    train_classifier(..., callbacks=[StopAtAccuracy(0.9)])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

HOOKS = ("on_phase_start", "on_epoch_start", "on_step_end", "on_epoch_end")


class Callback:
    """No-op hooks to override (see the module docstring). `name` keys the callback's saved
    state (default: the class name; set it when one run has two of a kind)."""

    name: str | None = None

    def on_phase_start(self, loop, phase) -> None:
        pass

    def on_epoch_start(self, loop, epoch: int) -> None:
        pass

    def on_step_end(self, loop, step: int, metrics: Mapping[str, Any]) -> None:
        pass

    def on_epoch_end(self, loop, epoch: int, metrics: Mapping[str, float]) -> bool | None:
        return None


def callback_name(callback: Any) -> str:
    return getattr(callback, "name", None) or type(callback).__name__


class CallbackList:
    """Calls one hook on every callback that has it, in order."""

    def __init__(self, callbacks: Sequence[Any] = ()):
        self.callbacks = list(callbacks)
        names = [callback_name(c) for c in self.callbacks]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(
                f"two callbacks share the name {duplicated[0]!r}: give them distinct `name`s "
                "so that their saved states stay apart"
            )

    def call(self, hook: str, *args: Any) -> bool:
        """Call `hook` on every callback; True when any of them returned True (stop)."""
        stop = False
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                stop = bool(method(*args)) or stop
        return stop

    def has(self, hook: str) -> bool:
        return any(getattr(c, hook, None) is not None for c in self.callbacks)

    def state_dict(self) -> dict[str, Any]:
        """`{name: state}` of the callbacks that declare a state."""
        return {
            callback_name(c): c.state_dict() for c in self.callbacks if hasattr(c, "state_dict")
        }

    def load_state_dict(self, states: Mapping[str, Any]) -> None:
        for callback in self.callbacks:
            name = callback_name(callback)
            if name in states and hasattr(callback, "load_state_dict"):
                callback.load_state_dict(states[name])
