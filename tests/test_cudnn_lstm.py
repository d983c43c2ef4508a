"""lstm_impl="cudnn": the weight packing against JAX's reference model of the cuDNN kernel (CPU),
the errors where cuDNN cannot run, and (on a CUDA GPU only) the kernel itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ulmfit_jax.core.nn import cudnn_lstm, lstm

BATCH, TIME, N_IN, HIDDEN = 3, 6, 5, 4
ON_GPU = jax.default_backend() == "gpu"


def rel_err(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-12))


@pytest.fixture(scope="module")
def setup():
    params = lstm.init_lstm_params(jax.random.key(0), N_IN, HIDDEN)
    x = jax.random.normal(jax.random.key(1), (BATCH, TIME, N_IN))
    carry = (
        0.5 * jax.random.normal(jax.random.key(2), (BATCH, HIDDEN)),
        0.5 * jax.random.normal(jax.random.key(3), (BATCH, HIDDEN)),
    )
    return params, x, carry


def test_pack_weights_layout(setup):
    params, _, _ = setup
    flat = cudnn_lstm.pack_weights(params)
    from jax.experimental import rnn

    assert flat.shape == (rnn.get_num_params_in_lstm(N_IN, HIDDEN, 1, False),)
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(flat, N_IN, HIDDEN, 1, False)
    np.testing.assert_array_equal(w_ih[0], params["w_ih"].T)
    np.testing.assert_array_equal(w_hh[0], params["w_hh"].T)
    np.testing.assert_array_equal(b_ih[0] + b_hh[0], params["bias"])


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_reference_matches_lstm_layer(setup, reverse, padded):
    """Packed weights through jax.experimental.rnn.lstm_ref == our lstm_layer, with gradients."""
    params, x, carry = setup
    lengths = jnp.array([TIME, 4, 1], jnp.int32) if padded else None
    w_out = jax.random.normal(jax.random.key(4), (BATCH, TIME, HIDDEN))

    def loss(layer, params, x, carry):
        out, (h, c) = layer(params, x, carry, lengths=lengths, reverse=reverse)
        return (out * w_out).sum() + (h * c).sum(), (out, h, c)

    ref_layer = lambda *a, **k: cudnn_lstm.cudnn_lstm_layer(*a, **k, reference=True)  # noqa: E731
    grad = lambda layer: jax.value_and_grad(loss, argnums=(1, 2, 3), has_aux=True)(  # noqa: E731
        layer, params, x, carry
    )
    (_, ours), ours_grads = grad(lstm.lstm_layer)
    (_, theirs), their_grads = grad(ref_layer)
    for a, b in zip(theirs, ours, strict=True):
        assert rel_err(a, b) <= 1e-5
    for a, b in zip(jax.tree.leaves(their_grads), jax.tree.leaves(ours_grads), strict=True):
        assert rel_err(a, b) <= 1e-5


@pytest.mark.skipif(ON_GPU, reason="checks the error raised without a GPU")
def test_cudnn_without_gpu_is_a_clear_error(setup):
    params, x, carry = setup
    with pytest.raises(RuntimeError, match="needs an NVIDIA GPU"):
        lstm.lstm_layer(params, x, carry, impl="cudnn")


def test_cudnn_refuses_what_it_cannot_do(setup):
    params, x, carry = setup
    with pytest.raises(ValueError, match="float32 only"):
        lstm.lstm_layer(params, x, carry, impl="cudnn", compute_dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match="length >= 1"):
        cudnn_lstm.cudnn_lstm_layer(params, x, carry, lengths=jnp.array([2, 0, 1]), reference=True)


@pytest.mark.skipif(not ON_GPU, reason="cuDNN needs an NVIDIA GPU")
@pytest.mark.parametrize("reverse", [False, True])
def test_cudnn_matches_custom_vjp_on_gpu(setup, reverse):
    params, x, carry = setup
    lengths = jnp.array([TIME, 4, 1], jnp.int32)

    def loss(impl, params, x, carry):
        out, (h, c) = lstm.lstm_layer(params, x, carry, lengths=lengths, reverse=reverse, impl=impl)
        return (out**2).sum() + (h * c).sum()

    for impl_grads in zip(
        *(
            jax.tree.leaves(jax.grad(loss, argnums=(1, 2, 3))(impl, params, x, carry))
            for impl in ("cudnn", "custom_vjp")
        ),
        strict=True,
    ):
        assert rel_err(*impl_grads) <= 1e-4  # TF32 may be on for cuDNN's matmuls
