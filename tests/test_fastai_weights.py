"""Loading fastai state dicts of any size, and clear errors for broken ones."""

import json

import numpy as np
import pytest

import ulmfit_jax
from ulmfit_jax.weights import fastai as fastai_weights

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def lm_state(fixtures_dir):
    return fastai_weights.read_state_dict(fixtures_dir / "fastai" / "lm.pth")


@pytest.fixture(scope="module")
def clas_state(fixtures_dir):
    return fastai_weights.read_state_dict(fixtures_dir / "fastai" / "classifier.pth")


@pytest.fixture(scope="module")
def clas_config(fixtures_dir):
    text = (fixtures_dir / "fastai" / "classifier_config.json").read_text()
    return ulmfit_jax.ClassifierConfig(**json.loads(text))


def save(tmp_path, state, name="weights.pth"):
    path = tmp_path / name
    torch.save({k: torch.tensor(v) for k, v in state.items()}, path)
    return path


def random_lm_state(vocab, emb, hid, n_layers):
    """A state dict shaped like fastai's get_language_model(AWD_LSTM, ...)."""
    rng = np.random.default_rng(0)
    state = {"0.encoder.weight": rng.normal(size=(vocab, emb)).astype(np.float32)}
    n_in = emb
    for layer in range(n_layers):
        h = emb if layer == n_layers - 1 else hid
        state[f"0.rnns.{layer}.weight_hh_l0_raw"] = rng.normal(size=(4 * h, h)).astype(np.float32)
        state[f"0.rnns.{layer}.module.weight_ih_l0"] = rng.normal(size=(4 * h, n_in)).astype(
            np.float32
        )
        state[f"0.rnns.{layer}.module.bias_ih_l0"] = rng.normal(size=(4 * h,)).astype(np.float32)
        state[f"0.rnns.{layer}.module.bias_hh_l0"] = rng.normal(size=(4 * h,)).astype(np.float32)
        n_in = h
    state["1.decoder.weight"] = state["0.encoder.weight"]
    state["1.decoder.bias"] = np.zeros(vocab, np.float32)
    return state


@pytest.mark.parametrize("sizes", [(50, 8, 12, 1), (30, 10, 14, 4)])
def test_any_size_loads_from_its_tensors(tmp_path, sizes):
    vocab, emb, hid, n_layers = sizes
    path = save(tmp_path, random_lm_state(*sizes))
    params, config, vocab_list = ulmfit_jax.load_fastai_lm(path)
    assert vocab_list is None
    assert (config.vocab_size, config.emb_sz, config.n_layers) == (vocab, emb, n_layers)
    assert config.tie_weights
    logits, _ = ulmfit_jax.lm_apply(params, config, np.zeros((2, 3), np.int32))
    assert logits.shape == (2, 3, vocab)


def test_untied_decoder_is_kept(tmp_path):
    state = random_lm_state(20, 4, 6, 2)
    state["1.decoder.weight"] = state["0.encoder.weight"] + 1.0
    params, config, _ = ulmfit_jax.load_fastai_lm(save(tmp_path, state))
    assert not config.tie_weights
    np.testing.assert_array_equal(params["decoder"]["weight"], state["1.decoder.weight"])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("0.rnns.1.module.bias_hh_l0"), "missing 0.rnns.1 bias_hh_l0"),
        (lambda s: s.update({"0.rnns.0.extra": np.zeros(3, np.float32)}), "unexpected tensors"),
        (
            lambda s: s.update({"0.rnns.1.module.weight_ih_l0": np.zeros((48, 5), np.float32)}),
            "weight_ih_l0' has shape \\(48, 5\\), expected \\(96, 24\\)",
        ),
        (lambda s: s.pop("0.encoder.weight"), "no '0.encoder.weight'"),
        (
            lambda s: s.update({"1.decoder.bias": np.zeros(7, np.float32)}),
            "1.decoder.bias' has shape",
        ),
    ],
)
def test_broken_lm_state_dicts_are_named(tmp_path, lm_state, edit, message):
    state = dict(lm_state)
    edit(state)
    with pytest.raises(ValueError, match=message):
        ulmfit_jax.load_fastai_lm(save(tmp_path, state))


def test_vocabulary_of_the_wrong_size_is_rejected(tmp_path, fixtures_dir):
    fastai_weights.write_itos(["a", "b"], tmp_path / "itos.pkl")
    with pytest.raises(ValueError, match="does not belong to these weights"):
        ulmfit_jax.load_fastai_lm(fixtures_dir / "fastai" / "lm.pth", tmp_path / "itos.pkl")


def test_itos_with_code_is_refused(tmp_path):
    import pickle

    (tmp_path / "itos.pkl").write_bytes(pickle.dumps([np.int64(3)]))
    with pytest.raises(ValueError, match="list of str"):
        fastai_weights.read_itos(tmp_path / "itos.pkl")


def test_not_a_state_dict(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable PyTorch state dict"):
        ulmfit_jax.load_fastai_lm(tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError):
        ulmfit_jax.load_fastai_lm(tmp_path / "absent.pth")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("emb_sz", 32, "ClassifierConfig.emb_sz = 32 but the weights have 16"),
        ("n_layers", 2, "ClassifierConfig.n_layers = 2 but the weights have 3"),
        ("lin_ftrs", (10, 10), "head blocks"),
        ("n_class", 4, "has shape \\(3, 10\\), expected \\(4, 10\\)"),
    ],
)
def test_classifier_config_that_does_not_match_the_weights(
    tmp_path, clas_state, clas_config, field, value, message
):
    import dataclasses

    config = dataclasses.replace(clas_config, **{field: value})
    with pytest.raises(ValueError, match=message):
        fastai_weights.classifier_params_from_state_dict(clas_state, config)


def test_classifier_state_with_extra_tensor(clas_state, clas_config):
    state = dict(clas_state, **{"1.layers.0.9.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="expected one Linear weight|unexpected"):
        fastai_weights.classifier_params_from_state_dict(state, clas_config)
