"""Classifier training and evaluation steps (ULMFiT stage 3).

State pytree: `{"step", "params", "opt_state", "key"}` (see ulmfit_jax.lm_training). The loss
is cross-entropy plus fastai's AR/TAR on the encoder outputs that BPT3C keeps (fastai's
`TextLearner` uses alpha=2, beta=1 for classifiers too; here the means run over the kept real
steps, so they do not depend on padding). BatchNorm running statistics are written back after
each step; the optimiser must leave them alone (they are labelled "batch_stats").

Steps run over a mesh of devices (`ulmfit_jax.sharding`; default: all of them), the batch split
by rows and everything else replicated; BatchNorm's batch statistics are those of the global
batch (what one device computes). Evaluation pads a batch with filler rows (index -1) up to a
multiple of the device count and drops them afterwards, so any batch size gives exact results.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ulmfit_jax import awd_lstm, classifier, sharding
from ulmfit_jax.classifier import ClassifierConfig


def init_classifier_train_state(params, optimizer, *, seed: int) -> dict[str, Any]:
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "opt_state": optimizer.init(params),
        "key": jax.random.key_data(jax.random.key(seed)),
    }


def _forward(params, config: ClassifierConfig, tokens, lengths, rng):
    enc_rng, head_rng = jax.random.split(rng) if rng is not None else (None, None)
    outputs, keep = classifier.bpt3c_encode(params["encoder"], config, tokens, lengths, enc_rng)
    pooled = classifier.masked_concat_pool(outputs, keep, lengths)
    logits, stats = classifier.head_apply(params["head"], config, pooled, head_rng)
    return logits, stats, outputs, keep


def make_classifier_train_step(
    config: ClassifierConfig,
    optimizer: optax.GradientTransformation,
    *,
    alpha: float = 2.0,
    beta: float = 1.0,
    mesh: jax.sharding.Mesh | None = None,
):
    """A jitted step `(state, tokens, lengths, labels, weights, trainable) -> (state, metrics)`.

    `trainable` holds `ulmfit_jax.optim`'s per-group flags (traced: one compilation serves
    every stage of gradual unfreezing).

    `weights` float32[batch] is 1 for real examples and 0 for filler rows of a short batch.

    The step runs over `mesh` (default: every device), the batch rows split over its devices:
    the batch size must be a multiple of `mesh.size` (a `ValueError` says so otherwise).
    """
    mesh = sharding.make_mesh() if mesh is None else mesh
    rep, rows = sharding.replicated(mesh), sharding.batch_sharding(mesh)

    def loss_fn(params, tokens, lengths, labels, weights, key):
        logits, stats, outputs, keep = _forward(params, config, tokens, lengths, key)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        count = jnp.maximum(jnp.sum(weights), 1.0)
        loss = jnp.sum(nll * weights) / count
        keep = keep & (weights[:, None] > 0)
        reg = awd_lstm.ar_tar_penalty(outputs, outputs, alpha, beta, mask=keep)
        correct = jnp.sum((jnp.argmax(logits, -1) == labels) * weights)
        return loss + reg, (stats, {"loss": loss, "accuracy": correct / count})

    @functools.partial(
        jax.jit,
        donate_argnums=0,
        in_shardings=(rep, rows, rows, rows, rows, rep),
        out_shardings=(rep, rep),
    )
    def jitted(state, tokens, lengths, labels, weights, trainable):
        key, step_key = jax.random.split(jax.random.wrap_key_data(state["key"]))
        grads, (stats, metrics) = jax.grad(loss_fn, has_aux=True)(
            state["params"], tokens, lengths, labels, weights, step_key
        )
        updates, opt_state = optimizer.update(
            grads, state["opt_state"], state["params"], trainable=trainable
        )
        params = optax.apply_updates(state["params"], updates)
        params = classifier.merge_batch_stats(params, stats)
        new_state = {
            "step": state["step"] + 1,
            "params": params,
            "opt_state": opt_state,
            "key": jax.random.key_data(key),
        }
        return new_state, metrics

    def train_step(state, tokens, lengths, labels, weights, trainable):
        sharding.check_batch(mesh, tokens.shape[0], "classifier batch size")
        state = sharding.put_replicated(state, mesh)
        batch = sharding.put_tree((tokens, lengths, labels, weights), rows)
        return jitted(state, *batch, sharding.put_replicated(trainable, mesh))

    train_step.mesh, train_step.jitted = mesh, jitted
    return train_step


def classifier_step_fn(train_step, trainable):
    """Adapt a train step to `ulmfit_jax.run.train_loop`'s `(state, ClassifierBatch)`.

    `batch` holds this host's rows (`ClassifierBatches(shard_index=jax.process_index(), ...)`),
    assembled into the global batch on the step's mesh.
    """
    mesh = train_step.mesh
    trainable = sharding.put_replicated(trainable, mesh)

    def step(state, batch):
        weights = (np.asarray(batch.indices) >= 0).astype(np.float32)
        inputs = sharding.put_batch((batch.tokens, batch.lengths, batch.labels, weights), mesh)
        return train_step(state, *inputs, trainable)

    return step


@functools.partial(jax.jit, static_argnums=1)
def predict_logits(params, config: ClassifierConfig, tokens, lengths):
    """Evaluation-mode logits for a padded batch (compiled once per padded width)."""
    return _forward(params, config, tokens, lengths, None)[0]


@functools.lru_cache(maxsize=16)
def _sharded_predict(config: ClassifierConfig, mesh: jax.sharding.Mesh):
    rep, rows = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    # Logits come back replicated: small, and readable on every host.
    return jax.jit(
        lambda params, tokens, lengths: _forward(params, config, tokens, lengths, None)[0],
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
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities for every example of an evaluation pass, back in input order.

    The batches are global (every host passes the same ones). Their rows are split over `mesh`
    (default: every device), after filler rows pad them to a multiple of its size.

    Returns:
      `(probs float32[n, n_class], labels int32[n])` ordered by the examples' input index.
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
        probs.append(np.asarray(jax.nn.softmax(logits))[real])
        labels.append(np.asarray(batch.labels)[real])
        indices.append(np.asarray(batch.indices)[real])
    order = np.argsort(np.concatenate(indices), kind="stable")
    return np.concatenate(probs)[order], np.concatenate(labels)[order]


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, -1) == labels))
