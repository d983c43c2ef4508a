"""bfloat16 mixed precision: float32 parameters, optimiser state, statistics and losses.

For the AWD-LSTM LM, the ULMFiT classifier and the ELMo biLM:

* the float32 path is the code before mixed precision: `compute_dtype="float32"`, `jnp.float32`
  and the default are one config (equal and equally hashed, so one compiled program), whose
  forward and backward jaxprs hold no bfloat16 at all (the parity tests check its numbers);
* in bfloat16 the matmuls really run in bfloat16, the outputs stay close to float32 (tolerances
  below, a few bfloat16 ulps relative to the outputs' scale), losses are finite, gradients are
  float32, finite and point the same way as float32's, and a real training step leaves the
  parameters and the optimiser state float32.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from elmo_fixtures import tiny_config

from elmo_jax.model.bilm import bilm_apply
from elmo_jax.model.characters import batch_to_ids
from elmo_jax.model.init import init_bilm
from elmo_jax.training import steps as training
from elmo_jax.training.sampled_softmax import (
    draw_negatives,
    full_softmax_loss,
    sampled_softmax_loss,
)
from ulmfit_jax import optim
from ulmfit_jax.models import awd_lstm, classifier
from ulmfit_jax.optim.param_groups import param_groups
from ulmfit_jax.stages import lm_steps as lm_training

LM = awd_lstm.AWDLSTMConfig(vocab_size=60, emb_sz=16, n_hid=24, n_layers=2)
CLAS = classifier.ClassifierConfig(
    vocab_size=60, n_class=3, emb_sz=16, n_hid=24, n_layers=2, lin_ftrs=(8,), bptt=8, max_len=16
)
BILM = tiny_config()

# bfloat16 keeps 8 significant bits (relative rounding 2**-9 ~ 0.2%); after a few layers the
# outputs differ from float32 by a few of those, relative to their own scale.
REL_TOL = 3e-2
SPELLINGS = ("float32", "FLOAT32", jnp.float32, np.float32)


def _bf16(config):
    return dataclasses.replace(config, compute_dtype="bfloat16")


def _has_bf16(fn, *args) -> bool:
    return "bf16" in str(jax.make_jaxpr(fn)(*args))


def _assert_close(got, want, rel=REL_TOL):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.max(np.abs(want))
    assert np.max(np.abs(got - want)) <= rel * scale, (np.max(np.abs(got - want)), scale)


def _assert_float32(tree):
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32, leaf.dtype


def _assert_float32_finite(tree):
    _assert_float32(tree)
    for leaf in jax.tree.leaves(tree):
        assert np.all(np.isfinite(np.asarray(leaf)))


def _train(loss_fn, params, tx, steps=4, **update_kwargs):
    """`steps` jitted optimiser steps on `loss_fn(params) -> (loss, aux)`.

    Returns the final params and optimiser state, the losses, and the first step's aux and
    gradients (compared with float32's by the callers).
    """

    @jax.jit
    def step(params, opt_state):
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        _assert_float32(grads)  # at trace time: dtypes only
        updates, opt_state = tx.update(grads, opt_state, params, **update_kwargs)
        return optax.apply_updates(params, updates), opt_state, loss, aux, grads

    opt_state, losses, first = tx.init(params), [], None
    for _ in range(steps):
        params, opt_state, loss, aux, grads = step(params, opt_state)
        losses.append(float(loss))
        first = first or (aux, grads)
    _assert_float32_finite(params)
    _assert_float32_finite(opt_state)
    assert losses[-1] < losses[0], losses
    return losses, *first


def _ulmfit_optimizer(params):
    labels = param_groups(params)
    tx = optim.make_optimizer(labels, lr=1e-2, total_steps=4, schedule="constant")
    return tx, optim.trainable_groups(labels)


def _cosine(a, b):
    a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(a)])
    b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(b)])
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["bfloat16", "BFloat16", jnp.bfloat16, np.dtype(jnp.bfloat16)])
def test_config_spellings(value):
    assert awd_lstm.AWDLSTMConfig(vocab_size=9, compute_dtype=value).compute_dtype == "bfloat16"
    assert dataclasses.replace(BILM, compute_dtype=value).compute_dtype == "bfloat16"
    assert dataclasses.replace(CLAS, compute_dtype=value).encoder_config.compute_dtype == "bfloat16"
    assert awd_lstm.AWDLSTMConfig(
        vocab_size=9, compute_dtype=jnp.float32
    ) == awd_lstm.AWDLSTMConfig(vocab_size=9)


def test_config_rejects_other_dtypes():
    with pytest.raises(ValueError, match="compute_dtype"):
        awd_lstm.AWDLSTMConfig(vocab_size=9, compute_dtype="float16")
    with pytest.raises(ValueError, match="compute_dtype"):
        dataclasses.replace(BILM, compute_dtype="int8")


@pytest.mark.parametrize("config", [LM, CLAS, BILM], ids=["lm", "classifier", "bilm"])
def test_float32_spellings_are_the_default_config(config):
    for spelling in SPELLINGS:
        same = dataclasses.replace(config, compute_dtype=spelling)
        assert same == config and hash(same) == hash(config)
    assert config.compute_dtype == "float32"


def test_bilm_options_do_not_record_compute_dtype():
    assert "compute_dtype" not in str(_bf16(BILM).to_options())
    assert type(BILM).from_options(_bf16(BILM).to_options()) == BILM


# --------------------------------------------------------------------------------------------
# Language model
# --------------------------------------------------------------------------------------------

TOKENS = jax.random.randint(jax.random.key(1), (4, 10), 2, LM.vocab_size)
TARGETS = jnp.roll(TOKENS, -1, axis=1)
LENGTHS = jnp.array([10, 10, 7, 3], jnp.int32)


def _lm_loss(params, config):
    out = awd_lstm.lm_forward(
        params, config, TOKENS, train=True, rng=jax.random.key(2), lengths=LENGTHS
    )
    nll, _, count = lm_training.masked_lm_loss(out.logits, TARGETS, LENGTHS)
    loss = nll / count + awd_lstm.ar_tar_penalty(out.raw_output, out.dropped_output)
    return loss, (out.logits, out.state)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _float32_results(loss_fn, params, config):
    """`((loss, aux), grads)` of `loss_fn(params, config)`, the reference a bfloat16 run is
    checked against."""
    return jax.value_and_grad(loss_fn, has_aux=True)(params, config)


def test_lm_float32_path_has_no_bfloat16():
    params = awd_lstm.init_lm_params(jax.random.key(0), LM)
    assert not _has_bf16(lambda p: jax.grad(_lm_loss, has_aux=True)(p, LM), params)


def _assert_bfloat16_tracks_float32(loss_fn, params, config):
    """Trains `loss_fn` in bfloat16 and checks it against `_float32_results`: forward
    close, float32 gradients along float32's, and the carried state (the LM's `(h, c)`, the
    classifier's BatchNorm statistics) float32 and close to float32's."""
    bf16_config = _bf16(config)
    assert _has_bf16(lambda p: loss_fn(p, bf16_config), params)
    tx, trainable = _ulmfit_optimizer(params)
    losses, (logits, carried), grads = _train(
        lambda p: loss_fn(p, bf16_config), params, tx, trainable=trainable
    )
    (want_loss, (want_logits, want_carried)), want_grads = _float32_results(loss_fn, params, config)
    assert logits.dtype == jnp.float32
    _assert_close(logits, want_logits)
    _assert_float32_finite(carried)
    jax.tree.map(_assert_close, carried, want_carried)
    assert abs(losses[0] - float(want_loss)) < 1e-2 * float(want_loss)
    _assert_float32_finite(grads)
    assert _cosine(grads, want_grads) > 0.99


def test_lm_bfloat16():
    """Forward close to float32, float32 gradients along float32's, float32 training state."""
    params = awd_lstm.init_lm_params(jax.random.key(0), LM)
    _assert_bfloat16_tracks_float32(_lm_loss, params, LM)


# --------------------------------------------------------------------------------------------
# Classifier
# --------------------------------------------------------------------------------------------

DOCS = [[2, 5, 7, 9, 11, 3, 4, 8, 9, 10, 12], [4, 5], [6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]
DOC_TOKENS, DOC_LENGTHS = classifier.pad_documents(DOCS, CLAS)
LABELS = jnp.array([0, 1, 2], jnp.int32)


def _classifier_loss(params, config):
    """Training mode: dropout and BatchNorm batch statistics."""
    logits, stats = classifier._classifier_forward(
        params, config, DOC_TOKENS, DOC_LENGTHS, jax.random.key(4)
    )
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, LABELS))
    return loss, (logits, stats)


def test_classifier_float32_path_has_no_bfloat16():
    params = classifier.init_classifier_params(jax.random.key(3), CLAS)
    assert not _has_bf16(lambda p: jax.grad(_classifier_loss, has_aux=True)(p, CLAS), params)
    evaluate = classifier._classifier_forward
    assert not _has_bf16(lambda p: evaluate(p, CLAS, DOC_TOKENS, DOC_LENGTHS, None), params)


def test_classifier_bfloat16():
    """As the LM's test, plus BatchNorm statistics: float32 and close to float32's."""
    params = classifier.init_classifier_params(jax.random.key(3), CLAS)
    _assert_bfloat16_tracks_float32(_classifier_loss, params, CLAS)


# --------------------------------------------------------------------------------------------
# ELMo biLM
# --------------------------------------------------------------------------------------------

CHARS = batch_to_ids([["The", "cat", "sat", "."], ["Hi"], ["A", "longer", "sentence", "!"]])
_bilm_apply = jax.jit(bilm_apply, static_argnums=1)


def _bilm_lm_loss(params, config):
    """bilm-tf's training loss on one window: both directions, sampled softmax, float32 out."""
    chars = jax.random.randint(jax.random.key(7), (2, 2, 5, 50), 1, 262)
    targets = jax.random.randint(jax.random.key(8), (2, 2, 5), 0, 30)
    ids, expected, tries = draw_negatives(np.random.default_rng(0), 8, 30)
    top, _ = training.lm_top_layer(params, config, chars, training.zero_state(config, 2))
    assert top.dtype == jnp.float32
    w, b = params["softmax"]["w"], params["softmax"]["b"]
    losses = [
        sampled_softmax_loss(
            w,
            b,
            top[d].reshape(-1, top.shape[-1]),
            targets[d].reshape(-1),
            jnp.asarray(ids[d]),
            jnp.asarray(expected[d]),
            jnp.asarray(tries[d]),
            compute_dtype=config.compute_dtype,
        )
        for d in range(2)
    ]
    return jnp.mean(jnp.stack(losses)), top


def test_bilm_float32_path_has_no_bfloat16():
    params = init_bilm(jax.random.key(5), BILM)
    assert not _has_bf16(lambda p: bilm_apply(p, BILM, CHARS), params)
    lm_params = training.init_pretraining_params(jax.random.key(6), BILM, vocab_size=30)
    assert not _has_bf16(lambda p: jax.grad(_bilm_lm_loss, has_aux=True)(p, BILM), lm_params)


def test_bilm_bfloat16():
    params = init_bilm(jax.random.key(5), BILM)
    config = _bf16(BILM)
    assert _has_bf16(lambda p: bilm_apply(p, config, CHARS), params)
    layers, mask, state = _bilm_apply(params, config, CHARS)
    want_layers, want_mask, want_state = _bilm_apply(params, BILM, CHARS)
    np.testing.assert_array_equal(mask, want_mask)
    for got, want in zip(layers, want_layers, strict=True):
        assert got.dtype == jnp.float32
        _assert_close(got, want)
    _assert_float32_finite(state)
    jax.tree.map(_assert_close, state, want_state)


@functools.partial(jax.jit, static_argnames="compute_dtype")
def _softmax_losses(w, b, h, y, sampled, expected, *, compute_dtype):
    sampled_loss = sampled_softmax_loss(
        w, b, h, y, sampled, expected, jnp.int32(20), compute_dtype=compute_dtype
    )
    return sampled_loss, full_softmax_loss(w, b, h, y, compute_dtype=compute_dtype)


def test_softmax_losses_bfloat16():
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(40, 8)), jnp.float32)
    b = jnp.asarray(rng.normal(size=40), jnp.float32)
    h = jnp.asarray(rng.normal(size=(12, 8)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 40, 12), jnp.int32)
    sampled = jnp.arange(0, 40, 3, dtype=jnp.int32)
    expected = jnp.full(sampled.shape, 0.3, jnp.float32)
    args = (w, b, h, y, sampled, expected)
    want = _softmax_losses(*args, compute_dtype=None)
    jax.tree.map(
        np.testing.assert_array_equal, _softmax_losses(*args, compute_dtype="float32"), want
    )
    got = _softmax_losses(*args, compute_dtype="bfloat16")
    for g, wa in zip(got, want, strict=True):
        assert g.dtype == jnp.float32
        _assert_close(g, wa)


def test_bilm_training_bfloat16():
    config = _bf16(BILM)
    params = training.init_pretraining_params(jax.random.key(6), config, vocab_size=30)
    assert _has_bf16(lambda p: _bilm_lm_loss(p, config), params)
    tx = training.make_bilm_optimizer(training.TrainOptions())  # bilm-tf's clipped Adagrad
    losses, top, grads = _train(lambda p: _bilm_lm_loss(p, config), params, tx)
    (want_loss, want_top), want_grads = _float32_results(_bilm_lm_loss, params, BILM)
    _assert_close(top, want_top)
    assert abs(losses[0] - float(want_loss)) < 1e-2 * float(want_loss)
    _assert_float32_finite(grads)
    assert _cosine(grads, want_grads) > 0.99
