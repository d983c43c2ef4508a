"""Labelled documents for a classifier: train and validation (test only when asked), by name.

Shared by the ULMFiT classify stage and the ELMo sentence program (`elmo_jax.downstream`).

Where the documents come from (a `DataSpec`):

* tables (`source="local"`, format csv/tsv/jsonl, or DataFrames passed in): `path` is a
  file (the train split) or a folder of `train.<ext>` / `valid.<ext>` / `test.<ext>` (or
  `data.splits="train=a.csv,test=b.csv"`); `text_fields` are joined fastai-style, `label_field`
  holds the label (a `label_delim`-separated set for multi-label, a number for regression);
* any other source (TFDS names, IMDb, TREC, class folders): the source's records, labels by
  their ClassLabel names.

The validation set is, in fastai's order of precedence (`TextDataLoaders`): the rows whose
`valid_col` is true, else the split `valid_split`, else a seeded random `valid_pct` of train.
`train_limit` / `valid_limit` then keep a seeded random subset of each. The test split is read
only by `load_test` (the evaluate stage), never by training.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ulmfit_jax.core.data.labels import LabelEncoder
from ulmfit_jax.core.data.spec import DataSpec, open_split
from ulmfit_jax.core.data.tables import TABLE_FORMATS, Table, document_text, read_table

TRUE_VALUES = ("1", "true", "yes", "y", "t")


@dataclasses.dataclass
class LabelledTexts:
    """Documents of one split: texts, raw labels (names, sets or numbers) and source rows."""

    texts: list[str]
    raw_labels: list[Any]
    where: str
    rows: list[Mapping[str, Any]] | None = None
    dropped_empty: int = 0
    replaced_rows: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> LabelledTexts:
        pick = list(indices)
        return LabelledTexts(
            [self.texts[i] for i in pick],
            [self.raw_labels[i] for i in pick],
            self.where,
            None if self.rows is None else [self.rows[i] for i in pick],
        )


@dataclasses.dataclass
class ClassificationData:
    """What the classify stage trains on: train and validation documents and the encoder."""

    train: LabelledTexts
    valid: LabelledTexts
    encoder: LabelEncoder
    valid_from: str  # "valid_col", "valid_split" or "valid_pct", for the log

    def targets(self, split: LabelledTexts) -> np.ndarray:
        return self.encoder.encode(split.raw_labels, split.where)


def uses_tables(spec: DataSpec) -> bool:
    return spec.source == "local" and spec.format in TABLE_FORMATS


def table_paths(spec: DataSpec) -> dict[str, pathlib.Path]:
    """Split name -> file of a table dataset (the file itself is `train`)."""
    root = pathlib.Path(spec.path).expanduser()
    if root.is_file():
        return {"train": root}
    if not root.is_dir():
        raise FileNotFoundError(f"data.path {root} does not exist")
    if spec.splits:
        paths = {}
        for name, pattern in spec.splits:
            matches = sorted(root.glob(pattern))
            if len(matches) != 1:
                raise ValueError(
                    f"data.splits {name}={pattern!r} matches {len(matches)} files under {root}, "
                    "not one"
                )
            paths[name] = matches[0]
        return paths
    ext = "txt" if spec.format == "tsv" and not list(root.glob("*.tsv")) else spec.format
    names = {"train": "train", "valid": "valid", "validation": "valid", "test": "test"}
    return {s: root / f"{f}.{ext}" for s, f in names.items() if (root / f"{f}.{ext}").is_file()}


def from_table(table: Table, spec: DataSpec, where: str) -> LabelledTexts:
    """The documents of a table: text columns joined, the label column as raw labels."""
    table.require(spec.text_fields, "text column")
    if spec.label_field:
        table.require((spec.label_field,), "label column")
    texts, labels, rows, dropped = [], [], [], 0
    for row in table.rows:
        text = document_text(row, spec.text_fields)
        if not text.strip():
            dropped += 1
            continue
        texts.append(text)
        labels.append(row.get(spec.label_field) if spec.label_field else None)
        rows.append(row)
    return LabelledTexts(texts, labels, where, rows, dropped, table.replaced_rows)


def read_split(
    spec: DataSpec, split: str, tables: Mapping[str, Table] | None = None
) -> LabelledTexts:
    """All documents of one split (empty documents dropped and counted)."""
    if tables is not None:
        if split not in tables:
            raise ValueError(f"no {split!r} table given (have {sorted(tables)})")
        return from_table(tables[split], spec, f"{split} ({tables[split].source})")
    if uses_tables(spec):
        paths = table_paths(spec)
        if split not in paths:
            root = pathlib.Path(spec.path).expanduser()
            raise FileNotFoundError(
                f"no {split} file in data.path {root}: expected {split}.{spec.format} or "
                f"data.splits='{split}=FILE' (files there: "
                f"{sorted(p.name for p in root.iterdir())})"
            )
        table = read_table(paths[split], spec.format, errors=spec.errors)
        return from_table(table, spec, str(paths[split]))
    source = open_split(spec, split)
    records = [r for r in source.get_many(list(range(len(source))))]
    kept = [r for r in records if r.text.strip()]
    names = source.label_names
    labels = [
        None if r.label is None else (names[r.label] if names else str(r.label)) for r in kept
    ]
    where = f"{spec.description}[{split}]"
    return LabelledTexts([r.text for r in kept], labels, where, None, len(records) - len(kept))


def require_labels(split: LabelledTexts) -> LabelledTexts:
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


def _limit(split: LabelledTexts, limit: int, rng: np.random.Generator) -> LabelledTexts:
    if not limit or limit >= len(split):
        return split
    return split.subset(np.sort(rng.choice(len(split), limit, replace=False)))


def class_names(spec: DataSpec, tables: Mapping[str, Table] | None = None) -> list[str] | None:
    """The class order a TFDS ClassLabel defines, or None (tables: sorted labels)."""
    if tables is not None or uses_tables(spec):
        return None
    return list(open_split(spec, spec.train_split).label_names or []) or None


def load_classification(
    spec: DataSpec, *, seed: int = 0, tables: Mapping[str, Table] | None = None
) -> ClassificationData:
    """Train and validation documents with a label encoder fitted on train (module docstring).

    Raises:
        ValueError: a missing column, blank or unseen labels, one class only, a delimiter
            that never occurs, non-numeric regression targets, or an empty split.
    """
    if not spec.label_field and (uses_tables(spec) or tables is not None):
        raise ValueError("a classifier needs data.label_field, the column holding the labels")
    train = require_labels(read_split(spec, spec.train_split, tables))
    if spec.valid_col:
        if train.rows is None or (train.rows and spec.valid_col not in train.rows[0]):
            raise ValueError(f"{train.where}: no validation column {spec.valid_col!r}")
        flags = [_truthy(row.get(spec.valid_col)) for row in train.rows]
        valid = train.subset([i for i, f in enumerate(flags) if f])
        train = train.subset([i for i, f in enumerate(flags) if not f])
        valid_from = "valid_col"
    elif spec.valid_split:
        valid = require_labels(read_split(spec, spec.valid_split, tables))
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
        names=class_names(spec, tables),
        where=train.where,
    )
    data = ClassificationData(train, valid, encoder, valid_from)
    data.targets(valid)  # unseen labels in valid are an error now, not after training
    return data


def load_test(
    spec: DataSpec, *, seed: int = 0, tables: Mapping[str, Table] | None = None
) -> LabelledTexts:
    """The test documents (the evaluate stage only), a seeded `test_limit` subset if set."""
    test = require_labels(read_split(spec, spec.test_split, tables))
    return _limit(test, spec.test_limit, np.random.default_rng([seed, 2]))
