"""Issue 39, cases 10, 11 and 23: token ids past the vocabulary and character ids past the
character table are an error, also under `jax.jit` / `nnx.jit` (a check compiled into the
program, `ulmfit_jax.core.nn.id_checks`), for the functional API, the NNX modules and ELMo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from elmo_fixtures import tiny_config
from flax import nnx

from elmo_jax.model.bilm import bilm_apply
from elmo_jax.model.characters import batch_to_ids
from elmo_jax.model.init import init_bilm
from elmo_jax.nnx import BiLM
from ulmfit_jax.core.nn import id_checks
from ulmfit_jax.models import awd_lstm, classifier
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.nnx import LanguageModel, TextClassifier

LM = AWDLSTMConfig(vocab_size=24, emb_sz=8, n_hid=12, n_layers=2)
CLS = ClassifierConfig(vocab_size=24, n_class=3, emb_sz=8, n_hid=12, n_layers=2, bptt=4, max_len=8)
BILM = tiny_config()
GOOD = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.int32)
LENGTHS = np.array([4, 3], np.int32)


def with_id(value: int) -> np.ndarray:
    tokens = GOOD.copy()
    tokens[1, 2] = value
    return tokens


def raises_in_jit(run, limit: int, name: str):
    """`run()` fails with the check's message (JAX wraps a callback's error when the result is
    read), not NaN or a silently read row."""
    with pytest.raises(Exception, match=rf"{name} has ids outside \[0, {limit}\)") as caught:
        jax.block_until_ready(run())
    assert "found inside jit" in str(caught.value)


@pytest.fixture(scope="module")
def lm_params():
    return awd_lstm.init_lm_params(jax.random.key(0), LM)


@pytest.fixture(scope="module")
def cls_params():
    return classifier.init_classifier_params(jax.random.key(1), CLS)


@pytest.mark.parametrize("bad", [LM.vocab_size, LM.vocab_size + 5, -1])
def test_functional_lm_under_jit(lm_params, bad):
    apply = jax.jit(lambda p, t: awd_lstm.lm_apply(p, LM, t)[0])
    assert np.isfinite(np.asarray(apply(lm_params, GOOD))).all()
    raises_in_jit(lambda: apply(lm_params, with_id(bad)), LM.vocab_size, "tokens")
    with pytest.raises(ValueError, match="outside the vocabulary"):  # outside jit, as before
        awd_lstm.lm_apply(lm_params, LM, with_id(bad))


@pytest.mark.parametrize("bad", [LM.vocab_size, -1])
def test_nnx_language_model_under_nnx_jit(bad):
    model = LanguageModel(LM, rngs=nnx.Rngs(0))
    apply = nnx.jit(lambda m, t: m(t)[0])
    assert np.isfinite(np.asarray(apply(model, jnp.asarray(GOOD)))).all()
    raises_in_jit(lambda: apply(model, jnp.asarray(with_id(bad))), LM.vocab_size, "tokens")


@pytest.mark.parametrize("bad", [CLS.vocab_size, -1])
def test_classifier_under_jit_and_in_its_training_forward(cls_params, bad):
    apply = jax.jit(lambda p, t, n: classifier.classifier_apply(p, CLS, t, n))
    assert np.isfinite(np.asarray(apply(cls_params, GOOD, LENGTHS))).all()
    raises_in_jit(lambda: apply(cls_params, with_id(bad), LENGTHS), CLS.vocab_size, "docs")
    # What the training step calls (ulmfit_jax.stages.classifier_steps).
    forward = jax.jit(
        lambda p, t, n: classifier.classifier_forward(p, CLS, t, n, jax.random.key(0))[0]
    )
    raises_in_jit(lambda: forward(cls_params, with_id(bad), LENGTHS), CLS.vocab_size, "docs")


def test_nnx_text_classifier_under_nnx_jit():
    model = TextClassifier(CLS, rngs=nnx.Rngs(0))
    apply = nnx.jit(lambda m, t, n: m(t, n))
    assert np.isfinite(np.asarray(apply(model, jnp.asarray(GOOD), jnp.asarray(LENGTHS)))).all()
    bad = jnp.asarray(with_id(CLS.vocab_size))
    raises_in_jit(lambda: apply(model, bad, jnp.asarray(LENGTHS)), CLS.vocab_size, "docs")


def char_ids(value=None, dtype=np.int32):
    ids = np.asarray(batch_to_ids([["a", "cat"], ["dog"]], BILM.max_characters_per_token))
    if value is not None:
        ids = ids.copy()
        ids[0, 1, 1] = value
    return ids.astype(dtype)


@pytest.fixture(scope="module")
def bilm_params():
    return init_bilm(jax.random.key(2), BILM)


@pytest.mark.parametrize("bad", [BILM.n_characters, 300, -1])
def test_bilm_character_ids_outside_and_under_jit(bilm_params, bad):
    with pytest.raises(ValueError, match=rf"char_ids has ids outside \[0, {BILM.n_characters}\)"):
        bilm_apply(bilm_params, BILM, char_ids(bad))
    apply = jax.jit(lambda p, ids: bilm_apply(p, BILM, ids)[0][-1])
    assert np.isfinite(np.asarray(apply(bilm_params, char_ids()))).all()
    raises_in_jit(lambda: apply(bilm_params, char_ids(bad)), BILM.n_characters, "char_ids")
    module = BiLM(BILM, params=bilm_params)
    nnx_apply = nnx.jit(lambda m, ids: m(ids)[0][-1])
    raises_in_jit(
        lambda: nnx_apply(module, jnp.asarray(char_ids(bad))), BILM.n_characters, "char_ids"
    )


def test_bilm_float_character_ids_are_named(bilm_params):
    with pytest.raises(ValueError, match="char_ids must hold integer character ids"):
        bilm_apply(bilm_params, BILM, char_ids(dtype=np.float32))
    with pytest.raises(ValueError, match="char_ids must hold integer character ids"):
        jax.jit(lambda p, ids: bilm_apply(p, BILM, ids)[0])(bilm_params, char_ids(dtype=float))


def test_the_checks_can_be_left_out_of_a_program(lm_params):
    previous = id_checks.set_id_checks(False)
    try:
        apply = jax.jit(lambda p, t: awd_lstm.lm_apply(p, LM, t)[0])
        jax.block_until_ready(apply(lm_params, with_id(-1)))  # no check compiled in
    finally:
        id_checks.set_id_checks(previous)
    assert id_checks.id_checks_enabled()
