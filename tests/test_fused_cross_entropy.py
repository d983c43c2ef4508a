"""The chunked linear + cross-entropy equals the plain one: loss, accuracy and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ulmfit_jax.core.nn.fused_cross_entropy import linear_cross_entropy


def plain(hidden, weight, bias, targets, weights):
    logits = jnp.einsum("...d,vd->...v", hidden, weight)
    if bias is not None:
        logits = logits + bias
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = jnp.sum(weights * (jnp.argmax(logits, -1) == targets))
    return jnp.sum(weights * nll), correct


def inputs(seed=0, batch=3, time=37, dim=16, vocab=101, with_bias=True):
    keys = jax.random.split(jax.random.key(seed), 5)
    hidden = jax.random.normal(keys[0], (batch, time, dim))
    weight = jax.random.normal(keys[1], (vocab, dim)) * 0.5
    bias = jax.random.normal(keys[2], (vocab,)) if with_bias else None
    targets = jax.random.randint(keys[3], (batch, time), 0, vocab)
    lengths = jnp.array([time, time - 5, 1][:batch])
    weights = (jnp.arange(time)[None, :] < lengths[:, None]).astype(jnp.float32)
    return hidden, weight, bias, targets, weights


@pytest.mark.parametrize("chunk_size", [1, 16, 37, 1000])
@pytest.mark.parametrize("with_bias", [True, False])
def test_loss_accuracy_and_gradients_match_the_plain_loss(chunk_size, with_bias):
    hidden, weight, bias, targets, weights = inputs(with_bias=with_bias)

    def fused_loss(h, w, b):
        loss, _ = linear_cross_entropy(h, w, b, targets, weights, chunk_size=chunk_size)
        return loss

    def plain_loss(h, w, b):
        return plain(h, w, b, targets, weights)[0]

    argnums = (0, 1, 2) if with_bias else (0, 1)
    fused_value, fused_grads = jax.jit(jax.value_and_grad(fused_loss, argnums))(
        hidden, weight, bias
    )
    plain_value, plain_grads = jax.value_and_grad(plain_loss, argnums)(hidden, weight, bias)
    np.testing.assert_allclose(fused_value, plain_value, rtol=1e-6)
    for fused_grad, plain_grad in zip(fused_grads, plain_grads, strict=True):
        scale = float(jnp.max(jnp.abs(plain_grad)))
        np.testing.assert_allclose(fused_grad, plain_grad, rtol=1e-6, atol=1e-6 * scale)
    _, correct = linear_cross_entropy(hidden, weight, bias, targets, weights, chunk_size=chunk_size)
    assert float(correct) == float(plain(hidden, weight, bias, targets, weights)[1])


def test_gradient_scales_with_the_incoming_cotangent_and_ignores_padding():
    hidden, weight, bias, targets, weights = inputs(seed=1)

    def mean_loss(h):
        loss, _ = linear_cross_entropy(h, weight, bias, targets, weights, chunk_size=8)
        return 3.0 * loss / weights.sum()

    def plain_mean(h):
        return 3.0 * plain(h, weight, bias, targets, weights)[0] / weights.sum()

    grad = jax.grad(mean_loss)(hidden)
    np.testing.assert_allclose(grad, jax.grad(plain_mean)(hidden), rtol=1e-6, atol=1e-8)
    assert float(jnp.abs(grad[2, 1:]).max()) == 0.0  # row 2 has one real token


def test_float64_reference():
    """Against a float64 numpy computation of the same weighted loss and its hidden gradient."""
    hidden, weight, bias, targets, weights = inputs(seed=2, batch=2, time=9, dim=8, vocab=23)
    h, w, b = (np.asarray(x, np.float64) for x in (hidden, weight, bias))
    t, m = np.asarray(targets), np.asarray(weights, np.float64)
    logits = h @ w.T + b
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_p, t[..., None], -1)[..., 0]
    d_logits = np.exp(log_p) * m[..., None]
    np.put_along_axis(
        d_logits, t[..., None], np.take_along_axis(d_logits, t[..., None], -1) - m[..., None], -1
    )
    loss, grad = jax.value_and_grad(
        lambda x: linear_cross_entropy(x, weight, bias, targets, weights, chunk_size=4)[0]
    )(hidden)
    np.testing.assert_allclose(loss, (m * nll).sum(), rtol=1e-6)
    np.testing.assert_allclose(grad, d_logits @ w, rtol=1e-5, atol=1e-6)


def test_bad_shapes_are_one_line_errors():
    hidden, weight, bias, targets, weights = inputs()
    with pytest.raises(ValueError, match="weight must be"):
        linear_cross_entropy(hidden, weight[:, :3], bias, targets, weights)
    with pytest.raises(ValueError, match="leading shape"):
        linear_cross_entropy(hidden, weight, bias, targets[:, :3], weights)
