"""fastai's ULMFiT text classifier (`get_text_classifier`) as pure functions.

    logits = head(concat_pool(BPT3C(AWD-LSTM encoder)(document)))

Parameters:

    {
      "encoder": {...},                     # as in ulmfit_jax.models.awd_lstm
      "head": {
        "layer_0": {"bn": {"scale", "bias", "mean", "var"}, "linear": {"kernel": [in, out]}},
        "layer_1": {...},                   # one per LinBnDrop block
      }
    }

BatchNorm's running `mean`/`var` live beside its learned `scale`/`bias`; they are not
trained by gradients: `classifier_apply(..., train=True, return_batch_stats=True)` returns their
updated values and `merge_batch_stats` writes them back (`param_groups` labels them
"batch_stats" so optimisers leave them alone).

Padding. Documents are right-padded to a multiple of `bptt` and carry their lengths; a padded
step leaves the LSTM state unchanged and is masked out of the pooling, and BPT3C chunks start at
each document's first token exactly as when fastai runs that document alone. So a document's
logits do not depend on its batch or its padding.

Mixed precision (`compute_dtype="bfloat16"`): the encoder as in `ulmfit_jax.models.awd_lstm`, and
the head's Linear layers take bfloat16 operands and accumulate in float32; pooling, BatchNorm (its
batch statistics and running averages), the logits and the loss stay float32.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ulmfit_jax.core.nn import precision
from ulmfit_jax.models import awd_lstm
from ulmfit_jax.models.validation import (
    check_lengths,
    check_token_range,
    check_tokens,
    is_concrete,
)

BN_MOMENTUM = 0.1  # PyTorch's BatchNorm1d default, as fastai uses it
BN_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Hyperparameters of fastai's AWD-LSTM text classifier; defaults are fastai's.

    `ps` are the dropouts of the head's hidden blocks (fastai default 0.1 each); the first head
    block uses `output_p`. `drop_mult` scales every `*_p` of the encoder and `output_p`, as
    fastai's `get_text_classifier` does (not `ps`). `compute_dtype`: "float32" or "bfloat16"
    (see the module docstring).
    """

    vocab_size: int
    n_class: int
    emb_sz: int = 400
    n_hid: int = 1152
    n_layers: int = 3
    lin_ftrs: tuple[int, ...] = (50,)
    bptt: int = 72
    max_len: int = 72 * 20
    pad_token: int = 1
    output_p: float = awd_lstm.CLASSIFIER_DROPOUTS["output_p"]
    hidden_p: float = awd_lstm.CLASSIFIER_DROPOUTS["hidden_p"]
    input_p: float = awd_lstm.CLASSIFIER_DROPOUTS["input_p"]
    embed_p: float = awd_lstm.CLASSIFIER_DROPOUTS["embed_p"]
    weight_p: float = awd_lstm.CLASSIFIER_DROPOUTS["weight_p"]
    ps: tuple[float, ...] | None = None
    drop_mult: float = 1.0
    lstm_impl: str = "custom_vjp"
    compute_dtype: str = precision.FLOAT32
    # Regression: fastai's SigmoidRange(low, high) on the output (`y_range`); None: raw output.
    y_range: tuple[float, float] | None = None

    def __post_init__(self):
        object.__setattr__(self, "lin_ftrs", tuple(int(n) for n in self.lin_ftrs))
        if self.y_range is not None:
            if len(self.y_range) != 2 or not self.y_range[0] < self.y_range[1]:
                raise ValueError(f"y_range must be (low, high) with low < high: {self.y_range}")
            object.__setattr__(self, "y_range", tuple(float(v) for v in self.y_range))
        object.__setattr__(self, "compute_dtype", precision.canonical_dtype(self.compute_dtype))
        if self.ps is not None:
            object.__setattr__(self, "ps", tuple(float(p) for p in self.ps))
            if len(self.ps) != len(self.lin_ftrs):
                raise ValueError(
                    f"ps has {len(self.ps)} values but lin_ftrs has {len(self.lin_ftrs)} layers"
                )
        if self.n_class < 1:
            raise ValueError(f"n_class must be >= 1, got {self.n_class}")
        if self.bptt < 1 or self.max_len < 1:
            raise ValueError(f"bptt ({self.bptt}) and max_len ({self.max_len}) must be >= 1")
        _ = self.encoder_config  # validates the encoder fields

    @property
    def encoder_config(self) -> awd_lstm.AWDLSTMConfig:
        return awd_lstm.AWDLSTMConfig(
            vocab_size=self.vocab_size,
            emb_sz=self.emb_sz,
            n_hid=self.n_hid,
            n_layers=self.n_layers,
            pad_token=self.pad_token,
            output_p=self.output_p,
            hidden_p=self.hidden_p,
            input_p=self.input_p,
            embed_p=self.embed_p,
            weight_p=self.weight_p,
            drop_mult=self.drop_mult,
            lstm_impl=self.lstm_impl,
            compute_dtype=self.compute_dtype,
        )

    @property
    def head_dims(self) -> list[int]:
        """Widths of the head: `[3 * emb_sz, *lin_ftrs, n_class]`."""
        return [3 * self.emb_sz, *self.lin_ftrs, self.n_class]

    @property
    def head_dropouts(self) -> list[float]:
        """Effective dropout before each head block's Linear layer."""
        hidden = self.ps if self.ps is not None else (0.1,) * len(self.lin_ftrs)
        return [self.output_p * self.drop_mult, *hidden]


# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------


def init_head_params(rng: jax.Array, config: ClassifierConfig) -> dict[str, Any]:
    """fastai's head: BatchNorm (scale 1, bias 1e-3), Linear without bias (PyTorch init)."""
    dims = config.head_dims
    keys = jax.random.split(rng, len(dims) - 1)
    head = {}
    for k, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        bound = 1.0 / np.sqrt(n_in)  # kaiming_uniform(a=sqrt(5)), PyTorch's Linear default
        head[f"layer_{k}"] = {
            "bn": {
                "scale": jnp.ones((n_in,), jnp.float32),
                "bias": jnp.full((n_in,), 1e-3, jnp.float32),
                "mean": jnp.zeros((n_in,), jnp.float32),
                "var": jnp.ones((n_in,), jnp.float32),
            },
            "linear": {
                "kernel": jax.random.uniform(keys[k], (n_in, n_out), jnp.float32, -bound, bound)
            },
        }
    return head


def init_classifier_params(rng: jax.Array, config: ClassifierConfig) -> dict[str, Any]:
    enc_key, head_key = jax.random.split(rng)
    return {
        "encoder": awd_lstm.init_encoder_params(enc_key, config.encoder_config),
        "head": init_head_params(head_key, config),
    }


def from_language_model(
    lm_params: dict[str, Any], rng: jax.Array, config: ClassifierConfig
) -> dict[str, Any]:
    """A classifier whose encoder is a (fine-tuned) language model's, with a fresh head."""
    return {"encoder": lm_params["encoder"], "head": init_head_params(rng, config)}


# --------------------------------------------------------------------------------------------
# Padding documents into a batch
# --------------------------------------------------------------------------------------------


def pad_documents(
    docs: Sequence[Sequence[int]], config: ClassifierConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token-id lists to a common length rounded up to a multiple of `bptt`.

    Returns:
      `(tokens int32[batch, time], lengths int32[batch])`.
    """
    if len(docs) == 0:
        raise ValueError("no documents to classify")
    lengths = np.array([len(d) for d in docs], np.int32)
    for index, length in enumerate(lengths):
        if length == 0:
            raise ValueError(f"document {index} is empty (no tokens)")
    time = int(-(-lengths.max() // config.bptt) * config.bptt)
    tokens = np.full((len(docs), time), config.pad_token, np.int32)
    for row, doc in enumerate(docs):
        tokens[row, : lengths[row]] = np.asarray(doc, np.int32)
    return tokens, lengths


# --------------------------------------------------------------------------------------------
# BPT3C encoder and pooling
# --------------------------------------------------------------------------------------------


def bpt3c_encode(
    encoder_params: dict[str, Any],
    config: ClassifierConfig,
    tokens: jax.Array,
    lengths: jax.Array,
    rng: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:
    """fastai's `SentenceEncoder`: run the encoder chunk by chunk over each document.

    The state is carried from chunk to chunk with its gradient stopped, and each chunk draws
    fresh dropout masks (fastai calls the wrapped module once per chunk).

    Args:
      tokens: int32[batch, time], right-padded, `time` a multiple of `bptt`.
      lengths: int32[batch], >= 1.

    Returns:
      `(outputs, keep)`: outputs float[batch, time, emb_sz]; keep bool[batch, time] marks the
      outputs fastai keeps: real tokens in chunks starting at i with `length - i <= max_len`.
    """
    enc_config = config.encoder_config
    batch, time = tokens.shape
    bptt = config.bptt
    n_chunks = time // bptt
    chunks = jnp.swapaxes(tokens.reshape(batch, n_chunks, bptt), 0, 1)
    starts = jnp.arange(n_chunks) * bptt

    def body(state, xs):
        chunk_tokens, start, chunk_index = xs
        chunk_lengths = jnp.clip(lengths - start, 0, bptt)
        chunk_rng = None if rng is None else jax.random.fold_in(rng, chunk_index)
        out, state = awd_lstm.encoder_apply(
            encoder_params,
            enc_config,
            chunk_tokens,
            state,
            lengths=chunk_lengths,
            rng=chunk_rng,
        )
        return jax.lax.stop_gradient(state), out

    state = awd_lstm.zero_state(enc_config, batch)
    _, outputs = jax.lax.scan(body, state, (chunks, starts, jnp.arange(n_chunks)))
    outputs = jnp.swapaxes(outputs, 0, 1).reshape(batch, time, -1)

    position = jnp.arange(time)[None, :]
    chunk_start = (position // bptt) * bptt
    keep = (position < lengths[:, None]) & (lengths[:, None] - chunk_start <= config.max_len)
    return outputs, keep


def masked_concat_pool(outputs: jax.Array, keep: jax.Array, lengths: jax.Array) -> jax.Array:
    """`[output at the last real token, max over kept steps, mean over kept steps]`.

    outputs: float[batch, time, emb]; keep: bool[batch, time]; lengths: int32[batch].
    Returns float[batch, 3 * emb].
    """
    last = jnp.take_along_axis(outputs, (lengths - 1)[:, None, None], axis=1)[:, 0]
    mask = keep[..., None]
    max_pool = jnp.max(jnp.where(mask, outputs, -jnp.inf), axis=1)
    count = jnp.sum(keep, axis=1, keepdims=True).astype(outputs.dtype)
    avg_pool = jnp.sum(jnp.where(mask, outputs, 0.0), axis=1) / count
    return jnp.concatenate([last, max_pool, avg_pool], axis=-1)


def head_apply(
    head_params: dict[str, Any],
    config: ClassifierConfig,
    pooled: jax.Array,
    rng: jax.Array | None,
) -> tuple[jax.Array, dict[str, Any]]:
    """fastai's `PoolingLinearClassifier` layers: [BatchNorm -> Dropout -> Linear (-> ReLU)]*.

    In training (rng given) BatchNorm normalises with the batch's statistics (biased variance)
    and its running statistics move by momentum 0.1 towards the batch mean and unbiased
    variance, as PyTorch does; in evaluation it uses the running statistics.

    Returns:
      `(logits float32[batch, n_class], new running statistics {layer_k: {"mean", "var"}})`.
    """
    train = rng is not None
    dtype = precision.compute_dtype(config.compute_dtype)
    dropouts = config.head_dropouts
    n_blocks = len(dropouts)
    keys = jax.random.split(rng, n_blocks) if train else [None] * n_blocks
    x = pooled
    new_stats = {}
    for k in range(n_blocks):
        block = head_params[f"layer_{k}"]
        bn = block["bn"]
        if train:
            mean = jnp.mean(x, axis=0)
            var = jnp.mean(jnp.square(x - mean), axis=0)
            n = x.shape[0]
            unbiased = var * n / max(n - 1, 1)
            new_stats[f"layer_{k}"] = {
                "mean": (1 - BN_MOMENTUM) * bn["mean"] + BN_MOMENTUM * mean,
                "var": (1 - BN_MOMENTUM) * bn["var"] + BN_MOMENTUM * unbiased,
            }
        else:
            mean, var = bn["mean"], bn["var"]
            new_stats[f"layer_{k}"] = {"mean": bn["mean"], "var": bn["var"]}
        x = (x - mean) * jax.lax.rsqrt(var + BN_EPS) * bn["scale"] + bn["bias"]
        if train and dropouts[k] > 0.0:
            x = x * awd_lstm.dropout_mask(keys[k], x.shape, dropouts[k], x.dtype)
        x = precision.matmul(x, block["linear"]["kernel"], dtype)  # float32 out
        if k != n_blocks - 1:
            x = jax.nn.relu(x)
    return x.astype(jnp.float32), new_stats


def classifier_apply(
    params: dict[str, Any],
    config: ClassifierConfig,
    docs,
    lengths=None,
    *,
    train: bool = False,
    rng: jax.Array | None = None,
    return_batch_stats: bool = False,
):
    """Classify documents with fastai's ULMFiT classifier.

    Args:
      params: see the module docstring (`init_classifier_params` or `load_fastai_classifier`).
      config: the `ClassifierConfig` the parameters were made for.
      docs: a list of token-id lists (padded and batched here), or an already right-padded
        int32[batch, time] array together with `lengths`.
      lengths: int32[batch] real lengths, with a padded array (ignored for lists).
      train: apply dropout and use/update BatchNorm batch statistics (needs `rng`).
      rng: a `jax.random` key.
      return_batch_stats: also return the updated BatchNorm running statistics.

    Returns:
      logits float32[batch, n_class], or `(logits, batch_stats)` with `return_batch_stats`.
    """
    if train and rng is None:
        raise ValueError("classifier_apply(train=True) needs an rng for dropout")
    if isinstance(docs, (list, tuple)):
        tokens, lengths = pad_documents(docs, config)
    elif lengths is None:
        raise ValueError("a padded token array needs its `lengths` (int32[batch])")
    else:
        tokens = docs
    tokens = check_tokens(tokens, config.vocab_size, "docs")
    tokens, lengths = _check_lengths_and_pad(tokens, lengths, config)
    logits, stats = _classifier_forward(params, config, tokens, lengths, rng if train else None)
    return (logits, stats) if return_batch_stats else logits


def classifier_forward(params, config: ClassifierConfig, tokens, lengths, rng=None):
    """BPT3C encoding, masked concat pooling and the head on checked, padded inputs.

    Args:
      tokens: int32[batch, time], time a multiple of `config.bptt`; lengths: int32[batch].
      rng: a key for training mode (dropout, BatchNorm batch statistics), or None.

    Returns:
      `(logits float32[batch, n_class], batch_stats, outputs, keep)`: the encoder outputs BPT3C
      kept (`[batch, kept_time, n_hid]`) and their mask, which AR/TAR need in training.
    """
    # The training step calls this directly: ids past the vocabulary are an error here too.
    check_token_range(tokens, config.vocab_size, "docs")
    enc_rng, head_rng = jax.random.split(rng) if rng is not None else (None, None)
    outputs, keep = bpt3c_encode(params["encoder"], config, tokens, lengths, enc_rng)
    pooled = masked_concat_pool(outputs, keep, lengths)
    logits, stats = head_apply(params["head"], config, pooled, head_rng)
    if config.y_range is not None:
        low, high = config.y_range
        logits = jax.nn.sigmoid(logits) * (high - low) + low
    return logits, stats, outputs, keep


@functools.partial(jax.jit, static_argnums=1)
def _classifier_forward(params, config: ClassifierConfig, tokens, lengths, rng):
    """The checked-input core of `classifier_apply`, compiled once per config and shape."""
    return classifier_forward(params, config, tokens, lengths, rng)[:2]


def merge_batch_stats(params: dict[str, Any], batch_stats: dict[str, Any]) -> dict[str, Any]:
    """Write BatchNorm running statistics returned by `classifier_apply` back into params."""
    head = {}
    for name, block in params["head"].items():
        head[name] = {**block, "bn": {**block["bn"], **batch_stats[name]}}
    return {**params, "head": head}


def _check_lengths_and_pad(tokens, lengths, config: ClassifierConfig):
    """Validate lengths against the batch and right-pad time to a multiple of bptt."""
    lengths = check_lengths(lengths, tokens.shape)
    if is_concrete(lengths):
        empty = np.flatnonzero(np.asarray(lengths) < 1)
        if empty.size:
            raise ValueError(f"document {int(empty[0])} is empty (length 0)")
    time = tokens.shape[1]
    padded_time = -(-time // config.bptt) * config.bptt
    if padded_time != time:
        tokens = jnp.pad(
            tokens, ((0, 0), (0, padded_time - time)), constant_values=config.pad_token
        )
    return tokens, lengths
