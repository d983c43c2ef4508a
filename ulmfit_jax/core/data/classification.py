"""Labelled documents for a classifier: train and validation (test only when asked), by name.

Shared by the ULMFiT classify stage and the ELMo sentence program (`elmo_jax.downstream`).
Documents come from `open_split` (`ulmfit_jax.core.data.readers`), whatever the source: tables
(`text_fields` joined fastai-style, `label_field` holding the label: a `label_delim`-separated
set for multi-label, a number for regression), TFDS datasets, IMDb, TREC, SST or class folders
(labels by name, in the class order the source defines); DataFrames passed to the Python API
arrive as `tables={"train": Table, ...}`, read in place of files.

The validation set is, in fastai's order of precedence (`TextDataLoaders`): the rows whose
`valid_col` is true, else the split `valid_split`, else a seeded random `valid_pct` of train.
`train_limit` / `valid_limit` then keep a seeded random subset of each. The test split is read
only by `load_test` (the evaluate stage), never by training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ulmfit_jax.core.data import tables as table_reader
from ulmfit_jax.core.data.documents import Documents
from ulmfit_jax.core.data.labels import LabelEncoder
from ulmfit_jax.core.data.readers import LAYOUT_LABELLED, open_split
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.core.data.tables import Table

TRUE_VALUES = ("1", "true", "yes", "y", "t")


@dataclasses.dataclass
class ClassificationData:
    """What the classify stage trains on: train and validation documents and the encoder."""

    train: Documents
    valid: Documents
    encoder: LabelEncoder
    valid_from: str  # "valid_col", "valid_split" or "valid_pct", for the log

    def targets(self, split: Documents) -> np.ndarray:
        return self.encoder.encode(split.raw_labels, split.where)


def has_split(spec: DataSpec, split: str, tables: Mapping[str, Table] | None = None) -> bool:
    """Whether the data has `split` (for tables: its file or table exists; other sources are
    taken to have every split they name)."""
    if not split:
        return False
    if tables is not None:
        return split in tables
    if spec.source == "local" and spec.format in table_reader.TABLE_FORMATS:
        return split in table_reader.table_paths(spec)
    return True


def require_labels(split: Documents) -> Documents:
    """`split`, or a ValueError when its documents have no labels (e.g. IMDb's unsupervised)."""
    missing = sum(label is None for label in split.raw_labels)
    if missing:
        raise ValueError(
            f"{split.where} has {missing} document(s) without labels: a classifier needs a "
            "label for every document"
        )
    return split


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in TRUE_VALUES


def _limit(split: Documents, limit: int, rng: np.random.Generator) -> Documents:
    if not limit or limit >= len(split):
        return split
    return split.subset(np.sort(rng.choice(len(split), limit, replace=False)))


def load_classification(
    spec: DataSpec, *, seed: int = 0, tables: Mapping[str, Table] | None = None
) -> ClassificationData:
    """Train and validation documents with a label encoder fitted on train (module docstring).

    Raises:
        ValueError: a missing column, blank or unseen labels, one class only, a delimiter
            that never occurs, non-numeric regression targets, or an empty split.
    """
    layout_labelled = spec.source != "local" or spec.format in LAYOUT_LABELLED
    if not spec.label_field and (tables is not None or not layout_labelled):
        raise ValueError("a classifier needs data.label_field, the column holding the labels")
    train = require_labels(open_split(spec, spec.train_split, tables=tables))
    if spec.valid_col:
        if train.rows is None or (train.rows and spec.valid_col not in train.rows[0]):
            raise ValueError(f"{train.where}: no validation column {spec.valid_col!r}")
        flags = [_truthy(row.get(spec.valid_col)) for row in train.rows]
        valid = train.subset([i for i, f in enumerate(flags) if f])
        train = train.subset([i for i, f in enumerate(flags) if not f])
        valid_from = "valid_col"
    elif spec.valid_split:
        valid = require_labels(open_split(spec, spec.valid_split, tables=tables))
        valid_from = "valid_split"
    else:
        order = np.random.default_rng(seed).permutation(len(train))
        n_valid = max(1, int(round(len(train) * spec.valid_pct)))
        valid = train.subset(np.sort(order[:n_valid]))
        train = train.subset(np.sort(order[n_valid:]))
        valid_from = "valid_pct"
    rng = np.random.default_rng([seed, 1])
    train = _limit(train, spec.train_limit, rng)
    valid = _limit(valid, spec.valid_limit, rng)
    for split in (train, valid):
        if not len(split):
            raise ValueError(f"{split.where}: no documents left for this split")
    encoder = LabelEncoder.fit(
        train.raw_labels,
        spec.kind,
        delim=spec.label_delim,
        names=None if train.label_names is None else list(train.label_names) or None,
        where=train.where,
    )
    data = ClassificationData(train, valid, encoder, valid_from)
    data.targets(valid)  # unseen labels in valid are an error now, not after training
    return data


def load_test(
    spec: DataSpec, *, seed: int = 0, tables: Mapping[str, Table] | None = None
) -> Documents:
    """The test documents (the evaluate stage only), a seeded `test_limit` subset if set."""
    test = require_labels(open_split(spec, spec.test_split, tables=tables))
    return _limit(test, spec.test_limit, np.random.default_rng([seed, 2]))
