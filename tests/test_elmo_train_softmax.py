"""Sampled softmax: TensorFlow's unique log-uniform sampler and `sampled_softmax_loss`."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from elmo_jax.training.sampled_softmax import (
    draw_negatives,
    full_softmax_loss,
    log_uniform_probability,
    sample_log_uniform,
    sampled_softmax_loss,
)


def one_at_a_time(rng, num_sampled, vocab_size):
    """TensorFlow's `RangeSampler` loop with `unique=True`, one draw per iteration."""
    picked, tries = [], 0
    while len(picked) < num_sampled:
        tries += 1
        value = (int(np.exp(rng.random() * np.log1p(vocab_size))) - 1) % vocab_size
        if value not in picked:
            picked.append(value)
    return picked, tries


def test_sampler_is_the_sequential_rejection_loop():
    for seed, (num, vocab) in enumerate([(10, 50), (40, 60), (60, 60), (1, 3)]):
        ids, expected, tries = sample_log_uniform(np.random.default_rng(seed), num, vocab)
        ref_ids, ref_tries = one_at_a_time(np.random.default_rng(seed), num, vocab)
        assert list(ids) == ref_ids and tries == ref_tries
        p = log_uniform_probability(ids, vocab)
        want = p * num if tries == num else 1 - (1 - p.astype(np.float64)) ** tries
        np.testing.assert_allclose(expected, want, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot sample 61 distinct negatives"):
        sample_log_uniform(np.random.default_rng(0), 61, 60)


def test_expected_counts_are_calibrated():
    # TensorFlow's approximation 1 - (1 - p)^tries against inclusion frequencies.
    rng = np.random.default_rng(0)
    vocab, num, trials = 200, 20, 3000
    hits, expected = np.zeros(vocab), np.zeros(vocab)
    for _ in range(trials):
        ids, _, tries = sample_log_uniform(rng, num, vocab)
        hits[ids] += 1
        expected += 1 - (1 - log_uniform_probability(np.arange(vocab), vocab)) ** tries
    np.testing.assert_allclose(hits[:20] / trials, expected[:20] / trials, rtol=0.08, atol=0.01)
    assert np.argmax(hits) == 0  # id 0 is the most frequent word


def test_negatives_per_direction_or_shared():
    rng = np.random.default_rng(1)
    separate = draw_negatives(rng, 8, 100)
    assert separate.ids.shape == (2, 8) and not np.array_equal(*separate.ids)
    shared = draw_negatives(rng, 8, 100, shared=True)
    np.testing.assert_array_equal(*shared.ids)


def test_loss_is_tensorflows_formula_with_accidental_hits():
    k = jax.random.split(jax.random.key(0), 3)
    vocab, dim, n = 30, 6, 5
    w = jax.random.normal(k[0], (vocab, dim))
    b = jax.random.normal(k[1], (vocab,))
    h = jax.random.normal(k[2], (n, dim))
    labels = jnp.array([3, 0, 7, 3, 29])
    sampled = jnp.array([0, 1, 3, 5])  # rows 0, 1 and 3 have accidental hits
    ids, tries = np.asarray(sampled), 9
    p = log_uniform_probability(np.arange(vocab), vocab).astype(np.float64)
    q = 1 - (1 - p) ** tries
    loss_fn = jax.jit(sampled_softmax_loss)  # one compilation instead of one per eager op
    loss = loss_fn(w, b, h, labels, sampled, jnp.asarray(q[ids], jnp.float32), tries)

    wn, bn, hn = (np.asarray(x, np.float64) for x in (w, b, h))
    for i, y in enumerate(np.asarray(labels)):
        logits = [hn[i] @ wn[y] + bn[y] - np.log(q[y])]
        logits += [hn[i] @ wn[s] + bn[s] - np.log(q[s]) for s in ids if s != y]  # hits removed
        want = np.log(np.sum(np.exp(logits))) - logits[0]
        np.testing.assert_allclose(loss[i], want, rtol=1e-4, atol=1e-6)

    # When the only sample is the target itself, it is removed: zero loss and zero gradient.
    def only_hit(w):
        return loss_fn(w, b, h[:1], labels[:1], sampled[2:3], jnp.ones(1), 9)[0]

    value, grad = jax.jit(jax.value_and_grad(only_hit))(w)
    assert float(value) == 0.0
    assert not np.any(np.asarray(grad))


def test_full_softmax_is_cross_entropy():
    w = jax.random.normal(jax.random.key(1), (11, 4))
    b = jnp.arange(11.0) / 10
    h = jax.random.normal(jax.random.key(2), (3, 4))
    y = jnp.array([0, 5, 10])
    want = optax.softmax_cross_entropy_with_integer_labels(h @ w.T + b, y)
    np.testing.assert_allclose(full_softmax_loss(w, b, h, y), want, rtol=1e-6)
