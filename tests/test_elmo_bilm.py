"""The biLM against a float64 NumPy transcription of bilm-tf / AllenNLP, one sentence at a time.

AllenNLP's fixture covers one structure (skip connections, both projections, relu, highway);
these tests cover the others, and the stateful semantics when the batch size changes.
"""

import dataclasses

import jax
import numpy as np
import pytest
from elmo_fixtures import tiny_config

from elmo_jax.model.bilm import bilm_apply, remove_sentence_boundaries
from elmo_jax.model.characters import ELMoCharacterMapper, batch_to_ids
from elmo_jax.model.init import init_bilm
from elmo_jax.model.lstmp import zero_state

_apply = jax.jit(bilm_apply, static_argnums=1)

SENTENCES = [
    ["The", "cat", "sat", "."],
    ["Hi"],
    ["A", "longer", "sentence", "with", "unusual", "wörds", "!"],
    [],
    ["x" * 70, "y"],
]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class NumpyBiLM:
    """Reference: per row, per direction, per layer, per step; state kept per batch row."""

    def __init__(self, params, config):
        self.p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
        self.cfg = config
        self.mapper = ELMoCharacterMapper()
        self.state = {}  # row -> {(layer, direction): (h, c)}

    def token_embedding(self, tokens):
        cfg, p = self.cfg, self.p["char_cnn"]
        ids = np.stack([self.mapper.convert_word_to_char_ids(t) for t in tokens])
        x = p["char_embed"][ids]  # [n, W, E]
        act = (lambda v: np.maximum(v, 0)) if cfg.activation == "relu" else np.tanh
        pooled = []
        for i, (width, _) in enumerate(cfg.filters):
            w = p[f"conv_{i}"]["w"]
            conv = [
                sum(x[:, s + k] @ w[k] for k in range(width)) for s in range(x.shape[1] - width + 1)
            ]
            pooled.append(act(np.max(conv, axis=0) + p[f"conv_{i}"]["b"]))
        h = np.concatenate(pooled, -1)
        for k in range(cfg.n_highway):
            hw = p[f"highway_{k}"]
            g = _sigmoid(h @ hw["w_carry"] + hw["b_carry"])
            h = g * np.maximum(h @ hw["w_transform"] + hw["b_transform"], 0) + (1 - g) * h
        if cfg.has_cnn_projection:
            h = h @ p["proj"]["w"] + p["proj"]["b"]
        return h

    def _direction(self, row, emb, d):
        cfg = self.cfg
        x = emb if d == 0 else emb[::-1]
        for layer in range(cfg.n_layers):
            p = self.p["lstm"][f"layer_{layer}"]
            h, c = self.state.get(row, {}).get(
                (layer, d), (np.zeros(cfg.projection_dim), np.zeros(cfg.dim))
            )
            outs = []
            for t in range(len(x)):
                z = np.concatenate([x[t], h]) @ np.concatenate([p["w_x"][d], p["w_h"][d]])
                i, j, f, o = np.split(z + p["b"][d], 4)
                c = _sigmoid(f + cfg.forget_bias) * c + _sigmoid(i) * np.tanh(j)
                if cfg.cell_clip:
                    c = np.clip(c, -cfg.cell_clip, cfg.cell_clip)
                h = _sigmoid(o) * np.tanh(c)
                if cfg.has_lstm_projection:
                    h = h @ p["w_p"][d]
                    if cfg.proj_clip:
                        h = np.clip(h, -cfg.proj_clip, cfg.proj_clip)
                outs.append(h + x[t] if (cfg.use_skip_connections and layer > 0) else h)
            self.state.setdefault(row, {})[(layer, d)] = (h, c)
            x = np.stack(outs)
            yield x if d == 0 else x[::-1]

    def __call__(self, batch):
        """Per sentence: list of num_output_layers arrays [n, 2P], boundaries removed."""
        results = []
        for row, tokens in enumerate(batch):
            emb = self.token_embedding(["<S>", *tokens, "</S>"])
            layers = [np.concatenate([emb, emb], -1)]
            for fwd, bwd in zip(
                self._direction(row, emb, 0), self._direction(row, emb, 1), strict=True
            ):
                layers.append(np.concatenate([fwd, bwd], -1))
            results.append([x[1:-1] for x in layers])
        return results


CONFIGS = {
    # Small clip values so that clipping is exercised.
    "released_structure": tiny_config(cell_clip=0.5, proj_clip=0.1),
    "no_skip_connections": tiny_config(use_skip_connections=False, n_layers=3),
    "no_lstm_projection": tiny_config(dim=8, projection_dim=8, cell_clip=None, proj_clip=None),
    "tanh_no_highway_no_cnn_projection": tiny_config(
        activation="tanh", n_highway=0, filters=((1, 2), (2, 2), (3, 4)), projection_dim=8
    ),
}


def _compare(got_layers, got_mask, batch, expected):
    got_layers = [np.asarray(x) for x in got_layers]
    for r, tokens in enumerate(batch):
        n = len(tokens)
        assert np.asarray(got_mask[r]).tolist() == [True] * (n + 2) + [False] * (
            got_mask.shape[1] - n - 2
        )
        for got, want in zip(got_layers, expected[r], strict=True):
            np.testing.assert_allclose(got[r, 1 : n + 1], want, atol=2e-5, rtol=0)
            assert not got[r, n + 2 :].any()  # zero at padding


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_stateless_matches_numpy_reference(name):
    config = CONFIGS[name]
    params = init_bilm(jax.random.key(1), config)
    layers, mask, _ = _apply(params, config, batch_to_ids(SENTENCES, pad_to=8), None)
    assert len(layers) == config.num_output_layers
    assert layers[0].shape == (len(SENTENCES), 10, config.output_dim)
    _compare(layers, mask, SENTENCES, NumpyBiLM(params, config)(SENTENCES))


def test_stateful_rows_continue_and_smaller_batches_keep_other_rows():
    config = CONFIGS["released_structure"]
    params = init_bilm(jax.random.key(1), config)
    reference = NumpyBiLM(params, config)
    batches = [SENTENCES[:3], SENTENCES[3:], SENTENCES[1:5]]
    state = zero_state(config, 3)
    for batch in batches:  # 3 rows, then 2 (row 2 kept), then 4 (row 3 starts from zero)
        layers, mask, state = _apply(params, config, batch_to_ids(batch, pad_to=8), state)
        _compare(layers, mask, batch, reference(batch))
    assert state["h"].shape == (2, 2, 4, 8) and state["c"].shape == (2, 2, 4, 24)
    for row in range(4):  # the state itself, every layer and direction
        for (layer, d), (h, c) in reference.state[row].items():
            np.testing.assert_allclose(state["h"][layer, d, row], h, atol=2e-5)
            np.testing.assert_allclose(state["c"][layer, d, row], c, atol=2e-5)


def test_stateless_result_does_not_depend_on_batch_or_padding():
    config = CONFIGS["released_structure"]
    params = init_bilm(jax.random.key(1), config)
    together, mask, _ = _apply(params, config, batch_to_ids(SENTENCES, pad_to=8), None)
    top, _ = remove_sentence_boundaries(together[-1], mask)
    alone, mask1, _ = _apply(params, config, batch_to_ids(SENTENCES[2:3], pad_to=16), None)
    top1, _ = remove_sentence_boundaries(alone[-1], mask1)
    np.testing.assert_allclose(top[2, :7], top1[0, :7], atol=1e-6)


def test_state_of_another_model_is_a_clear_error():
    config = CONFIGS["released_structure"]
    params = init_bilm(jax.random.key(1), config)
    other = zero_state(dataclasses.replace(config, dim=32), 2)
    with pytest.raises(ValueError, match="state shapes"):
        bilm_apply(params, config, batch_to_ids([["a"]]), other)
    with pytest.raises(ValueError, match="char_ids must be"):
        bilm_apply(params, config, np.zeros((1, 2, 30), np.int32))
