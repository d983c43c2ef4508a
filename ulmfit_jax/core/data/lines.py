"""Plain text readers: one document per line (`format="lines"`), or per file (`"files"`).

"lines" suits sentence corpora such as the One Billion Word Benchmark; "files" a folder of
documents. Both are unlabelled. Bytes are decoded by `ulmfit_jax.core.data.decode` (invalid UTF-8
by `data.errors`); a line's `\\r\\n` or `\\n` ending is not part of its text. Blank documents
are dropped by `open_split`.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ulmfit_jax.core.data.decode import Decoder
from ulmfit_jax.core.data.documents import Document, Documents
from ulmfit_jax.core.data.files import split_files

if TYPE_CHECKING:
    from ulmfit_jax.core.data.spec import DataSpec


def iter_lines(
    path: pathlib.Path, errors: str = "replace", encoding: str = "utf-8"
) -> Iterator[tuple[int, str]]:
    """`(line number, text)` of every line of a file (1-based, line endings removed), read as
    it goes, so that a large corpus is never in memory twice."""
    decode = Decoder(str(path), errors, encoding)
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            yield number, decode(raw, number).rstrip("\r\n")
    decode.report()


def read_lines(path: pathlib.Path, errors: str = "replace") -> Iterator[Document]:
    """One document per line."""
    for number, line in iter_lines(path, errors):
        yield Document((line,), None, f"{path}:{number}")


def read_file(path: pathlib.Path, errors: str = "replace", label: str | None = None) -> Document:
    """One document per file (the aclImdb layout); `label` comes from the caller."""
    decode = Decoder(str(path), errors)
    text = decode(path.read_bytes())
    decode.report()
    return Document((text,), label, f"{path}:1")


def read(spec: DataSpec, split: str) -> Documents:
    """The documents of one split: each line (`format="lines"`) or each file (`"files"`)."""
    documents: list[Document] = []
    for path in split_files(spec, split):
        if spec.format == "files":
            documents.append(read_file(path, spec.errors))
        else:
            documents += read_lines(path, spec.errors)
    return Documents(documents, f"{spec.description}[{split}]")
