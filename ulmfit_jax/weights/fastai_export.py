"""Write AWD-LSTM weights back to fastai: `.pth` state dicts (+ `itos.pkl`) that fastai loads.

The inverse of `ulmfit_jax.weights.fastai`, so a model fine-tuned here continues in fastai or
PyTorch:

    save_fastai_lm(params, config, itos, "lm.pth", "itos.pkl")   # learn.load / load_model
    save_fastai_encoder(params["encoder"], "enc.pth")            # learn.load_encoder("enc")
    save_fastai_classifier(params, config, "clas.pth")          # learn.load / load_model

The layouts are fastai 2.x's module trees: `get_language_model(AWD_LSTM, ...)` is
`0.` (the AWD_LSTM) + `1.decoder` (tied to `0.encoder.weight`); `get_text_classifier` is
`0.module.` (the AWD_LSTM inside its `SentenceEncoder`) + `1.layers.k` (BatchNorm1d, Dropout when
its p > 0, Linear without bias). Each LSTM layer is `rnns.i.weight_hh_l0_raw` (what
`WeightDropout` trains) and `rnns.i.module.{weight_ih_l0, bias_ih_l0, bias_hh_l0}`. We keep one
LSTM bias, the sum of PyTorch's two: it is written as `bias_ih_l0` with a zero `bias_hh_l0`,
which PyTorch adds back to the same sum.

Writing needs PyTorch (`torch.save`'s zip format is what fastai reads); reading does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.weights.fastai import write_itos


def _array(x: Any) -> np.ndarray:
    return np.array(x, dtype=np.float32)


def encoder_state_dict(encoder: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """fastai's `AWD_LSTM` state dict (its own keys, no prefix) from our encoder parameters.

    encoder: `{"embedding": float[vocab, emb_sz], "lstm_i": {"w_ih": float[in, 4h],
    "w_hh": float[h, 4h], "bias": float[4h]}, ...}`.
    """
    embedding = _array(encoder["embedding"])
    state = {"encoder.weight": embedding, "encoder_dp.emb.weight": embedding}
    layers = sorted(int(k.split("_")[1]) for k in encoder if k.startswith("lstm_"))
    if layers != list(range(len(layers))) or not layers:
        raise ValueError(f"encoder LSTM layers {layers} are not 0..n-1")
    for i in layers:
        lstm = encoder[f"lstm_{i}"]
        bias = _array(lstm["bias"])
        state[f"rnns.{i}.weight_hh_l0_raw"] = _array(lstm["w_hh"]).T.copy()
        state[f"rnns.{i}.module.weight_ih_l0"] = _array(lstm["w_ih"]).T.copy()
        state[f"rnns.{i}.module.bias_ih_l0"] = bias
        state[f"rnns.{i}.module.bias_hh_l0"] = np.zeros_like(bias)
    return state


def lm_state_dict(params: Mapping[str, Any], config: AWDLSTMConfig) -> dict[str, np.ndarray]:
    """fastai's `get_language_model(AWD_LSTM, ...)` state dict from our LM parameters."""
    state = {f"0.{k}": v for k, v in encoder_state_dict(params["encoder"]).items()}
    decoder = params.get("decoder", {})
    weight = decoder.get("weight") if not config.tie_weights else None
    state["1.decoder.weight"] = state["0.encoder.weight"] if weight is None else _array(weight)
    if "bias" in decoder:
        state["1.decoder.bias"] = _array(decoder["bias"])
    return state


def classifier_state_dict(
    params: Mapping[str, Any], config: ClassifierConfig
) -> dict[str, np.ndarray]:
    """fastai's `get_text_classifier(AWD_LSTM, ...)` state dict from our classifier parameters."""
    state = {f"0.module.{k}": v for k, v in encoder_state_dict(params["encoder"]).items()}
    dims, dropouts = config.head_dims, config.head_dropouts
    for k, p in enumerate(dropouts):
        block = params["head"][f"layer_{k}"]
        prefix = f"1.layers.{k}."
        bn = block["bn"]
        state[prefix + "0.weight"] = _array(bn["scale"])
        state[prefix + "0.bias"] = _array(bn["bias"])
        state[prefix + "0.running_mean"] = _array(bn["mean"])
        state[prefix + "0.running_var"] = _array(bn["var"])
        state[prefix + "0.num_batches_tracked"] = np.array(0, np.int64)
        kernel = _array(block["linear"]["kernel"])
        if kernel.shape != (dims[k], dims[k + 1]):
            raise ValueError(
                f"head layer_{k} kernel has shape {kernel.shape}, the config says "
                f"{(dims[k], dims[k + 1])}"
            )
        # LinBnDrop: BatchNorm1d, then Dropout only when p > 0, then the Linear.
        state[prefix + ("2" if p > 0 else "1") + ".weight"] = kernel.T.copy()
    return state


def save_state_dict(state: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """`torch.save` a `{name: numpy array}` state dict (written to a temporary sibling, then
    renamed, so a killed write never leaves half a file)."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "writing fastai .pth files needs PyTorch: pip install 'ulmfit-jax[torch]'"
        ) from error
    path = Path(path)
    tensors = {}
    shared: dict[int, Any] = {}
    for name, array in state.items():
        # Tied tensors stay one storage, as fastai saves them.
        key = id(array)
        if key not in shared:
            shared[key] = torch.from_numpy(np.ascontiguousarray(array))
        tensors[name] = shared[key]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(tensors, tmp)
    tmp.replace(path)
    return path


def save_fastai_lm(
    params: Mapping[str, Any],
    config: AWDLSTMConfig,
    itos: Sequence[str] | None,
    pth_path: str | Path,
    itos_path: str | Path | None = None,
) -> Path:
    """Write a language model as fastai's `.pth` (and its vocabulary as `itos.pkl`)."""
    if itos is not None and len(itos) != config.vocab_size:
        raise ValueError(
            f"the vocabulary has {len(itos)} tokens but the model {config.vocab_size} rows"
        )
    path = save_state_dict(lm_state_dict(params, config), pth_path)
    if itos_path is not None:
        if itos is None:
            raise ValueError("itos_path given without a vocabulary (itos)")
        write_itos(itos, itos_path)
    return path


def save_fastai_encoder(encoder: Mapping[str, Any], pth_path: str | Path) -> Path:
    """Write an encoder as fastai's `learn.save_encoder` does (what `load_encoder` reads)."""
    return save_state_dict(encoder_state_dict(encoder), pth_path)


def save_fastai_classifier(
    params: Mapping[str, Any], config: ClassifierConfig, pth_path: str | Path
) -> Path:
    """Write a text classifier as fastai's `.pth` (`learn.load` / `load_model` read it)."""
    return save_state_dict(classifier_state_dict(params, config), pth_path)
