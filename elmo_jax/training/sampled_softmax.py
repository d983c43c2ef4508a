"""Sampled softmax with a log-uniform (Zipfian) candidate sampler, as TensorFlow's
`tf.nn.sampled_softmax_loss` with its default `log_uniform_candidate_sampler`, which bilm-tf
trains with; and the full softmax it is evaluated with.

Sampler (TensorFlow's `LogUniformSampler`, `unique=True`): class k is drawn with probability

    P(k) = (log(k + 2) - log(k + 1)) / log(V + 1)        (k = 0 is the most frequent word)

by `floor(exp(u * log(V + 1))) - 1`, u uniform in [0, 1); draws repeat until `num_sampled`
*distinct* classes are found, after `num_tries` draws. Each class's expected count is then
approximated as `1 - (1 - P(k)) ** num_tries` (`P(k) * num_sampled` when no draw repeated).

Loss, per position with target y and the sampled set S:

    logit(c) = h . W[c] + b[c] - log(expected_count(c))          (the "log Q" correction)
    logit(s) += -FLT_MAX  where s == y                            (remove accidental hits)
    loss = logsumexp(logit(y), logit(S)) - logit(y)

The sampler runs on the host with numpy (rejection sampling has no fixed shape): a seeded
`numpy.random.Generator` per batch keeps runs deterministic and resumable; the loss is jnp.

    rng = np.random.default_rng(0)
    ids, expected, tries = sample_log_uniform(rng, num_sampled=8192, vocab_size=V)
    losses = sampled_softmax_loss(w, b, h, targets, ids, expected, tries)   # float[N]

Both losses take `compute_dtype` ("float32", the default, or "bfloat16"): in bfloat16 the
`h . W` products take bfloat16 operands and accumulate in float32; the logits, the log-Q
correction, the logsumexp and the loss are float32 either way.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ulmfit_jax.core.nn import precision

# TensorFlow's `compute_accidental_hits` weight: the most negative finite float32.
_ACCIDENTAL_HIT = float(np.finfo(np.float32).min)


class Negatives(NamedTuple):
    """Sampled classes for the two directions of one batch (one row per direction).

    Attributes:
      ids: int32[D, S], distinct class ids per row.
      expected_count: float32[D, S], each id's expected count (see the module docstring).
      num_tries: int32[D], draws it took to find the S distinct ids.
    """

    ids: np.ndarray
    expected_count: np.ndarray
    num_tries: np.ndarray


def log_uniform_probability(ids, vocab_size: int, xp=np):
    """P(k) of the log-uniform sampler for ids in [0, vocab_size) (numpy or jax.numpy)."""
    ids = xp.asarray(ids)
    return xp.log1p(1.0 / (ids.astype(xp.float32) + 1.0)) / np.log1p(vocab_size)


def expected_count(probability, num_sampled: int, num_tries, xp=np):
    """TensorFlow's `ExpectedCountHelper`: the approximate expected count of a class."""
    num_tries = xp.asarray(num_tries)
    unique_case = -xp.expm1(num_tries.astype(xp.float32) * xp.log1p(-probability))
    return xp.where(num_tries == num_sampled, probability * num_sampled, unique_case)


def sample_log_uniform(
    rng: np.random.Generator, num_sampled: int, vocab_size: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Draw `num_sampled` distinct classes (TensorFlow's unique log-uniform sampling).

    Returns:
      `(ids, expected_count, num_tries)`: int32[num_sampled] in draw order, float32[num_sampled],
      and the number of draws used.
    """
    if not 0 < num_sampled <= vocab_size:
        raise ValueError(
            f"cannot sample {num_sampled} distinct negatives from a vocabulary of {vocab_size}; "
            "lower the number of negative samples or use the full softmax"
        )
    log_range = np.log1p(vocab_size)
    draws = np.empty(0, np.int64)
    chunk = 2 * num_sampled
    while True:
        # Rejection sampling in vectorised chunks: the first `num_tries` draws of the sequence
        # are exactly what TensorFlow's one-at-a-time loop would consume.
        u = rng.random(chunk)
        new = (np.exp(u * log_range).astype(np.int64) - 1) % vocab_size
        draws = np.concatenate([draws, new])
        _, first = np.unique(draws, return_index=True)
        if len(first) >= num_sampled:
            first = np.sort(first)[:num_sampled]
            ids = draws[first].astype(np.int32)
            num_tries = int(first[-1]) + 1
            p = log_uniform_probability(ids, vocab_size)
            return ids, expected_count(p, num_sampled, num_tries).astype(np.float32), num_tries
        chunk *= 2


def draw_negatives(
    rng: np.random.Generator,
    num_sampled: int,
    vocab_size: int,
    *,
    directions: int = 2,
    shared: bool = False,
) -> Negatives:
    """Negatives for one batch: an independent draw per direction (bilm-tf calls
    `sampled_softmax_loss` once per direction, each with its own sampler), or one draw used by
    every direction (`shared=True`)."""
    if shared:
        draws = [sample_log_uniform(rng, num_sampled, vocab_size)] * directions
    else:
        draws = [sample_log_uniform(rng, num_sampled, vocab_size) for _ in range(directions)]
    return Negatives(
        np.stack([d[0] for d in draws]),
        np.stack([d[1] for d in draws]),
        np.array([d[2] for d in draws], np.int32),
    )


def sampled_softmax_loss(
    w: jax.Array,
    b: jax.Array,
    inputs: jax.Array,
    labels: jax.Array,
    sampled: jax.Array,
    sampled_expected_count: jax.Array,
    num_tries: jax.Array,
    *,
    remove_accidental_hits: bool = True,
    compute_dtype=None,
) -> jax.Array:
    """Per-position sampled softmax loss (`tf.nn.sampled_softmax_loss`, num_true=1).

    Args:
      w: float[V, P], softmax weights (one row per class).
      b: float[V], softmax biases.
      inputs: float[N, P], the LM outputs.
      labels: int[N], target classes.
      sampled: int[S], distinct sampled classes (from `sample_log_uniform`).
      sampled_expected_count: float[S].
      num_tries: int[], draws the sampler used.
      remove_accidental_hits: mask a sampled class that equals the row's target.
      compute_dtype: None / "float32", or "bfloat16" for the operands of the logit products
        (module docstring).

    Returns:
      float[N], the loss of each position.
    """
    vocab_size, num_sampled = w.shape[0], sampled.shape[0]
    sampled = jax.lax.stop_gradient(sampled)
    dtype = precision.compute_dtype(compute_dtype)
    if dtype is None:
        true_logits = jnp.sum(inputs * w[labels], axis=-1) + b[labels]
    else:  # the same bfloat16 products as the sampled logits, so the two compare fairly
        true_logits = precision.einsum("np,np->n", inputs, w[labels], dtype) + b[labels]
    sampled_logits = precision.matmul(inputs, w[sampled].T, dtype) + b[sampled]
    if remove_accidental_hits:
        hits = labels[:, None] == sampled[None, :]
        sampled_logits = sampled_logits + jnp.where(hits, _ACCIDENTAL_HIT, 0.0)
    p_true = log_uniform_probability(labels, vocab_size, xp=jnp)
    true_expected = expected_count(p_true, num_sampled, num_tries, xp=jnp)
    true_logits = true_logits - jnp.log(true_expected)
    sampled_logits = sampled_logits - jnp.log(jax.lax.stop_gradient(sampled_expected_count))
    logits = jnp.concatenate([true_logits[:, None], sampled_logits], axis=-1)
    return jax.nn.logsumexp(logits, axis=-1) - true_logits


def full_softmax_loss(
    w: jax.Array, b: jax.Array, inputs: jax.Array, labels: jax.Array, *, compute_dtype=None
):
    """Per-position cross-entropy over the whole vocabulary: float[N] (evaluation); float32
    logits, from bfloat16 operands with `compute_dtype="bfloat16"`."""
    logits = precision.matmul(inputs, w.T, precision.compute_dtype(compute_dtype)) + b
    return (
        jax.nn.logsumexp(logits, axis=-1)
        - jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    )
