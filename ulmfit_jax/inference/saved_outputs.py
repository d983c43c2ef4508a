"""A classifier stage's outputs on the test split, kept in `WORKDIR/test_outputs.npz`.

The stage scores the test split once, at the end (`eval.test_at_end`); keeping the outputs
lets an ensemble of stages (ULMFiT's forward+backward average) be scored from these small
files alone, without the models or a second pass over the test texts, so a results table
survives losing the checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

TEST_OUTPUTS = "test_outputs.npz"


def save_test_outputs(
    workdir: str | Path, outputs: np.ndarray, targets: np.ndarray, label_names: Sequence[str]
) -> Path:
    """Write `outputs float32[n, n_class]` (probabilities, input order), `targets [n, ...]` and
    the label names to `WORKDIR/test_outputs.npz`, atomically."""
    path = Path(workdir) / TEST_OUTPUTS
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        outputs=np.asarray(outputs, np.float32),
        targets=np.asarray(targets),
        label_names=np.asarray(list(label_names), dtype=str),
    )
    os.replace(tmp, path)
    return path


def load_test_outputs(workdir: str | Path) -> dict[str, np.ndarray]:
    """`{"outputs", "targets", "label_names"}` of a finished stage's `test_outputs.npz`."""
    path = Path(workdir) / TEST_OUTPUTS
    if not path.is_file():
        raise FileNotFoundError(
            f"{workdir} has no {TEST_OUTPUTS}: the stage has not finished with "
            "eval.test_at_end=True"
        )
    with np.load(path) as saved:
        return {k: saved[k] for k in ("outputs", "targets", "label_names")}


def ensemble_accuracy(workdirs: Sequence[str | Path]) -> float:
    """Accuracy on the test split of the mean of single-label stages' saved probabilities.

    The stages must have scored the same test examples (same targets, in the same order) with
    the same labels; anything else is refused rather than averaged."""
    if not workdirs:
        raise ValueError("no stages to ensemble")
    members = [load_test_outputs(w) for w in workdirs]
    first = members[0]
    for w, m in zip(workdirs[1:], members[1:], strict=True):
        if list(m["label_names"]) != list(first["label_names"]):
            raise ValueError(
                f"{w} has labels {list(m['label_names'])}, {workdirs[0]} has "
                f"{list(first['label_names'])}: they cannot be averaged"
            )
        if m["targets"].shape != first["targets"].shape or (m["targets"] != first["targets"]).any():
            raise ValueError(f"{w} and {workdirs[0]} scored different test examples")
    if first["targets"].ndim != 1:
        raise ValueError("ensemble_accuracy is for single-label stages (targets int[n])")
    mean = np.mean([m["outputs"] for m in members], axis=0)
    return float(np.mean(np.argmax(mean, axis=-1) == first["targets"]))
