"""Documents: what every reader returns, and the one way several text fields become one text.

A `Document` is its text fields (a review has one; AG News has a title and a description), a
label (a class name, a number for regression, a list or `a;b` string for multi-label; `None`
when unlabelled) and where it came from (`path:line`, `name[split][index]`), for messages.

Several fields are joined as fastai's `tokenize_df` joins text columns: each marked
`xxfld 1 ...`, `xxfld 2 ...`; one field is the text itself. This is what the ULMFiT and ELMo
classifiers have trained on; the cached token files and the published results depend on it.

`Documents` is one split: the documents in input order, the class order the source defines
(a TFDS ClassLabel, TREC's classes, SST's names; `None` lets the label encoder sort them), the
source rows for tables (a `valid_col` reads them; prediction keeps the other columns), and the
counts the stages report: empty documents dropped and rows with invalid UTF-8 replaced.

Example:

    split = open_split(spec, "train")           # ulmfit_jax.core.data.readers
    split.texts[0], split.raw_labels[0]         # "xxfld 1 Title xxfld 2 Body", "Sports"
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

FIELD_MARK = "xxfld"  # fastai's FLD


def join_fields(fields: Sequence[str]) -> str:
    """One text from a document's fields, fastai-style (`xxfld N` marks when several)."""
    if len(fields) == 1:
        return fields[0]
    return " ".join(f"{FIELD_MARK} {number} {part}" for number, part in enumerate(fields, 1))


def field_text(value: Any) -> str:
    """A table cell or record value as a text field ("" for a missing value)."""
    return "" if value is None else str(value)


class Document(NamedTuple):
    """One document (module docstring)."""

    fields: tuple[str, ...]
    label: Any = None
    where: str = ""

    @property
    def text(self) -> str:
        return join_fields(self.fields)


@dataclasses.dataclass
class Documents:
    """The documents of one split (module docstring).

    Attributes:
        documents: in input order.
        where: the split, for messages (a path, or `name[split]`).
        label_names: the class order the source defines, or None.
        rows: a table's rows, one per document (None for other sources).
        dropped_empty: documents left out because their text was empty or whitespace.
        replaced_rows: documents whose invalid UTF-8 was replaced by U+FFFD.
    """

    documents: list[Document]
    where: str
    label_names: tuple[str, ...] | None = None
    rows: list[Mapping[str, Any]] | None = None
    dropped_empty: int = 0
    replaced_rows: int = 0

    def __len__(self) -> int:
        return len(self.documents)

    def __iter__(self) -> Iterator[Document]:
        return iter(self.documents)

    def __getitem__(self, index: int) -> Document:
        return self.documents[index]

    @property
    def texts(self) -> list[str]:
        """Each document's text, fields joined (`join_fields`)."""
        return [document.text for document in self.documents]

    @property
    def raw_labels(self) -> list[Any]:
        """Each document's label as the source has it (a name, a number, a set, or None)."""
        return [document.label for document in self.documents]

    def subset(self, indices: Sequence[int]) -> Documents:
        """The documents at `indices`, in that order (the counts stay with the whole split)."""
        pick = [int(i) for i in indices]
        return Documents(
            [self.documents[i] for i in pick],
            self.where,
            self.label_names,
            None if self.rows is None else [self.rows[i] for i in pick],
        )

    def without_empty(self) -> Documents:
        """The documents whose text is not blank; `dropped_empty` counts the others."""
        keep = [i for i, document in enumerate(self.documents) if document.text.strip()]
        if len(keep) == len(self.documents):
            return self
        kept = self.subset(keep)
        kept.dropped_empty = self.dropped_empty + len(self.documents) - len(keep)
        kept.replaced_rows = self.replaced_rows
        return kept
