"""One reader per kind of data, and `open_split`, the one way to read a split of any of them.

    source   format          reader module (`ulmfit_jax.core.data.*`)
    local    csv, tsv, jsonl tables     CSV/TSV/JSONL files (DataFrames: `tables.documents_of`)
    local    lines, files    lines      one document per line, or per file
    local    wikitext        wikitext   WikiText `.tokens` articles
    local    trec            trec       TREC `.label` questions
    local    sst, sst2       sst        the Stanford Sentiment Treebank's PTB trees
    local    folders         imdb       files in class folders (the aclImdb layout)
    imdb                     imdb       IMDb wherever it is (aclImdb folder, else TFDS)
    tfds                     tfds       a registered TFDS dataset
    hf                       hf         a Hugging Face dataset (Hub name, local folder, saved)

Each reader module has `read(spec, split) -> Documents`. Modules are imported when their data
is opened, so reading a CSV never imports `tensorflow_datasets` (only `tfds` does). Local files
are read directly, in input order, every time: nothing is converted or cached, so an edited file
is read as it is now.

`open_split` then drops the documents whose text is empty or blank (counted in
`Documents.dropped_empty`): they can be neither classified nor add to a language model's stream.

Example:

    spec = DataSpec(source="local", path="reviews.csv", format="csv", label_field="label")
    train = open_split(spec, "train")
    train.texts[0], train.raw_labels[0]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ulmfit_jax.core.data.documents import Documents
    from ulmfit_jax.core.data.spec import DataSpec
    from ulmfit_jax.core.data.tables import Table

_PACKAGE = "ulmfit_jax.core.data"

# `data.format` of local data, or `data.source` -> "module.function" under `_PACKAGE`.
READERS = {
    "csv": "tables.read",
    "tsv": "tables.read",
    "jsonl": "tables.read",
    "lines": "lines.read",
    "files": "lines.read",
    "wikitext": "wikitext.read",
    "trec": "trec.read",
    "sst": "sst.read",
    "sst2": "sst.read",
    "folders": "imdb.read_folders",
    "imdb": "imdb.read",
    "tfds": "tfds.read",
    "hf": "hf.read",
}
FORMATS = tuple(name for name in READERS if name not in ("imdb", "tfds", "hf"))  # local formats
# Local formats labelled by their layout (a TREC line's class, an SST tree's root, a folder),
# not by `data.label_field`.
LAYOUT_LABELLED = ("trec", "sst", "sst2", "folders")


def reader(spec: DataSpec) -> Callable[[DataSpec, str], Documents]:
    """The `read(spec, split)` function of a spec's data (module docstring)."""
    key = spec.format if spec.source == "local" else spec.source
    if spec.source == "local" and key not in FORMATS:
        raise ValueError(
            f"unknown data.format {spec.format!r} for local data: expected one of "
            f"{', '.join(FORMATS)}"
        )
    module, function = READERS[key].split(".")
    return getattr(importlib.import_module(f"{_PACKAGE}.{module}"), function)


def open_split(
    spec: DataSpec, split: str, *, tables: Mapping[str, Table] | None = None
) -> Documents:
    """The non-empty documents of one split of the data, in input order.

    Args:
        spec: the data.
        split: a split name ("train", "validation", ...; which exist depends on the data).
        tables: in-memory tables by split name (DataFrames passed to the Python API), read
            instead of `spec`'s files.

    Raises:
        FileNotFoundError: the data is not there (the message says where it looked).
        ValueError: an unknown format or split, or a malformed record (named by file and line).
    """
    if tables is not None:
        from ulmfit_jax.core.data.tables import documents_of

        if split not in tables:
            raise ValueError(f"no {split!r} table given (have {sorted(tables)})")
        return documents_of(
            tables[split], spec, f"{split} ({tables[split].source})"
        ).without_empty()
    return reader(spec)(spec, split).without_empty()
