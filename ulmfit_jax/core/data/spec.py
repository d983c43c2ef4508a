"""A data config, parsed once into a frozen `DataSpec`, and the splits it names.

A stage turns its `config.data` (an `ml_collections.ConfigDict`, a dict, or any object with
these attributes) into a `DataSpec` at entry and passes that down; nothing deeper reads the
config. Sources:

    source="tfds"     name: a TFDS name ("imdb_reviews", "trec", "glue/sst2", ...)
    source="local"    path + format (see `ulmfit_jax.core.data.local_datasets.FORMATS`),
                      text_fields, label_field, splits ("train=train.csv,test=test.csv")
    source="imdb"     IMDb wherever it is: `path` / $ULMFIT_IMDB (an aclImdb folder or the
                      .tar.gz), else ../shared/data/imdb, else TFDS's prepared `imdb_reviews`

Example:

    spec = DataSpec.from_config(config.data)
    source = open_split(spec, spec.train_split)     # a TextSource of (text, label) records
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ulmfit_jax.core.data.imdb import SHARED_IMDB, find_imdb, imdb_downloadable
from ulmfit_jax.core.data.local_datasets import prepare_local_dataset
from ulmfit_jax.core.data.sources import TextSource, load_text_dataset

SOURCES = ("tfds", "local", "imdb")


def parse_splits(spec: str) -> dict[str, str] | None:
    """`"train=train.jsonl,test=test*.jsonl"` -> `{"train": "train.jsonl", ...}`; "" -> None
    (the format's default splits)."""
    if not spec:
        return None
    splits = {}
    for item in spec.split(","):
        name, sep, pattern = item.partition("=")
        if not sep or not name.strip() or not pattern.strip():
            raise ValueError(f"data.splits item {item!r} is not NAME=GLOB")
        splits[name.strip()] = pattern.strip()
    return splits


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Where a stage's documents come from and which of them it uses.

    Attributes:
        source: "tfds", "local" or "imdb" (module docstring).
        name: TFDS name (source "tfds").
        path: a file or folder (source "local"; for "imdb" an optional aclImdb location).
        format: a local format (`ulmfit_jax.core.data.local_datasets.FORMATS`).
        tfds_dir: TFDS data_dir ("" is TFDS's default).
        splits: local files per split, `((name, glob), ...)`; empty for the format's default.
        text_fields: columns joined into each document's text.
        label_field: the label column ("" for unlabelled data).
        lm_splits: the splits whose texts a language-model stage trains on.
        train_split, valid_split, test_split: split names; `valid_split` "" means a seeded
            `valid_pct` of the training documents.
        valid_pct: the held-out fraction when there is no `valid_split`.
        valid_col: a column whose true values (1, true, yes) mark validation rows (tables).
        label_kind: "single", "multi" or "regression" ("" = "multi" when `label_delim` is set,
            else "single").
        label_delim: splits multi-label strings ("a;b").
        errors: invalid UTF-8 in local files: "replace" (counted and reported) or "strict".
        train_limit, valid_limit, test_limit: a seeded random subset of that many documents
            (0: all of them).
    """

    source: str = "imdb"
    name: str = ""
    path: str = ""
    format: str = ""
    tfds_dir: str = ""
    splits: tuple[tuple[str, str], ...] = ()
    text_fields: tuple[str, ...] = ("text",)
    label_field: str = ""
    lm_splits: tuple[str, ...] = ("train",)
    train_split: str = "train"
    valid_split: str = ""
    valid_pct: float = 0.1
    test_split: str = "test"
    valid_col: str = ""
    label_kind: str = ""
    label_delim: str = ""
    errors: str = "replace"
    train_limit: int = 0
    valid_limit: int = 0
    test_limit: int = 0

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(
                f"unknown data source {self.source!r}: expected one of {', '.join(SOURCES)}"
            )
        if not 0.0 < self.valid_pct < 1.0:
            raise ValueError(f"data.valid_pct must be in (0, 1), got {self.valid_pct}")
        if self.errors not in ("replace", "strict"):
            raise ValueError(f"data.errors must be 'replace' or 'strict', got {self.errors!r}")
        if self.label_kind not in ("", "single", "multi", "regression"):
            raise ValueError(
                f"data.label_kind must be 'single', 'multi' or 'regression', got "
                f"{self.label_kind!r}"
            )

    @property
    def kind(self) -> str:
        """The label kind, with the default resolved."""
        return self.label_kind or ("multi" if self.label_delim else "single")

    @classmethod
    def from_config(cls, data: Any) -> DataSpec:
        """The spec of a data config (a ConfigDict, a mapping, or attributes); keys it lacks
        keep their defaults."""
        if isinstance(data, DataSpec):
            return data
        if hasattr(data, "to_dict"):
            data = data.to_dict()
        elif not isinstance(data, Mapping):
            data = vars(data)
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        if isinstance(values.get("splits"), str):
            values["splits"] = tuple((parse_splits(values["splits"]) or {}).items())
        elif isinstance(values.get("splits"), Mapping):
            values["splits"] = tuple(values["splits"].items())
        for key in ("text_fields", "lm_splits"):
            if key in values:
                values[key] = tuple(values[key] or ()) or getattr(cls, key)
        for key in ("train_limit", "valid_limit", "test_limit"):
            if key in values:
                values[key] = int(values[key] or 0)
        if "valid_pct" in values:
            values["valid_pct"] = float(values["valid_pct"])
        for key in (
            "name",
            "path",
            "format",
            "tfds_dir",
            "label_field",
            "valid_split",
            "valid_col",
            "label_kind",
            "label_delim",
        ):
            if key in values:
                values[key] = values[key] or ""
        return cls(**values)

    def to_config(self):
        """This spec as a config's `data` section (an `ml_collections.ConfigDict`), every field
        with its value; `splits` is written `"NAME=GLOB,..."` as on the command line.

        `DataSpec.from_config(spec.to_config()) == spec`.
        """
        from ml_collections import ConfigDict

        values = dataclasses.asdict(self)
        values["splits"] = ",".join(f"{name}={pattern}" for name, pattern in self.splits)
        return ConfigDict(values)

    @property
    def description(self) -> str:
        """What the data is, for messages: the TFDS name or the path."""
        return self.name or self.path or self.source


def data_config(**values: Any):
    """The `data` section of a config: `DataSpec`'s defaults with `values` changed, as a
    ConfigDict. The config files and `ulmfit_jax.training.defaults` build theirs here, so a
    default lives in one place.

    Example:

        config.data = data_config(source="local", format="csv", label_field="label")
    """
    return DataSpec.from_config(values).to_config()


def quiet_tfds() -> None:
    """TFDS prints progress bars and a warning per custom config while preparing local files;
    the training programs have their own progress and logs. Done when data is opened, not at
    import, so that importing the library changes no global logging state."""
    import tensorflow_datasets as tfds
    from absl import logging as absl_logging

    tfds.disable_progress_bar()
    absl_logging.set_verbosity(absl_logging.ERROR)


def open_split(spec: DataSpec, split: str) -> TextSource:
    """The `TextSource` of one split of the data.

    Raises:
      FileNotFoundError: the data is not there (the message says where it looked).
    """
    quiet_tfds()
    tfds_dir = spec.tfds_dir or None
    if spec.source == "tfds":
        return load_text_dataset(spec.name, split, data_dir=tfds_dir)
    if spec.source == "local":
        builder = prepare_local_dataset(
            spec.path,
            spec.format,
            splits=dict(spec.splits) or None,
            text_fields=spec.text_fields,
            label_field=spec.label_field or None,
            errors=spec.errors,
            data_dir=tfds_dir,
        )
        return load_text_dataset(builder, split)
    folder = find_imdb(spec.path or None)
    if folder is not None:
        builder = prepare_local_dataset(folder, "folders", data_dir=tfds_dir)
        return load_text_dataset(builder, split)
    try:
        return load_text_dataset(
            "imdb_reviews", split, data_dir=tfds_dir, download=imdb_downloadable()
        )
    except FileNotFoundError as error:
        raise FileNotFoundError(
            "IMDb not found: set data.path or $ULMFIT_IMDB to an aclImdb folder or "
            f"aclImdb_v1.tar.gz, put it at {SHARED_IMDB}, or prepare TFDS's imdb_reviews"
        ) from error
