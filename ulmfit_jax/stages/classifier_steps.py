"""Classifier training and evaluation steps (ULMFiT stage 3).

The state is a `TrainState` without a carried LSTM state (see ulmfit_jax.stages.lm_steps).
The loss is cross-entropy plus fastai's AR/TAR on the encoder outputs that BPT3C keeps (fastai's
`TextLearner` uses alpha=2, beta=1 for classifiers too; here the means run over the kept real
steps, so they do not depend on padding). BatchNorm running statistics are written back after
each step; the optimiser must leave them alone (they are labelled "batch_stats").

Steps run over a mesh of devices (`ulmfit_jax.core.runner.sharding`; default: all of them), the
batch split by rows and everything else replicated; BatchNorm's batch statistics are those of the
global batch (what one device computes). Evaluation lives in `ulmfit_jax.inference.batch_predict`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from ulmfit_jax.batching.classifier_batches import ClassifierBatch
from ulmfit_jax.core.runner import sharding
from ulmfit_jax.core.runner.step import TrainStep
from ulmfit_jax.core.runner.train_state import TrainState
from ulmfit_jax.models import awd_lstm, classifier
from ulmfit_jax.models.classifier import ClassifierConfig

LOSSES = ("cross_entropy", "bce", "mse")


def make_task_loss(kind: str = "cross_entropy", class_weights=None):
    """`(logits, labels, weights) -> (loss, metrics)` for one kind of label.

    "cross_entropy": labels int32[batch] (fastai's `CrossEntropyLossFlat`, optionally with
    per-class `class_weights`: the weighted mean, as PyTorch's `weight=`); "bce": multi-hot
    float32[batch, n_class] (`BCEWithLogitsLossFlat`, accuracy at threshold 0.5 as fastai's
    `accuracy_multi`); "mse": float32[batch] targets against the single output (`MSELossFlat`).
    `weights` float32[batch] is 0 for filler rows.
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown classifier loss {kind!r}: expected one of {LOSSES}")
    cw = None if not class_weights else jnp.asarray(class_weights, jnp.float32)

    def task_loss(logits, labels, weights):
        count = jnp.maximum(jnp.sum(weights), 1.0)
        if kind == "cross_entropy":
            nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
            if cw is None:
                loss = jnp.sum(nll * weights) / count
            else:
                w = weights * cw[labels]
                loss = jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1e-12)
            correct = jnp.sum((jnp.argmax(logits, -1) == labels) * weights)
            return loss, {"loss": loss, "accuracy": correct / count}
        if kind == "bce":
            per = optax.sigmoid_binary_cross_entropy(logits, labels).mean(-1)
            loss = jnp.sum(per * weights) / count
            hits = ((logits > 0) == (labels > 0.5)).mean(-1)
            return loss, {"loss": loss, "accuracy": jnp.sum(hits * weights) / count}
        err = jnp.square(logits[:, 0] - labels)
        loss = jnp.sum(err * weights) / count
        return loss, {"loss": loss, "mse": loss}

    return task_loss


def make_classifier_train_step(
    config: ClassifierConfig,
    optimizer: optax.GradientTransformation,
    *,
    alpha: float = 2.0,
    beta: float = 1.0,
    mesh: jax.sharding.Mesh | None = None,
    loss: str = "cross_entropy",
    class_weights: tuple[float, ...] | None = None,
) -> TrainStep:
    """A `TrainStep` `(state, ClassifierBatch) -> (state, metrics)`, jitted with the state
    donated.

    The batch's `trainable` holds `ulmfit_jax.optim.optimizer`'s per-group flags (traced: one
    compilation serves every phase of gradual unfreezing); its filler rows (index -1) weigh 0
    in the loss. `loss` / `class_weights`: see `make_task_loss`; `labels` has that loss's shape.

    The step runs over `mesh` (default: every device), the batch rows split over its devices:
    the batch size must be a multiple of `mesh.size` (a `ValueError` says so otherwise).
    """
    mesh = sharding.make_mesh() if mesh is None else mesh
    rep, rows = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    task_loss = make_task_loss(loss, class_weights)

    def loss_fn(params, tokens, lengths, labels, weights, key):
        logits, stats, outputs, keep = classifier.classifier_forward(
            params, config, tokens, lengths, key
        )
        data_loss, metrics = task_loss(logits, labels, weights)
        keep = keep & (weights[:, None] > 0)
        reg = awd_lstm.ar_tar_penalty(outputs, outputs, alpha, beta, mask=keep)
        return data_loss + reg, (stats, metrics)

    @functools.partial(
        jax.jit,
        donate_argnums=0,
        in_shardings=(rep, ClassifierBatch(rows, rows, rows, rows, rep)),
        out_shardings=(rep, rep),
    )
    def jitted(state: TrainState, batch: ClassifierBatch):
        next_key, step_key = state.split_key()
        weights = (batch.indices >= 0).astype(jnp.float32)
        grads, (stats, metrics) = jax.grad(loss_fn, has_aux=True)(
            state.params, batch.tokens, batch.lengths, batch.labels, weights, step_key
        )
        new_state = state.apply_gradients(grads, optimizer, next_key, trainable=batch.trainable)
        params = classifier.merge_batch_stats(new_state.params, stats)
        return new_state.replace(params=params), metrics

    return TrainStep(
        jitted,
        mesh,
        row_fields=("tokens", "lengths", "labels", "indices"),
        what="classifier batch size",
    )
