"""Readers for local text files: one generator of raw documents per file format.

Each reader yields `RawDoc(text, label, location)` where `label` is the raw label string (or
`None`) and `location` is `"path:line"` for messages. The TFDS builder in
`ulmfit_jax.core.data.local_datasets` maps raw labels to class ids and drops empty documents; the
readers only parse, so they stay testable without TFDS.

Decoding policy (`errors`): `"replace"` (default) swaps invalid bytes for U+FFFD and logs one
warning per file with the first bad line; `"strict"` raises `ValueError("path:line: ...")`.
Malformed records (a missing column or key, invalid JSON, a TREC line without `LABEL:fine`)
always raise `ValueError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import pathlib
import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from ulmfit_jax.core.data import sst

logger = logging.getLogger(__name__)

# Coarse TREC classes in the order of TFDS's `trec` builder, so that local and TFDS label ids
# agree.
TREC_COARSE = ("DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC")

# A WikiText article heading is ` = Title = ` (one `=`; sections are ` = = Section = = `).
_WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")


class RawDoc(NamedTuple):
    text: str
    label: str | None
    location: str


class _Decoder:
    """Decodes bytes of one file with the error policy, remembering replaced lines."""

    def __init__(self, path: pathlib.Path, encoding: str, errors: str):
        self.path, self.encoding, self.errors = path, encoding, errors
        self.bad_lines: list[int] = []

    def __call__(self, raw: bytes, line: int) -> str:
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError as e:
            # Whole-file decodes report the line of the first bad byte.
            line += raw.count(b"\n", 0, e.start)
            if self.errors == "strict":
                raise ValueError(
                    f"{self.path}:{line}: invalid {self.encoding} at byte {e.start}: {e.reason}"
                ) from e
            self.bad_lines.append(line)
            return raw.decode(self.encoding, errors=self.errors)

    def report(self) -> None:
        if self.bad_lines:
            logger.warning(
                "%s: %d line(s) with invalid %s (first at line %d); bytes decoded with errors=%r",
                self.path,
                len(self.bad_lines),
                self.encoding,
                self.bad_lines[0],
                self.errors,
            )


def read_lines(
    path: pathlib.Path, *, encoding: str = "utf-8", errors: str = "replace"
) -> Iterator[RawDoc]:
    """One document per line (e.g. the One Billion Word Benchmark); unlabelled."""
    decode = _Decoder(path, encoding, errors)
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            yield RawDoc(decode(raw, n).rstrip("\r\n"), None, f"{path}:{n}")
    decode.report()


def read_file(
    path: pathlib.Path,
    *,
    label: str | None = None,
    encoding: str = "utf-8",
    errors: str = "replace",
) -> RawDoc:
    """One document per file (the aclImdb layout); `label` comes from the caller."""
    decode = _Decoder(path, encoding, errors)
    text = decode(path.read_bytes(), 1)
    decode.report()
    return RawDoc(text, label, f"{path}:1")


def read_class_folders(
    folder: pathlib.Path,
    classes: Sequence[str],
    *,
    encoding: str = "utf-8",
    errors: str = "replace",
) -> Iterator[RawDoc]:
    """Files under `folder/<class>/` labelled by their folder; unlabelled if none exists.

    Subfolders not named in `classes` (aclImdb's `train/unsup`) are ignored, so `train` holds
    only labelled reviews; point a split at `train/unsup` itself to read those, unlabelled.
    Files are read in sorted order so that record numbers are reproducible.
    """
    labelled = [c for c in classes if (folder / c).is_dir()]
    if labelled:
        for c in labelled:
            for path in sorted(p for p in (folder / c).iterdir() if p.is_file()):
                yield read_file(path, label=c, encoding=encoding, errors=errors)
    else:
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            yield read_file(path, encoding=encoding, errors=errors)


def _column(name: str | int, header: list[str] | None, path: pathlib.Path) -> int:
    if isinstance(name, int):
        return name
    if header is None:
        raise ValueError(f"{path}: column {name!r} given by name but header=False; use an index")
    if name not in header:
        raise ValueError(f"{path}:1: no column {name!r}; the header has {header}")
    return header.index(name)


def read_delimited(
    path: pathlib.Path,
    *,
    text_fields: Sequence[str | int],
    label_field: str | int | None,
    delimiter: str = ",",
    header: bool = True,
    separator: str = "\n",
    encoding: str = "utf-8",
    errors: str = "replace",
) -> Iterator[RawDoc]:
    """CSV/TSV rows; columns by header name or 0-based index; text columns are joined."""
    decode = _Decoder(path, encoding, errors)
    # Read whole: quoted fields may span lines, so the csv module must see the decoded text.
    text = decode(path.read_bytes(), 1)
    decode.report()
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    head = next(reader, None) if header else None
    cols = [_column(f, head, path) for f in text_fields]
    label_col = None if label_field is None else _column(label_field, head, path)
    needed = max([*cols, -1 if label_col is None else label_col])
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if not row:
            continue  # csv yields [] for a blank line.
        if len(row) <= needed:
            raise ValueError(f"{where}: row has {len(row)} columns, needs column {needed}")
        parts = [row[c] for c in cols]
        label = None if label_col is None else row[label_col].strip()
        if label == "":
            raise ValueError(f"{where}: empty label in column {label_field!r}")
        yield RawDoc(separator.join(p for p in parts if p.strip()), label, where)


def read_jsonl(
    path: pathlib.Path,
    *,
    text_fields: Sequence[str],
    label_field: str | None,
    separator: str = "\n",
    encoding: str = "utf-8",
    errors: str = "replace",
) -> Iterator[RawDoc]:
    """One JSON object per line; a `null` or absent label field is an error, not "no label"."""
    for doc in read_lines(path, encoding=encoding, errors=errors):
        if not doc.text.strip():
            continue
        try:
            obj = json.loads(doc.text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{doc.location}: invalid JSON: {e.msg}") from e
        if not isinstance(obj, dict):
            raise ValueError(f"{doc.location}: expected a JSON object, got {type(obj).__name__}")
        keys = [*text_fields, *([label_field] if label_field else [])]
        missing = [k for k in keys if obj.get(k) is None]
        if missing:
            raise ValueError(f"{doc.location}: missing field(s) {missing}; has {sorted(obj)}")
        parts = []
        for k in text_fields:
            if not isinstance(obj[k], str):
                raise ValueError(
                    f"{doc.location}: field {k!r} is {type(obj[k]).__name__}, not text"
                )
            parts.append(obj[k])
        label = None if label_field is None else str(obj[label_field]).strip()
        yield RawDoc(separator.join(p for p in parts if p.strip()), label, doc.location)


def read_wikitext(
    path: pathlib.Path, *, encoding: str = "utf-8", errors: str = "replace"
) -> Iterator[RawDoc]:
    """WikiText `.tokens` articles: each starts at a ` = Title = ` line between blank lines.

    fastai/ULMFiT treat articles as documents. Requiring blank lines around a heading skips
    body lines that look like one (a bibliography entry in WikiText-2 train, two formula lines
    in test), giving the published 600/60/60 articles of WikiText-2. The article text keeps
    its title and line breaks; `<unk>` is left for the tokenizer to map.
    """
    article: list[str] = []
    start, before_blank = 1, True
    lines = (
        (d.text, int(d.location.rsplit(":", 1)[1]))
        for d in read_lines(path, encoding=encoding, errors=errors)
    )
    current = next(lines, None)
    while current is not None:
        line, n = current
        following = next(lines, None)
        after_blank = following is None or not following[0].strip()
        if before_blank and after_blank and _WIKITEXT_TITLE.match(line):
            if "".join(article).strip():
                yield RawDoc("\n".join(article).strip(), None, f"{path}:{start}")
            article, start = [], n
        article.append(line)
        before_blank, current = not line.strip(), following
    if "".join(article).strip():
        yield RawDoc("\n".join(article).strip(), None, f"{path}:{start}")


def read_trec(
    path: pathlib.Path, *, fine: bool = False, encoding: str = "latin-1"
) -> Iterator[RawDoc]:
    """TREC `.label` lines `COARSE:fine question` (Latin-1 bytes, so decoding cannot fail).

    The label is the coarse class (before the colon) or, with `fine=True`, the whole
    `COARSE:fine` string (50 classes in train_5500).
    """
    for doc in read_lines(path, encoding=encoding, errors="strict"):
        line = doc.text.strip()
        if not line:
            continue
        label, _, text = line.partition(" ")
        coarse, colon, fine_label = label.partition(":")
        if not colon or not coarse or not fine_label:
            raise ValueError(f"{doc.location}: expected 'COARSE:fine question', got {line[:60]!r}")
        yield RawDoc(text.strip(), label if fine else coarse, doc.location)


def read_sst_trees(path: pathlib.Path, *, binary: bool = False) -> Iterator[RawDoc]:
    """SST PTB trees, one per line: the sentence of the leaves and the root's class name
    (`ulmfit_jax.core.data.sst`; `binary` drops the neutral label 2)."""
    for doc in read_lines(path, encoding="utf-8", errors="strict"):
        if not doc.text.strip():
            continue
        text, label = sst.parse_tree(doc.text, where=doc.location)
        name = sst.label_name(label, binary)
        if name is not None:
            yield RawDoc(text, name, doc.location)
