"""One training run in a workdir: ownership checks, checkpoints, metrics, preemption, the loop.

Shared by the ULMFiT and ELMo training programs. A workdir belongs to one run:

    WORKDIR/.lock           the live run holding the workdir (pid, host, start, command)
    WORKDIR/run.json        what ran here: program, stage, config, accepted resume changes
    WORKDIR/checkpoints/    orbax steps (see ulmfit_jax.core.runner.checkpointing), or
                            `checkpoint_dir`
    WORKDIR/metrics.jsonl   one JSON object per logged step or evaluation
    WORKDIR/tensorboard/    the same scalars as TensorBoard event files

A second run on a workdir a live run holds is refused at once (`WorkdirInUse`); a resume whose
config differs from run.json's in a key that changes the result is refused, naming the keys,
unless `resume_changed=True` accepts the differences (recorded in run.json and metrics.jsonl;
see `ulmfit_jax.core.runner.workdir`).

`train_loop` runs a jitted step over a resumable batch iterator. Its `state` pytree (params,
optimiser state, RNG key data, carried LSTM state, step) and the iterator's position are
checkpointed every `checkpoint_every` steps and at the end; restarting with `resume=True`
continues from the last checkpoint so that the final parameters equal an uninterrupted run's
bit for bit. SIGTERM (a TPU VM preemption notice) makes the loop save and exit cleanly; a NaN or
infinite loss stops it with an error and leaves the last good checkpoint in place.

On several hosts every process runs the same loop (each feeding its rows of the batch) and
writes checkpoints collectively; run.json, metrics, logs and progress bars come from process 0
only.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ulmfit_jax.core.runner import workdir as workdir_lib
from ulmfit_jax.core.runner.checkpointing import Checkpointer
from ulmfit_jax.core.runner.train_state import step_of


class Preempted(Exception):
    """Raised by `train_loop` after saving a checkpoint on SIGTERM."""


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class MetricsWriter:
    """Scalars to `metrics.jsonl` and TensorBoard event files (process 0 only)."""

    def __init__(self, workdir: Path, enabled: bool = True):
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        if enabled:
            self._jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, metrics: Mapping[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "time": time.time()}
        record.update({f"{prefix}{k}": float(v) for k, v in metrics.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for name, value in metrics.items():
                self._tb.add_scalar(f"{prefix}{name}", float(value), int(step))
            self._tb.flush()

    def event(self, step: int, name: str, details: Mapping[str, Any]) -> None:
        """A non-scalar record in metrics.jsonl only, e.g. config changes accepted on resume."""
        if self.enabled:
            record = {"step": int(step), "time": time.time(), "event": name, **details}
            self._jsonl.write(json.dumps(record, default=str) + "\n")
            self._jsonl.flush()

    def close(self) -> None:
        if self._jsonl:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def progress(iterable=None, *, total: int | None = None, desc: str = "", initial: int = 0):
    """A tqdm bar, silent when stdout is not a terminal or this is not process 0."""
    from tqdm.auto import tqdm

    quiet = not sys.stdout.isatty() or jax.process_index() != 0
    return tqdm(
        iterable, total=total, desc=desc, initial=initial, disable=quiet, dynamic_ncols=True
    )


class Run:
    """A stage of a training program in its workdir.

    Args:
      workdir: the run's folder.
      identity: what must match to reuse the folder (e.g. program and stage).
      config: the full config (an `ml_collections.ConfigDict` or a JSON-able mapping),
        recorded in run.json.
      resume: continue from the last checkpoint (a workdir no run has started in is refused:
        nothing to resume; one whose run was killed before its first checkpoint starts again).
        Without it, a workdir that already holds checkpoints is refused rather than
        overwritten.
      resume_changed: accept a resume whose config differs from run.json's in keys that change
        the result (otherwise refused, naming them).
      checkpoint_dir: where checkpoints go (default `WORKDIR/checkpoints`); on several hosts a
        folder every host sees, e.g. `gs://bucket/run/checkpoints`.

    Raises:
      WorkdirInUse: another live run holds the workdir.
      ValueError: the workdir belongs to another run, holds checkpoints without `resume`, has
        none to resume, or the resumed config differs.
    """

    def __init__(
        self,
        workdir: str | Path,
        identity: Mapping[str, Any],
        config: Mapping[str, Any],
        *,
        resume: bool = False,
        resume_changed: bool = False,
        max_to_keep: int = 2,
        checkpoint_dir: str | None = None,
    ):
        config = workdir_lib.as_json(config)
        self.workdir = Path(workdir).absolute()
        self.identity = dict(identity)
        self.is_main = jax.process_index() == 0
        existed = self.workdir.exists()
        # Process 0 holds the lock: the other hosts of a multi-host run share its workdir.
        self._lock = workdir_lib.acquire(self.workdir) if self.is_main else None
        try:
            self._open(config, resume, resume_changed, max_to_keep, checkpoint_dir)
        except BaseException:
            self._release_lock()
            if not existed and self.is_main:
                _remove_empty_folders(self.workdir)  # a refused run leaves no new workdir
            raise
        self._stop_requested = False
        self._previous_handler = None

    @classmethod
    def for_config(
        cls,
        workdir: str | Path,
        identity: Mapping[str, Any],
        config: Any,
        *,
        resume: bool = False,
        resume_changed: bool = False,
    ) -> Run:
        """The run of a program's stage: checkpoints go to the config's `train.checkpoint_dir`
        when it sets one (a folder every host sees), else `WORKDIR/checkpoints`."""
        train = config.get("train") if hasattr(config, "get") else None
        checkpoint_dir = (train.get("checkpoint_dir", "") if train is not None else "") or None
        return cls(
            workdir,
            identity,
            config,
            resume=resume,
            resume_changed=resume_changed,
            checkpoint_dir=checkpoint_dir,
        )

    def _open(self, config, resume, resume_changed, max_to_keep, checkpoint_dir) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        record_path = self.workdir / "run.json"
        record = {}
        if record_path.exists():
            try:
                record = json.loads(record_path.read_text())
            except ValueError as error:
                raise ValueError(f"{record_path} is corrupt: {error}") from error
            if record.get("identity") != self.identity:
                raise ValueError(
                    f"workdir {self.workdir} belongs to another run ({record.get('identity')}), "
                    f"not {self.identity}: use a new --workdir"
                )
        self.checkpointer = Checkpointer(
            checkpoint_dir or self.workdir / "checkpoints", max_to_keep=max_to_keep
        )
        if resume and self.checkpointer.latest_step() is None:
            if not record:  # an empty or mistyped workdir: not one a run has started in
                raise ValueError(
                    f"--resume: nothing to resume in {self.workdir} (no run.json, no "
                    f"checkpoints in {self.checkpointer.directory}): check --workdir and "
                    "train.checkpoint_dir, or drop --resume to start a new run"
                )
            # Started here but killed before its first checkpoint: start again from step 0.
            resume = False
        accepted = list(record.get("resume_changes", [])) if resume else []
        changes = {}
        if resume and "config" in record:
            changes = workdir_lib.config_changes(record["config"], config)
            if changes and not resume_changed:
                raise ValueError(
                    f"--resume with a config that differs from the one in {record_path} in "
                    f"keys that change the result: {workdir_lib.describe_changes(changes)}; "
                    "pass --resume_changed to continue with these changes anyway"
                )
        if self.checkpointer.latest_step() is not None and not resume:
            raise ValueError(
                f"workdir {self.workdir} already has checkpoints (step "
                f"{self.checkpointer.latest_step()}): pass --resume to continue it, or use a "
                "new --workdir; nothing was overwritten"
            )
        self.resume = resume
        if changes:
            accepted.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changes": changes})
        if self.is_main:
            record = {"identity": self.identity, "config": config}
            if accepted:
                record["resume_changes"] = accepted
            record_path.write_text(json.dumps(record, indent=2, default=str))
        self.metrics = MetricsWriter(self.workdir, enabled=self.is_main)
        if changes:
            step = self.checkpointer.latest_step() or 0
            self.metrics.event(step, "resume_changed", {"changes": changes})
            self.log(f"resuming with changed config: {workdir_lib.describe_changes(changes)}")

    def _release_lock(self) -> None:
        if self._lock is not None:
            workdir_lib.release(self._lock)
            self._lock = None

    def log(self, message: str) -> None:
        if self.is_main:
            print(message, flush=True)

    # -- preemption ------------------------------------------------------------------------
    def __enter__(self) -> Run:
        self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
        try:
            self.metrics.close()
            self.checkpointer.close()
        finally:
            self._release_lock()

    def _on_sigterm(self, signum, frame) -> None:
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested


def _remove_empty_folders(folder: Path) -> None:
    """Remove `folder` if it holds nothing but empty folders."""
    if folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
        for path in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
            path.rmdir()
        folder.rmdir()


def _to_float(x) -> float:
    return float(np.asarray(x))


def train_loop(
    run: Run,
    *,
    state: Any,
    step_fn: Callable[[Any, Any], tuple[Any, Mapping[str, Any]]],
    make_iterator: Callable[[dict | None], Iterator],
    iterator_position: Callable[[Iterator], dict],
    num_steps: int,
    checkpoint_every: int,
    log_every: int = 50,
    meta: Mapping[str, Any] | None = None,
    on_epoch_start: Callable[[Any], Any] | None = None,
    count_tokens: Callable[[Any], int] | None = None,
    after_step: Callable[[int, Mapping[str, Any]], None] | None = None,
    extra_meta: Callable[[], Mapping[str, Any]] | None = None,
    on_restore: Callable[[Mapping[str, Any]], None] | None = None,
    desc: str = "train",
) -> Any:
    """Run `num_steps` training steps with exact resume.

    Args:
      run: the `Run` (use inside `with run:` so SIGTERM is handled).
      state: the initial training state: a `TrainState`, or any pytree mapping with an integer
        "step" entry.
      step_fn: `(state, batch) -> (state, metrics)`, usually jitted with donated state;
        metrics are scalars (at least "loss"), summed on device and read here every
        `log_every` steps.
      make_iterator: builds the batch iterator from a saved position dict (None: the start).
      iterator_position: the JSON-able position of the *next* batch of an iterator.
      num_steps: total steps of this stage (a resumed run stops at the same total).
      checkpoint_every: save every this many steps (and always at the end).
      meta: JSON metadata saved with every checkpoint (config, vocabulary, ...).
      on_epoch_start: `state -> state` called when the iterator starts a new epoch (e.g. to
        reset a carried LSTM state, as fastai's ModelResetter does).
      count_tokens: the tokens in this host's batch, for the `tokens_per_s` metric (None: 0).
      after_step: `(step, metrics)` after every step (the callbacks' `on_step_end`).
      extra_meta: more JSON metadata, read at each save (the callbacks' states).
      on_restore: given the restored checkpoint's metadata when the loop resumes.

    Returns:
      the final state.
    """
    meta = dict(meta or {})
    position = None
    if run.resume and run.checkpointer.latest_step() is not None:
        state, saved_meta = run.checkpointer.restore(state)
        position = saved_meta["data_position"]
        if on_restore is not None:
            on_restore(saved_meta)
        run.log(f"resumed from step {step_of(state)} in {run.checkpointer.directory}")
    batches = make_iterator(position)
    step = step_of(state)

    def save(state) -> None:
        extra = dict(extra_meta()) if extra_meta is not None else {}
        saved = dict(meta, **extra, data_position=iterator_position(batches))
        run.checkpointer.save(step_of(state), state, saved)

    sums: dict[str, float] = {}
    count, started, tokens = 0, time.perf_counter(), 0
    bar = progress(total=num_steps, desc=desc, initial=step)
    try:
        while step < num_steps:
            if run.stop_requested:
                save(state)
                run.log(f"SIGTERM: saved step {step} to {run.checkpointer.directory}; exiting")
                raise Preempted(step)
            position_before = iterator_position(batches)
            try:
                batch = next(batches)
            except StopIteration:
                break
            if on_epoch_start is not None and position_before.get("step") == 0:
                state = on_epoch_start(state)
            state, metrics = step_fn(state, batch)
            step += 1
            if after_step is not None:
                after_step(step, metrics)
            bar.update(1)
            count += 1
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + value
            if count_tokens is not None:
                # Each host holds its rows of the batch: count all of them.
                tokens += count_tokens(batch) * jax.process_count()
            if step % log_every == 0 or step == num_steps:
                averaged = {k: _to_float(v) / count for k, v in sums.items()}
                if not math.isfinite(averaged["loss"]):
                    raise NonFiniteLoss(
                        f"loss became {averaged['loss']} before step {step}; stopped, the last "
                        f"good checkpoint (step {run.checkpointer.latest_step()}) is kept"
                    )
                elapsed = time.perf_counter() - started
                averaged["tokens_per_s"] = tokens / max(elapsed, 1e-9)
                if "loss" in averaged:
                    averaged["perplexity"] = math.exp(min(averaged["loss"], 50.0))
                run.metrics.write(step, averaged, prefix="train/")
                bar.set_postfix(loss=f"{averaged['loss']:.3f}")
                sums, count, started, tokens = {}, 0, time.perf_counter(), 0
            if step % checkpoint_every == 0 or step == num_steps:
                # Never let a NaN reach disk: check the steps since the last log first.
                if count and not math.isfinite(_to_float(sums["loss"])):
                    raise NonFiniteLoss(
                        f"loss became non-finite before step {step}; stopped, the last good "
                        f"checkpoint (step {run.checkpointer.latest_step()}) is kept"
                    )
                save(state)
    finally:
        bar.close()
    if step_of(state) not in run.checkpointer.all_steps():
        save(state)
    return state
