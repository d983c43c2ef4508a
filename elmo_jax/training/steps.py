"""Training a biLM from scratch: bilm-tf's `LanguageModel` loss, its Adagrad step, evaluation
with the full softmax, and export in the released layout.

The model is the inference biLM (`char_cnn_apply`, `bilstm_directional`) plus a softmax that
both directions share (bilm-tf's `lm/softmax/W` [V, P] and `b` [V]; `share_embedding_softmax`
only exists for word inputs). Training follows `bilm/training.py`:

* each direction reads its own stream (`train_data.BidirectionalBatches`); the LSTM state of
  every row is carried from window to window and never reset (truncated BPTT);
* dropout (0.1) on the input of every LSTM layer, the residual adding the dropped input, and on
  the top layer's output before the softmax;
* per direction the mean sampled-softmax loss (`sampled_softmax`), the total loss their average;
* the gradient is that of `loss * unroll_steps` (bilm-tf's `compute_gradients(loss *
  unroll_steps)`), clipped to a *global* norm of 10 over all parameters, then TensorFlow's
  Adagrad (lr 0.2, accumulators starting at 1.0, no epsilon).

The training state (a checkpointable `ulmfit_jax.core.runner.train_state.TrainState`, as
`ulmfit_jax.stages.lm_steps`'s): params `{"bilm": ..., "softmax": {"w", "b"}}`, key uint32[4]
("rbg" RNG key data), lstm_state `{"h": [L, 2, B, P], "c": [L, 2, B, C]}`.

Steps run over a mesh of devices (`ulmfit_jax.core.runner.sharding`; default: all of them): the
batch (`[2, B, ...]`) and the carried state (`[L, 2, B, ...]`) split on their B axis, everything
else replicated. The "rbg" dropout keys give the same masks however the batch is split.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import optax

from elmo_jax.model.char_cnn import char_cnn_apply
from elmo_jax.model.config import BiLMConfig
from elmo_jax.model.init import init_bilm
from elmo_jax.model.lstmp import bilstm_directional, zero_state
from elmo_jax.training.data import BidirectionalBatches, BiLMBatch, Vocabulary
from elmo_jax.training.sampled_softmax import (
    Negatives,
    draw_negatives,
    full_softmax_loss,
    sampled_softmax_loss,
)
from elmo_jax.weights.allennlp import save_allennlp
from ulmfit_jax.core.runner import sharding
from ulmfit_jax.core.runner.step import TrainStep
from ulmfit_jax.core.runner.train_state import TrainState

Params = dict

# Dropout keys use XLA's RngBitGenerator: threefry's bit generation takes ~1 s per distinct
# draw to compile on CPU (three per step here), "rbg" ~0.1 s. Runs stay deterministic.
KEY_IMPL = "rbg"


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """bilm-tf's training options (`bin/train_elmo.py`), hashable for `jit`.

    Attributes:
      dropout: bilm-tf `dropout`.
      unroll_steps: window length; the loss is scaled by it before differentiation.
      learning_rate: Adagrad learning rate (`learning_rate`, default 0.2).
      initial_accumulator_value: Adagrad's starting accumulator (1.0 in bilm-tf).
      clip_norm: global gradient-norm clip (`all_clip_norm_val`); 0 disables it.
      n_negative_samples: sampled classes per direction and batch
        (`n_negative_samples_batch`).
      sample_softmax: train with the sampled softmax (bilm-tf's default) or the full one.
      shared_negatives: one draw for both directions (False: one per direction, as bilm-tf).
      remove_accidental_hits: TensorFlow's default for the sampled softmax.
    """

    dropout: float = 0.1
    unroll_steps: int = 20
    learning_rate: float = 0.2
    initial_accumulator_value: float = 1.0
    clip_norm: float = 10.0
    n_negative_samples: int = 8192
    sample_softmax: bool = True
    shared_negatives: bool = False
    remove_accidental_hits: bool = True


def init_softmax(rng: jax.Array, vocab_size: int, projection_dim: int) -> Params:
    """bilm-tf's softmax: W normal(0, 1/sqrt(P)) [V, P], b zeros [V]."""
    w = jax.random.normal(rng, (vocab_size, projection_dim), jnp.float32)
    return {"w": w / np.sqrt(projection_dim), "b": jnp.zeros((vocab_size,), jnp.float32)}


def init_pretraining_params(rng: jax.Array, config: BiLMConfig, vocab_size: int) -> Params:
    """`{"bilm": init_bilm(...), "softmax": init_softmax(...)}`."""
    k_bilm, k_softmax = jax.random.split(rng)
    return {
        "bilm": init_bilm(k_bilm, config),
        "softmax": init_softmax(k_softmax, vocab_size, config.projection_dim),
    }


def make_bilm_optimizer(options: TrainOptions) -> optax.GradientTransformation:
    """Global-norm clipping, then TensorFlow's `AdagradOptimizer` (which has no epsilon)."""
    adagrad = optax.adagrad(
        options.learning_rate,
        initial_accumulator_value=options.initial_accumulator_value,
        eps=0.0,
    )
    if options.clip_norm:
        return optax.chain(optax.clip_by_global_norm(options.clip_norm), adagrad)
    return adagrad


def lm_top_layer(
    params: Params,
    config: BiLMConfig,
    chars: jax.Array,
    state: dict,
    *,
    dropout: float = 0.0,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, dict]:
    """The top LSTM layer of both directions, what the softmax reads.

    Args:
      params: `{"bilm": ..., ...}`.
      config: the biLM config.
      chars: int[2, B, T, max_characters_per_token], each direction in its reading order.
      state: the carried LSTM state.
      dropout: training dropout (0 for evaluation).
      rng: dropout key, needed when `dropout > 0`.

    Returns:
      `(top, new_state)`: float[2, B, T, P] and the state after the window.
    """
    emb = char_cnn_apply(params["bilm"]["char_cnn"], config, chars)  # [2, B, T, P]
    k_lstm, k_out = jax.random.split(rng) if dropout > 0.0 else (None, None)
    outputs, state = bilstm_directional(
        params["bilm"]["lstm"], config, emb, state, dropout=dropout, rng=k_lstm
    )
    top = outputs[-1]
    if dropout > 0.0:  # bilm-tf: `tf.nn.dropout(lstm_output_flat, keep_prob)` before the softmax
        keep = jax.random.bernoulli(k_out, 1.0 - dropout, top.shape)
        top = jnp.where(keep, top / (1.0 - dropout), 0.0)
    return top, state


def _direction_losses(
    params, top, targets, negatives, options: TrainOptions, sampled: bool, compute_dtype=None
):
    """Mean loss per direction: float[2]. Logits and losses are float32 for any compute dtype."""
    w, b = params["softmax"]["w"], params["softmax"]["b"]
    losses = []
    for d in range(2):
        h = top[d].reshape(-1, top.shape[-1])
        y = targets[d].reshape(-1)
        if sampled:
            ids, expected, tries = negatives
            per_position = sampled_softmax_loss(
                w,
                b,
                h,
                y,
                ids[d],
                expected[d],
                tries[d],
                remove_accidental_hits=options.remove_accidental_hits,
                compute_dtype=compute_dtype,
            )
        else:
            per_position = full_softmax_loss(w, b, h, y, compute_dtype=compute_dtype)
        losses.append(jnp.mean(per_position))
    return jnp.stack(losses)


# Where the batch axis of each array is: chars [2, B, T, C], targets [2, B, T], the carried
# state [L, 2, B, ...].
BATCH_AXIS, STATE_BATCH_AXIS = 1, 2


@functools.lru_cache(maxsize=8)
def make_train_step(
    config: BiLMConfig, options: TrainOptions, mesh: jax.sharding.Mesh | None = None
):
    """A `TrainStep` `(state, BiLMBatch) -> (state, metrics)`, jitted with the state donated.

    The optimizer is `make_bilm_optimizer(options)`. The batch's `negatives` is a `Negatives` (the
    same on every host; ignored with the full softmax); metrics are `loss` (the average of the
    two directions' mean losses, unscaled), `forward_loss`, `backward_loss` and `grad_norm`
    (before clipping, of the scaled loss, as bilm-tf's `norm_grad` summary). Cached per
    (config, options), so a resumed or repeated run in one process reuses the compiled step.

    The step runs over `mesh` (default: every device): the batch holds this host's rows
    (`BidirectionalBatches(shard_index=jax.process_index(), ...)`), split over the devices with
    the carried state, so the batch size must be a multiple of `mesh.size` (a `ValueError` says
    so otherwise).
    """
    optimizer = make_bilm_optimizer(options)
    mesh = sharding.make_mesh() if mesh is None else mesh
    rep = sharding.replicated(mesh)
    rows = sharding.batch_sharding(mesh, BATCH_AXIS)
    state_rows = sharding.batch_sharding(mesh, STATE_BATCH_AXIS)
    state_sharding = TrainState(step=rep, params=rep, opt_state=rep, key=rep, lstm_state=state_rows)

    def loss_fn(params, lstm_state, chars, targets, negatives, key):
        top, lstm_state = lm_top_layer(
            params, config, chars, lstm_state, dropout=options.dropout, rng=key
        )
        losses = _direction_losses(
            params,
            top,
            targets,
            negatives,
            options,
            sampled=options.sample_softmax,
            compute_dtype=config.compute_dtype,
        )
        loss = 0.5 * (losses[0] + losses[1])
        return loss * options.unroll_steps, (lstm_state, loss, losses)

    @functools.partial(
        jax.jit,
        donate_argnums=0,
        in_shardings=(state_sharding, BiLMBatch(rows, rows, rep)),
        out_shardings=(state_sharding, rep),
    )
    def jitted(state: TrainState, batch: BiLMBatch):
        next_key, step_key = state.split_key(KEY_IMPL)
        negatives = Negatives(*batch.negatives)
        grads, (lstm_state, loss, losses) = jax.grad(loss_fn, has_aux=True)(
            state.params, state.lstm_state, batch.chars, batch.targets, negatives, step_key
        )
        new_state = state.apply_gradients(grads, optimizer, next_key, lstm_state=lstm_state)
        metrics = {
            "loss": loss,
            "forward_loss": losses[0],
            "backward_loss": losses[1],
            "grad_norm": optax.tree.norm(grads),
        }
        return new_state, metrics

    return TrainStep(
        jitted,
        mesh,
        row_fields=("chars", "targets"),
        row_axis=BATCH_AXIS,
        state_batch_axis=STATE_BATCH_AXIS,
        what="biLM batch size",
    )


class NegativeSampling:
    """Wraps a `BidirectionalBatches` to attach each batch's sampled classes.

    The draw for batch i comes from `numpy.random.default_rng([seed, i])`, so it depends only
    on the batch's position: a resumed run draws exactly what the uninterrupted one did.
    Exposes `position()` of the wrapped iterator for `train_loop`.
    """

    def __init__(
        self, batches: BidirectionalBatches, options: TrainOptions, vocab_size: int, seed: int
    ):
        self.batches, self.options, self.vocab_size, self.seed = batches, options, vocab_size, seed
        if options.sample_softmax and options.n_negative_samples > vocab_size:
            raise ValueError(
                f"n_negative_samples ({options.n_negative_samples}) exceeds the vocabulary "
                f"({vocab_size} words); lower it or set sample_softmax=False"
            )

    def position(self) -> dict:
        return self.batches.position()

    def __iter__(self) -> NegativeSampling:
        return self

    def __next__(self) -> BiLMBatch:
        index = self.batches.batches
        batch = next(self.batches)
        if not self.options.sample_softmax:
            dummy = Negatives(
                np.zeros((2, 1), np.int32), np.ones((2, 1), np.float32), np.ones(2, np.int32)
            )
            return batch._replace(negatives=dummy)
        rng = np.random.default_rng([self.seed, index])
        negatives = draw_negatives(
            rng,
            self.options.n_negative_samples,
            self.vocab_size,
            shared=self.options.shared_negatives,
        )
        return batch._replace(negatives=negatives)


@functools.lru_cache(maxsize=16)
def _eval_window(config: BiLMConfig, mesh: jax.sharding.Mesh, split: bool):
    rep = sharding.replicated(mesh)
    rows = sharding.batch_sharding(mesh, BATCH_AXIS) if split else rep
    state_rows = sharding.batch_sharding(mesh, STATE_BATCH_AXIS) if split else rep

    @functools.partial(
        jax.jit, in_shardings=(rep, state_rows, rows, rows), out_shardings=(rep, state_rows)
    )
    def window(params, lstm_state, chars, targets):
        top, lstm_state = lm_top_layer(params, config, chars, lstm_state)
        w, b = params["softmax"]["w"], params["softmax"]["b"]
        nll = [
            jnp.sum(
                full_softmax_loss(
                    w,
                    b,
                    top[d].reshape(-1, top.shape[-1]),
                    targets[d].reshape(-1),
                    compute_dtype=config.compute_dtype,
                )
            )
            for d in range(2)
        ]
        return jnp.stack(nll), lstm_state

    return window


def evaluate(
    params: Params,
    config: BiLMConfig,
    batches: Iterable[BiLMBatch],
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, float]:
    """Full-softmax loss and perplexity over a test-mode stream (bilm-tf's `test`), the LSTM
    state carried from window to window.

    The batches are global (every host reads the same ones); their rows are split over `mesh`
    (default: every device) when they divide evenly, else every device computes all of them.

    Returns:
      `loss` (mean of the two directions' mean losses; bilm-tf's reported perplexity is its
      exp), `perplexity`, `forward_perplexity`, `backward_perplexity` and `tokens` (per
      direction).
    """
    mesh = sharding.make_mesh() if mesh is None else mesh
    params = sharding.put_replicated(params, mesh)
    nll, count, state = np.zeros(2), 0, None
    for batch in batches:
        rows = batch.targets.shape[BATCH_AXIS]
        split = sharding.fits(mesh, rows)
        if state is None:
            state_place = sharding.batch_sharding(mesh, STATE_BATCH_AXIS) if split else None
            state = sharding.put_tree(
                zero_state(config, rows), state_place or sharding.replicated(mesh)
            )
        place = sharding.batch_sharding(mesh, BATCH_AXIS) if split else sharding.replicated(mesh)
        chars, targets = sharding.put_tree((batch.chars, batch.targets), place)
        window, state = _eval_window(config, mesh, split)(params, state, chars, targets)
        nll += np.asarray(window, np.float64)
        count += batch.targets[0].size
    if count == 0:
        raise ValueError("no evaluation tokens: the validation corpus is smaller than one batch")
    forward, backward = nll / count
    loss = 0.5 * (forward + backward)
    return {
        "loss": float(loss),
        "perplexity": math.exp(loss),
        "forward_perplexity": math.exp(forward),
        "backward_perplexity": math.exp(backward),
        "tokens": count,
    }


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------

WEIGHTS_FILE, OPTIONS_FILE, VOCAB_FILE, SOFTMAX_FILE = (
    "lm_weights.hdf5",
    "options.json",
    "vocab.txt",
    "softmax_weights.hdf5",
)


def export_bilm(
    directory: str | os.PathLike,
    params: Params,
    config: BiLMConfig,
    vocab: Vocabulary,
    training_options: dict[str, Any] | None = None,
) -> Path:
    """Write a trained biLM as bilm-tf's `dump_weights` + options + vocabulary.

    Files: `options.json` (the model options, which `load_allennlp`, AllenNLP and bilm-tf read,
    plus the training options for the record), `lm_weights.hdf5` (released layout, no
    softmax, as `dump_weights`), `vocab.txt`, and `softmax_weights.hdf5` (`softmax/W`,
    `softmax/b`; kept apart so the weight file stays exactly the released layout).

    Returns:
      the directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_allennlp(params["bilm"], config, directory / WEIGHTS_FILE)
    options = config.to_options()
    options.update({"bidirectional": True, "n_tokens_vocab": len(vocab)})
    options.update(training_options or {})
    with open(directory / OPTIONS_FILE, "w", encoding="utf-8") as f:
        json.dump(options, f, indent=2)
    vocab.save(directory / VOCAB_FILE)
    with h5py.File(directory / SOFTMAX_FILE, "w") as fout:
        fout.create_dataset("softmax/W", data=np.asarray(params["softmax"]["w"], np.float32))
        fout.create_dataset("softmax/b", data=np.asarray(params["softmax"]["b"], np.float32))
    return directory


def load_softmax(path: str | os.PathLike) -> Params:
    """The softmax of an exported biLM: `{"w": float[V, P], "b": float[V]}`."""
    with h5py.File(path, "r") as fin:
        return {"w": jnp.asarray(fin["softmax/W"][...]), "b": jnp.asarray(fin["softmax/b"][...])}
