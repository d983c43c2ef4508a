"""A linear decoder and its cross-entropy in one pass, without a `[tokens, vocab]` logits array.

A language model's loss is `cross_entropy(hidden @ weight.T + bias, targets)`. Written plainly,
XLA keeps the whole logits array (and its softmax) alive between the forward and the backward
pass: for fastai's LM batch (2,240 tokens x a 60,000-word vocabulary) that is 537 MB per copy,
more than the LSTM's activations, and the memory traffic dominates the loss's time.

`linear_cross_entropy` walks the tokens in chunks. For each chunk it forms the logits, the loss
and, in the same pass, the chunk's gradient with respect to the logits (`softmax - one_hot`),
which it folds at once into the gradients of the hidden states, the weight and the bias. The
backward pass only scales those stored gradients by the incoming cotangent, so nothing is
recomputed (Liger Kernel's fused linear cross-entropy does the same on GPUs). The peak holds
one chunk's logits plus the gradients themselves.

The loss is a weighted sum (`weights` is 0 for padding and 1 for real tokens, or any per-token
weight); the weights are treated as constants (no gradient flows to them). When the function
is called without differentiation (evaluation), the primal pass computes only the loss.

Example:

    loss_sum, correct = linear_cross_entropy(hidden, embedding, bias, targets, mask)
    loss = loss_sum / jnp.maximum(mask.sum(), 1)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ulmfit_jax.core.nn import precision

# Tokens per chunk: the chunk's logits are chunk x vocab float32 (61 MB at a 60k vocabulary),
# large enough for the matmuls to run at the machine's peak.
DEFAULT_CHUNK = 256


def linear_cross_entropy(
    hidden: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None,
    targets: jax.Array,
    weights: jax.Array,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    compute_dtype: str = "float32",
) -> tuple[jax.Array, jax.Array]:
    """The weighted cross-entropy of a linear decoder, and its weighted correct predictions.

    Args:
      hidden: float[..., dim], the decoder's input (any leading shape; flattened to tokens).
      weight: float[vocab, dim], the decoder's weight (a tied embedding matrix).
      bias: float[vocab] or None.
      targets: int[...], the next tokens, the leading shape of `hidden`.
      weights: float[...], each token's weight (0 for padding).
      chunk_size: tokens per chunk (the peak memory is about chunk_size x vocab floats).
      compute_dtype: "float32" or "bfloat16" for the matmuls (`ulmfit_jax.core.nn.precision`);
        the logits, the softmax and the loss are float32 either way.

    Returns:
      `(loss_sum, correct)`: float32 scalars, `sum(weights * nll)` and
      `sum(weights * (argmax(logits) == targets))`. Only `loss_sum` is differentiable.
    """
    dim = hidden.shape[-1]
    if weight.ndim != 2 or weight.shape[1] != dim:
        raise ValueError(f"weight must be [vocab, {dim}], got {weight.shape}")
    if targets.shape != hidden.shape[:-1] or weights.shape != hidden.shape[:-1]:
        raise ValueError(
            f"targets {targets.shape} and weights {weights.shape} must match hidden's leading "
            f"shape {hidden.shape[:-1]}"
        )
    if bias is None:
        bias = jnp.zeros((weight.shape[0],), jnp.float32)
    tokens = int(np.prod(targets.shape))
    chunk = max(1, min(int(chunk_size), tokens))
    padded = -(-tokens // chunk) * chunk
    flat_hidden = _pad(hidden.reshape(tokens, dim), padded)
    flat_targets = _pad(targets.reshape(tokens).astype(jnp.int32), padded)
    flat_weights = _pad(weights.reshape(tokens).astype(jnp.float32), padded)
    dtype = precision.compute_dtype(compute_dtype)
    return _fused(chunk, dtype, flat_hidden, weight, bias, flat_targets, flat_weights)


def _pad(x: jax.Array, rows: int) -> jax.Array:
    """`x` with zero rows appended up to `rows` (padding tokens weigh 0)."""
    extra = rows - x.shape[0]
    return x if extra == 0 else jnp.pad(x, [(0, extra)] + [(0, 0)] * (x.ndim - 1))


def _chunks(x: jax.Array, chunk: int) -> jax.Array:
    """[tokens, ...] -> [tokens // chunk, chunk, ...]."""
    return x.reshape((x.shape[0] // chunk, chunk) + x.shape[1:])


def _chunk_logits(h, weight, bias, dtype) -> jax.Array:
    """float32[chunk, vocab] logits of one chunk of hidden states."""
    return precision.einsum("cd,vd->cv", h, weight, dtype).astype(jnp.float32) + bias


def _chunk_loss(logits, targets, weights):
    """Weighted loss sum, weighted correct count and log-sum-exp of one chunk's logits."""
    lse = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    loss = jnp.sum(weights * (lse - target_logit))
    correct = jnp.sum(weights * (jnp.argmax(logits, axis=-1) == targets))
    return loss, correct, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused(chunk, dtype, hidden, weight, bias, targets, weights):
    """Primal: the loss alone, chunk by chunk (what evaluation runs)."""

    def body(totals, xs):
        h, t, w = xs
        loss, correct, _ = _chunk_loss(_chunk_logits(h, weight, bias, dtype), t, w)
        return (totals[0] + loss, totals[1] + correct), None

    zero = jnp.zeros((), jnp.float32)
    xs = (_chunks(hidden, chunk), _chunks(targets, chunk), _chunks(weights, chunk))
    (loss, correct), _ = jax.lax.scan(body, (zero, zero), xs)
    return loss, correct


def _fused_fwd(chunk, dtype, hidden, weight, bias, targets, weights):
    """The loss and, in the same pass, its gradients (the backward pass only scales them)."""

    def body(carry, xs):
        loss_total, correct_total, d_weight, d_bias = carry
        h, t, w = xs
        logits = _chunk_logits(h, weight, bias, dtype)
        loss, correct, lse = _chunk_loss(logits, t, w)
        # d loss / d logits of a weighted cross-entropy: w * (softmax - one_hot(target)).
        d_logits = jnp.exp(logits - lse[:, None]) * w[:, None]
        d_logits = d_logits.at[jnp.arange(t.shape[0]), t].add(-w)
        d_h = precision.einsum("cv,vd->cd", d_logits, weight, dtype)
        d_weight = d_weight + precision.einsum("cv,cd->vd", d_logits, h, dtype)
        d_bias = d_bias + jnp.sum(d_logits, axis=0)
        carry = (loss_total + loss, correct_total + correct, d_weight, d_bias)
        return carry, d_h.astype(hidden.dtype)

    zero = jnp.zeros((), jnp.float32)
    init = (zero, zero, jnp.zeros(weight.shape, jnp.float32), jnp.zeros(bias.shape, jnp.float32))
    xs = (_chunks(hidden, chunk), _chunks(targets, chunk), _chunks(weights, chunk))
    (loss, correct, d_weight, d_bias), d_hidden = jax.lax.scan(body, init, xs)
    grads = (d_hidden.reshape(hidden.shape), d_weight, d_bias)
    return (loss, correct), (grads, targets, weights)


def _fused_bwd(chunk, dtype, residuals, cotangents):
    (d_hidden, d_weight, d_bias), targets, weights = residuals
    g = cotangents[0]  # the correct count is not differentiable: its cotangent is ignored

    def scaled(x: jax.Array) -> jax.Array:
        return (x * g).astype(x.dtype)

    no_grad: Any = np.zeros(targets.shape, jax.dtypes.float0)
    return (
        scaled(d_hidden),
        scaled(d_weight),
        scaled(d_bias),
        no_grad,
        jnp.zeros_like(weights),
    )


_fused.defvjp(_fused_fwd, _fused_bwd)
