"""Corpus tokenization: in parallel over processes, in order, cached on disk.

A corpus is returned as a ``TokenizedCorpus``: a table of its distinct tokens (in order of first
occurrence) and one ``uint32`` id per token. Every occurrence of a token shares one ``str``, which
keeps a corpus of millions of tokens small in memory, cheap to send back from worker processes and
fast to store; ``to_lists()`` gives the plain ``list[list[str]]``.

The cache file is named by a SHA-256 of the tokenizer's ``cache_settings()`` (rules version, spaCy
version, special tokens, or the SentencePiece model's hash) and of the documents themselves, so a
re-run with the same corpus and settings is a file read and any change misses. Files are written
to a temporary name in the cache folder and renamed into place, so a reader never sees half a file
and concurrent writers of the same key are harmless.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import itertools
import json
import multiprocessing
import os
import pathlib
import warnings
import zipfile
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from ulmfit_jax.core.paths import atomic_writer
from ulmfit_jax.text.tokenizer import WordTokenizer, as_texts

# Bumped when the file layout changes, which also invalidates every older cache file.
CACHE_FORMAT = 1


class CorpusTokenizer(Protocol):
    """What ``tokenize_corpus`` needs from a tokenizer (``WordTokenizer``, SentencePiece)."""

    def __call__(self, texts: Sequence[str]) -> list[list[str]]: ...

    def cache_settings(self) -> dict: ...


@dataclasses.dataclass(frozen=True)
class TokenizedCorpus:
    """Tokenized documents as ids into a table of distinct tokens.

    Attributes:
      tokens: the distinct tokens in order of first occurrence (document order).
      ids: uint32[n_tokens], the corpus' tokens as indices into ``tokens``, documents one after
        the other.
      offsets: int64[n_docs + 1], document ``i`` is ``ids[offsets[i]:offsets[i + 1]]``.
    """

    tokens: list[str]
    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> list[str]:
        """The tokens of document ``i``."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return [self.tokens[j] for j in self.ids[lo:hi].tolist()]

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def to_lists(self) -> list[list[str]]:
        """All documents as lists of ``str`` (occurrences of a token share one object)."""
        flat = np.asarray(self.tokens, dtype=object)[self.ids].tolist()
        bounds = self.offsets.tolist()
        return [flat[lo:hi] for lo, hi in itertools.pairwise(bounds)]

    def counter(self) -> collections.Counter[str]:
        """Token counts, inserted in order of first occurrence.

        That is the order of ``Counter(t for doc in docs for t in doc)``, which decides ties in
        ``Counter.most_common`` and so in fastai's ``make_vocab``.
        """
        counts = np.bincount(self.ids, minlength=len(self.tokens)).tolist()
        return collections.Counter(dict(zip(self.tokens, counts, strict=True)))

    def numericalize(self, vocab) -> np.ndarray:
        """All token ids under ``vocab`` (a ``vocab.Vocab``), ``int32[n_tokens]``.

        Looks up each distinct token once instead of every occurrence.
        """
        return np.asarray(vocab.numericalize(self.tokens), dtype=np.int32)[self.ids]

    @classmethod
    def from_lists(cls, docs: Sequence[Sequence[str]]) -> TokenizedCorpus:
        """Builds the table-and-ids form of tokenized documents."""
        stoi: dict[str, int] = {}
        ids: list[int] = []
        lengths = np.zeros(len(docs) + 1, dtype=np.int64)
        for i, doc in enumerate(docs):
            ids += [stoi.setdefault(t, len(stoi)) for t in doc]
            lengths[i + 1] = len(doc)
        return cls(list(stoi), np.asarray(ids, dtype=np.uint32), np.cumsum(lengths))

    @classmethod
    def concatenate(cls, parts: Sequence[TokenizedCorpus]) -> TokenizedCorpus:
        """Joins corpora in order, merging their token tables (first occurrence kept)."""
        stoi: dict[str, int] = {}
        ids, offsets, base = [], [np.zeros(1, dtype=np.int64)], 0
        for part in parts:
            remap = np.asarray([stoi.setdefault(t, len(stoi)) for t in part.tokens], np.uint32)
            ids.append(remap[part.ids])
            offsets.append(part.offsets[1:] + base)
            base += part.n_tokens
        return cls(
            list(stoi),
            np.concatenate(ids) if ids else np.zeros(0, np.uint32),
            np.concatenate(offsets),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Writes the corpus to ``path`` (``.npz``) atomically: temporary file, then rename."""
        path = pathlib.Path(path)
        table = json.dumps(self.tokens, ensure_ascii=False).encode("utf-8")
        with atomic_writer(path, fsync=True) as file:
            np.savez(
                file,
                format=np.asarray(CACHE_FORMAT),
                tokens=np.frombuffer(table, dtype=np.uint8),
                ids=self.ids,
                offsets=self.offsets,
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> TokenizedCorpus:
        """Reads a corpus written by ``save``.

        Raises:
          ValueError: the file is not a corpus of this format (names the file).
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["format"]) != CACHE_FORMAT:
                    raise ValueError(f"format {int(z['format'])}, expected {CACHE_FORMAT}")
                tokens = json.loads(z["tokens"].tobytes().decode("utf-8"))
                ids, offsets = z["ids"], z["offsets"]
                if not isinstance(tokens, list):
                    raise ValueError("the token table is not a list")
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path}: not a tokenized-corpus file: {e}") from e
        if ids.dtype != np.uint32 or offsets[-1] != len(ids) or ids.max(initial=0) >= len(tokens):
            raise ValueError(f"{path}: inconsistent tokenized-corpus file")
        return cls(tokens, ids, offsets)


def cache_key(texts: Sequence[str], tokenizer: CorpusTokenizer) -> str:
    """SHA-256 (hex) of the tokenizer's settings and of the documents, boundaries included."""
    h = hashlib.sha256()
    settings = {"format": CACHE_FORMAT, "tokenizer": tokenizer.cache_settings()}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for text in texts:
        # Length-prefixed, so that ["ab", "c"] and ["a", "bc"] differ.
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


_worker_tokenizer: Callable[[Sequence[str]], list[list[str]]] | None = None


def _init_worker(tokenizer: CorpusTokenizer) -> None:
    # Sent once per worker (a SentencePiece model can be megabytes), not once per chunk.
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _tokenize_chunk(texts: Sequence[str]) -> TokenizedCorpus:
    return TokenizedCorpus.from_lists(_worker_tokenizer(texts))


def tokenize_corpus(
    texts: Sequence[str | bytes],
    tokenizer: CorpusTokenizer | None = None,
    *,
    n_workers: int = 1,
    chunk_size: int = 500,
    cache_dir: str | os.PathLike | None = None,
    errors: str = "strict",
    start_method: str = "spawn",
) -> TokenizedCorpus:
    """Tokenizes a corpus, in parallel and with an on-disk cache.

    Example:
      >>> corpus = tokenize_corpus(reviews, n_workers=2, cache_dir="~/.cache/ulmfit_jax/tok")
      >>> vocab = Vocab.from_counter(corpus.counter())
      >>> docs = corpus.to_lists()

    Args:
      texts: the documents (``str`` or UTF-8 ``bytes``, validated as in ``tokenizer.as_texts``).
      tokenizer: a picklable callable with ``cache_settings()``; fastai's default
        ``WordTokenizer()`` when ``None``.
      n_workers: worker processes; 0 or 1 tokenizes in this process.
      chunk_size: documents per task sent to a worker (small enough to balance the load).
      cache_dir: folder of cache files; ``None`` disables caching.
      errors: the UTF-8 error policy for ``bytes`` documents.
      start_method: multiprocessing start method. ``'spawn'`` by default because forking a process
        that has started JAX's threads can deadlock; as always with spawn, a script calling this
        with ``n_workers > 1`` needs the ``if __name__ == "__main__":`` guard.

    Returns:
      The tokenized corpus, documents in input order.
    """
    texts = as_texts(texts, errors)
    tokenizer = WordTokenizer() if tokenizer is None else tokenizer
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    path = None
    if cache_dir is not None:
        cache = pathlib.Path(cache_dir).expanduser()
        cache.mkdir(parents=True, exist_ok=True)
        path = cache / f"{cache_key(texts, tokenizer)}.npz"
        if path.exists():
            try:
                return TokenizedCorpus.load(path)
            except ValueError as e:
                warnings.warn(f"ignoring unreadable cache file: {e}", stacklevel=2)

    chunks = [texts[i : i + chunk_size] for i in range(0, len(texts), chunk_size)]
    if n_workers <= 1 or len(chunks) <= 1:
        parts = [TokenizedCorpus.from_lists(tokenizer(chunk)) for chunk in chunks]
    else:
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(n_workers, len(chunks)),
            mp_context=multiprocessing.get_context(start_method),
            initializer=_init_worker,
            initargs=(tokenizer,),
        ) as pool:
            # `map` yields results in submission order, whatever order the workers finish in.
            parts = list(pool.map(_tokenize_chunk, chunks))
    corpus = TokenizedCorpus.concatenate(parts)
    if path is not None:
        corpus.save(path)
    return corpus
