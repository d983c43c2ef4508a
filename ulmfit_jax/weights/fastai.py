"""Load fastai AWD-LSTM weights: language models (`.pth` + `itos.pkl`) and text classifiers.

Sizes are read off the tensors, so any AWD-LSTM size loads, including the public WT103 forward
and backward models. Conventions handled here:

* a state dict saved plain or as fastai's `{'model': ..., 'opt': ...}` (`Learner.save`);
* `weight_hh_l0_raw` (what `WeightDropout` trains) wins over a stale `module.weight_hh_l0`
  (older fastai versions saved both);
* PyTorch's two LSTM biases are summed; weights are transposed to our `[in, out]` layout;
* `0.encoder_dp.emb.weight` is the same tensor as `0.encoder.weight` and is ignored.

`.pth` files are read without torch (`ulmfit_jax.weights.torch_pickle`), by an unpickler that only
accepts tensors, so a file cannot run code. `itos.pkl` files are unpickled with an unpickler that
only accepts lists and strings, for the same reason. Every path may also be an address that
`ulmfit_jax.core.fetch.fetch` downloads and caches (`https://...`, `gs://...`, `hf://...`).
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from ulmfit_jax.core.fetch import local
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.weights import torch_pickle

_LSTM_KEY = re.compile(
    r"^rnns\.(\d+)\.(weight_hh_l0_raw|module\.(weight_ih_l0|weight_hh_l0|bias_ih_l0|bias_hh_l0))$"
)


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def read_state_dict(pth_path: str | Path) -> dict[str, np.ndarray]:
    """A fastai `.pth` file as `{name: numpy array}` (the `'model'` entry if present)."""
    path = Path(pth_path)
    if not path.is_file():
        raise FileNotFoundError(f"no fastai weights file at {path}")
    try:
        state = torch_pickle.load_pth(path)
    except ValueError as error:
        raise ValueError(f"{path} is not a readable PyTorch state dict: {error}") from error
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    for name, tensor in state.items():
        if not isinstance(tensor, np.ndarray):
            raise ValueError(f"{path}: entry {name!r} is not a tensor")
    return dict(state)


class _ListOfStringsUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"itos.pkl may only hold a list of str, found {module}.{name}")


def read_itos(itos_path: str | Path) -> list[str]:
    """fastai's vocabulary file: a pickled list of tokens, index = token id."""
    path = Path(itos_path)
    if not path.is_file():
        raise FileNotFoundError(f"no vocabulary file at {path}")
    try:
        itos = _ListOfStringsUnpickler(io.BytesIO(path.read_bytes())).load()
    except Exception as error:
        raise ValueError(
            f"{path} is not a fastai itos.pkl (a pickled list of str): {error}"
        ) from error
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        raise ValueError(f"{path} must hold a list of str, found {type(itos).__name__}")
    return itos


def write_itos(itos: Sequence[str], itos_path: str | Path) -> None:
    """Write a vocabulary as fastai's `itos.pkl`."""
    Path(itos_path).write_bytes(pickle.dumps(list(itos)))


# --------------------------------------------------------------------------------------------
# Converting state dicts
# --------------------------------------------------------------------------------------------


def _expect_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if tuple(array.shape) != tuple(shape):
        raise ValueError(
            f"state dict tensor {name!r} has shape {tuple(array.shape)}, expected {tuple(shape)}"
        )


def _encoder_from_state(state: dict[str, np.ndarray], prefix: str) -> tuple[dict, dict, set]:
    """Convert the `AWD_LSTM` part of a state dict whose keys start with `prefix`.

    Returns:
      `(encoder_params, sizes, used_keys)`; sizes holds vocab_size, emb_sz, n_hid, n_layers.
    """
    emb_key = f"{prefix}encoder.weight"
    if emb_key not in state:
        raise ValueError(f"state dict has no {emb_key!r}: not a fastai AWD-LSTM")
    embedding = state[emb_key]
    if embedding.ndim != 2:
        raise ValueError(f"{emb_key!r} must be 2-D [vocab, emb], got {embedding.shape}")
    vocab_size, emb_sz = embedding.shape
    used = {emb_key}
    dp_key = f"{prefix}encoder_dp.emb.weight"
    if dp_key in state:
        _expect_shape(dp_key, state[dp_key], embedding.shape)
        used.add(dp_key)

    layers: dict[int, dict[str, np.ndarray]] = {}
    for name, array in state.items():
        if not name.startswith(prefix):
            continue
        match = _LSTM_KEY.match(name[len(prefix) :])
        if match:
            layer, field = int(match.group(1)), match.group(3) or match.group(2)
            layers.setdefault(layer, {})[field] = array
            used.add(name)
    n_layers = len(layers)
    if n_layers == 0 or sorted(layers) != list(range(n_layers)):
        raise ValueError(f"state dict LSTM layers {sorted(layers)} are not 0..n-1")

    params: dict[str, Any] = {"embedding": jnp.asarray(embedding, jnp.float32)}
    n_in = emb_sz
    n_hid = None
    for layer in range(n_layers):
        fields = layers[layer]
        where = f"{prefix}rnns.{layer}"
        # The raw (pre-dropout) matrix is the trained one; module.weight_hh_l0 may be stale.
        w_hh = fields.get("weight_hh_l0_raw", fields.get("weight_hh_l0"))
        for needed, value in [
            ("weight_ih_l0", fields.get("weight_ih_l0")),
            ("weight_hh_l0_raw", w_hh),
            ("bias_ih_l0", fields.get("bias_ih_l0")),
            ("bias_hh_l0", fields.get("bias_hh_l0")),
        ]:
            if value is None:
                raise ValueError(f"state dict is missing {where} {needed}")
        hidden = w_hh.shape[1]
        _expect_shape(f"{where}.weight_hh_l0_raw", w_hh, (4 * hidden, hidden))
        _expect_shape(f"{where}.module.weight_ih_l0", fields["weight_ih_l0"], (4 * hidden, n_in))
        _expect_shape(f"{where}.module.bias_ih_l0", fields["bias_ih_l0"], (4 * hidden,))
        _expect_shape(f"{where}.module.bias_hh_l0", fields["bias_hh_l0"], (4 * hidden,))
        if "weight_hh_l0" in fields and "weight_hh_l0_raw" in fields:
            _expect_shape(f"{where}.module.weight_hh_l0", fields["weight_hh_l0"], w_hh.shape)
        if layer < n_layers - 1:
            n_hid = hidden if n_hid is None else n_hid
            if hidden != n_hid:
                raise ValueError(f"{where} has hidden size {hidden}, earlier layers {n_hid}")
        elif hidden != emb_sz:
            raise ValueError(f"last LSTM layer {where} has size {hidden}, not emb_sz {emb_sz}")
        params[f"lstm_{layer}"] = {
            "w_ih": jnp.asarray(fields["weight_ih_l0"].T, jnp.float32),
            "w_hh": jnp.asarray(w_hh.T, jnp.float32),
            "bias": jnp.asarray(fields["bias_ih_l0"] + fields["bias_hh_l0"], jnp.float32),
        }
        n_in = hidden
    sizes = dict(vocab_size=vocab_size, emb_sz=emb_sz, n_hid=n_hid or emb_sz, n_layers=n_layers)
    return params, sizes, used


def _reject_unused(state: Mapping[str, Any], used: set, what: str) -> None:
    extra = sorted(set(state) - used)
    if extra:
        raise ValueError(f"unexpected tensors in the {what} state dict: {extra[:8]}")


def lm_params_from_state_dict(
    state: dict[str, np.ndarray], **config_overrides
) -> tuple[dict[str, Any], AWDLSTMConfig]:
    """Convert a fastai `get_language_model(AWD_LSTM, ...)` state dict to `(params, config)`."""
    encoder, sizes, used = _encoder_from_state(state, "0.")
    decoder: dict[str, Any] = {}
    weight = state.get("1.decoder.weight")
    tied = True
    if weight is not None:
        _expect_shape("1.decoder.weight", weight, (sizes["vocab_size"], sizes["emb_sz"]))
        used.add("1.decoder.weight")
        tied = bool(np.array_equal(weight, state["0.encoder.weight"]))
        if not tied:
            decoder["weight"] = jnp.asarray(weight, jnp.float32)
    bias = state.get("1.decoder.bias")
    if bias is not None:
        _expect_shape("1.decoder.bias", bias, (sizes["vocab_size"],))
        used.add("1.decoder.bias")
        decoder["bias"] = jnp.asarray(bias, jnp.float32)
    _reject_unused(state, used, "language model")
    config = AWDLSTMConfig(**sizes, tie_weights=tied, out_bias=bias is not None, **config_overrides)
    return {"encoder": encoder, "decoder": decoder}, config


def load_fastai_lm(
    pth_path: str | Path, itos_path: str | Path | None = None, **config_overrides
) -> tuple[dict[str, Any], AWDLSTMConfig, list[str] | None]:
    """Load a fastai AWD-LSTM language model, e.g. the public WT103 forward/backward models.

    Args:
      pth_path: the `.pth` state dict (plain or `{'model': ...}`): a path or an address
        (`ulmfit_jax.core.fetch.fetch`).
      itos_path: its `itos.pkl` (a path or an address); its length must equal the embedding's
        number of rows.
      **config_overrides: `AWDLSTMConfig` fields not stored in the weights (dropouts, pad id).

    Returns:
      `(params, config, vocab)`: vocab is the list of tokens (None without `itos_path`).
    """
    state = read_state_dict(local(pth_path))
    params, config = lm_params_from_state_dict(state, **config_overrides)
    vocab = None
    if itos_path is not None:
        vocab = read_itos(local(itos_path))
        if len(vocab) != config.vocab_size:
            raise ValueError(
                f"{itos_path} has {len(vocab)} tokens but {pth_path} has an embedding of "
                f"{config.vocab_size} rows: the vocabulary does not belong to these weights"
            )
    return params, config, vocab


def match_embeddings(
    params: dict[str, Any], old_vocab: Sequence[str], new_vocab: Sequence[str]
) -> dict[str, Any]:
    """fastai's `match_embeds`: move a language model onto a new vocabulary.

    Words of `new_vocab` found in `old_vocab` keep their embedding row and decoder bias; new
    words get the mean row and the mean bias. Returns new params (the input is not changed).
    """
    embedding = np.asarray(params["encoder"]["embedding"])
    if len(old_vocab) != embedding.shape[0]:
        raise ValueError(
            f"old vocabulary has {len(old_vocab)} tokens, the embedding {embedding.shape[0]} rows"
        )
    old_index = {}
    for i, word in enumerate(old_vocab):
        old_index.setdefault(word, i)
    idx = np.array([old_index.get(w, -1) for w in new_vocab])
    known = idx >= 0
    # Mean in float64 then cast, as a sum of tens of thousands of float32 rows drifts.
    new_embedding = np.where(
        known[:, None], embedding[np.maximum(idx, 0)], embedding.mean(0, dtype=np.float64)
    ).astype(np.float32)
    new_params = {
        "encoder": {**params["encoder"], "embedding": jnp.asarray(new_embedding)},
        "decoder": dict(params["decoder"]),
    }
    if "bias" in params["decoder"]:
        bias = np.asarray(params["decoder"]["bias"])
        new_bias = np.where(known, bias[np.maximum(idx, 0)], bias.mean(dtype=np.float64))
        new_params["decoder"]["bias"] = jnp.asarray(new_bias.astype(np.float32))
    if "weight" in params["decoder"]:
        # fastai sets an untied decoder to the new embedding too.
        new_params["decoder"]["weight"] = jnp.asarray(new_embedding)
    return new_params


def classifier_params_from_state_dict(
    state: dict[str, np.ndarray], config: ClassifierConfig
) -> dict[str, Any]:
    """Convert a fastai `get_text_classifier(AWD_LSTM, ...)` state dict, checking `config`."""
    encoder, sizes, used = _encoder_from_state(state, "0.module.")
    for field, value in sizes.items():
        if field == "n_hid" and sizes["n_layers"] == 1:
            continue
        if getattr(config, field) != value:
            raise ValueError(
                f"ClassifierConfig.{field} = {getattr(config, field)} but the weights have {value}"
            )
    dims = config.head_dims
    head = {}
    blocks = sorted({int(k.split(".")[2]) for k in state if k.startswith("1.layers.")})
    if blocks != list(range(len(dims) - 1)):
        raise ValueError(
            f"the weights have {len(blocks)} head blocks, ClassifierConfig has {len(dims) - 1} "
            f"(head dims {dims}): check lin_ftrs and n_class"
        )
    for k, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        prefix = f"1.layers.{k}."
        names = {n[len(prefix) :]: n for n in state if n.startswith(prefix)}
        bn = {}
        for ours, theirs in [
            ("scale", "0.weight"),
            ("bias", "0.bias"),
            ("mean", "0.running_mean"),
            ("var", "0.running_var"),
        ]:
            if theirs not in names:
                raise ValueError(f"state dict is missing {prefix}{theirs}")
            _expect_shape(prefix + theirs, state[prefix + theirs], (n_in,))
            bn[ours] = jnp.asarray(state[prefix + theirs], jnp.float32)
            used.add(prefix + theirs)
        if "0.num_batches_tracked" in names:
            used.add(prefix + "0.num_batches_tracked")
        # The Linear is module 2 after a Dropout, or module 1 when the dropout is 0.
        linear = [n for n in names if n.endswith(".weight") and not n.startswith("0.")]
        if len(linear) != 1:
            raise ValueError(f"expected one Linear weight under {prefix}, found {linear}")
        name = prefix + linear[0]
        _expect_shape(name, state[name], (n_out, n_in))
        used.add(name)
        head[f"layer_{k}"] = {"bn": bn, "linear": {"kernel": jnp.asarray(state[name].T)}}
    _reject_unused(state, used, "classifier")
    return {"encoder": encoder, "head": head}


def load_fastai_classifier(pth_path: str | Path, config: ClassifierConfig) -> dict[str, Any]:
    """Load a fastai AWD-LSTM text classifier's weights (a path or an address); `config` must
    match them."""
    return classifier_params_from_state_dict(read_state_dict(local(pth_path)), config)
