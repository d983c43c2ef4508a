"""ELMo biLM folders: AllenNLP hdf5 -> folder -> save_allennlp -> AllenNLP's fixture outputs."""

import numpy as np
import pytest
from elmo_fixtures import fixture_dir, load_fixture_sentences, tiny_config
from model_fixtures import assert_trees_equal

import elmo_jax
from elmo_jax.weights.allennlp import load_allennlp, save_allennlp, write_random_weights
from elmo_jax.weights.folder import from_allennlp, from_pretrained


def test_allennlp_fixture_through_a_folder_and_back(shared_dir, tmp_path):
    """AllenNLP's own test model: folder -> save_allennlp -> the same params and outputs."""
    source = fixture_dir(shared_dir)
    folder = from_allennlp(source / "options.json", source / "lm_weights.hdf5", tmp_path / "elmo")
    params, config = from_pretrained(folder)
    want_params, want_config = load_allennlp(source / "options.json", source / "lm_weights.hdf5")
    assert config == want_config
    assert_trees_equal(params, want_params)
    save_allennlp(params, config, tmp_path / "w.hdf5", tmp_path / "options.json")
    again, _ = load_allennlp(tmp_path / "options.json", tmp_path / "w.hdf5")
    assert_trees_equal(again, want_params)
    ids = elmo_jax.batch_to_ids(load_fixture_sentences(source)[:2])
    got = elmo_jax.bilm_apply(again, config, ids)[0]
    np.testing.assert_array_equal(got, elmo_jax.bilm_apply(want_params, config, ids)[0])
    assert "ELMo character-CNN biLM" in (folder / "README.md").read_text()


def test_a_ulmfit_folder_is_not_a_bilm(tmp_path):
    from ulmfit_jax.core import model_folder

    model_folder.save_folder(tmp_path / "x", {"a": np.ones(2)}, {"kind": "language_model"})
    with pytest.raises(ValueError, match="not an ELMo biLM"):
        from_pretrained(tmp_path / "x")


def test_shapes_that_disagree_with_the_options_are_named(tmp_path):
    config = tiny_config()
    write_random_weights(config, tmp_path / "w.hdf5", tmp_path / "o.json")
    folder = from_allennlp(tmp_path / "o.json", tmp_path / "w.hdf5", tmp_path / "elmo")
    import json

    record = json.loads((folder / "config.json").read_text())
    record["options"]["lstm"]["projection_dim"] += 1
    (folder / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="has shape"):
        from_pretrained(folder)
