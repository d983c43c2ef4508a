"""Random biLM parameters with bilm-tf's initialisers (`bilm/training.py`).

Used for random-weight files in the released shapes (tests, benchmarks) and as the starting point
for training a biLM from scratch.

* character embeddings uniform(-1, 1), padding row 0 zero;
* relu convolutions uniform(+-0.05) (Kim et al. 2015); tanh ones normal(0, sqrt(1 / (width * E)));
* highway `W_carry`/`W_transform` normal(0, sqrt(1 / F)), `b_carry` -2 (start near the
  identity), `b_transform` 0; projection normal(0, sqrt(1 / F)), bias 0;
* LSTM `W_0` and `W_P_0` Glorot-uniform over the fused TF matrices (TensorFlow's default, which
  bilm-tf leaves in place), biases 0.

Every parameter is drawn from ONE uniform and ONE normal sample, sliced: threefry is slow to
compile on CPU, and ~20 separate draws took ~7 s to compile against ~0.3 s for two.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from elmo_jax.model.config import BiLMConfig

Params = dict


def _specs(config: BiLMConfig) -> list[tuple[tuple[str, ...], tuple[int, ...], str, float, float]]:
    """(path, shape, kind, a, b): kind "uniform" on [a, b), "normal" with std a, "const" = a."""
    e, f, p, c = config.char_embed_dim, config.n_filters, config.projection_dim, config.dim
    specs = [(("char_cnn", "char_embed"), (config.n_characters, e), "uniform", -1.0, 1.0)]
    for i, (width, num) in enumerate(config.filters):
        conv = ("char_cnn", f"conv_{i}")
        if config.activation == "relu":
            specs.append(((*conv, "w"), (width, e, num), "uniform", -0.05, 0.05))
        else:
            specs.append(((*conv, "w"), (width, e, num), "normal", np.sqrt(1.0 / (width * e)), 0))
        specs.append(((*conv, "b"), (num,), "const", 0.0, 0))
    for k in range(config.n_highway):
        hw = ("char_cnn", f"highway_{k}")
        specs += [
            ((*hw, "w_carry"), (f, f), "normal", np.sqrt(1.0 / f), 0),
            ((*hw, "b_carry"), (f,), "const", -2.0, 0),
            ((*hw, "w_transform"), (f, f), "normal", np.sqrt(1.0 / f), 0),
            ((*hw, "b_transform"), (f,), "const", 0.0, 0),
        ]
    if config.has_cnn_projection:
        specs += [
            (("char_cnn", "proj", "w"), (f, p), "normal", np.sqrt(1.0 / f), 0),
            (("char_cnn", "proj", "b"), (p,), "const", 0.0, 0),
        ]
    for layer in range(config.n_layers):
        cell = ("lstm", f"layer_{layer}")
        # Glorot over TF's fused W_0 [in + P, 4C]: both halves share its limit.
        limit = float(np.sqrt(6.0 / (p + p + 4 * c)))
        specs += [
            ((*cell, "w_x"), (2, p, 4 * c), "uniform", -limit, limit),
            ((*cell, "w_h"), (2, p, 4 * c), "uniform", -limit, limit),
            ((*cell, "b"), (2, 4 * c), "const", 0.0, 0),
        ]
        if config.has_lstm_projection:
            limit = float(np.sqrt(6.0 / (c + p)))
            specs.append(((*cell, "w_p"), (2, c, p), "uniform", -limit, limit))
    return specs


@functools.partial(jax.jit, static_argnums=1)
def init_bilm(rng: jax.Array, config: BiLMConfig) -> Params:
    """Random parameters `{"char_cnn": ..., "lstm": ...}` in the layout of `load_allennlp`."""
    specs = _specs(config)
    sizes = {
        kind: sum(int(np.prod(s[1])) for s in specs if s[2] == kind)
        for kind in ("uniform", "normal")
    }
    k_u, k_n = jax.random.split(rng)
    draws = {
        "uniform": jax.random.uniform(k_u, (sizes["uniform"],), jnp.float32),
        "normal": jax.random.normal(k_n, (sizes["normal"],), jnp.float32),
    }
    offsets = {"uniform": 0, "normal": 0}
    params: Params = {}
    for path, shape, kind, a, b in specs:
        if kind == "const":
            value = jnp.full(shape, a, jnp.float32)
        else:
            size = int(np.prod(shape))
            flat = jax.lax.dynamic_slice_in_dim(draws[kind], offsets[kind], size)
            offsets[kind] += size
            value = (a + (b - a) * flat if kind == "uniform" else a * flat).reshape(shape)
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    table = params["char_cnn"]["char_embed"]
    params["char_cnn"]["char_embed"] = table.at[0].set(0.0)  # the padding id
    return params
