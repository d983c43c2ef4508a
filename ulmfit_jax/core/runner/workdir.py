"""Who owns a workdir: one live run at a time (`WORKDIR/.lock`), and what a resume may change.

The lock is a JSON file `{pid, host, started, command}` created with `O_CREAT | O_EXCL`, so of
two runs starting together exactly one gets it. A lock left by a process that died (SIGKILL, a
crash) on this host is detected by its pid and taken over with a warning; one from another host
cannot be checked and is refused (delete the file if that run is really gone). A process may
take the same lock more than once (the program before loading data, `Run` after): it is
released, and the file removed, when the last holder lets go.

`config_changes` compares a resumed run's config with the one recorded in run.json, ignoring
the keys in `RESULT_NEUTRAL_KEYS`.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax

from ulmfit_jax.core import nested

LOCK_NAME = ".lock"

# Config keys (flattened dotted paths) that do not change a run's result: how often it logs or
# checkpoints, where caches and checkpoints live, how many workers tokenize, how many devices
# the same global batch is split over. A resume may change them freely; any other difference
# is refused unless accepted with --resume_changed. Keep this the only list.
RESULT_NEUTRAL_KEYS = frozenset(
    {
        "train.log_every",
        "train.checkpoint_every",
        "train.checkpoint_dir",
        "train.num_devices",
        "tokenizer_workers",
        "cache_dir",
        "data.tfds_dir",
        "overwrite",
    }
)


class WorkdirInUse(RuntimeError):
    """Another live run holds the workdir's lock."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _holder_text(holder: Mapping[str, Any]) -> str:
    return (
        f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
        f"{holder.get('command')}"
    )


# Locks this process holds: path -> how many times taken.
_held: dict[Path, int] = {}


def acquire(workdir: str | os.PathLike) -> Path:
    """Take `WORKDIR/.lock` (creating the workdir); returns the lock's path.

    Raises:
      WorkdirInUse: another live run holds it (the message names that run).
      PermissionError / OSError: the workdir cannot be written.
    """
    workdir = Path(workdir).absolute()
    path = workdir / LOCK_NAME
    if path in _held:
        _held[path] += 1
        return path
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unwritable(workdir, error) from error
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
    }
    for _ in range(50):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if holder is None:
                # Just created by another process that has not written it yet, or left empty
                # by one killed in between: give it a moment, then treat it as stale.
                if time.time() - _mtime(path) < 5:
                    time.sleep(0.2)
                    continue
            elif holder.get("host") != record["host"] or _alive(int(holder.get("pid", -1))):
                raise WorkdirInUse(
                    f"workdir {workdir} is in use by another run ({_holder_text(holder)}); wait "
                    f"for it to finish or use a new --workdir (if that run is gone, delete {path})"
                ) from None
            warnings.warn(
                f"taking over the stale lock {path} of a run that is no longer alive"
                + (f" ({_holder_text(holder)})" if holder else ""),
                stacklevel=2,
            )
            _unlink(path)
            continue
        except OSError as error:
            raise _unwritable(workdir, error) from error
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        _held[path] = 1
        return path
    raise WorkdirInUse(f"could not take the lock {path}: is another run starting there?")


def _unwritable(workdir: Path, error: OSError) -> OSError:
    # OSError(errno, ...) is the matching subclass (PermissionError, NotADirectoryError, ...).
    return OSError(error.errno, f"cannot write the workdir {workdir}: {error.strerror}")


def release(path: Path) -> None:
    """Let go of a lock taken with `acquire`; the file goes with the last holder."""
    count = _held.get(path, 0)
    if count > 1:
        _held[path] = count - 1
        return
    _held.pop(path, None)
    holder = _read(path)
    if count and holder is not None and holder.get("pid") == os.getpid():
        _unlink(path)


def _read(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


class WorkdirLock:
    """`with WorkdirLock(workdir):` holds the workdir's lock (see `acquire`); on several hosts
    only process 0 takes it (the others share its workdir)."""

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = workdir
        self.path: Path | None = None

    def __enter__(self) -> WorkdirLock:
        if jax.process_index() == 0:
            self.path = acquire(self.workdir)
        return self

    def __exit__(self, *exc) -> None:
        if self.path is not None:
            release(self.path)
            self.path = None


# -- what a resume may change ------------------------------------------------------------------
def flatten(config: Mapping[str, Any]) -> dict[str, Any]:
    """`{"train.batch_size": 64, ...}` of a nested mapping; lists and tuples are leaves."""
    return nested.flatten(config)


def as_json(config: Any) -> dict[str, Any]:
    """The config as run.json stores it (tuples as lists, other objects as strings)."""
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return json.loads(json.dumps(config, default=str))


MISSING = "<absent>"


def config_changes(stored: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, list]:
    """`{dotted key: [old, new]}` for every difference that can change the result."""
    old, new = flatten(as_json(stored)), flatten(as_json(current))
    changes = {}
    for key in sorted(set(old) | set(new)):
        if key in RESULT_NEUTRAL_KEYS:
            continue
        before, after = old.get(key, MISSING), new.get(key, MISSING)
        if before != after:
            changes[key] = [before, after]
    return changes


def describe_changes(changes: Mapping[str, list]) -> str:
    return ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items())
