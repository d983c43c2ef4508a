"""fastai's learning-rate finder: the curve, stopping and suggestions against fastai 2.8.12
(tests/fixtures/lr_find, from scripts/fixtures/make_lr_find_fixture.py), then whole sweeps on a
tiny language model and a tiny classifier phase."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

from ulmfit_jax import optim
from ulmfit_jax.batching.classifier_batches import ClassifierBatch
from ulmfit_jax.batching.lm_stream import LMBatch
from ulmfit_jax.core.runner import sharding
from ulmfit_jax.core.runner.train_state import create_train_state
from ulmfit_jax.models import awd_lstm, classifier
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.optim import lr_find as lrf
from ulmfit_jax.optim import param_groups
from ulmfit_jax.stages.classifier_steps import make_classifier_train_step
from ulmfit_jax.stages.lm_steps import make_lm_train_step, reset_lstm_state

RTOL = 1e-6  # measured: smoothed losses 1.6e-7 from fastai's; suggestions equal exactly


@pytest.fixture(scope="module")
def cases(fixtures_dir):
    record = json.loads((fixtures_dir / "lr_find" / "fastai_suggestions.json").read_text())
    assert record["fastai"] == "2.8.12"
    return {case["name"]: case for case in record["cases"]}


def _rel(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape
    return float(np.max(np.abs(ours - theirs) / np.abs(theirs)))


def _curve_loss(lr: float, c: dict) -> float:
    x = math.log10(lr)
    return (
        c["base"]
        - c["drop"] / (1 + math.exp(-c["slope"] * (x - c["x_drop"])))
        + c["rise"] * math.exp(c["grow"] * (x - c["x_rise"]))
    )


@pytest.mark.parametrize("name", ["diverging", "full", "short"])
def test_smoothing_and_suggestions_equal_fastai(cases, name):
    case = cases[name]
    smooth = lrf.smooth_losses(case["raw_losses"])
    assert _rel(smooth, case["smooth_losses"]) < RTOL
    for losses in (case["smooth_losses"], smooth):  # fastai's curve, and ours
        found = lrf.suggestions(case["lrs"], losses, case["num_it"])
        for key, theirs in case["suggestions"].items():
            assert found[key] == pytest.approx(theirs, rel=RTOL), key
    if "slide" not in case["suggestions"]:  # fastai raises: the trimmed curve is too short
        assert found["slide"] is None


@pytest.mark.parametrize("name", ["diverging", "full", "short"])
def test_sweep_replays_fastai(cases, name):
    """The same loss formula through our loop: same lrs, stop, curve and suggestions."""
    case = cases[name]

    def step(state, batch):
        loss = _curve_loss(state["lr"], case["curve"]) + case["noise"][state["i"]]
        return {"i": state["i"] + 1, "lr": state["lr"]}, {"loss": loss}

    result = lrf.lr_find(
        step,
        {"i": 0, "lr": 0.0},
        lambda epoch: range(10),  # fastai's synth_learner: 10 batches an epoch
        set_lr=lambda state, lr: {**state, "lr": lr},
        start_lr=case["start_lr"],
        end_lr=case["end_lr"],
        num_it=case["num_it"],
        stop_div=case["stop_div"],
    )
    assert len(result.lrs) == len(case["lrs"])
    assert result.lrs == pytest.approx(case["lrs"], rel=1e-12)
    assert _rel(result.losses, case["smooth_losses"]) < RTOL
    for key, theirs in case["suggestions"].items():
        assert result.suggestions[key] == pytest.approx(theirs, rel=RTOL), key
    assert result.stopped_early == (name == "diverging")


def test_sweep_schedule_and_limits():
    lrs = lrf.sweep_lrs(1e-7, 10, 100)
    assert len(lrs) == 100 and lrs[0] == 1e-7
    assert lrs[-1] == pytest.approx(1e-7 * 1e8 ** (99 / 100))  # i / num_it: 10 is never used
    assert len(lrf.sweep_lrs(1e-3, 1, 3)) == 6  # fastai raises num_it to 6
    assert lrf.suggestions([1e-3] * 4, [1.0] * 4) == dict.fromkeys(lrf.SUGGESTIONS)
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        lrf.lr_find(lambda s, b: (s, {"loss": 1.0}), {}, [0], set_lr=lambda s, lr: s, end_lr=0)


def _snapshot(state):
    return jax.tree.map(lambda x: np.array(x, copy=True), jax.device_get(state))


def _assert_untouched(state, snapshot):
    for leaf in jax.tree.leaves(state):
        assert not (isinstance(leaf, jax.Array) and leaf.is_deleted())
    same = jax.tree.map(
        lambda a, b: np.array_equal(np.asarray(a), b, equal_nan=True), state, snapshot
    )
    assert all(jax.tree.leaves(same))


@pytest.fixture(scope="module")
def mesh():
    return sharding.make_mesh(jax.devices()[:1])


def test_lr_find_on_a_language_model(tmp_path, mesh):
    config = AWDLSTMConfig(vocab_size=32, emb_sz=8, n_hid=12, n_layers=2)
    params = awd_lstm.init_lm_params(jax.random.key(0), config)
    labels = param_groups.lm_param_groups(params)
    tx = optim.make_optimizer(labels, lr=1e-7, total_steps=1, schedule="constant", lr_mult=None)
    step = make_lm_train_step(config, tx, mesh=mesh)
    trainable = optim.trainable_groups(labels)
    state = create_train_state(
        params, tx, seed=0, lstm_state=awd_lstm.zero_state(config, 4), mesh=mesh
    )
    rng = np.random.default_rng(0)
    data = rng.integers(2, 32, (4, 6 * 8 + 1)).astype(np.int32)

    def epoch(i):  # 6 windows of a fixed 4-row stream
        for w in range(6):
            x = data[:, w * 8 : w * 8 + 9]
            yield LMBatch(x[:, :-1], x[:, 1:], np.full(4, 8, np.int32), 8, 1.0, trainable)

    before = _snapshot(state)
    result = lrf.lr_find(
        step,
        state,
        epoch,
        start_lr=1e-4,
        end_lr=1e3,
        num_it=40,
        reset_state=reset_lstm_state,
    )
    _assert_untouched(state, before)
    n = len(result.lrs)
    assert result.stopped_early and 10 < n < 40  # Adam at lr ~10-100 diverges
    assert result.losses[-1] > 4 * result.losses.min()
    assert result.raw_losses[0] == pytest.approx(math.log(32), rel=0.05)
    assert set(result.suggestions) == set(lrf.SUGGESTIONS)
    assert all(1e-4 <= result.suggestions[k] <= 1e3 for k in ("valley", "steep"))
    path = lrf.write_lr_find(result, tmp_path)
    record = json.loads(path.read_text())
    assert record["lrs"] == pytest.approx(result.lrs.tolist())
    assert set(record["suggestions"]) >= {"valley", "steep", "minimum"}
    assert record["suggestions"]["valley"] == pytest.approx(result.suggestions["valley"])
    png = (tmp_path / "lr_find.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_find_on_a_classifier_phase(tmp_path, mesh):
    config = ClassifierConfig(
        vocab_size=32, n_class=3, emb_sz=8, n_hid=12, n_layers=2, bptt=8, max_len=16, lin_ftrs=(6,)
    )
    params = classifier.init_classifier_params(jax.random.key(1), config)
    labels = param_groups.classifier_param_groups(params)
    tx = optim.make_optimizer(labels, lr=1e-7, total_steps=1, schedule="constant", lr_mult=None)
    trainable = optim.trainable_groups(labels, 1)  # freeze_to(-1): the head only
    step = make_classifier_train_step(config, tx, mesh=mesh)
    state = create_train_state(params, tx, seed=2, mesh=mesh)
    rng = np.random.default_rng(1)
    batches = []
    for _ in range(5):
        lengths = rng.integers(3, 16, 4).astype(np.int32)
        tokens = np.ones((4, 16), np.int32)
        for i, n in enumerate(lengths):
            tokens[i, :n] = rng.integers(2, 32, n)
        batches.append(
            ClassifierBatch(
                tokens, lengths, rng.integers(0, 3, 4).astype(np.int32), np.arange(4), trainable
            )
        )
    before = _snapshot(state)
    result = lrf.lr_find(
        step,
        state,
        lambda epoch: iter(batches),
        start_lr=1e-5,
        end_lr=1e4,
        num_it=30,
    )
    _assert_untouched(state, before)
    assert result.stopped_early and len(result.lrs) < 30
    assert result.losses[-1] > 4 * result.losses.min()
    lrf.write_lr_find(result, tmp_path)
    assert (tmp_path / "lr_find.json").is_file() and (tmp_path / "lr_find.png").is_file()


def test_get_lr_rejects_a_scheduled_optimiser(mesh):
    """lr_find's lrs only hold with schedule="constant"; get_lr catches any other."""
    config = AWDLSTMConfig(vocab_size=16, emb_sz=4, n_hid=6, n_layers=1)
    params = awd_lstm.init_lm_params(jax.random.key(0), config)
    labels = param_groups.lm_param_groups(params)
    tx = optim.make_optimizer(labels, lr=1e-3, total_steps=10, schedule="one_cycle")
    step = make_lm_train_step(config, tx, mesh=mesh)
    state = create_train_state(params, tx, seed=0, lstm_state=awd_lstm.zero_state(config, 2))
    x = np.arange(2 * 5, dtype=np.int32).reshape(2, 5) % 16
    trainable = optim.trainable_groups(labels)
    batch = LMBatch(x[:, :-1], x[:, 1:], np.full(2, 4, np.int32), 4, 1.0, trainable)
    with pytest.raises(ValueError, match='schedule="constant"'):
        lrf.lr_find(step, state, [batch] * 3)
