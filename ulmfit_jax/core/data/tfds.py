"""The TFDS reader (`source="tfds"`): a registered dataset's split as `Documents`.

The only module of the data layer that imports `tensorflow_datasets`, and only when a TFDS
split is opened. Data is read through `tfds.data_source` (array_record), so TensorFlow itself
is never imported. Which features hold the text fields and the label is registered per dataset
(`DATASET_FIELDS`: `imdb_reviews`, `ag_news_subset` (title and description, joined with
fastai's field marks like any other two fields), `yelp_polarity_reviews`, `trec`, `glue/sst2`,
`lm1b`, `wikipedia/<date>.<lang>`).

Policies: text bytes are decoded by `ulmfit_jax.core.data.decode` with `data.errors`; labels are
the `ClassLabel`'s names (its order is the class order); TFDS's `-1` ("no label", IMDb's
`unsupervised`, GLUE's `test`) is `None`; a label outside the declared classes, or a missing
feature, is an error naming the record. A split is read whole (like every other reader), in
batches of 1024 records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow_datasets as tfds

from ulmfit_jax.core.data.decode import decode_value
from ulmfit_jax.core.data.documents import Document, Documents

if TYPE_CHECKING:
    from ulmfit_jax.core.data.spec import DataSpec

CHUNK = 1024  # records per batched read (array_record reads a batch ~2x faster)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """Which features of a TFDS example hold the text fields and the label.

    Attributes:
        text_fields: feature names, the document's fields in order.
        label_field: the `ClassLabel` feature, or None for unlabelled corpora.
    """

    text_fields: tuple[str, ...]
    label_field: str | None = None


# Keys are TFDS names without version; a name with a config (`wikipedia/20230601.en`) falls
# back to its base name.
DATASET_FIELDS: Mapping[str, FieldSpec] = {
    "imdb_reviews": FieldSpec(("text",), "label"),
    "ag_news_subset": FieldSpec(("title", "description"), "label"),
    "yelp_polarity_reviews": FieldSpec(("text",), "label"),
    "trec": FieldSpec(("text",), "label-coarse"),
    "glue/sst2": FieldSpec(("sentence",), "label"),
    "lm1b": FieldSpec(("text",), None),
    "wikipedia": FieldSpec(("text",), None),
}


def fields_for(name: str) -> FieldSpec:
    """The `FieldSpec` registered for a TFDS name such as `"glue/sst2:2.0.0"`."""
    base = name.split(":")[0]
    for key in (base, base.split("/")[0]):
        if key in DATASET_FIELDS:
            return DATASET_FIELDS[key]
    raise KeyError(
        f"no field mapping for TFDS dataset {name!r}: known are {sorted(DATASET_FIELDS)} "
        "(add a FieldSpec to ulmfit_jax.core.data.tfds.DATASET_FIELDS)"
    )


def quiet() -> None:
    """TFDS prints progress bars and per-config warnings; the training programs have their own
    progress and logs. Done when data is opened, not at import, so that importing the library
    changes no global logging state."""
    from absl import logging as absl_logging

    tfds.disable_progress_bar()
    absl_logging.set_verbosity(absl_logging.ERROR)


def _read_records(records: Any, start: int, stop: int) -> list[Mapping[str, Any]]:
    indices = list(range(start, stop))
    getitems = getattr(records, "__getitems__", None)
    if getitems is not None:
        try:
            return list(getitems(indices))
        except TypeError:
            # `tfds.testing.mock_data` (TFDS 4.9.10) installs a `__getitems__` that cannot be
            # called; read one by one instead.
            pass
    return [records[i] for i in indices]


def _document(
    example: Mapping[str, Any],
    fields: FieldSpec,
    names: tuple[str, ...] | None,
    where: str,
    errors: str,
) -> Document:
    missing = [f for f in fields.text_fields if f not in example]
    if missing or (fields.label_field and fields.label_field not in example):
        raise ValueError(
            f"{where}: missing field(s) {missing or [fields.label_field]}; record has "
            f"{sorted(example)}"
        )
    text = tuple(decode_value(example[f], errors=errors, where=where) for f in fields.text_fields)
    label = None
    if fields.label_field is not None:
        number = int(np.asarray(example[fields.label_field]))
        if number >= 0:  # TFDS writes -1 for "no label"
            if names is None or number >= len(names):
                raise ValueError(
                    f"{where}: label {number} outside the {len(names or ())} declared classes "
                    f"{names}"
                )
            label = names[number]
    return Document(text, label, where)


def read_dataset(
    name: str, split: str, spec: DataSpec, *, download: bool = False, where: str = ""
) -> Documents:
    """The documents of one split of TFDS dataset `name` (module docstring).

    Args:
        name: a TFDS name ("imdb_reviews", "glue/sst2", "wikipedia/20230601.en", ...).
        split: a split name or TFDS slice ("train", "unsupervised", "train[:10%]").
        spec: `tfds_dir` (TFDS's default folder when "") and `errors` come from it.
        download: download and prepare a dataset that is not prepared. Off by default:
            offline TFDS retries for minutes before failing; without it a missing dataset
            fails at once.
        where: names the data in messages (default: `name`).

    Raises:
        FileNotFoundError: the dataset is not prepared and `download` is off.
        KeyError: no field mapping is registered for `name`.
    """
    quiet()
    fields = fields_for(name)
    builder = tfds.builder(name, data_dir=spec.tfds_dir or None, file_format="array_record")
    if download and not builder.is_prepared():
        builder.download_and_prepare(file_format="array_record")
    try:
        records = builder.as_data_source(split=split)
    except (AssertionError, KeyError) as error:
        if builder.is_prepared():
            raise  # e.g. an unknown split name
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared under {builder.data_dir}; prepare it once "
            "with download=True (needs network) or set data.tfds_dir to the folder that holds it"
        ) from error
    names = None
    if fields.label_field is not None:
        feature = builder.info.features[fields.label_field]
        if not isinstance(feature, tfds.features.ClassLabel):
            raise ValueError(f"{name}: feature {fields.label_field!r} is not a ClassLabel")
        names = tuple(feature.names)
    label = f"{where or name}[{split}]"
    documents = []
    for start in range(0, len(records), CHUNK):
        examples = _read_records(records, start, min(start + CHUNK, len(records)))
        documents += [
            _document(example, fields, names, f"{label}[{start + offset}]", spec.errors)
            for offset, example in enumerate(examples)
        ]
    return Documents(documents, label, names)


def read(spec: DataSpec, split: str) -> Documents:
    """One split of the TFDS dataset `data.name`."""
    if not spec.name:
        raise ValueError("data.source='tfds' needs data.name, a TFDS dataset name")
    return read_dataset(spec.name, split, spec)
