"""TFDS builders for local text files, so offline corpora load like any TFDS dataset.

`prepare_local_dataset(path, format, ...)` parses local files once into array_record files under
a TFDS `data_dir` and returns the prepared builder; `load_local_dataset` then opens a split as a
`TextSource` through `ulmfit_jax.core.data.sources.load_text_dataset`, the same path TFDS datasets
take.

Formats (`format=`): `"lines"` (one document per line), `"files"` (one document per file),
`"csv"`, `"tsv"`, `"jsonl"` (configurable text and label fields), `"folders"` (class per folder,
the aclImdb layout), `"wikitext"` (articles of `.tokens` files), `"trec"` (`.label` files) and
`"sst"` / `"sst2"` (the Stanford Sentiment Treebank's PTB trees, 5 or 2 classes; see
`ulmfit_jax.core.data.sst`: `path` may be `trainDevTestTrees_PTB.zip`, extracted once under
`data_dir`).

Caching: TFDS keeps prepared data at `data_dir/local_text/<config>/1.0.0`. The config name is
`<format>-<digest>` where the digest hashes everything that determines the records: the
resolved root folder, the options, and each input file's relative path, size and mtime. Two
different inputs therefore never share a folder, and an edited file is prepared again.

Policies:
* Documents whose text is empty or whitespace only are skipped; the count per split is logged
  and kept in `builder.info.metadata["skipped_empty"]`.
* Record order is the input order (files sorted by path, lines in order): shuffling is the
  batcher's job and reproducible input order lets predictions map back to files.
* Labels are raw strings mapped to ids by `classes`; when `classes` is not given they are
  discovered by a scan (sorted; numerically when all are integers). A label outside `classes`
  raises `ValueError("path:line: ...")`.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import os
import pathlib
from collections.abc import Iterator, Mapping, Sequence

import tensorflow_datasets as tfds
from tensorflow_datasets.core import constants

from ulmfit_jax.core.data import local_formats, sst
from ulmfit_jax.core.data.sources import TextSource, load_text_dataset
from ulmfit_jax.core.data.sst import SST_FORMATS

logger = logging.getLogger(__name__)

FORMATS = ("lines", "files", "csv", "tsv", "jsonl", "folders", "wikitext", "trec", *SST_FORMATS)

# Splits read when `splits` is not given, as patterns relative to the root; a default split
# whose pattern matches nothing is left out (WikiText-103 often comes without train).
_DEFAULT_SPLITS = {
    "wikitext": {"train": "*train.tokens", "validation": "*valid.tokens", "test": "*test.tokens"},
    "trec": {"train": "train_5500.label", "test": "TREC_10.label"},
    "folders": {"train": "train", "test": "test", "unsupervised": "train/unsup"},
    "sst": sst.SPLIT_FILES,
    "sst2": sst.SPLIT_FILES,
}


@dataclasses.dataclass(frozen=True)
class LocalSpec:
    """Everything that determines the records of a local dataset (hashed into the cache key).

    Attributes:
        format: One of `FORMATS`.
        splits: `(split name, (glob pattern, ...))` pairs relative to the root folder.
        text_fields: Columns (names, or indices when `header=False`) or JSON keys joined into
            the text.
        label_field: Column or key of the label; `None` for unlabelled data.
        header: Whether CSV/TSV files start with a header row.
        separator: Joins several text fields.
        classes: Raw label values in class-id order; discovered when `None`.
        encoding: Text encoding of the files (TREC is always Latin-1).
        errors: Decoding policy for invalid bytes, `"replace"` or `"strict"`.
        unlabeled_dirs: Folder names read as unlabelled (`"folders"` format).
        trec_fine: TREC labels are `COARSE:fine` (50 classes) instead of the 6 coarse ones.
    """

    format: str
    splits: tuple[tuple[str, tuple[str, ...]], ...]
    text_fields: tuple[str | int, ...] = ("text",)
    label_field: str | int | None = None
    header: bool = True
    separator: str = "\n"
    classes: tuple[str, ...] | None = None
    encoding: str = "utf-8"
    errors: str = "replace"
    unlabeled_dirs: tuple[str, ...] = ("unsup",)
    trec_fine: bool = False

    @property
    def labelled(self) -> bool:
        return self.format in ("folders", "trec", *SST_FORMATS) or self.label_field is not None


@dataclasses.dataclass
class LocalTextConfig(tfds.core.BuilderConfig):
    """A per-call configuration: the spec, the root folder and the resolved class list."""

    spec: LocalSpec | None = None
    root: str = ""
    resolved_classes: tuple[str, ...] = ()


class LocalText(tfds.core.GeneratorBasedBuilder):
    """Array_record builder for local files; see `prepare_local_dataset`."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the folder holding the files as manual_dir."

    def _info(self) -> tfds.core.DatasetInfo:
        features = {"text": tfds.features.Text()}
        if self.builder_config.spec.labelled:
            features["label"] = tfds.features.ClassLabel(
                names=list(self.builder_config.resolved_classes)
            )
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Local {self.builder_config.spec.format} files from "
            f"{self.builder_config.root}",
            features=tfds.features.FeaturesDict(features),
            # Input order is kept (see module docstring).
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = pathlib.Path(dl_manager.manual_dir)
        self.info.metadata["skipped_empty"] = {}
        return {
            split: self._generate_examples(root=root, split=split, patterns=patterns)
            for split, patterns in self.builder_config.spec.splits
        }

    def _generate_examples(self, root: pathlib.Path, split: str, patterns: tuple[str, ...]):
        spec = self.builder_config.spec
        class_ids = {c: i for i, c in enumerate(self.builder_config.resolved_classes)}
        key, skipped = 0, 0
        for doc in iter_documents(spec, root, patterns, self.builder_config.resolved_classes):
            if not doc.text.strip():
                skipped += 1
                continue
            example = {"text": doc.text}
            if spec.labelled:
                if doc.label is not None and doc.label not in class_ids:
                    raise ValueError(
                        f"{doc.location}: label {doc.label!r} is not one of the declared "
                        f"classes {list(class_ids)}"
                    )
                example["label"] = -1 if doc.label is None else class_ids[doc.label]
            yield key, example
            key += 1
        if skipped:
            logger.warning("%s split %r: skipped %d empty document(s)", root, split, skipped)
        self.info.metadata["skipped_empty"][split] = skipped


def _expand(root: pathlib.Path, patterns: Sequence[str]) -> list[pathlib.Path]:
    paths: list[pathlib.Path] = []
    for pattern in patterns:
        paths += sorted(pathlib.Path(p) for p in glob.glob(str(root / pattern)))
    return paths


def iter_documents(
    spec: LocalSpec,
    root: pathlib.Path,
    patterns: Sequence[str],
    classes: Sequence[str] = (),
) -> Iterator[local_formats.RawDoc]:
    """Yields the raw documents of one split (empty ones included), in input order.

    `classes` names the class folders of the `"folders"` format.
    """
    kw = {"encoding": spec.encoding, "errors": spec.errors}
    for path in _expand(root, patterns):
        fmt = spec.format
        if fmt == "lines":
            yield from local_formats.read_lines(path, **kw)
        elif fmt == "files":
            yield local_formats.read_file(path, **kw)
        elif fmt in ("csv", "tsv"):
            yield from local_formats.read_delimited(
                path,
                text_fields=spec.text_fields,
                label_field=spec.label_field,
                delimiter="," if fmt == "csv" else "\t",
                header=spec.header,
                separator=spec.separator,
                **kw,
            )
        elif fmt == "jsonl":
            yield from local_formats.read_jsonl(
                path,
                text_fields=[str(f) for f in spec.text_fields],
                label_field=None if spec.label_field is None else str(spec.label_field),
                separator=spec.separator,
                **kw,
            )
        elif fmt == "folders":
            yield from local_formats.read_class_folders(path, classes, **kw)
        elif fmt == "wikitext":
            yield from local_formats.read_wikitext(path, **kw)
        elif fmt == "trec":
            yield from local_formats.read_trec(path, fine=spec.trec_fine)
        elif fmt in SST_FORMATS:
            yield from local_formats.read_sst_trees(path, binary=fmt == "sst2")


def _folder_classes(spec: LocalSpec, folders: Sequence[pathlib.Path]) -> tuple[str, ...]:
    if spec.classes is not None:
        return spec.classes
    names = {
        p.name
        for folder in folders
        for p in folder.iterdir()
        if p.is_dir() and p.name not in spec.unlabeled_dirs
    }
    return tuple(sorted(names))


def _sort_labels(labels: set[str]) -> tuple[str, ...]:
    if all(label.lstrip("-").isdigit() for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def _discover_classes(spec: LocalSpec, root: pathlib.Path) -> tuple[str, ...]:
    """The class list: given, fixed (TREC coarse), folder names, or a scan of the labels."""
    if not spec.labelled:
        return ()
    if spec.classes is not None:
        return spec.classes
    if spec.format == "trec" and not spec.trec_fine:
        return local_formats.TREC_COARSE
    if spec.format in SST_FORMATS:
        return sst.SST2_NAMES if spec.format == "sst2" else sst.SST5_NAMES
    if spec.format == "folders":
        return _folder_classes(spec, _expand(root, [p for _, ps in spec.splits for p in ps]))
    labels = {
        doc.label
        for _, patterns in spec.splits
        for doc in iter_documents(spec, root, patterns)
        if doc.label is not None and doc.text.strip()
    }
    return _sort_labels(labels)


def _fingerprint(spec: LocalSpec, root: pathlib.Path) -> str:
    """Digest of the spec, the root and every input file's path, size and mtime."""
    files: dict[str, tuple[int, int]] = {}  # a dict: nested split folders count once

    def add(entry: os.DirEntry | pathlib.Path) -> None:
        st = entry.stat()
        files[os.path.relpath(entry, root)] = (st.st_size, st.st_mtime_ns)

    for _, patterns in spec.splits:
        for path in _expand(root, patterns):
            if not path.is_dir():
                add(path)
                continue
            # os.scandir is ~10x faster than pathlib's rglob on the 100k files of aclImdb.
            for folder, _, _ in os.walk(path):
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_file():
                            add(entry)
    payload = json.dumps([dataclasses.asdict(spec), str(root), sorted(files.items())])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _normalise_splits(
    fmt: str, root: pathlib.Path, splits: Mapping[str, str | Sequence[str]] | None, default: str
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    given = splits is not None
    if splits is None:
        splits = _DEFAULT_SPLITS.get(fmt, {"train": default})
    out = []
    for name, patterns in splits.items():
        patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        if not _expand(root, patterns):
            if given or fmt not in _DEFAULT_SPLITS:
                raise ValueError(f"split {name!r}: no file matches {patterns} under {root}")
            continue
        out.append((name, patterns))
    if not out:
        raise ValueError(f"no input files for format {fmt!r} under {root}")
    return tuple(out)


def prepare_local_dataset(
    path: str | os.PathLike,
    format: str,
    *,
    splits: Mapping[str, str | Sequence[str]] | None = None,
    text_fields: Sequence[str | int] = ("text",),
    label_field: str | int | None = None,
    header: bool = True,
    separator: str = "\n",
    classes: Sequence[str] | None = None,
    encoding: str = "utf-8",
    errors: str = "replace",
    unlabeled_dirs: Sequence[str] = ("unsup",),
    trec_fine: bool = False,
    data_dir: str | os.PathLike | None = None,
) -> LocalText:
    """Prepares local files as a TFDS dataset (once per distinct input) and returns its builder.

    Args:
        path: The root folder (or a single file, which becomes the `train` split).
        format: One of `FORMATS`.
        splits: Split name to glob pattern(s) relative to `path`; for `"folders"` the patterns
            name folders. Defaults: WikiText `*train.tokens`/`*valid.tokens`/`*test.tokens`,
            TREC `train_5500.label`/`TREC_10.label`, folders `train`/`test`/`train/unsup`
            (`unsupervised`), SST `train.txt`/`dev.txt` (`validation`)/`test.txt`, otherwise
            the single file as `train`.
        text_fields: Text columns or JSON keys (several are joined with `separator`).
        label_field: Label column or key; `None` for unlabelled files.
        header: CSV/TSV files have a header row (else give fields as 0-based indices).
        separator: Joins several text fields.
        classes: Raw label values in class-id order; discovered by a scan when `None`.
        encoding: File encoding (TREC files are read as Latin-1 regardless).
        errors: `"replace"` invalid bytes with U+FFFD (logged) or raise on them (`"strict"`).
        unlabeled_dirs: Folder names that are not classes (`"folders"` format).
        trec_fine: Use TREC's 50 `COARSE:fine` labels instead of the 6 coarse ones.
        data_dir: Where TFDS keeps prepared data; TFDS's default when `None`.

    Returns:
        The prepared `LocalText` builder; pass it to `load_text_dataset(builder, split)`.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: Unknown format, a split with no files, a `label_field` for an unlabelled
            format, or a malformed record (the message names the file and line).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")
    if label_field is not None and format not in ("csv", "tsv", "jsonl"):
        raise ValueError(f"label_field applies to csv, tsv and jsonl files, not {format!r}")
    root = pathlib.Path(path).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    data_dir = os.fspath(data_dir) if data_dir is not None else constants.DATA_DIR
    if format in SST_FORMATS:  # the zip (or a folder of it) -> a folder of the tree files
        root = sst.tree_folder(root, pathlib.Path(data_dir).expanduser() / "local_text" / "sst")
    default = "*"
    if root.is_file():
        root, default = root.parent, root.name
    spec = LocalSpec(
        format=format,
        splits=_normalise_splits(format, root, splits, default),
        text_fields=tuple(text_fields),
        label_field=label_field,
        header=header,
        separator=separator,
        classes=None if classes is None else tuple(str(c) for c in classes),
        encoding=encoding,
        errors=errors,
        unlabeled_dirs=tuple(unlabeled_dirs),
        trec_fine=trec_fine,
    )
    name = f"{format}-{_fingerprint(spec, root)}"
    # A prepared copy already records its classes; reading them avoids a second scan.
    labels_file = (
        pathlib.Path(data_dir).expanduser() / "local_text" / name / "1.0.0" / "label.labels.txt"
    )
    if spec.labelled and labels_file.exists():
        resolved = tuple(labels_file.read_text().splitlines())
    else:
        resolved = _discover_classes(spec, root)
    if spec.labelled and not resolved:
        raise ValueError(f"{root}: no labels found for format {format!r}")
    config = LocalTextConfig(
        name=name, version="1.0.0", spec=spec, root=str(root), resolved_classes=resolved
    )
    builder = LocalText(config=config, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
    return builder


def load_local_dataset(path: str | os.PathLike, split: str, format: str, **kwargs) -> TextSource:
    """`prepare_local_dataset(path, format, **kwargs)`, then `load_text_dataset` on `split`."""
    errors = kwargs.get("errors", "replace")
    return load_text_dataset(prepare_local_dataset(path, format, **kwargs), split, errors=errors)
