"""Which files hold which split of a local dataset: `data.splits`, or the format's defaults.

`data.path` is a folder (or one file, which is then the `train` split, or the folder's only
file for the format's patterns); `data.splits="train=a*.txt,test=b.txt"` names each split's
files by glob, relative to it. Without `data.splits` a format's default patterns apply (a
default split whose pattern matches nothing is left out: WikiText-103 often comes without
train). Files of one split are read in sorted order, so record numbers are reproducible.
"""

from __future__ import annotations

import glob
import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ulmfit_jax.core.data.spec import DataSpec


def root_of(spec: DataSpec) -> pathlib.Path:
    """`data.path`, which must exist."""
    root = pathlib.Path(spec.path).expanduser()
    if not spec.path or not root.exists():
        raise FileNotFoundError(f"data.path {str(root)!r} does not exist ({spec.format} files)")
    return root


def expand(root: pathlib.Path, pattern: str) -> list[pathlib.Path]:
    """The paths matching `pattern` under `root`, sorted."""
    return sorted(pathlib.Path(p) for p in glob.glob(str(root / pattern)))


def split_files(
    spec: DataSpec, split: str, defaults: Mapping[str, str] | None = None
) -> list[pathlib.Path]:
    """The files (or folders) of `split`, in reading order (module docstring).

    Raises:
        FileNotFoundError: `data.path` is missing, or nothing matches the split's pattern.
        ValueError: the split is not one the data has (the message lists those it has).
    """
    root = root_of(spec)
    if root.is_file():
        if spec.splits or split != "train":
            raise ValueError(
                f"data.path {root} is one file, the train split; {split!r} needs a folder "
                "and data.splits"
            )
        return [root]
    patterns = dict(spec.splits) or dict(defaults or {"train": "*"})
    if split not in patterns:
        have = [name for name, pattern in patterns.items() if spec.splits or expand(root, pattern)]
        raise ValueError(f"{root} has no split {split!r} ({spec.format}): it has {have}")
    paths = expand(root, patterns[split])
    if not paths:
        raise FileNotFoundError(
            f"split {split!r}: no file matches {patterns[split]!r} under {root}"
        )
    return paths
