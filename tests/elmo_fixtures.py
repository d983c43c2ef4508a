"""Helpers for tests and benchmarks: tiny configs and AllenNLP's ELMo fixture.

AllenNLP's fixture (`allennlp/tests/fixtures/elmo`, generated with bilm-tf): a tiny biLM
(`options.json`, `lm_weights.hdf5`), 3 x 10 sentences, and the top layer bilm-tf computed for
them: `lm_embeddings_{k}.hdf5` dataset "i" is sentence `sentences[k][i]`, float[2, n_tokens, 16]
with the forward half in [0] and the backward half in [1] (concatenated, the 32-dim top layer
without `<S>`/`</S>`). They were computed in 10 batches, batch i being `[sentences[0][i],
sentences[1][i], sentences[2][i]]`, on one stateful model.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import h5py
import numpy as np

from elmo_jax.model.config import BiLMConfig, preset


def tiny_config(**overrides) -> BiLMConfig:
    """A few-thousand-parameter biLM of the released structure, for fast tests."""
    base = BiLMConfig(
        char_embed_dim=4,
        filters=((1, 4), (2, 8), (3, 8)),
        n_highway=1,
        dim=24,
        projection_dim=8,
        n_layers=2,
        max_characters_per_token=50,
    )
    return dataclasses.replace(base, **overrides)


def tiny_bilm_params(seed: int) -> tuple[dict, BiLMConfig]:
    """`(params, config)` of a `tiny_config()` biLM initialised from `jax.random.key(seed)`."""
    import jax

    from elmo_jax.model.init import init_bilm

    config = tiny_config()
    return init_bilm(jax.random.key(seed), config), config


def scaled_preset(name: str, factor: int = 64) -> BiLMConfig:
    """A released config with every width divided by `factor` and its structure kept (layers,
    highway count, filter widths, skip connections, which projections exist)."""
    cfg = preset(name)
    return dataclasses.replace(
        cfg,
        char_embed_dim=max(cfg.char_embed_dim // 4, 2),
        filters=tuple((w, max(n // factor, 1)) for w, n in cfg.filters),
        dim=cfg.dim // factor,
        projection_dim=max(cfg.projection_dim // factor, 1),
    )


def fixture_dir(shared: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(shared) / "fixtures" / "elmo_allennlp"


def load_fixture_sentences(directory: pathlib.Path) -> list[list[str]]:
    """`sentences[k][i]`: 3 lists of 10 sentences (strings)."""
    with open(pathlib.Path(directory) / "sentences.json", encoding="utf-8") as f:
        return json.load(f)


def load_fixture_top_layers(directory: pathlib.Path) -> list[list[np.ndarray]]:
    """`expected[k][i]`: float32[n_tokens, 32], forward and backward halves concatenated."""
    out = []
    for k in range(3):
        with h5py.File(pathlib.Path(directory) / f"lm_embeddings_{k}.hdf5", "r") as fin:
            out.append([np.concatenate(list(fin[str(i)][...]), axis=-1) for i in range(10)])
    return out
