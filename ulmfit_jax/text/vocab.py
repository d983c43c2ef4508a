"""The vocabulary: fastai's ``make_vocab``, numericalization, and its files.

``make_vocab`` keeps fastai's exact order, so ids line up with fastai's pretrained WT103 weights:
the special tokens first, then the ``max_vocab`` most frequent tokens with a count of at least
``min_freq`` in ``Counter.most_common`` order (ties by first insertion into the counter), cut back
to ``max_vocab``, then padded with ``xxfake`` to a multiple of 8 (a length already a multiple of 8
gets 8 more, as in fastai).

Numericalization maps unknown tokens to id 0 (``xxunk``), like fastai's ``defaultdict(int)``;
``xxfake`` is padding and maps to 0 too, as in a vocabulary fastai built with ``Numericalize``.

Files (``Vocab.save``/``Vocab.load`` pick the format from the suffix):

* ``.txt`` (any suffix but ``.json``/``.pkl``): UTF-8, one token per line; a token's backslash,
  newline and carriage return are written ``\\\\``, ``\\n``, ``\\r`` (spaCy makes tokens such as
  ``'\\n\\n'``).
* ``.json``: a JSON array of strings.
* ``.pkl``: fastai's ``itos.pkl``, a pickled ``list`` of ``str``. Loading refuses any pickle that
  would import a class or call a function, so an untrusted file cannot run code.

A malformed file raises ``ValueError`` naming the file and the line (or entry).
"""

from __future__ import annotations

import collections
import functools
import io
import json
import os
import pathlib
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ulmfit_jax.core.paths import atomic_writer
from ulmfit_jax.text.tokenizer import SPECIAL_TOKENS

FAKE = "xxfake"
# fastai maps unknown tokens to id 0 (`defaultdict(int)`), which is xxunk in its vocabularies.
UNK_ID = 0

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}
_RE_ESCAPE = re.compile(r"\\.?")  # A backslash and the character after it, if any.
_RE_JSON_WS = re.compile(r"[ \t\n\r]*")


def make_vocab(
    counter: Mapping[str, int],
    min_freq: int = 3,
    max_vocab: int = 60000,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
) -> list[str]:
    """fastai's ``make_vocab``: the id-to-token list.

    Args:
      counter: token counts; their iteration order breaks ties between equal counts (build it in
        document order, e.g. ``TokenizedCorpus.counter()``).
      min_freq: tokens counted fewer times are left out.
      max_vocab: the most tokens kept, special tokens included (before ``xxfake`` padding).
      special_tokens: put first, in this order, whatever their count.

    Returns:
      The vocabulary, a multiple of 8 long.
    """
    if isinstance(counter, collections.Counter):
        common = counter.most_common(max_vocab)
    else:  # `most_common` semantics for any mapping: a stable sort by count, descending.
        common = sorted(counter.items(), key=lambda kv: kv[1], reverse=True)[:max_vocab]
    specials = list(dict.fromkeys(special_tokens))  # fastai's insert-at-front also dedupes.
    drop = set(specials)
    vocab = specials + [tok for tok, count in common if count >= min_freq and tok not in drop]
    vocab = vocab[:max_vocab]
    return vocab + [FAKE] * (8 - len(vocab) % 8)


class Vocab:
    """A vocabulary: ``itos`` (id to token) and ``stoi`` (token to id)."""

    def __init__(self, itos: Iterable[str]):
        """Wraps an id-to-token list.

        Raises:
          ValueError: the list is empty, holds an empty or non-``str`` entry, or repeats a token
            other than ``xxfake`` (the message names the index).
        """
        self.itos: tuple[str, ...] = tuple(itos)
        if not self.itos:
            raise ValueError("a vocabulary needs at least one token")
        self.stoi: dict[str, int] = {}
        for i, tok in enumerate(self.itos):
            if not isinstance(tok, str) or not tok:
                raise ValueError(f"vocabulary entry {i} is {tok!r}; expected a non-empty str")
            if tok == FAKE:
                continue
            if tok in self.stoi:
                raise ValueError(f"vocabulary entry {i} repeats {tok!r} (entry {self.stoi[tok]})")
            self.stoi[tok] = i

    @classmethod
    def from_counter(
        cls,
        counter: Mapping[str, int],
        min_freq: int = 3,
        max_vocab: int = 60000,
        special_tokens: Sequence[str] = SPECIAL_TOKENS,
    ) -> Vocab:
        """``Vocab(make_vocab(...))``; see ``make_vocab``."""
        return cls(make_vocab(counter, min_freq, max_vocab, special_tokens))

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {', '.join(self.itos[:10])}, ...)"

    def numericalize(self, tokens: Iterable[str]) -> np.ndarray:
        """Token ids, ``int32[len(tokens)]``; unknown tokens (and ``xxfake``) are ``UNK_ID``."""
        get = self.stoi.get
        return np.asarray([get(t, UNK_ID) for t in tokens], dtype=np.int32)

    def denumericalize(self, ids: Iterable[int] | np.ndarray) -> list[str]:
        """The tokens of ``ids``.

        Raises:
          IndexError: an id is negative or not below ``len(self)`` (names it and its position).
        """
        ids = np.asarray(ids).reshape(-1)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
        bad = np.flatnonzero((ids < 0) | (ids >= len(self.itos)))
        if bad.size:
            raise IndexError(
                f"id {ids[bad[0]]} at position {bad[0]} is outside the vocabulary "
                f"(size {len(self.itos)})"
            )
        return [self.itos[i] for i in ids.tolist()]

    def save(self, path: str | os.PathLike) -> None:
        """Writes the vocabulary (format from the suffix, see the module doc) atomically."""
        path = pathlib.Path(path)
        if path.suffix == ".json":
            data = json.dumps(list(self.itos), ensure_ascii=False, indent=0).encode("utf-8")
        elif path.suffix == ".pkl":
            # Protocol 2 is readable by every Python 3 (and fastai v1's Python 3.6).
            data = pickle.dumps(list(self.itos), protocol=2)
        else:
            lines = ("".join(_ESCAPES.get(c, c) for c in tok) for tok in self.itos)
            data = ("\n".join(lines) + "\n").encode("utf-8")
        with atomic_writer(path) as file:
            file.write(data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        """Reads a vocabulary file (format from the suffix, see the module doc).

        Raises:
          ValueError: the file is malformed (the message names the file and the line or entry).
        """
        path = pathlib.Path(path)
        data = path.read_bytes()
        if path.suffix == ".json":
            itos = _parse_json(data, path)
        elif path.suffix == ".pkl":
            itos = _parse_pickle(data, path)
        else:
            itos = _parse_text(data, path)
        if not itos:
            raise ValueError(f"{path}: no tokens")
        try:
            return cls(itos)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def _line_of(data: bytes | str, pos: int) -> int:
    return data.count(b"\n" if isinstance(data, bytes) else "\n", 0, pos) + 1


def _unescape(m: re.Match[str], *, path: pathlib.Path, lineno: int) -> str:
    if m[0] not in _UNESCAPES:
        raise ValueError(f"{path}:{lineno}: bad escape {m[0]!r}")
    return _UNESCAPES[m[0]]


def _parse_text(data: bytes, path: pathlib.Path) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}:{_line_of(data, e.start)}: not valid UTF-8") from None
    lines = text.split("\n")
    if lines[-1] == "":  # The final newline ends the last line; it does not start a new one.
        lines.pop()
    itos, seen = [], {}
    for lineno, line in enumerate(lines, 1):
        if not line:
            raise ValueError(f"{path}:{lineno}: empty line (tokens cannot be empty)")
        if "\r" in line:
            raise ValueError(f"{path}:{lineno}: raw carriage return (CRLF line ends?)")
        tok = _RE_ESCAPE.sub(functools.partial(_unescape, path=path, lineno=lineno), line)
        if tok != FAKE and tok in seen:
            raise ValueError(f"{path}:{lineno}: duplicate token {tok!r} (line {seen[tok]})")
        seen[tok] = lineno
        itos.append(tok)
    return itos


def _skip_ws(text: str, pos: int) -> int:
    return _RE_JSON_WS.match(text, pos).end()


def _parse_json(data: bytes, path: pathlib.Path) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}:{_line_of(data, e.start)}: not valid UTF-8") from None
    # Walk the array entry by entry so that an error can name the line of the bad entry.
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if text[pos : pos + 1] != "[":
        raise ValueError(f"{path}:{_line_of(text, pos)}: expected a JSON array of strings")
    pos += 1
    itos: list[str] = []
    while True:
        pos = _skip_ws(text, pos)
        if text[pos : pos + 1] == "]" and not itos:
            break
        try:
            tok, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
        if not isinstance(tok, str) or not tok:
            raise ValueError(f"{path}:{_line_of(text, pos)}: entry {len(itos)} is {tok!r}")
        itos.append(tok)
        pos = _skip_ws(text, end)
        sep = text[pos : pos + 1]
        if sep == "]":
            break
        if sep != ",":
            raise ValueError(f"{path}:{_line_of(text, pos)}: expected ',' or ']'")
        pos += 1
    extra = _skip_ws(text, pos + 1)
    if extra != len(text):
        raise ValueError(f"{path}:{_line_of(text, extra)}: data after the JSON array")
    return itos


class _ListOfStrUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        # A list of str needs no global; anything that asks for one is refused, not imported.
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _parse_pickle(data: bytes, path: pathlib.Path) -> list[str]:
    try:
        obj = _ListOfStrUnpickler(io.BytesIO(data)).load()
    except Exception as e:  # Pickle raises many types on corrupt data.
        raise ValueError(f"{path}: not a pickled list of str: {e}") from None
    if not isinstance(obj, list):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, expected a list of str")
    for i, tok in enumerate(obj):
        if not isinstance(tok, str) or not tok:
            raise ValueError(f"{path}: entry {i} is {tok!r}, expected a non-empty str")
    return obj
