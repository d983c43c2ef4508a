"""Gradient accumulation (`make_optimizer(accumulate=k)`, optax.MultiSteps): k micro-batches of b
rows make the update of one batch of k*b rows where the loss is a mean and nothing else depends
on the batch; schedules count updates; frozen groups and the steps in between keep their bits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ulmfit_jax import optim
from ulmfit_jax.batching.lm_stream import LMBatch
from ulmfit_jax.core.runner import sharding
from ulmfit_jax.core.runner.train_state import create_train_state
from ulmfit_jax.models import awd_lstm
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.optim import param_groups
from ulmfit_jax.stages.lm_steps import make_lm_train_step

K, B = 4, 3  # micro-batches per update, rows per micro-batch
RTOL = 2e-5  # float32: a Welford running mean against one mean over k*b rows


def _params():
    rng = np.random.default_rng(0)
    return {
        "lower": {"weight": jnp.asarray(rng.standard_normal((5, 4)), jnp.float32)},
        "upper": {
            "weight": jnp.asarray(rng.standard_normal((2, 5)), jnp.float32),
            "bias": jnp.asarray([-0.0, 0.5], jnp.float32),  # a -0.0 parameter
        },
    }


LABELS = {"lower": {"weight": "group_0"}, "upper": {"weight": "group_1", "bias": "group_1"}}


def _loss(params, x, y):
    """Mean over rows of a squared error through two linear maps."""
    h = jnp.tanh(x @ params["lower"]["weight"].T)
    out = h @ params["upper"]["weight"].T + params["upper"]["bias"]
    return jnp.mean(jnp.sum((out - y) ** 2, axis=-1))


def _data(n_updates):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n_updates, K * B, 4)).astype(np.float32)
    y = rng.standard_normal((n_updates, K * B, 2)).astype(np.float32)
    return x, y


def _train(tx, params, batches, trainable=None):
    @jax.jit
    def step(params, state, x, y):
        grads = jax.grad(_loss)(params, x, y)
        updates, state = tx.update(grads, state, params, trainable=trainable)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    history = []
    for x, y in batches:
        params, state = step(params, state, x, y)
        history.append((params, state))
    return params, state, history


@pytest.mark.parametrize("schedule", ["one_cycle", "stlr"])
def test_k_micro_batches_equal_one_big_batch(schedule):
    n_updates = 5
    x, y = _data(n_updates)
    kw = dict(lr=3e-2, total_steps=n_updates, schedule=schedule, clip=0.5, cut_frac=0.2)
    big = optim.make_optimizer(LABELS, **kw)
    acc = optim.make_optimizer(LABELS, accumulate=K, **kw)
    p_big, s_big, h_big = _train(big, _params(), zip(x, y, strict=True))
    micro = [
        (x[u, m * B : (m + 1) * B], y[u, m * B : (m + 1) * B]) for u in range(5) for m in range(K)
    ]
    p_acc, s_acc, h_acc = _train(acc, _params(), micro)
    assert isinstance(s_acc, optax.MultiStepsState)
    # The schedule counted updates, not micro-batches: same step and lrs as the big batches.
    assert int(s_acc.inner_opt_state.step) == int(s_big.step) == n_updates
    for u in range(n_updates):
        hb, ha = optim.hyperparams(h_big[u][1]), optim.hyperparams(h_acc[u * K + K - 1][1])
        for part in hb:
            assert float(ha[part]["learning_rate"]) == pytest.approx(
                float(hb[part]["learning_rate"]), rel=1e-6
            )
            assert float(ha[part]["b1"]) == pytest.approx(float(hb[part]["b1"]), rel=1e-6)
        for m in range(K - 1):  # between updates: every parameter keeps its bits
            between = h_acc[u * K + m][0]
            before = h_acc[u * K - 1][0] if u else _params()
            for a, b in zip(jax.tree.leaves(between), jax.tree.leaves(before), strict=True):
                assert np.array_equal(np.asarray(a).view(np.uint32), np.asarray(b).view(np.uint32))
    for a, b in zip(jax.tree.leaves(p_acc), jax.tree.leaves(p_big), strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-6)
    assert np.signbit(np.asarray(p_acc["upper"]["bias"])[0]) == np.signbit(
        np.asarray(p_big["upper"]["bias"])[0]
    )


def test_frozen_groups_keep_their_bits_and_new_stage_restarts():
    x, y = _data(3)
    acc = optim.make_optimizer(LABELS, lr=1e-2, total_steps=3, accumulate=K)
    frozen = optim.trainable_groups(LABELS, 1)  # only group_1 trains
    micro = [
        (x[u, m * B : (m + 1) * B], y[u, m * B : (m + 1) * B]) for u in range(3) for m in range(K)
    ]
    start = _params()
    params, state, _ = _train(acc, start, micro[: 2 * K + 1], trainable=frozen)
    assert np.array_equal(params["lower"]["weight"], start["lower"]["weight"])
    assert not np.array_equal(params["upper"]["weight"], start["upper"]["weight"])
    assert int(state.mini_step) == 1 and int(state.inner_opt_state.step) == 2
    # A new stage drops the partial accumulation and restarts the schedule (and, by default,
    # Adam's moments), like a fresh optimiser.
    staged = optim.new_stage(acc, state, params, lr=5e-3, total_steps=3)
    fresh = optim.new_stage(acc, acc.init(params), params, lr=5e-3, total_steps=3)
    assert int(staged.mini_step) == 0 and int(staged.inner_opt_state.step) == 0
    for a, b in zip(jax.tree.leaves(staged), jax.tree.leaves(fresh), strict=True):
        assert np.array_equal(a, b)
    kept = optim.new_stage(acc, state, params, lr=5e-3, total_steps=3, clear_state=False)
    mu = kept.inner_opt_state.inner.inner_states["group_1"].inner_state.inner_state[0].mu
    assert np.any(np.asarray(jax.tree.leaves(mu)[0]) != 0)  # moments carried on
    assert not np.any(np.asarray(jax.tree.leaves(kept.acc_grads)[0]))


def test_accumulate_validation():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="accumulate"):
            optim.make_optimizer(LABELS, lr=1e-2, total_steps=3, accumulate=bad)
    plain = optim.make_optimizer(LABELS, lr=1e-2, total_steps=3, accumulate=1)
    assert isinstance(plain.init(_params()), optim.OptimizerState)


def test_lm_step_with_accumulation_equals_one_big_batch():
    """The LM step without dropout or AR/TAR, each micro-batch from the zero state: k windows of
    b rows accumulate to the update of one window of k*b rows."""
    config = AWDLSTMConfig(vocab_size=20, emb_sz=6, n_hid=8, n_layers=2, drop_mult=0.0)
    params = jax.device_get(awd_lstm.init_lm_params(jax.random.key(0), config))
    labels = param_groups.lm_param_groups(params)
    mesh = sharding.make_mesh(jax.devices()[:1])
    kw = dict(lr=1e-2, total_steps=2, schedule="one_cycle")
    rng = np.random.default_rng(2)
    data = rng.integers(2, 20, (K * B, 7)).astype(np.int32)
    tokens, targets, lengths = data[:, :-1], data[:, 1:], np.full(K * B, 6, np.int32)
    trainable = optim.trainable_groups(labels, 2)

    def run(accumulate, rows):
        tx = optim.make_optimizer(labels, accumulate=accumulate, **kw)
        step = make_lm_train_step(config, tx, alpha=0.0, beta=0.0, mesh=mesh)
        state = create_train_state(params, tx, seed=0, lstm_state=awd_lstm.zero_state(config, rows))
        for start in range(0, K * B, rows):
            rows_ = slice(start, start + rows)
            state = state.replace(lstm_state=awd_lstm.zero_state(config, rows))
            batch = LMBatch(tokens[rows_], targets[rows_], lengths[rows_], 6, 1.0, trainable)
            state, _ = step(state, batch)
        return jax.device_get(state.params)

    big, acc = run(1, K * B), run(K, B)
    frozen = {group for group, on in trainable.items() if not on}
    assert frozen
    for path, label in jax.tree_util.tree_flatten_with_path(labels)[0]:
        a = _at(acc, path)
        if label in frozen:
            assert np.array_equal(a, _at(params, path))
        else:
            np.testing.assert_allclose(a, _at(big, path), rtol=RTOL, atol=1e-7)
            assert not np.array_equal(a, _at(params, path))


def _at(tree, path):
    for key in path:
        tree = tree[key.key]
    return np.asarray(tree)
