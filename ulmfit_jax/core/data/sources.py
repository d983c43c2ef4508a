"""Text datasets as uniform random-access sources of `(text, label)` records.

Every corpus reaches the models through `load_text_dataset`: a registered TFDS dataset
(`imdb_reviews`, `ag_news_subset`, `yelp_polarity_reviews`, `trec`, `glue/sst2`, `lm1b`,
`wikipedia/<date>.<lang>`) or a builder for local files from `ulmfit_jax.core.data.local_datasets`.
Data is read through `tfds.data_source` (array_record), so TensorFlow is never imported.

Policies, applied to every record:

* **Decoding.** Real array_record data stores text as UTF-8 `bytes` (mocked data gives `str`).
  Bytes are decoded as UTF-8 with `errors="replace"` by default: an invalid byte becomes
  U+FFFD so one bad byte never stops a pretraining run. `errors="strict"` raises a
  `ValueError` naming the dataset, split and record index instead.
* **Labels.** Labels are `int` class ids into `TextSource.label_names`; TFDS's `-1` ("no
  label", e.g. IMDb `unsupervised`, GLUE `test`) becomes `None`. A label outside the declared
  classes raises a `ValueError` naming the record.
* **Empty documents** are kept: a random-access source cannot drop records without a full
  scan. `TextSource.without_empty()` does that scan when wanted and returns the count it
  skipped. (The local builders already skip empty documents while preparing.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow_datasets as tfds


class TextRecord(NamedTuple):
    """One document: raw text and its class id (`None` when unlabelled)."""

    text: str
    label: int | None


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """Which features of a TFDS example hold the text and the label.

    Attributes:
        text_fields: Feature names joined (non-empty parts only) with `separator` into the text.
        label_field: Feature name of the `ClassLabel`, or `None` for unlabelled corpora.
        separator: Placed between text fields, e.g. AG News title and description.
    """

    text_fields: tuple[str, ...]
    label_field: str | None = None
    separator: str = "\n"


# Feature names per dataset. Keys are TFDS names without version; a name with a config
# (`wikipedia/20230601.en`) falls back to its base name.
DATASET_FIELDS: Mapping[str, FieldSpec] = {
    "imdb_reviews": FieldSpec(("text",), "label"),
    # ULMFiT classifies title + description (fastai marks them as two fields).
    "ag_news_subset": FieldSpec(("title", "description"), "label"),
    "yelp_polarity_reviews": FieldSpec(("text",), "label"),
    "trec": FieldSpec(("text",), "label-coarse"),
    "glue/sst2": FieldSpec(("sentence",), "label"),
    "lm1b": FieldSpec(("text",), None),
    "wikipedia": FieldSpec(("text",), None),
    # Builders from `ulmfit_jax.core.data.local_datasets`.
    "local_text": FieldSpec(("text",), "label"),
}


def fields_for(name: str) -> FieldSpec:
    """Returns the `FieldSpec` registered for a TFDS name such as `"glue/sst2:2.0.0"`."""
    base = name.split(":")[0]
    for key in (base, base.split("/")[0]):
        if key in DATASET_FIELDS:
            return DATASET_FIELDS[key]
    raise KeyError(
        f"no field mapping for dataset {name!r}; pass fields=FieldSpec(...) "
        f"(known: {sorted(DATASET_FIELDS)})"
    )


def decode_text(value: Any, *, errors: str = "replace", where: str = "") -> str:
    """Turns a stored text feature (`bytes`, `str` or a 0-d numpy array) into `str`.

    Args:
        value: The feature value.
        errors: Codec error handler for invalid UTF-8: `"replace"` (U+FFFD), `"ignore"` or
            `"strict"`.
        where: Location for error messages, e.g. `"imdb_reviews[train][17]"`.

    Raises:
        ValueError: With `errors="strict"`, on invalid UTF-8, naming `where`.
    """
    if isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        try:
            return bytes(value).decode("utf-8", errors=errors)
        except UnicodeDecodeError as e:
            raise ValueError(f"{where}: invalid UTF-8 at byte {e.start}: {e.reason}") from e
    raise TypeError(f"{where}: expected text as bytes or str, got {type(value).__name__}")


class TextSource(Sequence):
    """A random-access view of `(text, label)` records over a TFDS data source.

    `source[i]` is a `TextRecord`; `source.get_many(indices)` reads several at once (faster on
    array_record). Picklable when the underlying data source is, so it can feed worker
    processes.

    Attributes:
        name: Dataset name, for messages.
        split: Split name, for messages.
        label_names: Class names indexed by label id, or `None` for unlabelled corpora.
    """

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        fields: FieldSpec,
        *,
        label_names: Sequence[str] | None = None,
        name: str = "",
        split: str = "",
        errors: str = "replace",
        indices: np.ndarray | None = None,
    ):
        self._records = records
        self.fields = fields
        self.label_names = tuple(label_names) if label_names is not None else None
        self.name = name
        self.split = split
        self.errors = errors
        # A subset view (see `without_empty`) keeps the record numbers of the full split.
        self._indices = indices

    @property
    def num_classes(self) -> int | None:
        return None if self.label_names is None else len(self.label_names)

    def __len__(self) -> int:
        return len(self._records) if self._indices is None else len(self._indices)

    def _where(self, index: int) -> str:
        return f"{self.name}[{self.split}][{index}]"

    def _record_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self._where(i)}: index out of range for {n} records")
        i %= n
        return i if self._indices is None else int(self._indices[i])

    def _convert(self, example: Mapping[str, Any], index: int) -> TextRecord:
        where = self._where(index)
        missing = [f for f in self.fields.text_fields if f not in example]
        if missing or (self.fields.label_field and self.fields.label_field not in example):
            raise ValueError(
                f"{where}: missing field(s) {missing or [self.fields.label_field]}; "
                f"record has {sorted(example)}"
            )
        parts = [
            decode_text(example[f], errors=self.errors, where=where)
            for f in self.fields.text_fields
        ]
        text = (
            self.fields.separator.join(p for p in parts if p.strip())
            if len(parts) > 1
            else parts[0]
        )
        label = None
        if self.fields.label_field is not None:
            label = int(np.asarray(example[self.fields.label_field]))
            if label < 0:
                label = None  # TFDS writes -1 for "no label".
            elif self.label_names is not None and label >= len(self.label_names):
                raise ValueError(
                    f"{where}: label {label} outside the {len(self.label_names)} declared "
                    f"classes {self.label_names}"
                )
        return TextRecord(text, label)

    def __getitem__(self, i: int) -> TextRecord:  # type: ignore[override]
        if isinstance(i, slice):
            return self.get_many(range(*i.indices(len(self))))
        j = self._record_index(int(i))
        return self._convert(self._records[j], j)

    def get_many(self, indices: Sequence[int]) -> list[TextRecord]:
        """Reads several records in one call (array_record batches the disk reads)."""
        js = [self._record_index(int(i)) for i in indices]
        examples = None
        getitems = getattr(self._records, "__getitems__", None)
        if getitems is not None:
            try:  # Batched reads are ~2x faster on array_record.
                examples = getitems(js)
            except TypeError:
                # `tfds.testing.mock_data` (TFDS 4.9.10) installs a `__getitems__` that cannot
                # be called; read one by one instead.
                examples = None
        if examples is None:
            examples = [self._records[j] for j in js]
        return [self._convert(e, j) for e, j in zip(examples, js, strict=True)]

    def __iter__(self) -> Iterator[TextRecord]:
        chunk = 1024
        for start in range(0, len(self), chunk):
            yield from self.get_many(range(start, min(start + chunk, len(self))))

    def texts(self) -> Iterator[str]:
        """Yields the texts in record order."""
        for record in self:
            yield record.text

    def labels(self) -> np.ndarray:
        """Returns all labels as `int32[num_records]`, `-1` where a record has none."""
        return np.array([-1 if r.label is None else r.label for r in self], dtype=np.int32)

    def without_empty(self) -> tuple[TextSource, int]:
        """Scans once and returns a view without empty or whitespace-only texts.

        Returns:
            The filtered source and the number of records it skipped.
        """
        keep = [i for i, r in enumerate(self) if r.text.strip()]
        base = np.arange(len(self)) if self._indices is None else self._indices
        view = TextSource(
            self._records,
            self.fields,
            label_names=self.label_names,
            name=self.name,
            split=self.split,
            errors=self.errors,
            indices=np.asarray(base)[keep],
        )
        return view, len(self) - len(keep)


def _label_names(info: Any, fields: FieldSpec) -> tuple[str, ...] | None:
    if fields.label_field is None:
        return None
    feature = info.features[fields.label_field]
    if not isinstance(feature, tfds.features.ClassLabel):
        raise ValueError(f"{info.full_name}: feature {fields.label_field!r} is not a ClassLabel")
    return tuple(feature.names)


def load_text_dataset(
    name: str | tfds.core.DatasetBuilder,
    split: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    fields: FieldSpec | None = None,
    errors: str = "replace",
) -> TextSource:
    """Opens one split of a text dataset as a `TextSource` of `(text, label)` records.

    Args:
        name: A TFDS name (`"imdb_reviews"`, `"glue/sst2"`, `"wikipedia/20230601.en"`, ...)
            or a builder, e.g. from `ulmfit_jax.core.data.local_datasets.prepare_local_dataset`.
        split: Split name or TFDS slice, e.g. `"train"`, `"unsupervised"`, `"train[:10%]"`.
        data_dir: TFDS data folder; TFDS's default (`~/tensorflow_datasets`) when `None`.
        download: Download and prepare a TFDS dataset that is not prepared yet. Off by
            default, because offline TFDS retries for minutes before failing; without it a
            missing dataset fails at once with `FileNotFoundError`.
        fields: Overrides the registered feature mapping (`DATASET_FIELDS`).
        errors: UTF-8 error policy, see `decode_text`.

    Returns:
        A `TextSource` whose `label_names` come from the dataset's `ClassLabel`.

    Raises:
        FileNotFoundError: The dataset is not prepared in `data_dir` and `download` is off.
        KeyError: No field mapping is registered for `name` and `fields` is not given.
    """
    if isinstance(name, str):
        builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
        if download and not builder.is_prepared():
            builder.download_and_prepare(file_format="array_record")
        display = name
    else:
        builder, display = name, f"{name.name}/{name.builder_config.name}"
    fields = fields or fields_for(builder.name if not isinstance(name, str) else name)
    try:
        records = builder.as_data_source(split=split)
    except (AssertionError, KeyError) as e:
        if builder.is_prepared():
            raise  # e.g. an unknown split name
        raise FileNotFoundError(
            f"{display!r} is not prepared under {builder.data_dir}; run once with "
            "download=True (needs network) or pass the data_dir that holds it"
        ) from e
    if fields.label_field is not None and fields.label_field not in builder.info.features:
        # Local builders for unlabelled corpora have no label feature.
        fields = dataclasses.replace(fields, label_field=None)
    return TextSource(
        records,
        fields,
        label_names=_label_names(builder.info, fields),
        name=display,
        split=split,
        errors=errors,
    )
