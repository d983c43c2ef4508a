"""Writing a program's output safely: never over a user's files, never half-written.

Every output folder (an export) and output file (predictions, embeddings) goes through here:

* It is built beside its destination (a hidden `.NAME.PID.partial` sibling) and renamed into
  place when complete, so a crash never leaves half an export and a reader never sees one.
* A folder carries an ownership marker, `FOLDER/.written_by.json`: the program, the stage, the
  epoch it holds, a hash of the config that produced it, when and by which process. A later run
  of the same program and stage knows the folder is its own and replaces it (a resumed run that
  picks a new best epoch exports again); anything else already there, a user's folder or another
  stage's export, is refused with a one-line error unless the caller passes `overwrite=True`.
* An output is checked against the run's inputs before anything is written: the same file, or
  an output folder that contains an input (replacing it would delete the input), is refused even
  with `overwrite`.

Nothing here knows either model family; callers say who they are (`owner_record`) and, for
exports written before the marker existed, how to recognise their own (`legacy_owner`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

MARKER = ".written_by.json"


class OutputRefused(FileExistsError):
    """An output would overwrite or delete something this run did not create, or an input."""


def config_hash(config: Any) -> str:
    """A short, stable hash of a JSON-able config (a mapping, `ConfigDict` or dataclass dict)."""
    if hasattr(config, "to_dict"):  # ml_collections.ConfigDict
        config = config.to_dict()
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def owner_record(
    program: str, stage: str, *, epoch: int | None = None, config: Any = None
) -> dict[str, Any]:
    """What a folder's marker records about the run that wrote it.

    Args:
      program: "ulmfit_jax" or "elmo_jax".
      stage: the stage or command ("classify", "finetune_lm", "converted_lm", "tag", ...).
      epoch: the (0-based) epoch whose parameters the output holds, when it has one.
      config: the config that produced it (hashed, not stored).
    """
    return {
        "program": program,
        "stage": stage,
        "epoch": epoch,
        "config_hash": None if config is None else config_hash(config),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def read_owner(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The marker of an output folder, or None when it has none (or an unreadable one)."""
    try:
        record = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _same_or_inside(path: Path, folder: Path) -> bool:
    """`path` is `folder` or lies inside it (after resolving links)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_not_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output that is one of the inputs or a folder holding one.

    Raises:
      OutputRefused: naming the output and the input it would destroy.
    """
    output = Path(output).expanduser()
    for given in inputs:
        if not given or "://" in os.fspath(given):  # nothing, or an address: never clobbered
            continue
        source = Path(given).expanduser()
        if _same_or_inside(source, output):
            what = "is the input" if source.resolve() == output.resolve() else "holds the input"
            raise OutputRefused(
                f"output {output} {what} {source}: writing it would destroy the input; "
                "choose another output path"
            )


def _describe_owner(owner: Mapping[str, Any] | None) -> str:
    if owner is None:
        return "was not written by this library (it has no " + MARKER + ")"
    return f"holds a {owner.get('program')} {owner.get('stage')!r} output"


def check_output_folder(
    folder: str | os.PathLike,
    owner: Mapping[str, Any],
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    legacy_owner: Callable[[Path], Mapping[str, Any] | None] | None = None,
) -> None:
    """Refuse to write `folder` unless it is missing, empty, this program and stage's own, or
    `overwrite` is set; and never when it is or holds one of `inputs`. Call it before the work
    that produces the output, so a refusal costs nothing.

    Args:
      folder: the output folder.
      owner: `owner_record(...)` of the run about to write it.
      inputs: the files and folders the run reads.
      overwrite: replace a folder that is not ours (the user asked for it explicitly).
      legacy_owner: recognises a folder written before markers existed (returns its owner
        record: at least program and stage), or None.

    Raises:
      OutputRefused: a one-line error naming the folder, what it holds and what to do.
    """
    folder = Path(folder).expanduser()
    check_not_input(folder, inputs)
    if folder.exists() and not folder.is_dir():
        raise OutputRefused(f"output folder {folder} is a file: choose another path")
    if not folder.is_dir() or not any(folder.iterdir()) or overwrite:
        return
    found = read_owner(folder) or (legacy_owner(folder) if legacy_owner else None)
    if found and (found.get("program"), found.get("stage")) == (owner["program"], owner["stage"]):
        return
    raise OutputRefused(
        f"output folder {folder} already exists and {_describe_owner(found)}, not this "
        f"{owner['program']} {owner['stage']!r} run's: choose another folder, or pass "
        "overwrite=True (--config.overwrite=True) to replace it"
    )


def _replace_folder(built: Path, folder: Path) -> None:
    """Move `built` to `folder`, replacing what is there; the old one is removed last."""
    if not folder.exists():
        os.replace(built, folder)
        return
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(folder, old)
    os.replace(built, folder)
    shutil.rmtree(old, ignore_errors=True)


def write_folder(
    folder: str | os.PathLike,
    write: Callable[[Path], None],
    owner: Mapping[str, Any],
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    legacy_owner: Callable[[Path], Mapping[str, Any] | None] | None = None,
) -> Path:
    """Build an output folder with `write(path)` beside `folder`, mark it as `owner`'s and
    rename it into place (`check_output_folder` first). Returns `folder`.

    A failure inside `write` removes the partial folder and leaves `folder` as it was.
    """
    folder = Path(folder).expanduser()
    check_output_folder(
        folder, owner, inputs=inputs, overwrite=overwrite, legacy_owner=legacy_owner
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    import jax

    # On several hosts every process writes its part of one collective checkpoint: they must
    # build the same folder, and only process 0 marks and renames it (the checkpoint's own
    # commit waits for every process first). On one host the pid keeps the name private.
    multihost = jax.process_count() > 1
    built = folder.with_name(f".{folder.name}.{'hosts' if multihost else os.getpid()}.partial")
    main = jax.process_index() == 0
    if main:
        shutil.rmtree(built, ignore_errors=True)
    built.mkdir(exist_ok=multihost)
    try:
        write(built)
        if main:
            (built / MARKER).write_text(json.dumps(dict(owner), indent=2, default=str))
            _replace_folder(built, folder)
    except BaseException:
        if main:
            shutil.rmtree(built, ignore_errors=True)
        raise
    return folder


def check_output_file(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    is_ours: Callable[[Path], bool] | None = None,
) -> None:
    """Refuse an output file that is one of `inputs` (always), a folder, or an existing
    non-empty file that `is_ours` does not recognise (unless `overwrite`).

    Raises:
      OutputRefused: a one-line error naming the file.
    """
    path = Path(path).expanduser()
    check_not_input(path, inputs)
    if path.is_dir():
        raise OutputRefused(f"output {path} is a folder: name a file to write")
    if overwrite or not path.is_file() or path.stat().st_size == 0:
        return
    if is_ours is not None and is_ours(path):
        return
    raise OutputRefused(
        f"output {path} already exists and was not written by this program: choose another "
        "output path, or delete it first"
    )


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it to `path` if the block completes and
    removes it if the block raises (KeyboardInterrupt included)."""
    path = Path(path)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    # Created here (mode 0o666 less the umask, as `open` would) so that h5py only truncates it.
    os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
