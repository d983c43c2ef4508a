"""Read and write biLM weights in the released AllenNLP/bilm-tf hdf5 layout.

Layout (TensorFlow variable names, `x @ W` orientation), for F = sum of filters, E = char
embedding dim, C = lstm.dim, P = lstm.projection_dim:

    char_embed                                   [n_characters - 1, E]  (no padding row)
    CNN/W_cnn_{i}, CNN/b_cnn_{i}                 [1, width_i, E, num_i], [num_i]
    CNN_high_{k}/W_carry|W_transform             [F, F]
    CNN_high_{k}/b_carry|b_transform             [F]
    CNN_proj/W_proj, CNN_proj/b_proj             [F, P], [P]          (only when F != P)
    RNN_{d}/RNN/MultiRNNCell/Cell{l}/LSTMCell/W_0    [P + P, 4C]  (input rows, then recurrent)
                                             .../B      [4C]        (gate order i, j, f, o)
                                             .../W_P_0  [C, P]      (only when P < C)

with d = 0 forward, 1 backward. `load_allennlp` checks every tensor against the options before
reading anything, so a mismatch is a `ValueError` naming the tensor and both shapes, never an
XLA error later.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from elmo_jax.model.config import BiLMConfig, read_options
from elmo_jax.model.init import init_bilm
from ulmfit_jax.core.fetch import local

Params = dict

# Our highway parameter names and the hdf5 ones (TensorFlow capitalises the matrices only).
_HIGHWAY = {
    "w_carry": "W_carry",
    "b_carry": "b_carry",
    "w_transform": "W_transform",
    "b_transform": "b_transform",
}


def _cell(direction: int, layer: int) -> str:
    return f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell"


def hdf5_shapes(config: BiLMConfig) -> dict[str, tuple[int, ...]]:
    """Every dataset the options imply, with its shape, in the released layout."""
    e, f, p, c = config.char_embed_dim, config.n_filters, config.projection_dim, config.dim
    shapes: dict[str, tuple[int, ...]] = {"char_embed": (config.n_characters - 1, e)}
    for i, (width, num) in enumerate(config.filters):
        shapes[f"CNN/W_cnn_{i}"] = (1, width, e, num)
        shapes[f"CNN/b_cnn_{i}"] = (num,)
    for k in range(config.n_highway):
        for kind in ("carry", "transform"):
            shapes[f"CNN_high_{k}/W_{kind}"] = (f, f)
            shapes[f"CNN_high_{k}/b_{kind}"] = (f,)
    if config.has_cnn_projection:
        shapes["CNN_proj/W_proj"] = (f, p)
        shapes["CNN_proj/b_proj"] = (p,)
    for d in range(2):
        for layer in range(config.n_layers):
            cell = _cell(d, layer)
            shapes[f"{cell}/W_0"] = (p + p, 4 * c)
            shapes[f"{cell}/B"] = (4 * c,)
            if config.has_lstm_projection:
                shapes[f"{cell}/W_P_0"] = (c, p)
    return shapes


def count_parameters(config: BiLMConfig) -> int:
    """Number of weights in the released files (the padding row excluded)."""
    return int(sum(np.prod(s) for s in hdf5_shapes(config).values()))


def _datasets(group: h5py.Group, prefix: str = "") -> Iterator[str]:
    for name, item in group.items():
        if isinstance(item, h5py.Dataset):
            yield prefix + name
        else:
            yield from _datasets(item, f"{prefix}{name}/")


def params_from_released(arrays: dict[str, jax.Array], config: BiLMConfig) -> Params:
    """Released-layout arrays (already shape-checked) to our parameter tree (pure jnp, so
    `jax.eval_shape` can check the mapping without allocating full-size weights)."""
    arrays = {k: jnp.asarray(v, jnp.float32) for k, v in arrays.items()}
    embed = arrays["char_embed"]
    # Id 0 is the padding token: a zero row in front (bilm-tf and AllenNLP do the same).
    cnn: Params = {"char_embed": jnp.concatenate([jnp.zeros_like(embed[:1]), embed])}
    for i in range(len(config.filters)):
        cnn[f"conv_{i}"] = {"w": arrays[f"CNN/W_cnn_{i}"][0], "b": arrays[f"CNN/b_cnn_{i}"]}
    for k in range(config.n_highway):
        g = f"CNN_high_{k}"
        cnn[f"highway_{k}"] = {ours: arrays[f"{g}/{theirs}"] for ours, theirs in _HIGHWAY.items()}
    if config.has_cnn_projection:
        cnn["proj"] = {"w": arrays["CNN_proj/W_proj"], "b": arrays["CNN_proj/b_proj"]}
    lstm: Params = {}
    p = config.projection_dim
    for layer in range(config.n_layers):
        cells = [_cell(d, layer) for d in range(2)]
        w0 = jnp.stack([arrays[f"{cell}/W_0"] for cell in cells])
        entry = {
            "w_x": w0[:, :p],
            "w_h": w0[:, p:],
            "b": jnp.stack([arrays[f"{cell}/B"] for cell in cells]),
        }
        if config.has_lstm_projection:
            entry["w_p"] = jnp.stack([arrays[f"{cell}/W_P_0"] for cell in cells])
        lstm[f"layer_{layer}"] = entry
    return {"char_cnn": cnn, "lstm": lstm}


def params_to_released(params: Params, config: BiLMConfig) -> dict[str, jax.Array]:
    """Our parameter tree back to released-layout arrays (the inverse; pure jnp)."""
    cnn, lstm = params["char_cnn"], params["lstm"]
    out = {"char_embed": cnn["char_embed"][1:]}
    for i in range(len(config.filters)):
        out[f"CNN/W_cnn_{i}"] = cnn[f"conv_{i}"]["w"][None]
        out[f"CNN/b_cnn_{i}"] = cnn[f"conv_{i}"]["b"]
    for k in range(config.n_highway):
        for ours, theirs in _HIGHWAY.items():
            out[f"CNN_high_{k}/{theirs}"] = cnn[f"highway_{k}"][ours]
    if config.has_cnn_projection:
        out["CNN_proj/W_proj"] = cnn["proj"]["w"]
        out["CNN_proj/b_proj"] = cnn["proj"]["b"]
    for layer in range(config.n_layers):
        entry = lstm[f"layer_{layer}"]
        for d in range(2):
            cell = _cell(d, layer)
            out[f"{cell}/W_0"] = jnp.concatenate([entry["w_x"][d], entry["w_h"][d]], axis=0)
            out[f"{cell}/B"] = entry["b"][d]
            if config.has_lstm_projection:
                out[f"{cell}/W_P_0"] = entry["w_p"][d]
    _check_shapes({k: v.shape for k, v in out.items()}, config, "the parameters")
    return out


def _check_shapes(found: dict[str, tuple[int, ...]], config: BiLMConfig, where: str) -> None:
    for name, want in hdf5_shapes(config).items():
        if name not in found:
            raise ValueError(f"{where}: missing dataset {name!r} (the options imply shape {want})")
        if tuple(found[name]) != want:
            raise ValueError(
                f"{where}: dataset {name!r} has shape {tuple(found[name])} but the options "
                f"imply {want}"
            )


def check_weight_file(config: BiLMConfig, weight_file: str | os.PathLike) -> list[str]:
    """Check that `weight_file` has every dataset the config needs, in the right shape, without
    reading any weights.

    Returns:
      The names of datasets in the file that the config does not use (the references ignore
      them; usually a sign of an options file from another model).

    Raises:
      ValueError: a dataset is missing or has another shape (naming it and both shapes), or the
        file is not hdf5.
    """
    if not os.path.isfile(weight_file):
        raise ValueError(f"{weight_file}: weight file not found")
    try:
        fin = h5py.File(weight_file, "r")
    except OSError as e:
        raise ValueError(f"{weight_file}: cannot open as an hdf5 weight file ({e})") from None
    with fin:
        found = {name: fin[name].shape for name in _datasets(fin)}
    _check_shapes(found, config, str(weight_file))
    return sorted(set(found) - set(hdf5_shapes(config)))


def load_allennlp(
    options_file: str | os.PathLike, weight_file: str | os.PathLike
) -> tuple[Params, BiLMConfig]:
    """Load a released (or bilm-tf `dump_weights`) biLM.

    Args:
      options_file: the model's options.json, a path or an address (`https://...`,
        `gs://...`, `hf://...`, downloaded and cached by `ulmfit_jax.core.fetch.fetch`).
      weight_file: the hdf5 weights in the released layout (module docstring), a path or an
        address.

    Returns:
      `(params, config)`: plain nested dicts of float32 arrays, and the frozen config.

    Raises:
      ValueError: a dataset the options need is missing, or its shape disagrees with the
        options (the message names the dataset and both shapes).
    """
    options_file, weight_file = local(options_file), local(weight_file)
    config = read_options(options_file)
    extra = check_weight_file(config, weight_file)
    if extra:
        msg = f"{weight_file}: ignoring datasets the options do not use: {extra}"
        warnings.warn(msg, stacklevel=2)
    with h5py.File(weight_file, "r") as fin:
        arrays = {name: np.asarray(fin[name][...], np.float32) for name in hdf5_shapes(config)}
    return jax.jit(params_from_released, static_argnums=1)(arrays, config), config


def save_allennlp(
    params: Params,
    config: BiLMConfig,
    weight_file: str | os.PathLike,
    options_file: str | os.PathLike | None = None,
) -> None:
    """Write params (and optionally options.json) in the released layout, readable by AllenNLP
    and bilm-tf as well as by `load_allennlp`."""
    import json

    arrays = jax.jit(params_to_released, static_argnums=1)(params, config)
    with h5py.File(weight_file, "w") as fout:
        for name, value in arrays.items():
            fout.create_dataset(name, data=np.asarray(value, np.float32))
    if options_file is not None:
        with open(options_file, "w", encoding="utf-8") as f:
            json.dump(config.to_options(), f, indent=2)


def write_random_weights(
    config: BiLMConfig,
    weight_file: str | os.PathLike,
    options_file: str | os.PathLike | None = None,
    seed: int = 0,
) -> Params:
    """Write random weights of the config's shapes in the released layout; returns them."""
    params = init_bilm(jax.random.key(seed), config)
    save_allennlp(params, config, weight_file, options_file)
    return params


def abstract_params(config: BiLMConfig) -> Params:
    """The parameter tree's shapes and dtypes without allocating it (`jax.eval_shape`)."""
    return jax.eval_shape(lambda: init_bilm(jax.random.key(0), config))
