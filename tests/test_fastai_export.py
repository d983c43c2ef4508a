"""Weights written back to fastai's layout: fastai's fixture files in, `.pth` out, the same model.

Without fastai installed, the written files are checked by reading them back (our torch-free
reader gives the parameters again, bit for bit) and against fastai's own logits in the fixture
(scripts/fixtures/make_fastai_fixtures.py). With fastai installed, they are also loaded into
fastai's `get_language_model` / `get_text_classifier` and `load_encoder`'s module, and fastai's
logits on them are compared with ours.
"""

import jax
import numpy as np
import pytest
from model_fixtures import assert_trees_equal

import ulmfit_jax
from ulmfit_jax.weights import fastai as fastai_weights
from ulmfit_jax.weights.fastai_export import (
    save_fastai_classifier,
    save_fastai_encoder,
    save_fastai_lm,
)

pytest.importorskip("torch")

ATOL = 1e-4  # the parity tests' tolerance against the fastai_fixture's fastai logits


def test_language_model_round_trip_is_bit_identical(fastai_fixture, tmp_path):
    root, expected = fastai_fixture
    params, config, itos = ulmfit_jax.load_fastai_lm(root / "lm.pth", root / "lm_itos.pkl")
    save_fastai_lm(params, config, itos, tmp_path / "lm.pth", tmp_path / "itos.pkl")
    again, config_again, itos_again = ulmfit_jax.load_fastai_lm(
        tmp_path / "lm.pth", tmp_path / "itos.pkl"
    )
    assert itos_again == itos and config_again == config
    assert_trees_equal(again, params)
    # The written file's logits are fastai's (the fastai_fixture's) as the original's are.
    logits, _ = ulmfit_jax.lm_apply(again, config, expected["lm_tokens"][:, :10])
    np.testing.assert_allclose(logits, expected["lm_logits"][0], atol=ATOL, rtol=0)


def test_written_tensors_are_fastais_own_up_to_the_summed_bias(fastai_fixture, tmp_path):
    root, _ = fastai_fixture
    original = fastai_weights.read_state_dict(root / "lm.pth")
    params, config, itos = ulmfit_jax.load_fastai_lm(root / "lm.pth", root / "lm_itos.pkl")
    save_fastai_lm(params, config, itos, tmp_path / "lm.pth")
    written = fastai_weights.read_state_dict(tmp_path / "lm.pth")
    assert set(written) == set(original) - {
        k for k in original if k.endswith(".module.weight_hh_l0")
    }
    for name, tensor in written.items():
        if name.endswith("bias_ih_l0"):
            other = name.replace("bias_ih_l0", "bias_hh_l0")
            np.testing.assert_allclose(tensor, original[name] + original[other], rtol=0, atol=0)
        elif name.endswith("bias_hh_l0"):
            assert not tensor.any()
        else:
            np.testing.assert_array_equal(tensor, original[name])


def test_classifier_round_trip_is_bit_identical(fastai_fixture, fastai_classifier_config, tmp_path):
    root, expected = fastai_fixture
    params = ulmfit_jax.load_fastai_classifier(root / "classifier.pth", fastai_classifier_config)
    save_fastai_classifier(params, fastai_classifier_config, tmp_path / "clas.pth")
    again = ulmfit_jax.load_fastai_classifier(tmp_path / "clas.pth", fastai_classifier_config)
    assert_trees_equal(again, params)
    original = fastai_weights.read_state_dict(root / "classifier.pth")
    written = fastai_weights.read_state_dict(tmp_path / "clas.pth")
    assert {k for k in written if k.startswith("1.")} == {k for k in original if k.startswith("1.")}


def test_encoder_is_what_load_encoder_reads(fastai_fixture, tmp_path):
    root, _ = fastai_fixture
    params, _, _ = ulmfit_jax.load_fastai_lm(root / "lm.pth")
    save_fastai_encoder(params["encoder"], tmp_path / "enc.pth")
    written = fastai_weights.read_state_dict(tmp_path / "enc.pth")
    original = fastai_weights.read_state_dict(root / "lm.pth")
    for name, tensor in written.items():
        assert "0." + name in original, name
        if "bias" not in name:
            np.testing.assert_array_equal(tensor, original["0." + name])


def test_a_vocabulary_of_another_size_is_refused(fastai_fixture, tmp_path):
    root, _ = fastai_fixture
    params, config, itos = ulmfit_jax.load_fastai_lm(root / "lm.pth", root / "lm_itos.pkl")
    with pytest.raises(ValueError, match="vocabulary has 47 tokens but the model 48"):
        save_fastai_lm(params, config, itos[:-1], tmp_path / "lm.pth")
    assert not (tmp_path / "lm.pth").exists()


# --- the written files in fastai itself ----------------------------------------------------


def fastai_lm_logits(pth, config, tokens) -> np.ndarray:
    """fastai 2.8's own language model (`get_language_model(AWD_LSTM, ...)`) with the `.pth`
    file at `pth` loaded, run on `tokens` int[batch, time] in eval mode from a reset state."""
    text = pytest.importorskip("fastai.text.all")
    import torch

    arch = dict(text.awd_lstm_lm_config, emb_sz=config.emb_sz, n_hid=config.n_hid)
    arch["n_layers"] = config.n_layers
    model = text.get_language_model(text.AWD_LSTM, config.vocab_size, config=arch)
    model.load_state_dict(torch.load(pth))
    model.eval()
    model.reset()
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(tokens, np.int64)))[0].numpy()


def test_fastai_loads_the_language_model_and_gives_our_logits(fastai_fixture, tmp_path):
    root, expected = fastai_fixture
    params, config, itos = ulmfit_jax.load_fastai_lm(root / "lm.pth", root / "lm_itos.pkl")
    save_fastai_lm(params, config, itos, tmp_path / "lm.pth")
    tokens = expected["lm_tokens"][:, :10]
    theirs = fastai_lm_logits(tmp_path / "lm.pth", config, tokens)
    ours, _ = ulmfit_jax.lm_apply(params, config, tokens)
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


def test_fastai_loads_the_classifier_and_gives_our_logits(
    fastai_fixture, fastai_classifier_config, tmp_path
):
    text = pytest.importorskip("fastai.text.all")
    import torch

    root, expected = fastai_fixture
    config = fastai_classifier_config
    params = ulmfit_jax.load_fastai_classifier(root / "classifier.pth", config)
    save_fastai_classifier(params, config, tmp_path / "clas.pth")
    arch = dict(text.awd_lstm_clas_config, emb_sz=config.emb_sz, n_hid=config.n_hid)
    arch["n_layers"] = config.n_layers
    model = text.get_text_classifier(
        text.AWD_LSTM,
        config.vocab_size,
        config.n_class,
        seq_len=config.bptt,
        config=arch,
        drop_mult=config.drop_mult,
        lin_ftrs=list(config.lin_ftrs),
        ps=list(config.ps) if config.ps is not None else None,
        max_len=config.max_len,
    )
    model.load_state_dict(torch.load(tmp_path / "clas.pth"))
    model.eval()
    doc = np.split(expected["clas_docs"], np.cumsum(expected["clas_doc_lengths"])[:-1])[0]
    with torch.no_grad():
        model[0].reset()
        theirs = model(torch.from_numpy(np.asarray(doc[None], np.int64)))[0].numpy()
    ours = ulmfit_jax.classifier_apply(params, config, [doc.tolist()])
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


def test_fastai_gives_our_logits_for_a_model_made_here(tmp_path):
    """A model initialised here (with a non-zero decoder bias), not one that came from fastai."""
    config = ulmfit_jax.AWDLSTMConfig(vocab_size=40, emb_sz=12, n_hid=20, n_layers=2)
    params = ulmfit_jax.init_lm_params(jax.random.key(3), config)
    params["decoder"]["bias"] = jax.random.normal(jax.random.key(4), (40,))
    save_fastai_lm(params, config, None, tmp_path / "lm.pth")
    tokens = np.random.default_rng(0).integers(0, 40, (3, 15))
    theirs = fastai_lm_logits(tmp_path / "lm.pth", config, tokens)
    ours, _ = ulmfit_jax.lm_apply(params, config, tokens)
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


def test_fastai_pth_through_a_model_folder_and_back_into_fastai(fastai_fixture, tmp_path):
    """fastai .pth in -> model folder -> fastai .pth out -> fastai's logits are ours."""
    pytest.importorskip("fastai.text.all")
    import dataclasses

    from ulmfit_jax.weights.folder import load_language_model, save_pretrained

    root, expected = fastai_fixture
    params, config, itos = ulmfit_jax.load_fastai_lm(root / "lm.pth", root / "lm_itos.pkl")
    meta = {"stage": "converted_lm", "model": dataclasses.asdict(config), "vocab": itos}
    folder = save_pretrained(tmp_path / "folder", params, meta)
    again, config_again, vocab, _ = load_language_model(folder)
    assert_trees_equal(again, params)
    save_fastai_lm(again, config_again, vocab.itos, tmp_path / "out.pth", tmp_path / "itos.pkl")
    tokens = expected["lm_tokens"][:, :10]
    theirs = fastai_lm_logits(tmp_path / "out.pth", config, tokens)
    np.testing.assert_allclose(theirs, expected["lm_logits"][0], atol=ATOL, rtol=0)
    ours, _ = ulmfit_jax.lm_apply(params, config, tokens)
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)
