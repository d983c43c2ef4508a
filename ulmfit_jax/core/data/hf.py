"""Hugging Face `datasets` as a source: `data.source=hf`, and `Dataset` objects in the Python API.

    data.source = "hf"
    data.name = "imdb"            # a Hub name or a local folder of csv/json/parquet files
    data.hf_config = ""           # the dataset's configuration ("" for its default)
    data.path = ""                # or a folder written by `Dataset.save_to_disk` (name unused)
    data.streaming = False        # `IterableDataset`: rows read as they come

Splits are the dataset's own ("train", "test", "validation", ...). The text is
`data.text_fields` (several joined as every source joins them) and the label `data.label_field`;
a `ClassLabel` feature's integers become its class names, so labels are kept by name as from
any other source. `datasets` is an optional extra (`pip install 'ulmfit-jax[hf]'`), imported
only here.

`documents_of_dataset` turns a `Dataset` or `IterableDataset` object into documents, for the
Python API's `data=dataset` (or a `DatasetDict`, one split per key).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ulmfit_jax.core.data.documents import Document, Documents, field_text

if TYPE_CHECKING:
    from ulmfit_jax.core.data.spec import DataSpec


def _datasets():
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            "data.source=hf needs Hugging Face datasets: pip install 'ulmfit-jax[hf]'"
        ) from error
    return datasets


def is_hf_dataset(obj: Any) -> bool:
    """Whether `obj` is a `datasets` Dataset, IterableDataset or one of their dicts (without
    importing `datasets` when it is not loaded)."""
    module = type(obj).__module__ or ""
    return module.startswith("datasets.") and hasattr(obj, "column_names")


def _load(spec: DataSpec, split: str):
    datasets = _datasets()
    if spec.path:
        loaded = datasets.load_from_disk(spec.path)
        if isinstance(loaded, Mapping):
            if split not in loaded:
                raise ValueError(f"{spec.path} has no split {split!r} (it has {sorted(loaded)})")
            return loaded[split]
        return loaded
    if not spec.name:
        raise ValueError("data.source=hf needs data.name (a dataset) or data.path (a saved one)")
    try:
        return datasets.load_dataset(
            spec.name, spec.hf_config or None, split=split, streaming=spec.streaming
        )
    except ValueError as error:
        if "split" in str(error).lower():
            raise ValueError(f"dataset {spec.name!r} has no split {split!r}: {error}") from error
        raise


def _label_names(dataset: Any, field: str) -> list[str] | None:
    """The class names of a `ClassLabel` column, else None."""
    features = getattr(dataset, "features", None) or {}
    feature = features.get(field) if hasattr(features, "get") else None
    names = getattr(feature, "names", None)
    return list(names) if names else None


def documents_of_dataset(dataset: Any, spec: DataSpec, where: str) -> Documents:
    """The documents of a `Dataset` / `IterableDataset` (rows read in order)."""
    columns = list(dataset.column_names or [])
    rows: Iterable[Mapping[str, Any]] = iter(dataset)
    if not columns:  # a streaming dataset without declared features: look at the first row
        first = next(rows, None)
        columns = list(first or {})
        rows = ([] if first is None else [first]) + list(rows)
    wanted = list(spec.text_fields) + ([spec.label_field] if spec.label_field else [])
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ValueError(
            f"{where}: no column {', '.join(map(repr, missing))}; it has "
            f"{', '.join(map(repr, columns))}"
        )
    names = _label_names(dataset, spec.label_field) if spec.label_field else None
    documents, kept_rows = [], []
    for row in rows:
        label = row.get(spec.label_field) if spec.label_field else None
        if names is not None and isinstance(label, int) and 0 <= label < len(names):
            label = names[label]
        documents.append(
            Document(tuple(field_text(row.get(f)) for f in spec.text_fields), label, where)
        )
        kept_rows.append(dict(row))
    label_names = tuple(names) if names is not None else None
    return Documents(documents, where, label_names=label_names, rows=kept_rows)


def read(spec: DataSpec, split: str) -> Documents:
    """One split of a Hugging Face dataset (module docstring)."""
    where = f"{spec.path or spec.name}[{split}]"
    return documents_of_dataset(_load(spec, split), spec, where)
