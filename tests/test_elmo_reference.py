"""Acceptance: AllenNLP's own ELMo fixture (computed by bilm-tf), reproduced within 1e-5."""

import h5py
import jax
import numpy as np
import pytest
from elmo_fixtures import fixture_dir, load_fixture_sentences, load_fixture_top_layers

from elmo_jax.model.bilm import bilm_apply, remove_sentence_boundaries
from elmo_jax.model.char_cnn import char_cnn_apply
from elmo_jax.model.characters import batch_to_ids
from elmo_jax.model.lstmp import zero_state
from elmo_jax.weights.allennlp import load_allennlp

ATOL = 1e-5


# One jitted function and one padded shape for every batch here: a single compilation.
_apply = jax.jit(bilm_apply, static_argnums=1)
_PAD = 56  # the longest fixture sentence has 53 tokens


@pytest.fixture(scope="module")
def fixture(shared_dir):
    directory = fixture_dir(shared_dir)
    params, config = load_allennlp(directory / "options.json", directory / "lm_weights.hdf5")
    return directory, params, config


def test_top_layer_matches_bilm_tf_over_stateful_batches(fixture):
    directory, params, config = fixture
    sentences = load_fixture_sentences(directory)
    expected = load_fixture_top_layers(directory)
    state, worst = zero_state(config, 3), 0.0
    for i in range(10):
        batch = [sentences[k][i].split() for k in range(3)]
        # Padding every batch to one length must not change anything (and compiles once).
        layers, mask, state = _apply(params, config, batch_to_ids(batch, pad_to=_PAD), state)
        assert len(layers) == 3 and all(x.shape == (3, 58, 32) for x in layers)
        top, top_mask = remove_sentence_boundaries(layers[2], mask)
        assert np.asarray(top_mask).sum(1).tolist() == [len(s) for s in batch]
        for k in range(3):
            n = len(batch[k])
            got = np.asarray(top[k, :n])
            assert got.shape == expected[k][i].shape
            worst = max(worst, float(np.abs(got - expected[k][i]).max()))
            assert not np.asarray(top[k, n:]).any()
    print(f"max abs error, top layer vs bilm-tf: {worst:.2e}")
    assert worst < ATOL


def test_stateless_differs_from_the_stateful_reference(fixture):
    # The fixture really depends on the carried state: from batch 1 on, zero state is wrong.
    directory, params, config = fixture
    sentences = load_fixture_sentences(directory)
    expected = load_fixture_top_layers(directory)
    batch = [sentences[k][1].split() for k in range(3)]
    ids = batch_to_ids(batch, pad_to=_PAD)
    layers, mask, _ = _apply(params, config, ids, zero_state(config, 3))
    top, _ = remove_sentence_boundaries(layers[2], mask)
    n = len(batch[0])
    assert np.abs(np.asarray(top[0, :n]) - expected[0][1]).max() > 1e-3


def test_char_cnn_matches_elmo_token_embeddings(fixture):
    directory, params, config = fixture
    with open(directory / "vocab_test.txt", encoding="utf-8") as f:
        words = f.read().strip().split("\n")
    with h5py.File(directory / "elmo_token_embeddings.hdf5", "r") as fin:
        expected = fin["embedding"][...]
    ids = batch_to_ids([words])[0]  # the CNN is per token: one row of 458 tokens
    got = np.asarray(jax.jit(char_cnn_apply, static_argnums=1)(params["char_cnn"], config, ids))
    err = float(np.abs(got - expected).max())
    print(f"max abs error, char CNN vs bilm-tf: {err:.2e}")
    assert got.shape == expected.shape == (458, 16)
    assert err < ATOL
