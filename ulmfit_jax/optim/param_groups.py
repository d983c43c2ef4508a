"""fastai's parameter groups as a labelling of the parameter tree, for `optax.multi_transform`.

fastai splits an AWD-LSTM into groups for discriminative learning rates and gradual unfreezing
(`awd_lstm_lm_split`, `awd_lstm_clas_split`). Here a group is a label on every leaf:

* language model: `group_0` .. `group_{n-1}` are the LSTM layers bottom to top, and
  `group_{n}` (the top group) is the embedding together with the (tied) decoder;
* classifier: `group_0` is the embedding, `group_1` .. `group_{n}` the LSTM layers, and
  `group_{n+1}` (the top group) the head.

BatchNorm running statistics are labelled "batch_stats": they are updated by the forward pass,
never by an optimiser (give them `optax.set_to_zero()`).

Group k's learning rate in ULMFiT is `lr / 2.6 ** (top - k)`.
"""

from __future__ import annotations

from typing import Any

import jax

BATCH_STATS = "batch_stats"


def group_name(index: int) -> str:
    return f"group_{index}"


def _label_subtree(tree: Any, label: str) -> Any:
    return jax.tree.map(lambda _: label, tree)


def _n_lstm_layers(encoder: dict[str, Any]) -> int:
    return sum(1 for name in encoder if name.startswith("lstm_"))


def lm_param_groups(params: dict[str, Any]) -> dict[str, Any]:
    """Labels for a language model's params (see the module docstring)."""
    encoder = params["encoder"]
    top = group_name(_n_lstm_layers(encoder))
    labels = {"encoder": {}, "decoder": _label_subtree(params["decoder"], top)}
    for name, subtree in encoder.items():
        label = top if name == "embedding" else group_name(int(name.split("_")[1]))
        labels["encoder"][name] = _label_subtree(subtree, label)
    return labels


def classifier_param_groups(params: dict[str, Any]) -> dict[str, Any]:
    """Labels for a classifier's params (see the module docstring)."""
    encoder = params["encoder"]
    top = group_name(_n_lstm_layers(encoder) + 1)
    labels = {"encoder": {}, "head": {}}
    for name, subtree in encoder.items():
        label = group_name(0) if name == "embedding" else group_name(int(name.split("_")[1]) + 1)
        labels["encoder"][name] = _label_subtree(subtree, label)
    for block_name, block in params["head"].items():
        bn = block["bn"]
        labels["head"][block_name] = {
            "bn": {key: BATCH_STATS if key in ("mean", "var") else top for key in bn},
            "linear": _label_subtree(block["linear"], top),
        }
    return labels


def param_groups(params: dict[str, Any]) -> dict[str, Any]:
    """Labels for either kind of params: a language model has a "decoder", a classifier a
    "head"."""
    if "decoder" in params:
        return lm_param_groups(params)
    if "head" in params:
        return classifier_param_groups(params)
    raise ValueError("params have neither a 'decoder' (language model) nor a 'head' (classifier)")


def group_names(labels: dict[str, Any]) -> list[str]:
    """The trainable group names in a labelling, bottom (lowest learning rate) to top."""
    names = {label for label in jax.tree.leaves(labels) if label != BATCH_STATS}
    return sorted(names, key=lambda name: int(name.split("_")[1]))
