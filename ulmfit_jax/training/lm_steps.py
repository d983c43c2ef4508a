"""Language-model training and evaluation steps (ULMFiT stages 1 and 2).

The training state is one pytree, so a checkpoint of it resumes a run exactly:

    {"step": int32[], "params": ..., "opt_state": ..., "key": uint32[2] (RNG key data),
     "lstm_state": ((h, c), ...)}        # the stream's carried state, one pair per layer

`make_lm_train_step` returns a jitted `(state, batch) -> (state, metrics)` with the state
donated, over a mesh of devices (`ulmfit_jax.core.training.sharding`; default: all of them):
parameters, optimiser state, step and key replicated, the batch and the carried LSTM state split by
rows. The loss is fastai's: cross-entropy over real positions, plus AR/TAR in training;
variable-length windows arrive right-padded with `lengths` and are masked; the learning rate
of a window is scaled by `lr_scale = seq_len / bptt`, as the AWD-LSTM recipe does.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ulmfit_jax.core.training import sharding
from ulmfit_jax.core.training.train_state import apply_gradients, split_key
from ulmfit_jax.models import awd_lstm
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig


def reset_lstm_state(state: dict[str, Any]) -> dict[str, Any]:
    """Zero the carried state (at each epoch start, as fastai's ModelResetter does)."""
    zeros = jax.tree.map(lambda x: jnp.zeros_like(x, device=x.sharding), state["lstm_state"])
    return {**state, "lstm_state": zeros}


def masked_lm_loss(
    logits: jax.Array, targets: jax.Array, lengths: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Summed cross-entropy, summed correct predictions and the number of real positions.

    logits: float32[batch, time, vocab]; targets: int32[batch, time]; lengths: int32[batch].
    """
    mask = jnp.arange(targets.shape[1])[None, :] < lengths[:, None]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = (jnp.argmax(logits, -1) == targets) & mask
    return jnp.sum(nll * mask), jnp.sum(correct), jnp.sum(mask)


def make_lm_train_step(
    config: AWDLSTMConfig,
    optimizer: optax.GradientTransformation,
    *,
    alpha: float = 2.0,
    beta: float = 1.0,
    mesh: jax.sharding.Mesh | None = None,
):
    """A jitted step `(state, tokens, targets, lengths, lr_scale, trainable) -> (state, metrics)`.

    `optimizer` is `ulmfit_jax.training.optim.make_optimizer(...)`; `trainable` its per-group flags
    (traced, so every stage of gradual unfreezing shares one compilation); `lr_scale`
    multiplies the step's updates.

    The step runs over `mesh` (default `sharding.make_mesh()`, every device): the batch rows and
    the carried state are split over its devices, so the batch size must be a multiple of
    `mesh.size` (a `ValueError` says so otherwise). Arguments may be numpy or arrays placed
    anywhere (they are moved onto the mesh); the returned state lives on the mesh.
    """
    mesh = sharding.make_mesh() if mesh is None else mesh
    rep, rows = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    state_sharding = {k: rep for k in ("step", "params", "opt_state", "key")}
    state_sharding["lstm_state"] = rows

    def loss_fn(params, lstm_state, tokens, targets, lengths, key):
        out = awd_lstm.lm_forward(
            params, config, tokens, lstm_state, train=True, rng=key, lengths=lengths
        )
        nll_sum, correct, count = masked_lm_loss(out.logits, targets, lengths)
        loss = nll_sum / jnp.maximum(count, 1)
        mask = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
        reg = awd_lstm.ar_tar_penalty(out.raw_output, out.dropped_output, alpha, beta, mask=mask)
        metrics = {"loss": loss, "accuracy": correct / jnp.maximum(count, 1)}
        return loss + reg, (out.state, metrics)

    @functools.partial(
        jax.jit,
        donate_argnums=0,
        in_shardings=(state_sharding, rows, rows, rows, rep, rep),
        out_shardings=(state_sharding, rep),
    )
    def jitted(state, tokens, targets, lengths, lr_scale, trainable):
        next_key, step_key = split_key(state)
        grads, (lstm_state, metrics) = jax.grad(loss_fn, has_aux=True)(
            state["params"], state["lstm_state"], tokens, targets, lengths, step_key
        )
        new_state = apply_gradients(
            state, grads, optimizer, next_key,
            trainable=trainable, lr_scale=lr_scale, lstm_state=lstm_state,
        )  # fmt: skip
        return new_state, metrics

    def train_step(state, tokens, targets, lengths, lr_scale, trainable):
        sharding.check_batch(mesh, tokens.shape[0], "language-model batch size (rows)")
        state = sharding.put_tree(state, state_sharding)
        tokens, targets, lengths = sharding.put_tree((tokens, targets, lengths), rows)
        lr_scale = sharding.put_replicated(np.asarray(lr_scale, np.float32), mesh)
        trainable = sharding.put_replicated(trainable, mesh)
        return jitted(state, tokens, targets, lengths, lr_scale, trainable)

    train_step.mesh, train_step.jitted = mesh, jitted
    return train_step


def lm_step_fn(train_step, trainable):
    """Adapt a train step to `ulmfit_jax.core.training.run.train_loop`'s `(state, LMBatch)`
    interface.

    `batch` holds this host's rows (`LMStream(shard_index=jax.process_index(), ...)`); they
    are assembled into the global batch on the step's mesh.
    """
    mesh = train_step.mesh
    trainable = sharding.put_replicated(trainable, mesh)

    def step(state, batch):
        tokens, targets, lengths = sharding.put_batch(
            (batch.tokens, batch.targets, batch.lengths), mesh
        )
        return train_step(state, tokens, targets, lengths, np.float32(batch.lr_scale), trainable)

    return step


@functools.lru_cache(maxsize=16)
def _eval_window(config: AWDLSTMConfig, mesh: jax.sharding.Mesh, split: bool):
    rep = sharding.replicated(mesh)
    rows = sharding.batch_sharding(mesh) if split else rep

    @functools.partial(
        jax.jit, in_shardings=(rep, rows, rows, rows, rows), out_shardings=((rep,) * 3, rows)
    )
    def window(params, lstm_state, tokens, targets, lengths):
        logits, lstm_state = awd_lstm.lm_apply(params, config, tokens, lstm_state, lengths=lengths)
        return masked_lm_loss(logits, targets, lengths), lstm_state

    return window


def evaluate_lm(
    params: dict[str, Any],
    config: AWDLSTMConfig,
    batches: Iterable,
    mesh: jax.sharding.Mesh | None = None,
) -> dict:
    """Loss, perplexity and next-token accuracy over a (non-shuffled) stream of `LMBatch`es,
    carrying the state from window to window as in training.

    The batches are global (every host passes the same ones); their rows are split over `mesh`
    (default: all devices) when they divide evenly, else every device computes the whole batch.
    """
    mesh = sharding.make_mesh() if mesh is None else mesh
    params = sharding.put_replicated(params, mesh)
    state, nll, correct, count = None, 0.0, 0, 0
    for batch in batches:
        rows = batch.tokens.shape[0]
        split = sharding.fits(mesh, rows)
        place = sharding.batch_sharding(mesh) if split else sharding.replicated(mesh)
        if state is None:
            state = sharding.put_tree(awd_lstm.zero_state(config, rows), place)
        window = _eval_window(config, mesh, split)
        inputs = sharding.put_tree((batch.tokens, batch.targets, batch.lengths), place)
        (b_nll, b_correct, b_count), state = window(params, state, *inputs)
        nll += float(b_nll)
        correct += int(b_correct)
        count += int(b_count)
    if count == 0:
        raise ValueError("no evaluation tokens: the validation stream is empty")
    loss = nll / count
    return {"loss": loss, "perplexity": float(np.exp(min(loss, 50.0))), "accuracy": correct / count}
