"""Options presets and the released hdf5 layout: shapes, round trips, and clear errors."""

import dataclasses
import json

import h5py
import jax
import numpy as np
import pytest
from elmo_fixtures import fixture_dir, scaled_preset, tiny_config

from elmo_jax.model.bilm import bilm_apply
from elmo_jax.model.config import PRESETS, BiLMConfig, preset, read_options
from elmo_jax.weights.allennlp import (
    abstract_params,
    check_weight_file,
    count_parameters,
    hdf5_shapes,
    load_allennlp,
    params_from_released,
    params_to_released,
    save_allennlp,
    write_random_weights,
)

# Published sizes (allennlp.org/elmo): 13.6M, 28.0M, 93.6M, 93.6M parameters.
PUBLISHED_MILLIONS = {"small": 13.6, "medium": 28.0, "original": 93.6, "original_5.5B": 93.6}
OUTPUT_DIM = {"small": 256, "medium": 512, "original": 1024, "original_5.5B": 1024}


def _shapes(tree):
    return jax.tree.map(lambda x: tuple(x.shape), tree)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_full_size_structure_without_allocating(name, tmp_path):
    config = preset(name)
    assert round(count_parameters(config) / 1e6, 1) == PUBLISHED_MILLIONS[name]
    assert config.output_dim == OUTPUT_DIM[name] and config.num_output_layers == 3
    abstract = abstract_params(config)
    # hdf5 layout -> our tree, and back, agree with the initialiser and with hdf5_shapes.
    released = {k: jax.ShapeDtypeStruct(s, np.float32) for k, s in hdf5_shapes(config).items()}
    loaded = jax.eval_shape(lambda a: params_from_released(a, config), released)
    assert _shapes(loaded) == _shapes(abstract)
    back = jax.eval_shape(lambda p: params_to_released(p, config), abstract)
    assert {k: tuple(v.shape) for k, v in back.items()} == hdf5_shapes(config)
    # The forward pass at full size, shapes only.
    ids = jax.ShapeDtypeStruct((2, 5, 50), np.int32)
    layers, mask, state = jax.eval_shape(lambda p, i: bilm_apply(p, config, i), abstract, ids)
    assert [x.shape for x in layers] == [(2, 7, config.output_dim)] * 3
    assert state["c"].shape == (2, 2, 2, config.dim)
    # A file with the real dataset shapes but no data written stays a few kB on disk.
    path = tmp_path / "shapes_only.hdf5"
    with h5py.File(path, "w") as f:
        for key, shape in hdf5_shapes(config).items():
            f.create_dataset(key, shape, np.float32)
    assert path.stat().st_size < 200_000
    assert check_weight_file(config, path) == []


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_scaled_preset_writes_loads_and_runs(name, tmp_path):
    config = scaled_preset(name)
    assert (config.n_highway, config.n_layers, len(config.filters)) == (
        preset(name).n_highway,
        2,
        7,
    )
    options, weights = tmp_path / "options.json", tmp_path / "weights.hdf5"
    written = write_random_weights(config, weights, options, seed=3)
    params, loaded_config = load_allennlp(options, weights)
    assert loaded_config == config
    jax.tree.map(np.testing.assert_array_equal, params, written)
    layers, mask, _ = jax.jit(bilm_apply, static_argnums=1)(
        params, config, np.ones((1, 3, 50), np.int32)
    )
    assert all(np.isfinite(np.asarray(x)).all() for x in layers)


def test_small_preset_real_shapes_round_trip(tmp_path):
    config = preset("small")
    options, weights = tmp_path / "options.json", tmp_path / "weights.hdf5"
    written = write_random_weights(config, weights, options, seed=0)
    params, loaded_config = load_allennlp(options, weights)
    assert loaded_config == config
    jax.tree.map(np.testing.assert_array_equal, params, written)
    with h5py.File(weights, "r") as f:
        assert f["char_embed"].shape == (261, 16)
        assert f["RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_0"].shape == (256, 4096)
        assert f["CNN_high_0/W_carry"].shape == (2048, 2048)
        assert "CNN_high_1" not in f


def test_fixture_round_trips_bit_for_bit(shared_dir, tmp_path):
    directory = fixture_dir(shared_dir)
    params, config = load_allennlp(directory / "options.json", directory / "lm_weights.hdf5")
    save_allennlp(params, config, tmp_path / "w.hdf5", tmp_path / "o.json")
    assert read_options(tmp_path / "o.json") == config
    with h5py.File(directory / "lm_weights.hdf5") as a, h5py.File(tmp_path / "w.hdf5") as b:
        for key in hdf5_shapes(config):
            np.testing.assert_array_equal(a[key][...], b[key][...])


def test_options_parsing_edge_cases(tmp_path):
    options = tiny_config().to_options()
    options["char_cnn"]["n_characters"] = 261  # bilm-tf *training* options
    del options["char_cnn"]["n_highway"]
    del options["lstm"]["n_layers"]
    options["bidirectional"] = True  # training-only keys are ignored
    path = tmp_path / "options.json"
    path.write_text(json.dumps(options))
    config = read_options(path)
    assert (config.n_characters, config.n_highway, config.n_layers) == (262, 0, 1)
    del options["lstm"]["dim"]
    path.write_text(json.dumps(options))
    with pytest.raises(ValueError, match="missing the key 'dim'"):
        read_options(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON options file"):
        read_options(path)
    with pytest.raises(ValueError, match="activation"):
        tiny_config(activation="gelu")
    with pytest.raises(ValueError, match="projection_dim"):
        tiny_config(projection_dim=64)


@pytest.fixture()
def tiny_files(tmp_path):
    config = tiny_config()
    options, weights = tmp_path / "options.json", tmp_path / "weights.hdf5"
    write_random_weights(config, weights, options)
    return config, options, weights


def test_missing_dataset_is_named(tiny_files):
    _, options, weights = tiny_files
    with h5py.File(weights, "a") as f:
        del f["RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_P_0"]
    with pytest.raises(ValueError, match=r"missing dataset 'RNN_1/.*/Cell1/LSTMCell/W_P_0'"):
        load_allennlp(options, weights)


def test_options_and_weights_that_disagree_name_tensor_and_shapes(tiny_files, tmp_path):
    config, _, weights = tiny_files
    other = tmp_path / "other.json"
    other.write_text(json.dumps(dataclasses.replace(config, dim=32).to_options()))
    with pytest.raises(ValueError) as e:
        load_allennlp(other, weights)
    message = str(e.value)
    assert "RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/W_0" in message
    assert "(16, 96)" in message and "(16, 128)" in message  # file's shape, then the options'
    bad = dataclasses.replace(config, filters=((1, 4), (2, 8), (3, 9)))
    other.write_text(json.dumps(bad.to_options()))
    with pytest.raises(ValueError, match=r"'CNN/W_cnn_2' has shape \(1, 3, 4, 8\) but the options"):
        load_allennlp(other, weights)


def test_unused_datasets_warn_and_non_hdf5_fails(tiny_files, tmp_path):
    config, options, weights = tiny_files
    with h5py.File(weights, "a") as f:
        f.create_dataset("CNN_high_7/W_carry", data=np.zeros((2, 2), np.float32))
    with pytest.warns(UserWarning, match="CNN_high_7/W_carry"):
        load_allennlp(options, weights)
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="cannot open as an hdf5"):
        load_allennlp(options, junk)


def test_config_is_hashable_and_round_trips_options():
    for name in PRESETS:
        config = preset(name)
        assert BiLMConfig.from_options(config.to_options()) == config
        hash(config)
    assert preset("small").to_options() == PRESETS["small"] | {
        "lstm": {**PRESETS["small"]["lstm"], "cell_clip": 3.0, "proj_clip": 3.0}
    }
