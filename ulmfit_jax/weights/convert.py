"""fastai weights converted once into this project's export format, read afterwards without torch.

    python -m ulmfit_jax convert --pretrained wt103_fwd --out runs/wt103_fwd
    python -m ulmfit_jax convert --pth lstm_fwd.pth --itos itos_wt103.pkl --out runs/wt103
    python -m ulmfit_jax convert --classifier config.json --pth clas.pth --itos itos.pkl \\
        --out runs/clas

Each writes `OUT/export` (`ulmfit_jax.weights.export.export_params`), the folder a finished
stage leaves: `--config.init.workdir=OUT` (fine-tuning or classifier training),
`ulmfit_jax.weights.export.load_lm(OUT)` and `ulmfit_jax.Predictor.from_workdir(OUT)` read it
with no `.pth` parsing, no download and no torch. Weights and vocabularies may be paths or
addresses (`ulmfit_jax.core.fetch.fetch`).

The metadata is that of a trained stage, plus `source`:

* a language model has `stage` "converted_lm" (`CONVERTED_LM`): neither of this project's LM
  stages trained it, so it gets its own name, which `load_lm` accepts beside "pretrain" and
  "finetune_lm"; `model` holds the `AWDLSTMConfig` read off the tensors, `vocab` the itos;
* a classifier has `stage` "classify", the one name `Predictor` and the evaluate stage read:
  whoever trained it, it is the model that stage exports;
* `backward`: the model reads text backwards (registered models know it; else `--backward`);
* `source`: `{"format": "fastai", "weights": ..., "vocab": ..., "pretrained": name or None}`,
  the addresses as given (for a registered model, its name, the members of its archive and
  `"archive"`, the archive's address).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ulmfit_jax.core.fetch import local
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.weights import fastai, pretrained
from ulmfit_jax.weights.export import CONVERTED_LM, export_params

Address = str | os.PathLike


def _refuse_existing(out: str | Path) -> Path:
    export = Path(out) / "export"
    if export.exists():
        raise FileExistsError(f"{export} already exists: convert into a new folder")
    return Path(out)


def _source(weights: Address, vocab: Address, name: str | None = None) -> dict[str, Any]:
    return {"format": "fastai", "weights": str(weights), "vocab": str(vocab), "pretrained": name}


def convert_lm(
    out: str | Path,
    pth: Address,
    itos: Address,
    *,
    backward: bool = False,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a fastai language model (`.pth` + `itos.pkl`) as `out/export`.

    Args:
      out: the folder to create (its `export` must not exist yet).
      pth, itos: the state dict and its vocabulary: paths or addresses.
      backward: the model was trained on reversed text.
      source: what to record as `meta["source"]` (default: the two addresses).

    Returns:
      The metadata written.
    """
    out = _refuse_existing(out)
    params, config, vocab = fastai.load_fastai_lm(pth, itos)
    meta = {
        "stage": CONVERTED_LM,
        "vocab": vocab,
        "model": dataclasses.asdict(config),
        "backward": bool(backward),
        "source": source or _source(pth, itos),
    }
    export_params(out, params, meta, writer="convert")
    return meta


def convert_pretrained(
    out: str | Path, name: str, *, cache_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Download (once) a registered language model (`ulmfit_jax.weights.pretrained.MODELS`)
    and write it as `out/export`; returns the metadata written."""
    model = pretrained.get(name)
    _refuse_existing(out)
    weights, vocab = pretrained.fetch_files(name, cache_dir=cache_dir)
    source = _source(model.weights_member, model.vocab_member, name)
    source["archive"] = model.archive
    return convert_lm(out, weights, vocab, backward=model.backwards, source=source)


def read_classifier_config(path: Address) -> ClassifierConfig:
    """A `ClassifierConfig` from a JSON object of its fields (a path or an address)."""
    path = Path(local(path))
    if not path.is_file():
        raise FileNotFoundError(f"no classifier config at {path}")
    try:
        fields = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from error
    if not isinstance(fields, dict):
        raise ValueError(f"{path} must hold a JSON object of ClassifierConfig fields")
    try:
        return ClassifierConfig(**fields)
    except TypeError as error:
        raise ValueError(f"{path}: not ClassifierConfig fields: {error}") from error


def convert_classifier(
    out: str | Path,
    pth: Address,
    itos: Address,
    config: ClassifierConfig | Address,
    *,
    backward: bool = False,
    label_names: Sequence[str] | None = None,
    max_tokens: int = 0,
) -> dict[str, Any]:
    """Write a fastai text classifier (`.pth`, its `itos.pkl` and its config) as `out/export`.

    Args:
      out: the folder to create (its `export` must not exist yet).
      pth, itos: the state dict and its vocabulary: paths or addresses.
      config: a `ClassifierConfig`, or a JSON file of its fields (`read_classifier_config`).
      backward: the model was trained on reversed text.
      label_names: names of the classes, in order (`config.n_class` of them).
      max_tokens: keep each document's first N tokens when predicting (0: all).

    Returns:
      The metadata written.
    """
    out = _refuse_existing(out)
    if not isinstance(config, ClassifierConfig):
        config = read_classifier_config(config)
    vocab = fastai.read_itos(local(itos))
    if len(vocab) != config.vocab_size:
        raise ValueError(
            f"{itos} has {len(vocab)} tokens but the classifier config has vocab_size "
            f"{config.vocab_size}: the vocabulary does not belong to this classifier"
        )
    labels = list(label_names or [])
    if labels and len(labels) != config.n_class:
        raise ValueError(f"{len(labels)} label names for a classifier of {config.n_class} classes")
    params = fastai.load_fastai_classifier(pth, config)
    meta = {
        "stage": "classify",
        "vocab": vocab,
        "model": dataclasses.asdict(config),
        "backward": bool(backward),
        "label_names": labels,
        "max_tokens": int(max_tokens),
        "source": _source(pth, itos),
    }
    export_params(out, params, meta, writer="convert")
    return meta
