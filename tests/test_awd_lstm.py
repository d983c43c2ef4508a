"""AWD-LSTM language model: fastai's regularisation semantics, state handling and bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ulmfit_jax
from ulmfit_jax.models import awd_lstm

CONFIG = ulmfit_jax.AWDLSTMConfig(vocab_size=30, emb_sz=6, n_hid=10, n_layers=3)
NO_DROPOUT = dataclasses.replace(
    CONFIG, output_p=0.0, hidden_p=0.0, input_p=0.0, embed_p=0.0, weight_p=0.0
)


@pytest.fixture(scope="module")
def params():
    return ulmfit_jax.init_lm_params(jax.random.key(0), CONFIG)


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(0).integers(0, 30, (4, 9)).astype(np.int32)


def test_fastai_defaults_and_drop_mult():
    config = ulmfit_jax.AWDLSTMConfig(vocab_size=100, drop_mult=0.5)
    assert (config.emb_sz, config.n_hid, config.n_layers, config.pad_token) == (400, 1152, 3, 1)
    assert config.layer_sizes == [(400, 1152), (1152, 1152), (1152, 400)]
    assert config.prob("input_p") == pytest.approx(0.125)
    assert config.prob("weight_p") == pytest.approx(0.1)
    cls = ulmfit_jax.ClassifierConfig(vocab_size=100, n_class=2, drop_mult=0.5)
    assert cls.encoder_config.prob("input_p") == pytest.approx(0.2)
    assert cls.head_dims == [1200, 50, 2]
    assert cls.head_dropouts == pytest.approx([0.2, 0.1])


def test_training_without_dropout_equals_evaluation(params, tokens):
    eval_logits, eval_state = ulmfit_jax.lm_apply(params, NO_DROPOUT, tokens)
    train_logits, train_state = ulmfit_jax.lm_apply(
        params, NO_DROPOUT, tokens, train=True, rng=jax.random.key(1)
    )
    np.testing.assert_allclose(train_logits, eval_logits, atol=1e-6)
    for a, b in zip(jax.tree.leaves(train_state), jax.tree.leaves(eval_state), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_dropout_is_random_per_key_and_reproducible(params, tokens):
    apply = lambda key: ulmfit_jax.lm_apply(params, CONFIG, tokens, train=True, rng=key)[0]  # noqa: E731
    a, b, c = apply(jax.random.key(1)), apply(jax.random.key(1)), apply(jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    with pytest.raises(ValueError, match="needs an rng"):
        ulmfit_jax.lm_apply(params, CONFIG, tokens, train=True)


def test_embedding_dropout_drops_whole_words(params):
    config = dataclasses.replace(NO_DROPOUT, embed_p=0.5)
    tokens = jnp.array([[3, 5, 3, 5, 3, 7, 7, 3]])
    dropped = awd_lstm.embed_tokens(
        params["encoder"]["embedding"], tokens, config, jax.random.key(3)
    )
    rows = np.asarray(dropped[0])
    base = np.asarray(params["encoder"]["embedding"])[np.asarray(tokens[0])]
    for word in (3, 5, 7):
        at = np.flatnonzero(np.asarray(tokens[0]) == word)
        scale = rows[at] / base[at]
        assert np.allclose(scale, scale[0, 0]), "one mask per vocabulary row"
        assert scale[0, 0] in (pytest.approx(0.0), pytest.approx(2.0))


def test_locked_dropout_shares_its_mask_over_time():
    x = jnp.ones((3, 11, 40))
    y = np.asarray(awd_lstm.locked_dropout(jax.random.key(0), x, 0.5))
    assert set(np.unique(y)) == {0.0, 2.0}
    assert np.all(y == y[:, :1, :]), "the same mask at every time step"


def test_weight_dropout_uses_one_matrix_for_every_step(params, tokens):
    """Only weight dropout on: the result equals evaluation with that one dropped matrix."""
    config = dataclasses.replace(NO_DROPOUT, weight_p=0.5, n_layers=1, emb_sz=6)
    one_layer = {
        "encoder": {
            "embedding": params["encoder"]["embedding"],
            "lstm_0": params["encoder"]["lstm_2"],
        },
        "decoder": params["decoder"],
    }
    one_layer["encoder"]["lstm_0"] = jax.tree.map(jnp.asarray, one_layer["encoder"]["lstm_0"])
    one_layer["encoder"]["lstm_0"]["w_ih"] = jnp.ones((6, 24)) * 0.1
    rng = jax.random.key(4)
    train_logits, _ = ulmfit_jax.lm_apply(one_layer, config, tokens, train=True, rng=rng)
    # Reproduce the key the encoder uses for layer 0's weight mask.
    enc_rng, _ = jax.random.split(rng)
    weight_key = jax.random.split(enc_rng, 4)[2]
    w_hh = one_layer["encoder"]["lstm_0"]["w_hh"]
    dropped = w_hh * awd_lstm.dropout_mask(weight_key, w_hh.shape, 0.5)
    manual = jax.tree.map(lambda x: x, one_layer)
    manual["encoder"]["lstm_0"] = {**one_layer["encoder"]["lstm_0"], "w_hh": dropped}
    eval_logits, _ = ulmfit_jax.lm_apply(manual, config, tokens)
    np.testing.assert_allclose(train_logits, eval_logits, atol=1e-6)


def test_state_carries_between_windows_without_gradient(params, tokens):
    _, state = ulmfit_jax.lm_apply(params, CONFIG, tokens[:, :4])

    def second_window_loss(p, state):
        logits, _ = ulmfit_jax.lm_apply(p, CONFIG, tokens[:, 4:], state)
        return logits.sum()

    # The returned state is stop-gradient'ed, as fastai detaches it.
    def through_first(p):
        _, s = ulmfit_jax.lm_apply(p, CONFIG, tokens[:, :4])
        return second_window_loss(p, s)

    direct = jax.grad(second_window_loss)(params, state)
    chained = jax.grad(through_first)(params)
    for a, b in zip(jax.tree.leaves(direct), jax.tree.leaves(chained), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_ar_tar_penalty_formula():
    raw = jnp.arange(2 * 3 * 2, dtype=jnp.float32).reshape(2, 3, 2)
    dropped = raw * 0.5
    expected = 2.0 * np.mean(np.square(dropped)) + 1.0 * np.mean(np.square(np.diff(raw, axis=1)))
    assert float(ulmfit_jax.ar_tar_penalty(raw, dropped)) == pytest.approx(expected)


def test_pad_row_gets_no_gradient_through_the_encoder():
    # Untied, so the decoder (which does train the pad row in fastai too) is out of the way.
    config = dataclasses.replace(NO_DROPOUT, tie_weights=False)
    params = ulmfit_jax.init_lm_params(jax.random.key(0), config)
    tokens = jnp.array([[1, 4, 1, 5]])

    def loss(p):
        return ulmfit_jax.lm_apply(p, config, tokens)[0].sum()

    grad = jax.grad(loss)(params)["encoder"]["embedding"]
    assert np.all(np.asarray(grad[1]) == 0.0)  # pad id 1, as nn.Embedding(padding_idx=1)
    assert np.any(np.asarray(grad[4]) != 0.0)


@pytest.mark.parametrize(
    "tokens, message",
    [
        (np.array([[0, 30]]), "outside the vocabulary"),
        (np.array([[-1, 2]]), "outside the vocabulary"),
        (np.array([0, 1, 2]), "rank 2"),
        (np.array([[0.0, 1.0]]), "integer ids"),
        (np.zeros((1, 0), np.int32), "empty"),
    ],
)
def test_bad_tokens_are_named(params, tokens, message):
    with pytest.raises(ValueError, match=message):
        ulmfit_jax.lm_apply(params, CONFIG, tokens)


def test_state_of_the_wrong_batch_is_named(params, tokens):
    _, state = ulmfit_jax.lm_apply(params, CONFIG, tokens)
    with pytest.raises(ValueError, match="state\\[0\\].h has shape"):
        ulmfit_jax.lm_apply(params, CONFIG, tokens[:2], state)


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError, match="not a probability"):
        ulmfit_jax.AWDLSTMConfig(vocab_size=10, drop_mult=10.0)
    with pytest.raises(ValueError, match="pad_token"):
        ulmfit_jax.AWDLSTMConfig(vocab_size=1)


def test_padded_window_carries_the_state_of_its_last_real_step(params, tokens):
    """A variable-length window right-padded to a static width continues the stream exactly."""
    _, state_short = ulmfit_jax.lm_apply(params, CONFIG, tokens[:, :5])
    padded = np.concatenate([tokens[:, :5], np.ones((4, 3), np.int32)], axis=1)
    logits, state_padded = ulmfit_jax.lm_apply(
        params, CONFIG, padded, lengths=np.full(4, 5, np.int32)
    )
    for a, b in zip(jax.tree.leaves(state_padded), jax.tree.leaves(state_short), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="lengths must lie in"):
        ulmfit_jax.lm_apply(params, CONFIG, padded, lengths=np.full(4, 9, np.int32))


def test_masked_ar_tar_equals_fastai_on_the_real_steps():
    raw = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 3)), jnp.float32)
    dropped = raw * 0.7
    full = ulmfit_jax.ar_tar_penalty(raw[:, :3], dropped[:, :3])
    mask = jnp.arange(5)[None, :] < jnp.array([3, 3])[:, None]
    masked = ulmfit_jax.ar_tar_penalty(raw, dropped, mask=mask)
    assert float(masked) == pytest.approx(float(full), rel=1e-6)
