"""ULMFiT's optimiser against fastai 2.8 (fixtures from scripts/fixtures/make_optim_fixture.py) and
the paper's formulas."""

from __future__ import annotations

import functools
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ulmfit_jax import optim
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.optim import schedules
from ulmfit_jax.optim.param_groups import BATCH_STATS, param_groups
from ulmfit_jax.weights.fastai import classifier_params_from_state_dict, lm_params_from_state_dict

RTOL = 1e-6  # our parameters equal fastai's within 1e-6 relative, step by step
# Whole runs: 15 float32 steps from fastai's gradients. Measured here 7.4e-7 (classifier); a
# float64 replay is 3.4e-7 from fastai, i.e. half is fastai's own float32 rounding. Some room
# for other CPUs' rounding.
RUN_RTOL = 1.5e-6


def _load(fixtures_dir, name):
    with np.load(fixtures_dir / "optim" / f"{name}.npz") as f:
        return {k: f[k] for k in f.files}


def _rel_err(ours, theirs) -> float:
    """Max |ours - theirs| over max |theirs| of a tensor (elementwise relative error is
    meaningless for entries that cross zero)."""
    theirs = np.asarray(theirs, np.float64)
    scale = max(np.abs(theirs).max(), 1e-30)
    return float(np.abs(np.asarray(ours, np.float64) - theirs).max() / scale)


TINY_CLASSIFIER = ClassifierConfig(
    vocab_size=24, n_class=3, emb_sz=6, n_hid=8, n_layers=3, lin_ftrs=(10,)
)


@functools.cache
def _tiny_classifier_cached():
    # The initial weights of the fastai classifier run: a real tree, no initialisation to compile.
    run = _load(pathlib.Path(__file__).parent / "fixtures", "classifier_run")
    weights = {k[len("init/") :]: v for k, v in run.items() if k.startswith("init/")}
    params = classifier_params_from_state_dict(weights, TINY_CLASSIFIER)
    return params, param_groups(params)


def _tiny_classifier():
    """(params, labels), fresh dicts each call (tests may edit them)."""
    params, labels = _tiny_classifier_cached()
    return jax.tree.map(lambda x: x, params), jax.tree.map(lambda x: x, labels)


# ---------------------------------------------------------------------------------------------
# Discriminative learning rates
# ---------------------------------------------------------------------------------------------


def test_group_lrs_factor_and_fastai_slices():
    np.testing.assert_allclose(
        schedules.group_lrs(1e-2, 5), [1e-2 / 2.6**k for k in (4, 3, 2, 1, 0)], rtol=1e-15
    )
    np.testing.assert_array_equal(schedules.group_lrs(1e-2, 3, lr_mult=None), [1e-2] * 3)
    # slice(lr / 2.6**4, lr) over 5 groups is the factor 2.6 (the classifier recipe) ...
    np.testing.assert_allclose(
        schedules.group_lrs(slice(1e-2 / 2.6**4, 1e-2), 5),
        schedules.group_lrs(1e-2, 5),
        rtol=1e-14,
    )
    # ... but not over the language model's 4 groups.
    lm = schedules.group_lrs(slice(1e-2 / 2.6**4, 1e-2), 4)
    np.testing.assert_allclose(lm[1:] / lm[:-1], [2.6 ** (4 / 3)] * 3, rtol=1e-12)
    np.testing.assert_allclose(schedules.group_lrs(slice(None, 1e-2), 3), [1e-3, 1e-3, 1e-2])
    with pytest.raises(ValueError):
        schedules.group_lrs([1e-3, 1e-2], 3)


def test_group_lrs_equal_fastai_even_mults(fixtures_dir):
    """fastai's first 1cycle lr is lr_max / 25 for every group (classifier run, stage 2)."""
    run = _load(fixtures_dir, "classifier_run")
    stage = json.loads(str(run["meta"]))["stages"][1]
    first_step = 3  # after the 3 steps of stage 1
    ours = schedules.group_lrs(slice(*stage["lr"]), 5) / 25.0
    np.testing.assert_allclose(ours, run[f"step_{first_step}/lr"], rtol=1e-14)


def test_discriminative_ratios_through_partition():
    params, labels = _tiny_classifier()
    tx = optim.make_optimizer(labels, lr=1.0, total_steps=1, schedule="constant", weight_decay=0.0)
    state = tx.init(params)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    updates, state = jax.jit(tx.update)(grads, state, params)
    # Adam's first step moves every parameter by lr * g / (|g| + eps): the group's lr, nearly.
    step = 0.5 / (0.5 + 1e-5)
    lrs = {
        g: float(h["learning_rate"]) for g, h in optim.hyperparams(state).items() if ":" not in g
    }
    assert lrs == pytest.approx({f"group_{k}": 2.6 ** -(4 - k) for k in range(5)}, rel=1e-7)
    np.testing.assert_allclose(
        -updates["encoder"]["lstm_1"]["w_ih"], lrs["group_2"] * step, rtol=1e-6
    )
    np.testing.assert_allclose(-updates["encoder"]["embedding"], lrs["group_0"] * step, rtol=1e-6)
    # The LSTM bias is two fastai tensors: twice the step.
    np.testing.assert_allclose(
        -updates["encoder"]["lstm_0"]["bias"], 2 * lrs["group_1"] * step, rtol=1e-6
    )


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------


def _stlr_paper(t, T, lr_max, cut_frac=0.1, ratio=32.0):
    cut = math.floor(T * cut_frac)
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return lr_max * (1 + p * (ratio - 1)) / ratio


@pytest.mark.parametrize("total", [10, 30, 100, 1000])
def test_stlr_equals_the_paper(total):
    t = np.arange(total + 1)
    ours = np.asarray(jax.jit(schedules.stlr)(t, total, 0.01))
    paper = np.array([_stlr_paper(int(s), total, 0.01) for s in t])
    np.testing.assert_allclose(ours, paper, rtol=1e-6)
    cut = total // 10
    assert ours.argmax() == cut and ours[cut] == pytest.approx(0.01, rel=1e-7)
    assert ours[0] == pytest.approx(0.01 / 32, rel=1e-7)
    assert ours[total] == pytest.approx(0.01 / 32, rel=1e-6)
    assert np.all(np.diff(ours[: cut + 1]) > 0) and np.all(np.diff(ours[cut:]) < 0)


def test_stlr_cut_and_guard():
    totals = np.arange(10, 20000)
    cut32 = np.floor(totals.astype(np.float32) * np.float32(0.1))
    np.testing.assert_array_equal(cut32, [math.floor(int(T) * 0.1) for T in totals])
    # T * cut_frac fractional: the paper's formula undershoots lr_max / ratio at the end (it is
    # negative here); ours stops at lr_max / ratio.
    assert _stlr_paper(14, 15, 1.0) < 0
    assert float(schedules.stlr(14, 15, 1.0)) == pytest.approx(1 / 32, rel=1e-7)
    with pytest.raises(ValueError, match="STLR"):
        optim.make_optimizer(_tiny_classifier()[1], lr=1e-2, total_steps=9, schedule="stlr")


@pytest.mark.parametrize("case", ["default", "pct_0.3"])
def test_one_cycle_equals_fastai(fixtures_dir, case):
    f = _load(fixtures_dir, "one_cycle")
    lr, mom, pct_start = f[f"{case}/lr"], f[f"{case}/mom"], float(f[f"{case}/pct_start"])
    total = len(mom)
    # fastai's position is pct_train = train_iter / total: 0 at the first step.
    np.testing.assert_allclose(f[f"{case}/pct"], np.arange(total) / total, rtol=1e-12)
    lr_max = schedules.group_lrs(slice(float(f["lr_min"]), float(f["lr_max"])), lr.shape[1])
    step = np.arange(total)[:, None]
    ours = np.asarray(
        schedules.one_cycle(step, total, lr_max.astype(np.float32), pct_start=pct_start)
    )
    ours_mom = np.asarray(
        schedules.one_cycle_momentum(np.arange(total), total, pct_start=pct_start)
    )
    assert np.abs(ours / lr - 1).max() < 1e-6
    assert np.abs(ours_mom / mom - 1).max() < 1e-6
    assert lr[0, -1] == pytest.approx(float(f["lr_max"]) / 25)


# ---------------------------------------------------------------------------------------------
# Adam
# ---------------------------------------------------------------------------------------------


def _run_adam(f, case, hypers_at=None):
    x0, grads = f[f"{case}/init_0"], f[f"{case}/grads_0"]
    lr, mom = (1e-2, 0.9) if case != "betas_paper" else (4e-3, 0.7)
    tx = optax.inject_hyperparams(optim.fastai_adam)(learning_rate=lr, b1=mom, b2=0.99, eps=1e-5)
    params, state = jnp.asarray(x0), None
    state = tx.init(params)
    errors = []
    for t in range(len(grads)):
        if hypers_at is not None:
            lr_t, mom_t = hypers_at(t)
            state.hyperparams["learning_rate"] = jnp.float32(lr_t)
            state.hyperparams["b1"] = jnp.float32(mom_t)
        updates, state = tx.update(jnp.asarray(grads[t]), state, params)
        params = optax.apply_updates(params, updates)
        errors.append(_rel_err(params, f[f"{case}/params_0"][t]))
    return max(errors)


@pytest.mark.parametrize("case", ["fixed", "betas_paper", "hypers"])
def test_adam_equals_fastai(fixtures_dir, case):
    f = _load(fixtures_dir, "adam")
    hypers_at = None
    if case == "hypers":
        hypers_at = lambda t: (f["hypers/lr"][t], f["hypers/mom"][t])
    assert _run_adam(f, case, hypers_at) < RTOL


def test_adam_two_groups_via_partition(fixtures_dir):
    f = _load(fixtures_dir, "adam")
    params = {"a": jnp.asarray(f["groups/init_0"]), "b": jnp.asarray(f["groups/init_1"])}
    labels = {"a": "group_0", "b": "group_1"}
    adam = optax.inject_hyperparams(optim.fastai_adam)
    tx = optax.partition({g: adam(learning_rate=1e-2) for g in ("group_0", "group_1")}, labels)
    state = tx.init(params)
    for t in range(len(f["groups/mom"])):
        for k, g in enumerate(("group_0", "group_1")):
            hp = state.inner_states[g].inner_state.hyperparams
            hp["learning_rate"] = jnp.float32(f["groups/lr"][t, k])
            hp["b1"] = jnp.float32(f["groups/mom"][t])
        grads = {"a": f["groups/grads_0"][t], "b": f["groups/grads_1"][t]}
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        assert _rel_err(params["a"], f["groups/params_0"][t]) < RTOL
        assert _rel_err(params["b"], f["groups/params_1"][t]) < RTOL


def test_clip_grad_norm_equals_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = {"w": rng.standard_normal((5, 3)).astype(np.float32), "b": rng.standard_normal(4)}
    grads["b"] = grads["b"].astype(np.float32)
    for max_norm in (0.5, 100.0):
        tensors = [torch.tensor(grads["w"]), torch.tensor(grads["b"]), torch.tensor(grads["b"])]
        params = [torch.nn.Parameter(torch.zeros_like(t)) for t in tensors]
        for p, t in zip(params, tensors, strict=True):
            p.grad = t.clone()
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        # Our "b" stands for two torch tensors (an LSTM's summed biases).
        ours = optim.clip_grad_norm(grads, max_norm, {"w": 1, "b": 2})
        np.testing.assert_allclose(ours["w"], params[0].grad.numpy(), rtol=1e-6)
        np.testing.assert_allclose(ours["b"], params[1].grad.numpy(), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Replaying whole fastai fine-tuning runs
# ---------------------------------------------------------------------------------------------


def _replay(run, to_tree, labels, params, *, clip=None, roles=None):
    """Feed fastai's gradients through our optimiser, stage by stage, in one jitted step.

    Returns (max relative error of params, max relative error of lr/mom, number of traces)."""
    meta = json.loads(str(run["meta"]))
    weights = {k[len("init/") :]: v for k, v in run.items() if k.startswith("init/")}
    n_groups = meta["n_groups"]
    first = meta["stages"][0]
    tx = optim.make_optimizer(
        labels, lr=1.0, total_steps=1, schedule="one_cycle", lr_mult=None, clip=clip, roles=roles
    )
    roles = optim.fastai_leaf_roles(labels) if roles is None else roles
    traces = []

    @jax.jit
    def step(grads, state, params, trainable):
        traces.append(1)
        updates, state = tx.update(grads, state, params, trainable=trainable)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    assert first["freeze_to"] == -1
    t, param_err, hyper_err = 0, 0.0, 0.0
    for stage in meta["stages"]:
        n_steps = stage["epochs"] * (meta["n_steps"] // sum(s["epochs"] for s in meta["stages"]))
        lr = slice(*stage["lr"]) if isinstance(stage["lr"], list) else stage["lr"]
        state = optim.new_stage(tx, state, params, lr=lr, total_steps=n_steps, lr_mult=None)
        n = -stage["freeze_to"] if stage["freeze_to"] < 0 else None
        trainable = optim.trainable_groups(labels, n)
        for _ in range(n_steps):
            prefix = f"step_{t}/"
            grad_weights = {k: np.zeros_like(v) for k, v in weights.items()}
            for k, v in run.items():
                if k.startswith(prefix + "grad/"):
                    grad_weights[k[len(prefix + "grad/") :]] = v
            for k in grad_weights:  # our LSTM bias is bias_ih + bias_hh, its gradient bias_ih's
                if k.endswith("bias_hh_l0"):
                    grad_weights[k] = np.zeros_like(grad_weights[k])
            # BatchNorm statistics: fastai's forward pass updated them before the step.
            previous = weights
            weights = dict(weights)
            for k, v in run.items():
                if k.startswith(prefix + "param/"):
                    weights[k[len(prefix + "param/") :]] = v
            stats = {k: v for k, v in weights.items() if k.endswith(("_mean", "_var"))}
            before = to_tree({**previous, **stats})
            before = jax.tree.map(
                lambda ours, new, lab: new if lab == BATCH_STATS else ours, params, before, labels
            )
            new_params, state = step(to_tree(grad_weights), state, before, trainable)
            theirs = to_tree(weights)
            for ours_leaf, theirs_leaf, old_leaf, lab, norm in zip(
                jax.tree.leaves(new_params),
                jax.tree.leaves(theirs),
                jax.tree.leaves(before),
                jax.tree.leaves(labels),
                jax.tree.leaves(roles.norm),
                strict=True,
            ):
                frozen = lab == BATCH_STATS or not (trainable[lab] or norm)
                if frozen:  # bit-identical to what went in (BatchNorm stats: fastai's)
                    np.testing.assert_array_equal(
                        np.asarray(ours_leaf).view(np.uint32), np.asarray(old_leaf).view(np.uint32)
                    )
                param_err = max(param_err, _rel_err(ours_leaf, theirs_leaf))
            params = new_params
            hp = optim.hyperparams(state)
            for k in range(n_groups):
                if trainable[f"group_{k}"]:
                    lr_k = float(hp[f"group_{k}"]["learning_rate"])
                    hyper_err = max(hyper_err, abs(lr_k / run[prefix + "lr"][k] - 1))
            b1 = float(hp[f"group_{n_groups - 1}"]["b1"])
            hyper_err = max(hyper_err, abs(b1 / run[prefix + "mom"][-1] - 1))
            t += 1
    assert t == meta["n_steps"]
    return param_err, hyper_err, len(traces)


def test_classifier_fine_tuning_equals_fastai(fixtures_dir):
    """ULMFiT's classifier recipe (freeze_to -1, -2, -3, unfreeze; fit_one_cycle with lr slices;
    GradientClip) through fastai's TextLearner, replayed with fastai's gradients."""
    run = _load(fixtures_dir, "classifier_run")

    def to_tree(weights):
        return classifier_params_from_state_dict(weights, TINY_CLASSIFIER)

    params = to_tree({k[5:]: v for k, v in run.items() if k.startswith("init/")})
    param_err, hyper_err, traces = _replay(run, to_tree, param_groups(params), params, clip=3.0)
    assert param_err < RUN_RTOL, param_err
    assert hyper_err < 1e-6, hyper_err
    assert traces == 1  # four stages, one compilation


def test_language_model_fine_tuning_equals_fastai(fixtures_dir):
    """freeze (top group: embedding + tied decoder + its bias), then unfreeze; float lrs."""
    run = _load(fixtures_dir, "lm_run")

    def to_tree(weights):
        return lm_params_from_state_dict(weights)[0]

    params = to_tree({k[5:]: v for k, v in run.items() if k.startswith("init/")})
    labels = param_groups(params)
    assert optim.fastai_leaf_roles(labels).decay["decoder"]["bias"] is False  # fastai's wd_bn_bias
    param_err, hyper_err, traces = _replay(run, to_tree, labels, params)
    assert param_err < RUN_RTOL, param_err
    assert hyper_err < 1e-6, hyper_err
    assert traces == 1


def _bn_tree(w):
    def linear(prefix):
        return {"kernel": w[prefix + "weight"].T, "bias": w[prefix + "bias"]}

    bn = {"scale": w["0.1.weight"], "bias": w["0.1.bias"]}
    bn |= {"mean": w["0.1.running_mean"], "var": w["0.1.running_var"]}
    return {
        "g0": {"linear": linear("0.0."), "bn": bn},
        "g1": {"linear": linear("1.0.")},
        "g2": {"linear": linear("2.")},
    }


def test_train_bn_and_no_decay_on_bn_and_bias_equal_fastai(fixtures_dir):
    """A BatchNorm in the bottom group keeps training while the group is frozen (fastai's
    train_bn) and, like Linear biases, gets no weight decay (wd_bn_bias=False)."""
    run = _load(fixtures_dir, "bn_run")
    params = _bn_tree({k[5:]: v for k, v in run.items() if k.startswith("init/")})
    labels = jax.tree.map(lambda _: "group_0", params)
    labels["g0"]["bn"] |= {"mean": BATCH_STATS, "var": BATCH_STATS}
    labels["g1"] = jax.tree.map(lambda _: "group_1", params["g1"])
    labels["g2"] = jax.tree.map(lambda _: "group_2", params["g2"])
    roles = optim.fastai_leaf_roles(labels)
    assert roles.norm["g0"]["bn"]["scale"] and not roles.decay["g1"]["linear"]["bias"]

    def to_tree(weights):
        return jax.tree.map(jnp.asarray, _bn_tree(weights))

    param_err, _, traces = _replay(run, to_tree, labels, params)
    assert param_err < RUN_RTOL, param_err
    assert traces == 1
    # The frozen bottom group's BatchNorm weights did change in stage 1 (fastai's step 0).
    assert "step_0/param/0.1.weight" in run and "step_0/param/0.0.weight" not in run


# ---------------------------------------------------------------------------------------------
# Freezing, stages, compilation
# ---------------------------------------------------------------------------------------------


def _random_grads(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32), params)


def test_frozen_groups_params_and_state_bit_identical():
    params, labels = _tiny_classifier()
    tx = optim.make_optimizer(labels, lr=1e-2, total_steps=6, clip=1.0)
    trainable = optim.trainable_groups(labels, 2)
    assert [bool(v) for v in trainable.values()] == [False, False, False, True, True]
    state0 = tx.init(params)
    # Start from a state with non-zero moments everywhere, so "unchanged" is not "still zero".
    step = jax.jit(lambda g, s, p, m: tx.update(g, s, p, trainable=m))
    _, state0 = step(_random_grads(params, 9), state0, params, optim.trainable_groups(labels))
    state, p = state0, params
    for k in range(4):
        updates, state = step(_random_grads(params, k), state, p, trainable)
        p = optax.apply_updates(p, updates)
    for g in ("group_0", "group_1", "group_2"):
        for a, b in zip(
            jax.tree.leaves(state.inner.inner_states[g]),
            jax.tree.leaves(state0.inner.inner_states[g]),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
    for g in ("group_3", "group_4"):
        mu_new = state.inner.inner_states[g].inner_state.inner_state[0].mu
        mu_old = state0.inner.inner_states[g].inner_state.inner_state[0].mu
        assert not all(
            np.array_equal(a, b)
            for a, b in zip(*map(jax.tree.leaves, (mu_new, mu_old)), strict=True)
        )
    for leaf_new, leaf_old, lab in zip(
        jax.tree.leaves(p), jax.tree.leaves(params), jax.tree.leaves(labels), strict=True
    ):
        if lab in ("group_0", "group_1", "group_2", BATCH_STATS):
            np.testing.assert_array_equal(leaf_new, leaf_old)
        else:
            assert not np.array_equal(leaf_new, leaf_old)


def test_batch_stats_untouched_bit_for_bit():
    params, labels = _tiny_classifier()
    bn = params["head"]["layer_0"]["bn"]
    bn["mean"] = bn["mean"].at[0].set(-0.0).at[1].set(jnp.nan)
    tx = optim.make_optimizer(labels, lr=1e-2, total_steps=3)
    grads = _random_grads(params, 1)  # even with gradients for the stats
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    for name in ("mean", "var"):
        np.testing.assert_array_equal(
            np.asarray(new["head"]["layer_0"]["bn"][name]).view(np.uint32),
            np.asarray(bn[name]).view(np.uint32),
        )


def test_new_stage_clears_state_like_fastai_freeze_to():
    params, labels = _tiny_classifier()
    tx = optim.make_optimizer(labels, lr=1e-2, total_steps=4)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for k in range(3):
        _, state = update(_random_grads(params, k), state, params)
    assert int(state.step) == 3
    cleared = optim.new_stage(tx, state, params, lr=slice(1e-3, 1e-2), total_steps=7)
    fresh = tx.init(params)
    for a, b in zip(jax.tree.leaves(cleared.inner), jax.tree.leaves(fresh.inner), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(cleared.step) == 0 and int(cleared.total_steps) == 7
    assert float(cleared.lr_max["group_0"]) == pytest.approx(1e-3)
    kept = optim.new_stage(tx, state, params, lr=1e-3, total_steps=7, clear_state=False)
    for a, b in zip(jax.tree.leaves(kept.inner), jax.tree.leaves(state.inner), strict=True):
        np.testing.assert_array_equal(a, b)


def test_whole_unfreezing_schedule_compiles_once():
    params, labels = _tiny_classifier()
    tx = optim.make_optimizer(labels, lr=1e-2, total_steps=10, schedule="stlr", clip=0.25)
    traces = []

    @jax.jit
    def step(grads, state, params, trainable):
        traces.append(1)
        updates, state = tx.update(grads, state, params, trainable=trainable)
        return optax.apply_updates(params, updates), state, optim.hyperparams(state)

    state = tx.init(params)
    seen = []
    for n, lr in [(1, 2e-2), (2, 1e-2), (3, 5e-3), (None, 1e-3)]:
        state = optim.new_stage(tx, state, params, lr=lr, total_steps=10, schedule="stlr")
        for k in range(2):
            grads = _random_grads(params, k)
            params, state, hp = step(grads, state, params, optim.trainable_groups(labels, n))
        seen.append(float(hp["group_4"]["learning_rate"]))
    assert len(traces) == 1
    # The second step of each 10-step STLR stage: lr_max * (1 + (1/1) * 31) / 32 = lr_max.
    np.testing.assert_allclose(seen, [2e-2, 1e-2, 5e-3, 1e-3], rtol=1e-6)
