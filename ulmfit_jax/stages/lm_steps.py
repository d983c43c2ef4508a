"""Language-model training and evaluation steps (ULMFiT stages 1 and 2).

The training state is one pytree (`ulmfit_jax.core.runner.train_state.TrainState`, its
`lstm_state` the stream's carried `((h, c), ...)`, one pair per layer), so a checkpoint of it
resumes a run exactly.

`make_lm_train_step` returns a `TrainStep` (`(state, LMBatch) -> (state, metrics)`, the state
donated), over a mesh of devices (`ulmfit_jax.core.runner.sharding`; default: all of them):
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

from ulmfit_jax.batching.lm_stream import LMBatch
from ulmfit_jax.core.runner import sharding
from ulmfit_jax.core.runner.step import TrainStep
from ulmfit_jax.core.runner.train_state import TrainState
from ulmfit_jax.models import awd_lstm
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig


def reset_lstm_state(state: TrainState) -> TrainState:
    """Zero the carried state (at each epoch start, as fastai's ModelResetter does)."""
    zeros = jax.tree.map(lambda x: jnp.zeros_like(x, device=x.sharding), state.lstm_state)
    return state.replace(lstm_state=zeros)


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
) -> TrainStep:
    """A `TrainStep` `(state, LMBatch) -> (state, metrics)`, jitted with the state donated.

    `optimizer` is `ulmfit_jax.optim.optimizer.make_optimizer(...)`; the batch's `trainable`
    holds its per-group flags (traced, so every phase of gradual unfreezing shares one
    compilation) and its `lr_scale` multiplies the step's updates.

    The step runs over `mesh` (default `sharding.make_mesh()`, every device): the batch holds
    this host's rows, split over the devices with the carried state, so the batch size must be
    a multiple of `mesh.size` (a `ValueError` says so otherwise). The returned state lives on
    the mesh.
    """
    mesh = sharding.make_mesh() if mesh is None else mesh
    rep, rows = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    state_sharding = TrainState(step=rep, params=rep, opt_state=rep, key=rep, lstm_state=rows)
    batch_sharding = LMBatch(rows, rows, rows, rep, rep, rep)

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
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, rep),
    )
    def jitted(state: TrainState, batch: LMBatch):
        next_key, step_key = state.split_key()
        grads, (lstm_state, metrics) = jax.grad(loss_fn, has_aux=True)(
            state.params, state.lstm_state, batch.tokens, batch.targets, batch.lengths, step_key
        )
        new_state = state.apply_gradients(
            grads, optimizer, next_key,
            trainable=batch.trainable, lr_scale=batch.lr_scale, lstm_state=lstm_state,
        )  # fmt: skip
        return new_state, metrics

    return TrainStep(
        jitted,
        mesh,
        row_fields=("tokens", "targets", "lengths"),
        what="language-model batch size (rows)",
    )


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
