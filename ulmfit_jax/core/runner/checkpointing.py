"""Atomic, resumable checkpoints with orbax, shared by the ULMFiT and ELMo training programs.

A checkpoint holds two items:

* `state`: any pytree of arrays (parameters, optimiser state, step, RNG key data, a carried
  LSTM state), saved with `StandardSave` and restored against an abstract template so optax
  states come back as their NamedTuples;
* `meta`: JSON (config, vocabulary, data position, stage), plus a description of every array
  in `state` (path, shape, dtype) so that a checkpoint from another model or run is rejected
  with a message naming the first mismatching array, before orbax tries to read it.

orbax writes each step into a temporary folder and renames it into place when complete, so a
run killed mid-write leaves the previous step as the latest good one (the temporary folder is
ignored and cleaned up). Saves are synchronous: when `save` returns, the step is on disk.

Several hosts: every process calls `save` and `restore` (orbax is collective); each writes the
shards of the state it holds (a replicated array once, from process 0) into the one directory,
which must be visible to every host: a shared filesystem or a `gs://bucket/...` path. Arrays
are restored onto the devices and shardings of the template's arrays.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging
from etils import epath

log = logging.getLogger(__name__)


class _QuietLibraries(logging.Filter):
    """Drops the INFO and DEBUG records that orbax (and jax) send through absl's logger: a tiny
    run otherwise prints hundreds of lines about handlers and registries. Warnings and errors
    pass; `show_library_logs()` (the programs' `--verbose`) lets everything through."""

    PACKAGES = (f"{os.sep}orbax{os.sep}", f"{os.sep}jax{os.sep}")

    def __init__(self):
        super().__init__()
        self.verbose = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose or record.levelno >= logging.WARNING:
            return True
        return not any(package in record.pathname for package in self.PACKAGES)


_QUIET = _QuietLibraries()
logging.getLogger("absl").addFilter(_QUIET)  # orbax logs through absl's logger
absl_logging.get_absl_handler().addFilter(_QUIET)  # jax's loggers reach it through the root


def show_library_logs(show: bool = True) -> None:
    """Let orbax's and jax's INFO logs through (they are off by default)."""
    _QUIET.verbose = show


# Characters of the underlying error kept in the message about a damaged checkpoint.
MAX_REASON = 200


def describe_arrays(tree: Any) -> dict[str, list]:
    """`{path: [shape, dtype]}` for every leaf of a pytree (JSON-serialisable)."""
    described = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.asarray(leaf) if not hasattr(leaf, "shape") else leaf
        described[jax.tree_util.keystr(path)] = [list(array.shape), str(array.dtype)]
    return described


def _first_mismatch(saved: Mapping[str, list], expected: Mapping[str, list]) -> str | None:
    for path, spec in expected.items():
        if path not in saved:
            return f"{path} is missing from the checkpoint"
        if list(saved[path][0]) != list(spec[0]) or saved[path][1] != spec[1]:
            return (
                f"{path} is {saved[path][1]}{saved[path][0]} in the checkpoint, "
                f"{spec[1]}{spec[0]} in this run"
            )
    extra = sorted(set(saved) - set(expected))
    if extra:
        return f"the checkpoint has arrays this run does not: {extra[:4]}"
    return None


def checkpoint_path(directory: str | os.PathLike) -> Path | epath.Path:
    """A local folder as an absolute `Path`; a URL (`gs://bucket/run`) as an `epath.Path`."""
    text = os.fspath(directory)
    return epath.Path(text) if "://" in text else Path(text).absolute()


def _is_closed_loop(exc_type, exc_value) -> bool:
    return exc_type is RuntimeError and str(exc_value) == "Event loop is closed"


def _drop_closed_loop_reports() -> None:
    """After a failed restore, TensorStore's outstanding reads complete into orbax's event loop,
    already closed, and each reports "Event loop is closed", as an unraisable exception or from
    the thread that completes it: dozens of tracebacks that bury the real error. Drop exactly
    those from then on (installed before a restore starts: the reads can finish first)."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop", False):
        return

    def hook(unraisable) -> None:
        if not _is_closed_loop(unraisable.exc_type, unraisable.exc_value):
            previous(unraisable)

    hook.drops_closed_loop = True
    sys.unraisablehook = hook
    previous_thread_hook = threading.excepthook

    def thread_hook(args) -> None:
        if not _is_closed_loop(args.exc_type, args.exc_value):
            previous_thread_hook(args)

    threading.excepthook = thread_hook


class Checkpointer:
    """Keeps the last `max_to_keep` checkpoints of one run in `directory`.

    Args:
      directory: the run's checkpoint folder (created when missing), local or `gs://...`.
      max_to_keep: how many steps to keep on disk.
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 2):
        self.directory = checkpoint_path(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        """The newest complete step on disk, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: Mapping[str, Any]) -> None:
        """Write `state` and `meta` as `step`, atomically; returns when it is on disk.

        A step already on disk is left as it is: within a run a step's state is determined
        by its number (e.g. a SIGTERM right after a periodic save asks for the same step).
        """
        if step in self.all_steps():
            return
        meta = dict(meta, arrays=describe_arrays(state))
        # Arrays stay where they are: orbax writes each host's shards (sharded carried state,
        # replicated parameters) without gathering them.
        state = jax.tree.map(lambda x: x if isinstance(x, jax.Array) else np.asarray(x), state)
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def read_meta(self, step: int | None = None) -> dict[str, Any]:
        """The JSON metadata of `step` (default: the latest)."""
        step = self._resolve(step)
        path = self.directory / str(step) / "meta" / "metadata"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise self._damaged(step, error) from error

    def _damaged(self, step: int, error: BaseException) -> ValueError:
        """A short error for an unreadable step: which folder, why in a line, what to do.
        TensorStore's own message (kept as the cause) runs to a kilobyte of JSON spec."""
        folder = self.directory / str(step)
        reason = " ".join(str(error).split(" [tensorstore_spec")[0].split())
        reason = reason.replace(f"{folder}/", "")
        if (innermost := reason.rfind('local file "')) > 0:  # the file that failed, and why
            reason = reason[innermost:]
        if len(reason) > MAX_REASON:
            reason = reason[:MAX_REASON] + "..."
        earlier = [s for s in self.all_steps() if s < step]
        if earlier:
            advice = f"delete {folder} to resume from step {max(earlier)}, or use a new --workdir"
        else:
            advice = f"it is the only checkpoint: delete {folder} or use a new --workdir"
        return ValueError(
            f"checkpoint {folder} is damaged and cannot be read ({type(error).__name__}: "
            f"{reason}); {advice}"
        )

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restore `(state, meta)` of `step` (default: the latest) into the structure of
        `template` (a pytree of arrays or `jax.ShapeDtypeStruct`s like the saved state).
        A `jax.Array` leaf's sharding is where that array is restored (e.g. replicated or
        split over a mesh); other leaves come back as orbax's default places them.

        Raises:
          FileNotFoundError: no checkpoint in the directory.
          ValueError: the checkpoint does not match `template`, or cannot be read.
        """
        step = self._resolve(step)
        meta = self.read_meta(step)
        mismatch = _first_mismatch(meta.get("arrays", {}), describe_arrays(template))
        if mismatch:
            raise ValueError(
                f"checkpoint {self.directory / str(step)} does not match this run: {mismatch}"
            )

        def abstract_leaf(x):
            if isinstance(x, jax.ShapeDtypeStruct):
                return x
            if isinstance(x, jax.Array):
                return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
            return jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)

        abstract = jax.tree.map(abstract_leaf, template)
        _drop_closed_loop_reports()
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as error:  # orbax raises many types for damaged files
            raise self._damaged(step, error) from error
        return restored["state"], meta

    def _resolve(self, step: int | None) -> int:
        if step is None:
            step = self.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if step not in self.all_steps():
            raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}")
        return step

    def close(self) -> None:
        self._manager.close()
