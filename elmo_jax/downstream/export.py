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
leaves a half export, with an ownership marker (`ulmfit_jax.core.outputs`): a re-run replaces
its own export, but an existing folder it did not write (a user's `export_dir`, the data
folder) is refused unless `overwrite`. Reading imports no training code (no optax).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from elmo_jax.downstream.models import SentenceClassifierConfig
from ulmfit_jax.core import nested, outputs

FORMAT = "elmo-classifier"
PROGRAM, STAGE = "elmo_jax", "classify"


def _legacy_owner(directory: Path) -> dict | None:
    """An export written before ownership markers: its classifier.json names the format."""
    try:
        record = json.loads((directory / "classifier.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(record, dict) and record.get("format") == FORMAT:
        return {"program": PROGRAM, "stage": STAGE}
    return None


def check_export_dir(
    directory: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
) -> None:
    """Refuse, before training, an export folder the classifier may not write: an existing
    non-empty folder that is not an earlier classifier export (unless `overwrite`), or one that
    is or holds an input (the data, the biLM files).

    Raises:
      outputs.OutputRefused: a one-line error naming the folder.
    """
    check_owned_export(directory, STAGE, _legacy_owner, inputs=inputs, overwrite=overwrite)


def check_owned_export(
    directory: str | os.PathLike,
    stage: str,
    legacy_owner,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
) -> None:
    """`outputs.check_output_folder` for an ELMo task program's export folder (`stage`:
    "classify" or "tag"; `legacy_owner` recognises its exports written before markers)."""
    outputs.check_output_folder(
        directory,
        outputs.owner_record(PROGRAM, stage),
        inputs=inputs,
        overwrite=overwrite,
        legacy_owner=legacy_owner,
    )


def save_classifier(
    directory: str | os.PathLike,
    params: Mapping,
    meta: Mapping[str, Any],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    config: Any = None,
) -> Path:
    """Write an export (module docstring); `meta` must hold "model" (SentenceClassifierConfig
    fields),
    "labels" and "bilm". An earlier classifier export there is replaced; anything else is
    refused unless `overwrite` (`check_export_dir`). `config` is hashed into the marker.

    Raises:
      outputs.OutputRefused: the folder holds something this program did not write.
    """
    best = meta.get("best")
    epoch = best.get("epoch") if isinstance(best, Mapping) else None

    def write(folder: Path) -> None:
        np.savez(folder / "classifier.npz", **nested.flatten(params, sep="/", leaf=np.asarray))
        record = {"format": FORMAT, "version": 1, **meta}
        (folder / "classifier.json").write_text(json.dumps(record, indent=2, default=float))

    return outputs.write_folder(
        directory,
        write,
        outputs.owner_record(PROGRAM, STAGE, epoch=epoch, config=config),
        inputs=inputs,
        overwrite=overwrite,
        legacy_owner=_legacy_owner,
    )


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
        params = nested.unflatten({k: arrays[k] for k in arrays.files}, sep="/")
    return params, SentenceClassifierConfig(**model), meta
