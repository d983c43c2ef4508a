"""Tagged sentences for the ELMo tagger: CoNLL-style column files, TFDS `conll2003`, tag schemes.

    data = read_conll("eng.train", token_col=0, tag_col=-1, scheme="IOB1")   # -> BIO tags
    data = read_tfds_conll2003("train")        # only when TFDS has it prepared; never downloads
    tags = to_scheme(data.tags[0], "BIO", "BIOUL")

A column file has one token per line, whitespace-separated columns (CoNLL-2003: token, POS,
chunk, NER tag), a blank line after each sentence, and `-DOCSTART-` lines between documents
(skipped). `scheme` names the file's tagging scheme; "IOB1" (the original CoNLL-2003 files,
where `B-` only marks an entity right after one of the same type) is converted to BIO (IOB2)
on reading, so everything downstream sees BIO.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

SCHEMES = ("BIO", "IOB1", "BIOUL")
DOCSTART = "-DOCSTART-"


@dataclasses.dataclass(frozen=True)
class TaggedSentences:
    """Parallel token and tag lists, one pair per sentence.

    Attributes:
      tokens: the words of each sentence.
      tags: their tags (BIO unless converted), `len(tags[i]) == len(tokens[i])`.
      where: the file or dataset they came from, for messages.
    """

    tokens: list[list[str]]
    tags: list[list[str]]
    where: str = ""

    def __len__(self) -> int:
        return len(self.tokens)


def _parts(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, sep, entity = tag.partition("-")
    if not sep or not entity or len(prefix) != 1:
        raise ValueError(f"tag {tag!r} is neither 'O' nor 'PREFIX-TYPE' (e.g. 'B-PER')")
    return prefix, entity


def iob1_to_bio(tags: Sequence[str]) -> list[str]:
    """IOB1 -> BIO: an `I-x` that starts an entity (after `O` or another type) becomes `B-x`."""
    out, previous = [], "O"
    for tag in tags:
        prefix, entity = _parts(tag)
        if prefix == "I" and (previous == "O" or _parts(previous)[1] != entity):
            tag = f"B-{entity}"
        out.append(tag)
        previous = tag
    return out


def bio_to_bioul(tags: Sequence[str]) -> list[str]:
    """BIO -> BIOUL: single-token entities `U-x`, the last token of longer ones `L-x`. An `I-x`
    that opens an entity (invalid BIO) is read as `B-x`."""
    tags = iob1_to_bio(tags)
    out = []
    for i, tag in enumerate(tags):
        prefix, entity = _parts(tag)
        continues = i + 1 < len(tags) and tags[i + 1] == f"I-{entity}"
        if prefix == "B":
            out.append(tag if continues else f"U-{entity}")
        elif prefix == "I":
            out.append(tag if continues else f"L-{entity}")
        else:
            out.append(tag)
    return out


def bioul_to_bio(tags: Sequence[str]) -> list[str]:
    """BIOUL -> BIO (`U-x` -> `B-x`, `L-x` -> `I-x`)."""
    out = []
    for tag in tags:
        prefix, entity = _parts(tag)
        out.append({"U": f"B-{entity}", "L": f"I-{entity}"}.get(prefix, tag))
    return out


def to_scheme(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Convert a sentence's tags between "BIO", "IOB1" (source only) and "BIOUL"."""
    for name, value in (("source", source), ("target", target)):
        if value not in SCHEMES:
            raise ValueError(f"unknown tag scheme {value!r} ({name}); expected one of {SCHEMES}")
    if target == "IOB1":
        raise ValueError("converting to IOB1 is not supported; use BIO or BIOUL")
    bio = bioul_to_bio(tags) if source == "BIOUL" else iob1_to_bio(tags)
    return bio_to_bioul(bio) if target == "BIOUL" else bio


def read_conll(
    path: str | os.PathLike, *, token_col: int = 0, tag_col: int = -1, scheme: str = "BIO"
) -> TaggedSentences:
    """Read a CoNLL-style column file (module docstring).

    Args:
      path: the file.
      token_col, tag_col: which whitespace-separated columns hold the token and its tag
        (negative counts from the end, so -1 is the last column).
      scheme: the file's tag scheme; "IOB1" and "BIOUL" are converted to BIO.

    Returns:
      the file's sentences with BIO tags.

    Raises:
      ValueError: a line with too few columns, a malformed tag, or no sentences (naming the
        file and line).
    """
    path = Path(path)
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {SCHEMES}")
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    words: list[str] = []
    labels: list[str] = []

    def close() -> None:
        if words:
            tokens.append(list(words))
            tags.append(to_scheme(labels, scheme, "BIO"))
            words.clear()
            labels.clear()

    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            columns = line.split()
            if not columns:
                close()
                continue
            if columns[0] == DOCSTART:
                close()
                continue
            try:
                word, tag = columns[token_col], columns[tag_col]
                _parts(tag)
            except IndexError:
                raise ValueError(
                    f"{path}:{number}: {len(columns)} column(s), but token_col={token_col} "
                    f"and tag_col={tag_col}"
                ) from None
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from None
            words.append(word)
            labels.append(tag)
    close()
    if not tokens:
        raise ValueError(f"{path}: no sentences (expected CoNLL-style token/tag columns)")
    return TaggedSentences(tokens, tags, str(path))


def tfds_conll2003_prepared(data_dir: str | None = None) -> bool:
    """Whether this TFDS has a `conll2003` builder and its data is prepared in `data_dir`."""
    import tensorflow_datasets as tfds

    if "conll2003" not in tfds.list_builders(with_community_datasets=False):
        return False
    return tfds.builder("conll2003", data_dir=data_dir).is_prepared()


def read_tfds_conll2003(split: str, data_dir: str | None = None) -> TaggedSentences:
    """A split ("train", "dev", "test") of TFDS's prepared `conll2003` (BIO NER tags), read
    with `tfds.data_source`. Never downloads: an unprepared dataset is an error saying how to
    prepare it."""
    import tensorflow_datasets as tfds

    if "conll2003" not in tfds.list_builders(with_community_datasets=False):
        raise ValueError("this TFDS version has no conll2003 builder; use column files")
    builder = tfds.builder("conll2003", data_dir=data_dir)
    if not builder.is_prepared():
        raise ValueError(
            f"TFDS conll2003 is not prepared in {builder.data_dir}: run "
            "`tfds build conll2003` where the data can be downloaded (or pass column files "
            "with data.format=conll)"
        )
    names = builder.info.features["ner"].names
    source = tfds.data_source("conll2003", split=split, data_dir=data_dir)
    tokens, tags = [], []
    for number, record in enumerate(source):
        words = [w.decode("utf-8") if isinstance(w, bytes) else str(w) for w in record["tokens"]]
        if len(words) != len(record["ner"]):
            raise ValueError(
                f"tfds:conll2003/{split} example {number}: {len(words)} tokens but "
                f"{len(record['ner'])} NER tags"
            )
        if words:
            tokens.append(words)
            tags.append(iob1_to_bio([names[int(i)] for i in record["ner"]]))
    return TaggedSentences(tokens, tags, f"tfds:conll2003/{split}")
