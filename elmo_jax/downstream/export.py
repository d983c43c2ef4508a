"""The ELMo sentence classifier's export: the task model and where its frozen biLM is.

    EXPORT/classifier.json   {"format": "elmo-classifier", "version": 1,
                              "model": SentenceClassifierConfig fields,
                              "labels": LabelEncoder meta, "label_names": [...],
                              "layers": [...], "tokenizer": "spacy", "text_fields": [...],
                              "bilm": {"options": ABS PATH, "weights": ABS PATH}, "best": {...},
                              "valid": {...}, "test": {...}}
    EXPORT/classifier.npz    the task parameters, flattened ("scalar_mix/gamma", ...)

The biLM is not copied (hundreds of MB for the released models): the export names its files,
as absolute paths or addresses. Written to a temporary folder and renamed, so a crash never
leaves a half export. Reading imports no training code (no optax).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from elmo_jax.downstream.models import SentenceClassifierConfig

FORMAT = "elmo-classifier"


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = np.asarray(value)
    return flat


def _unflatten(flat: Mapping[str, np.ndarray]) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        *path, leaf = name.split("/")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def save_classifier(directory: str | os.PathLike, params: Mapping, meta: Mapping[str, Any]) -> Path:
    """Write an export (module docstring); `meta` must hold "model" (SentenceClassifierConfig
    fields), "labels" and "bilm"."""
    directory = Path(directory)
    tmp = directory.with_name(f"{directory.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.savez(tmp / "classifier.npz", **_flatten(params))
    record = {"format": FORMAT, "version": 1, **meta}
    (tmp / "classifier.json").write_text(json.dumps(record, indent=2, default=float))
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


def load_classifier(directory: str | os.PathLike) -> tuple[dict, SentenceClassifierConfig, dict]:
    """`(params, model config, meta)` of an export.

    Raises:
      FileNotFoundError: no export there.
      ValueError: not an ELMo classifier export.
    """
    directory = Path(directory).expanduser()
    meta_path = directory / "classifier.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no ELMo classifier export at {directory} (no classifier.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path} is not an ELMo classifier export")
    model = dict(meta["model"])
    model["layers"] = tuple(model["layers"])
    with np.load(directory / "classifier.npz") as arrays:
        params = _unflatten({k: arrays[k] for k in arrays.files})
    return params, SentenceClassifierConfig(**model), meta
