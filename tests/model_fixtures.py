"""Helpers the model-file tests share: tiny exports written as the stages write them, and an
exact comparison of parameter trees."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from ulmfit_jax.models import classifier
from ulmfit_jax.weights.export import export_params


def assert_trees_equal(a, b) -> None:
    """The same tree structure and bit-identical leaves."""
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def write_classifier_export(
    workdir: Path, vocab: Sequence[str], label_names: Sequence[str], **meta
) -> Path:
    """A classify stage's export (random weights of a tiny model, real metadata) in `workdir`."""
    config = classifier.ClassifierConfig(
        vocab_size=len(vocab),
        n_class=len(label_names),
        emb_sz=8,
        n_hid=12,
        n_layers=2,
        lin_ftrs=(6,),
        bptt=4,
    )
    params = classifier.init_classifier_params(jax.random.key(0), config)
    labels = {"kind": "single", "names": list(label_names), "delim": "", "threshold": 0.5}
    record = {
        "stage": "classify",
        "vocab": list(vocab),
        "model": dataclasses.asdict(config),
        "backward": False,
        "label_names": list(label_names),
        "labels": labels,
        "max_tokens": 0,
        **meta,
    }
    export_params(workdir, params, record)
    return workdir
