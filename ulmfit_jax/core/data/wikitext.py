"""WikiText `.tokens` files (`format="wikitext"`) as articles, the documents fastai/ULMFiT use.

An article starts at a ` = Title = ` line (one `=`; sections are ` = = Section = = `) between
blank lines. Requiring the blank lines skips body lines that look like a heading (a
bibliography entry in WikiText-2 train, two formula lines in test), giving the published
600/60/60 articles of WikiText-2. An article keeps its title and line breaks; `<unk>` is left
for the tokenizer. Default splits: `*train.tokens`, `*valid.tokens` (validation),
`*test.tokens`.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ulmfit_jax.core.data.documents import Document, Documents
from ulmfit_jax.core.data.files import split_files
from ulmfit_jax.core.data.lines import iter_lines

if TYPE_CHECKING:
    from ulmfit_jax.core.data.spec import DataSpec

SPLITS = {"train": "*train.tokens", "validation": "*valid.tokens", "test": "*test.tokens"}
_TITLE = re.compile(r"^ = [^=].* = $")


def read_articles(path: pathlib.Path, errors: str = "replace") -> Iterator[Document]:
    """The articles of one `.tokens` file (module docstring), each where its title line is."""
    article: list[str] = []
    start, before_blank = 1, True
    lines = iter_lines(path, errors)
    current = next(lines, None)
    while current is not None:
        number, line = current
        following = next(lines, None)
        after_blank = following is None or not following[1].strip()
        if before_blank and after_blank and _TITLE.match(line):
            if "".join(article).strip():
                yield Document(("\n".join(article).strip(),), None, f"{path}:{start}")
            article, start = [], number
        article.append(line)
        before_blank, current = not line.strip(), following
    if "".join(article).strip():
        yield Document(("\n".join(article).strip(),), None, f"{path}:{start}")


def read(spec: DataSpec, split: str) -> Documents:
    """The articles of one split."""
    documents: list[Document] = []
    for path in split_files(spec, split, SPLITS):
        documents += read_articles(path, spec.errors)
    return Documents(documents, f"{spec.description}[{split}]")
