"""Our AWD-LSTM LM and classifier against fastai (fixtures:
scripts/fixtures/make_fastai_fixtures.py)."""

import json

import jax
import numpy as np
import pytest

import ulmfit_jax
from ulmfit_jax.weights import fastai as fastai_weights

pytest.importorskip("torch")

ATOL = 1e-4


@pytest.mark.parametrize("name", ["lm.pth", "lm_v1.pth"])
def test_lm_logits_over_three_stateful_batches(fastai_fixture, name):
    root, expected = fastai_fixture
    params, config, vocab = ulmfit_jax.load_fastai_lm(root / name, root / "lm_itos.pkl")
    assert (config.vocab_size, config.emb_sz, config.n_hid, config.n_layers) == (48, 16, 24, 3)
    assert vocab[:3] == ["xxunk", "xxpad", "xxbos"]
    tokens = expected["lm_tokens"]
    n_batches, _, bptt, _ = expected["lm_logits"].shape
    apply = jax.jit(ulmfit_jax.lm_apply, static_argnums=1)
    state = None
    for b in range(n_batches):
        logits, state = apply(params, config, tokens[:, b * bptt : (b + 1) * bptt], state)
        np.testing.assert_allclose(logits, expected["lm_logits"][b], atol=ATOL, rtol=0)


def test_lm_window_split_does_not_matter(fastai_fixture):
    """Stateful windows of 10 give the same logits as one window of 30."""
    root, expected = fastai_fixture
    params, config, _ = ulmfit_jax.load_fastai_lm(root / "lm.pth")
    whole, _ = ulmfit_jax.lm_apply(params, config, expected["lm_tokens"])
    stacked = np.concatenate(list(expected["lm_logits"]), axis=1)
    np.testing.assert_allclose(whole, stacked, atol=ATOL, rtol=0)


def _docs(expected):
    lengths = expected["clas_doc_lengths"]
    return np.split(expected["clas_docs"], np.cumsum(lengths)[:-1])


def test_classifier_logits_each_document_alone(fastai_fixture, fastai_classifier_config):
    root, expected = fastai_fixture
    params = ulmfit_jax.load_fastai_classifier(root / "classifier.pth", fastai_classifier_config)
    docs = _docs(expected)
    assert max(len(d) for d in docs) > 2 * fastai_classifier_config.max_len
    for doc, want in zip(docs, expected["clas_logits"], strict=True):
        got = ulmfit_jax.classifier_apply(params, fastai_classifier_config, [doc.tolist()])
        np.testing.assert_allclose(got[0], want, atol=ATOL, rtol=0, err_msg=f"length {len(doc)}")


def test_classifier_logits_do_not_depend_on_the_batch(fastai_fixture, fastai_classifier_config):
    root, expected = fastai_fixture
    params = ulmfit_jax.load_fastai_classifier(root / "classifier.pth", fastai_classifier_config)
    docs = [d.tolist() for d in _docs(expected)]
    together = ulmfit_jax.classifier_apply(params, fastai_classifier_config, docs)
    np.testing.assert_allclose(together, expected["clas_logits"], atol=ATOL, rtol=0)
    # Another order and extra padding: the same logits for each document.
    order = np.random.default_rng(0).permutation(len(docs))
    tokens, lengths = ulmfit_jax.pad_documents([docs[i] for i in order], fastai_classifier_config)
    tokens = np.pad(tokens, ((0, 0), (0, 3 * fastai_classifier_config.bptt)), constant_values=1)
    shuffled = ulmfit_jax.classifier_apply(params, fastai_classifier_config, tokens, lengths)
    np.testing.assert_allclose(shuffled, together[order], atol=1e-5, rtol=0)


def test_match_embeddings_equals_fastai(fastai_fixture):
    root, expected = fastai_fixture
    params, _, vocab = ulmfit_jax.load_fastai_lm(root / "lm.pth", root / "lm_itos.pkl")
    new_vocab = json.loads((root / "lm_new_itos.json").read_text())
    moved = ulmfit_jax.match_embeddings(params, vocab, new_vocab)
    np.testing.assert_allclose(
        moved["encoder"]["embedding"], expected["match_embedding"], atol=1e-6, rtol=0
    )
    np.testing.assert_allclose(moved["decoder"]["bias"], expected["match_bias"], atol=1e-6, rtol=0)


def test_raw_weight_wins_over_stale_module_weight(fastai_fixture):
    root, _ = fastai_fixture
    new, _, _ = ulmfit_jax.load_fastai_lm(root / "lm.pth")
    old, _, _ = ulmfit_jax.load_fastai_lm(root / "lm_v1.pth")
    for layer in range(3):
        np.testing.assert_array_equal(
            new["encoder"][f"lstm_{layer}"]["w_hh"], old["encoder"][f"lstm_{layer}"]["w_hh"]
        )


def test_itos_round_trip(tmp_path):
    itos = ["xxunk", "xxpad", "é", "word"]
    fastai_weights.write_itos(itos, tmp_path / "itos.pkl")
    assert fastai_weights.read_itos(tmp_path / "itos.pkl") == itos
