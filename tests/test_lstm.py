"""The functional LSTM against torch.nn.LSTM, a float64 numpy loop, and its own autodiff path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ulmfit_jax.core.nn import lstm, lstm_recurrence, precision

torch = pytest.importorskip("torch")

BATCH, TIME, N_IN, HIDDEN = 3, 7, 5, 4
RTOL = 1e-5


def rel_err(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-12))


@pytest.fixture(scope="module")
def torch_lstm():
    torch.manual_seed(0)
    return torch.nn.LSTM(N_IN, HIDDEN, batch_first=True).double()


def params_from_torch(module, dtype=np.float32):
    to = lambda t: np.asarray(t.detach().numpy(), dtype)  # noqa: E731
    return {
        "w_ih": jnp.asarray(to(module.weight_ih_l0).T),
        "w_hh": jnp.asarray(to(module.weight_hh_l0).T),
        "bias": jnp.asarray(to(module.bias_ih_l0) + to(module.bias_hh_l0)),
    }


def numpy_lstm(params, x, h, c):
    """Float64 reference loop, written from the equations."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    outs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ p["w_ih"] + h @ p["w_hh"] + p["bias"]
        i, f, g, o = np.split(z, 4, axis=-1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        outs.append(h)
    return np.stack(outs, 1), h, c


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, TIME, N_IN))
    h0 = rng.normal(size=(BATCH, HIDDEN)) * 0.5
    c0 = rng.normal(size=(BATCH, HIDDEN)) * 0.5
    return x, h0, c0


@pytest.mark.parametrize("impl", ["custom_vjp", "autodiff"])
def test_matches_torch_outputs_carry_and_gradients(torch_lstm, data, impl):
    x, h0, c0 = data
    module = torch_lstm.float()
    xt = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    ht = torch.tensor(h0[None], dtype=torch.float32, requires_grad=True)
    ct = torch.tensor(c0[None], dtype=torch.float32, requires_grad=True)
    out_t, (hn_t, cn_t) = module(xt, (ht, ct))
    # A loss touching outputs and both final carries, so every gradient path is exercised.
    w_out = np.random.default_rng(1).normal(size=out_t.shape)
    loss_t = (out_t * torch.tensor(w_out, dtype=torch.float32)).sum() + hn_t.sum() * 0.7
    loss_t = loss_t + (cn_t**2).sum() * 0.3
    loss_t.backward()

    params = params_from_torch(module)

    def loss_fn(params, x, h, c):
        out, (hn, cn) = lstm.lstm_layer(params, x, (h, c), impl=impl)
        return (out * w_out).sum() + hn.sum() * 0.7 + (cn**2).sum() * 0.3, (out, hn, cn)

    grad_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2, 3), has_aux=True))
    (_, (out, hn, cn)), grads = grad_fn(params, jnp.float32(x), jnp.float32(h0), jnp.float32(c0))
    g_params, g_x, g_h, g_c = grads

    assert rel_err(out, out_t.detach()) <= RTOL
    assert rel_err(hn, hn_t[0].detach()) <= RTOL
    assert rel_err(cn, cn_t[0].detach()) <= RTOL
    assert rel_err(g_x, xt.grad) <= RTOL
    assert rel_err(g_h, ht.grad[0]) <= RTOL
    assert rel_err(g_c, ct.grad[0]) <= RTOL
    assert rel_err(g_params["w_ih"], module.weight_ih_l0.grad.T) <= RTOL
    assert rel_err(g_params["w_hh"], module.weight_hh_l0.grad.T) <= RTOL
    # torch's two biases receive the same gradient, which is the gradient of their sum.
    assert rel_err(g_params["bias"], module.bias_ih_l0.grad) <= RTOL
    assert rel_err(g_params["bias"], module.bias_hh_l0.grad) <= RTOL
    module.zero_grad()


def test_matches_float64_numpy(torch_lstm, data):
    x, h0, c0 = data
    params = params_from_torch(torch_lstm, np.float64)
    ref_out, ref_h, ref_c = numpy_lstm(params, x, h0, c0)
    with jax.enable_x64(True):
        p64 = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        out, (h, c) = lstm.lstm_layer(p64, jnp.asarray(x), (jnp.asarray(h0), jnp.asarray(c0)))
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(h, ref_h, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(c, ref_c, rtol=1e-12, atol=1e-13)
    # float32 against the float64 truth.
    out32, _ = lstm.lstm_layer(
        {k: jnp.float32(v) for k, v in params.items()}, jnp.float32(x), (h0, c0)
    )
    assert rel_err(out32, ref_out) <= RTOL


def _grads(impl, params, x, carry, lengths, reverse, w_out):
    def loss_fn(params, x, carry):
        out, (h, c) = lstm.lstm_layer(params, x, carry, lengths=lengths, reverse=reverse, impl=impl)
        return (out * w_out).sum() + (h * c).sum()

    return jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2)))(params, x, carry)


@pytest.mark.parametrize("feature_major", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_custom_vjp_equals_autodiff_with_padding(
    torch_lstm, data, reverse, feature_major, monkeypatch
):
    """Both loop layouts of the custom VJP (feature-major is CPU's default, batch-major GPU's
    and TPU's) against autodiff through `lstm_cell`."""
    monkeypatch.setattr(lstm_recurrence, "feature_major_default", lambda: feature_major)
    x, h0, c0 = data
    params = params_from_torch(torch_lstm)
    lengths = jnp.array([TIME, 4, 1], jnp.int32)
    w_out = jnp.float32(np.random.default_rng(2).normal(size=(BATCH, TIME, HIDDEN)))
    carry = (jnp.float32(h0), jnp.float32(c0))
    args = (params, jnp.float32(x), carry, lengths, reverse, w_out)
    loss_a, grads_a = _grads("autodiff", *args)
    loss_c, grads_c = _grads("custom_vjp", *args)
    assert rel_err(loss_c, loss_a) <= RTOL
    for ga, gc in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_c), strict=True):
        assert rel_err(gc, ga) <= RTOL


@pytest.mark.parametrize("reverse", [False, True])
def test_padded_rows_equal_unpadded_rows(torch_lstm, data, reverse):
    """A padded row gives the same outputs and final carry as the row alone; padding is zero."""
    x, h0, c0 = data
    params = params_from_torch(torch_lstm)
    lengths = np.array([TIME, 4, 1])
    garbage = np.where(np.arange(TIME)[None, :, None] < lengths[:, None, None], x, 1e3)
    out, (h, c) = lstm.lstm_layer(
        params, jnp.float32(garbage), (h0, c0), lengths=jnp.int32(lengths), reverse=reverse
    )
    for b, n in enumerate(lengths):
        out_b, (h_b, c_b) = lstm.lstm_layer(
            params, jnp.float32(x[b : b + 1, :n]), (h0[b : b + 1], c0[b : b + 1]), reverse=reverse
        )
        np.testing.assert_allclose(out[b, :n], out_b[0], rtol=RTOL, atol=1e-6)
        np.testing.assert_allclose(h[b], h_b[0], rtol=RTOL, atol=1e-6)
        np.testing.assert_allclose(c[b], c_b[0], rtol=RTOL, atol=1e-6)
        assert np.all(np.asarray(out[b, n:]) == 0.0)


def test_reverse_matches_torch_on_flipped_input(torch_lstm, data):
    x, h0, c0 = data
    module = torch_lstm.float()
    out_t, (hn_t, _) = module(
        torch.tensor(x[:, ::-1].copy(), dtype=torch.float32),
        (torch.tensor(h0[None], dtype=torch.float32), torch.tensor(c0[None], dtype=torch.float32)),
    )
    out, (h, _) = lstm.lstm_layer(params_from_torch(module), jnp.float32(x), (h0, c0), reverse=True)
    assert rel_err(out, out_t.detach().numpy()[:, ::-1]) <= RTOL
    assert rel_err(h, hn_t[0].detach()) <= RTOL


def test_reverse_padded_is_an_involution():
    x = jnp.arange(2 * 5).reshape(2, 5)
    lengths = jnp.array([5, 3])
    once = lstm.reverse_padded(x, lengths)
    np.testing.assert_array_equal(once, [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]])
    np.testing.assert_array_equal(lstm.reverse_padded(once, lengths), x)


def test_lstm_cell_matches_layer(torch_lstm, data):
    x, h0, c0 = data
    params = params_from_torch(torch_lstm)
    gates_x = jnp.float32(x[:, 0]) @ params["w_ih"] + params["bias"]
    (h, c), y = lstm.lstm_cell(params["w_hh"], (jnp.float32(h0), jnp.float32(c0)), gates_x)
    out, (h1, c1) = lstm.lstm_layer(params, jnp.float32(x[:, :1]), (h0, c0))
    np.testing.assert_allclose(y, out[:, 0], rtol=RTOL)
    np.testing.assert_allclose(c, c1, rtol=RTOL)


def test_unknown_impl_is_rejected(torch_lstm, data):
    with pytest.raises(ValueError, match="unknown LSTM impl"):
        lstm.lstm_layer(params_from_torch(torch_lstm), jnp.zeros((1, 2, N_IN)), impl="nope")


@pytest.mark.parametrize("impl, reverse", [("custom_vjp", False), ("autodiff", True)])
def test_bfloat16_compute_is_close_to_float32(impl, reverse):
    """`compute_dtype=bfloat16`: bf16 matmul operands, float32 state/outputs, finite gradients."""
    batch, time, n_in, hidden = 4, 9, 16, 32
    params = lstm.init_lstm_params(jax.random.key(0), n_in, hidden)
    x = jax.random.normal(jax.random.key(1), (batch, time, n_in))
    carry = (jnp.full((batch, hidden), 0.1), jnp.full((batch, hidden), -0.2))
    lengths = jnp.array([time, 5, 1, time], jnp.int32)

    def run(compute_dtype):
        def loss_fn(params, x, carry):
            out, (h, c) = lstm.lstm_layer(
                params,
                x,
                carry,
                lengths=lengths,
                reverse=reverse,
                impl=impl,
                compute_dtype=compute_dtype,
            )
            return (out**2).sum() + (h * c).sum(), (out, h, c)

        fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2), has_aux=True))
        return fn(params, x, carry)

    (_, ref), ref_grads = run(None)
    (_, low), low_grads = run(jnp.bfloat16)
    for a, b in zip(low, ref, strict=True):
        assert a.dtype == jnp.float32
        assert rel_err(a, b) <= 2e-2
    for a, b in zip(jax.tree.leaves(low_grads), jax.tree.leaves(ref_grads), strict=True):
        assert a.dtype == b.dtype == jnp.float32
        assert np.all(np.isfinite(a))
        assert rel_err(a, b) <= 5e-2
    if impl == "autodiff":
        return
    # float32 as compute_dtype is the float32 path itself, bit for bit.
    (_, same), same_grads = run(jnp.float32)
    for a, b in zip(jax.tree.leaves(same_grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(same, ref, strict=True):
        np.testing.assert_array_equal(a, b)


def test_precision_einsum_and_run_recurrence_compute_dtype():
    a = jax.random.normal(jax.random.key(0), (3, 5))
    b = jax.random.normal(jax.random.key(1), (5, 4))
    np.testing.assert_array_equal(
        precision.einsum("ij,jk->ik", a, b, None), jnp.einsum("ij,jk->ik", a, b)
    )
    low = precision.einsum("ij,jk->ik", a, b, jnp.bfloat16)
    assert low.dtype == jnp.float32
    assert rel_err(low, a @ b) <= 2e-2
    seen = []

    def step(w, carry, x_t):
        seen.append(w.dtype)
        h = jnp.tanh(x_t + precision.einsum("bh,hg->bg", carry, w, jnp.bfloat16))
        return h, h

    w = jax.random.normal(jax.random.key(2), (4, 4)) * 0.3
    xs = jax.random.normal(jax.random.key(3), (6, 3, 4))
    ys, h = lstm.run_recurrence(step, w, xs, jnp.zeros((3, 4)), None, compute_dtype=jnp.bfloat16)
    assert seen == [jnp.bfloat16] and ys.dtype == h.dtype == jnp.float32
