"""Classifier probabilities for whole evaluation passes, split over a device mesh.

The batches are global (every host passes the same ones). Each is padded with filler rows
(index -1) up to a multiple of the device count, and those rows are dropped afterwards, so
any batch size gives exact results, returned in the examples' input order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import jax
import numpy as np

from ulmfit_jax.core.runner import sharding
from ulmfit_jax.models import classifier
from ulmfit_jax.models.classifier import ClassifierConfig

ACTIVATIONS = {"softmax": jax.nn.softmax, "sigmoid": jax.nn.sigmoid, "identity": lambda x: x}


@functools.lru_cache(maxsize=16)
def _sharded_predict(config: ClassifierConfig, mesh: jax.sharding.Mesh):
    rep, rows = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    # Logits come back replicated: small, and readable on every host.
    return jax.jit(
        lambda params, tokens, lengths: classifier.classifier_forward(
            params, config, tokens, lengths
        )[0],
        in_shardings=(rep, rows, rows),
        out_shardings=rep,
    )


def pad_rows(batch, multiple: int, pad_id: int = 1):
    """A `ClassifierBatch` with filler rows (index -1, length 1) appended up to a multiple of
    `multiple` rows, so that it splits over that many devices."""
    extra = -len(batch.indices) % multiple
    if not extra:
        return batch
    tokens = np.concatenate([batch.tokens, np.full((extra, batch.tokens.shape[1]), pad_id)])
    return type(batch)(
        tokens.astype(batch.tokens.dtype),
        np.concatenate([batch.lengths, np.ones(extra, batch.lengths.dtype)]),
        np.concatenate([batch.labels, np.zeros(extra, batch.labels.dtype)]),
        np.concatenate([batch.indices, np.full(extra, -1, batch.indices.dtype)]),
    )


def predict_batches(
    params,
    config: ClassifierConfig,
    batches: Iterable,
    mesh: jax.sharding.Mesh | None = None,
    activation: str = "softmax",
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities for every example of an evaluation pass, back in input order.

    The batches are global (every host passes the same ones). Their rows are split over `mesh`
    (default: every device), after filler rows pad them to a multiple of its size.

    Args:
      activation: "softmax" (single-label probabilities), "sigmoid" (multi-label) or
        "identity" (regression outputs).

    Returns:
      `(outputs float32[n, n_class], labels [n, ...])` ordered by the examples' input index.
    """
    mesh = sharding.make_mesh() if mesh is None else mesh
    params = sharding.put_replicated(params, mesh)
    predict = _sharded_predict(config, mesh)
    probs, labels, indices = [], [], []
    for batch in batches:
        batch = pad_rows(batch, mesh.size)
        inputs = sharding.put_tree((batch.tokens, batch.lengths), sharding.batch_sharding(mesh))
        logits = predict(params, *inputs)
        real = np.asarray(batch.indices) >= 0
        probs.append(np.asarray(ACTIVATIONS[activation](logits))[real])
        labels.append(np.asarray(batch.labels)[real])
        indices.append(np.asarray(batch.indices)[real])
    order = np.argsort(np.concatenate(indices), kind="stable")
    return np.concatenate(probs)[order], np.concatenate(labels)[order]
