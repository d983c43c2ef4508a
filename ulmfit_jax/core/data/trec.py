"""TREC question classification (`format="trec"`): `.label` files of `COARSE:fine question`.

The files are Latin-1, so decoding cannot fail. A document's label is its coarse class (6
classes, in the order of TFDS's `trec` builder so that class ids agree), or with
`data.label_field="fine"` the whole `COARSE:fine` label (50 classes in train_5500). Default
splits: `train_5500.label` (train) and `TREC_10.label` (test).
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ulmfit_jax.core.data.documents import Document, Documents
from ulmfit_jax.core.data.files import split_files
from ulmfit_jax.core.data.lines import iter_lines

if TYPE_CHECKING:
    from ulmfit_jax.core.data.spec import DataSpec

COARSE = ("DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC")
SPLITS = {"train": "train_5500.label", "test": "TREC_10.label"}


def read_questions(path: pathlib.Path, fine: bool = False) -> Iterator[Document]:
    """The labelled questions of one `.label` file; a line without `COARSE:fine` is an error
    naming it."""
    for number, raw in iter_lines(path, "strict", encoding="latin-1"):
        line = raw.strip()
        if not line:
            continue
        label, _, text = line.partition(" ")
        coarse, colon, fine_label = label.partition(":")
        if not colon or not coarse or not fine_label:
            raise ValueError(f"{path}:{number}: expected 'COARSE:fine question', got {line[:60]!r}")
        yield Document((text.strip(),), label if fine else coarse, f"{path}:{number}")


def read(spec: DataSpec, split: str) -> Documents:
    """The questions of one split; class order `COARSE`, or sorted fine labels."""
    fine = spec.label_field == "fine"
    documents: list[Document] = []
    for path in split_files(spec, split, SPLITS):
        documents += read_questions(path, fine)
    return Documents(documents, f"{spec.description}[{split}]", None if fine else COARSE)
