"""A data config, parsed once into a frozen `DataSpec`, and the splits it names.

`DataSpec` is the one schema of a config's `data` section: the config files build that section
from it (`data_config(...)`), so a default lives in one place. A stage turns its `config.data`
(an `ml_collections.ConfigDict`, a dict, or any object with these attributes) into a `DataSpec`
at entry and passes that down; nothing deeper reads the config. Sources:

    source="imdb"     IMDb wherever it is: `path` / $ULMFIT_IMDB (an aclImdb folder or the
                      .tar.gz), else ../shared/data/imdb, else TFDS's prepared `imdb_reviews`
    source="local"    path + format (`ulmfit_jax.core.data.readers.FORMATS`), text_fields,
                      label_field, splits ("train=train.csv,test=test.csv")
    source="tfds"     name: a TFDS name ("imdb_reviews", "trec", "glue/sst2", ...)
    source="hf"       Hugging Face datasets: name (+ hf_config, streaming), or path (a folder
                      written by `save_to_disk`); `ulmfit_jax.core.data.hf`

Example:

    spec = DataSpec.from_config(config.data)
    train = open_split(spec, spec.train_split)     # ulmfit_jax.core.data.readers: Documents
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

SOURCES = ("imdb", "local", "tfds", "hf")


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
        source: "imdb", "local", "tfds" or "hf" (module docstring).
        name: TFDS name (source "tfds"); a Hugging Face dataset (source "hf").
        hf_config: the Hugging Face dataset's configuration ("" for its default).
        streaming: read a Hugging Face dataset as an `IterableDataset` (rows as they come).
        path: a file or folder (source "local"; for "imdb" an optional aclImdb location).
        format: a local format (`ulmfit_jax.core.data.readers.FORMATS`).
        tfds_dir: TFDS data_dir ("" is TFDS's default).
        splits: local files per split, `((name, glob), ...)`; empty for the format's default;
            in a config, "train=train.jsonl,test=test*.jsonl".
        text_fields: columns joined into each document's text (fastai's `xxfld` marks when
            several; `ulmfit_jax.core.data.documents`).
        label_field: the label column ("" for unlabelled data); for TREC "fine" picks the 50
            `COARSE:fine` labels instead of the 6 coarse ones.
        header: CSV/TSV files start with a header row; False names the columns "0", "1", ...
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
    hf_config: str = ""
    streaming: bool = False
    path: str = ""
    format: str = ""
    tfds_dir: str = ""
    splits: tuple[tuple[str, str], ...] = ()
    text_fields: tuple[str, ...] = ("text",)
    label_field: str = ""
    header: bool = True
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
        for key in ("header", "streaming"):
            if key in values:
                values[key] = bool(values[key])
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
    ConfigDict. The config files and `ulmfit_jax.stages.defaults` build theirs here, so a
    default lives in one place.

    Example:

        config.data = data_config(source="local", format="csv", label_field="label")
    """
    return DataSpec.from_config(values).to_config()
