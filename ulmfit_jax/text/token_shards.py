"""Token shards: a corpus of any size tokenized once into memory-mapped token-id files.

    shards = build_token_shards(texts, "cache/shards/wiki-de", n_workers=2, max_vocab=60000)
    shards.tokens      # np.memmap uint16 (uint32 when the vocabulary needs it) [n_tokens]
    shards.offsets     # np.memmap int64 [n_docs + 1]: document i is tokens[offsets[i]:offsets[i+1]]
    shards.vocab       # the Vocab built from the corpus' counts
    LMStream((shards.tokens, shards.offsets), ...)   # windows read straight from the file

`texts` may be any iterable, a generator or a streaming dataset included: it is read once, in
chunks of `chunk_size` documents. Each chunk is tokenized (in `n_workers` processes, a bounded
number of chunks in flight) into a *part*: its distinct tokens in order of first occurrence,
their counts and the chunk's token ids into that table (`TokenizedCorpus`), written atomically
to `DIR/parts/`. The vocabulary is then built from the parts' counts (fastai's `make_vocab`:
ties in first-occurrence order, as counting the whole corpus in order gives), each part's table
is mapped onto it once, and the ids are written to `DIR/tokens.bin` and the document offsets to
`DIR/offsets.bin`. `DIR/manifest.json`, written last, marks the shards complete and records
the tokenizer's settings, the vocabulary settings, the counts and `key`.

Host memory is one chunk per worker plus the distinct tokens' counts, whatever the corpus'
size. A build killed at any point resumes: finished parts are kept (and not tokenized again),
a half-written file never looks finished, and shards without a manifest are never opened. A
second build with the same `key` (the caller's description of the corpus) and settings opens
the finished shards at once; with another key or other settings it is refused, naming both.
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
import shutil
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ulmfit_jax.text.token_cache import CorpusTokenizer, TokenizedCorpus
from ulmfit_jax.text.tokenizer import WordTokenizer
from ulmfit_jax.text.vocab import Vocab

SHARDS_FORMAT = 1
MANIFEST, TOKENS, OFFSETS, VOCAB = "manifest.json", "tokens.bin", "offsets.bin", "vocab.json"


@dataclasses.dataclass(frozen=True)
class TokenShards:
    """Finished token shards, memory-mapped read-only (see the module docstring)."""

    directory: pathlib.Path
    tokens: np.ndarray
    offsets: np.ndarray
    vocab: Vocab
    manifest: dict

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def document(self, i: int) -> np.ndarray:
        """int32 token ids of document `i` (a copy of its slice of the file)."""
        return np.asarray(self.tokens[self.offsets[i] : self.offsets[i + 1]], np.int32)

    @classmethod
    def open(cls, directory: str | os.PathLike) -> TokenShards:
        """Open finished shards.

        Raises:
          FileNotFoundError: no finished shards there (no manifest: never built, or cut off).
        """
        directory = pathlib.Path(directory)
        path = directory / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"no finished token shards in {directory} (no {MANIFEST})")
        manifest = json.loads(path.read_text())
        vocab = Vocab(json.loads((directory / VOCAB).read_text(encoding="utf-8")))
        if manifest["n_tokens"] == 0:  # numpy cannot map an empty file
            tokens = np.zeros(0, manifest["dtype"])
        else:
            tokens = np.memmap(directory / TOKENS, dtype=manifest["dtype"], mode="r")
        offsets = np.memmap(directory / OFFSETS, dtype=np.int64, mode="r")
        if len(tokens) != manifest["n_tokens"] or len(offsets) != manifest["n_docs"] + 1:
            raise ValueError(f"{directory}: the shard files disagree with {MANIFEST}")
        return cls(directory, tokens, offsets, vocab, manifest)


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds every id of a vocabulary of `vocab_size` tokens."""
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    if vocab_size <= 1 << 32:
        return np.dtype(np.uint32)
    raise ValueError(f"a vocabulary of {vocab_size:,} tokens does not fit uint32 token ids")


def _settings(tokenizer: CorpusTokenizer, key: Any, max_vocab: int, min_freq: int, chunk: int):
    return {
        "format": SHARDS_FORMAT,
        "key": key,
        "tokenizer": tokenizer.cache_settings(),
        "max_vocab": int(max_vocab),
        "min_freq": int(min_freq),
        "chunk_size": int(chunk),
    }


def _chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


_worker_tokenizer: CorpusTokenizer | None = None


def _init_worker(tokenizer: CorpusTokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _tokenize_part(args: tuple[list[str], str]) -> int:
    """Tokenize one chunk into its part file (in a worker); returns its token count."""
    texts, path = args
    part = TokenizedCorpus.from_lists(_worker_tokenizer(texts))
    part.save(path)
    return part.n_tokens


def _progress(total_docs: int | None, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total_docs, desc="tokenizing", unit="doc", disable=not enabled)


def build_token_shards(
    texts: Iterable[str],
    directory: str | os.PathLike,
    *,
    key: Any = None,
    tokenizer: CorpusTokenizer | None = None,
    n_workers: int = 1,
    chunk_size: int = 1000,
    max_vocab: int = 60000,
    min_freq: int = 3,
    total_docs: int | None = None,
    progress: bool = True,
    start_method: str = "spawn",
) -> TokenShards:
    """Tokenize `texts` into token shards in `directory`, or open them if already built.

    Args:
      texts: the documents (str), any iterable, read once, in order.
      directory: where the shards go (created; one corpus and settings per directory).
      key: the caller's JSON-able description of the corpus (e.g. files and their sizes, a
        dataset's name and split), part of what must match to reuse finished shards.
      tokenizer: fastai's `WordTokenizer()` when None; any `CorpusTokenizer` (SentencePiece).
      n_workers: tokenizing processes (1: in this process).
      chunk_size: documents per part.
      max_vocab, min_freq: fastai's `make_vocab` settings.
      total_docs: the number of documents, for the progress bar (when `texts` has no len).
      progress: show a progress bar (tqdm.auto: terminals and notebooks).

    Raises:
      ValueError: an empty corpus, a vocabulary past uint32, or `directory` holding shards of
        another corpus or other settings (named).
    """
    tokenizer = WordTokenizer() if tokenizer is None else tokenizer
    directory = pathlib.Path(directory)
    settings = _settings(tokenizer, key, max_vocab, min_freq, chunk_size)
    directory.mkdir(parents=True, exist_ok=True)
    settings_path = directory / "settings.json"
    if settings_path.exists():
        recorded = json.loads(settings_path.read_text())
        if recorded != json.loads(json.dumps(settings)):
            changed = sorted(k for k in settings if recorded.get(k) != settings[k])
            raise ValueError(
                f"{directory} holds token shards of another corpus or other settings "
                f"({', '.join(changed)} differ): use another directory"
            )
        if (directory / MANIFEST).is_file():
            return TokenShards.open(directory)
    else:
        settings_path.write_text(json.dumps(settings, indent=2))
    parts_dir = directory / "parts"
    parts_dir.mkdir(exist_ok=True)
    if total_docs is None and hasattr(texts, "__len__"):
        total_docs = len(texts)
    paths = _tokenize_parts(
        texts, parts_dir, tokenizer, n_workers, chunk_size, total_docs, progress, start_method
    )
    if not paths:
        raise ValueError("the corpus is empty: no documents to tokenize")
    return _assemble(directory, paths, settings, max_vocab, min_freq)


def _tokenize_parts(texts, parts_dir, tokenizer, n_workers, chunk_size, total, progress, method):
    """Write every chunk's part file (those already written are kept); returns their paths."""
    paths: list[pathlib.Path] = []
    bar = _progress(total, progress)
    pool = None
    if n_workers > 1:
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_worker,
            initargs=(tokenizer,),
        )
    pending: collections.deque = collections.deque()
    try:
        for index, chunk in enumerate(_chunks(texts, chunk_size)):
            path = parts_dir / f"part-{index:06d}.npz"
            paths.append(path)
            if path.exists():  # finished before a kill: not tokenized again
                bar.update(len(chunk))
                continue
            if pool is None:
                TokenizedCorpus.from_lists(tokenizer(chunk)).save(path)
                bar.update(len(chunk))
                continue
            pending.append((pool.submit(_tokenize_part, (chunk, str(path))), len(chunk)))
            while len(pending) >= 2 * n_workers:  # bounded memory: a few chunks in flight
                future, n = pending.popleft()
                future.result()
                bar.update(n)
        while pending:
            future, n = pending.popleft()
            future.result()
            bar.update(n)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        bar.close()
    return paths


def _assemble(directory, paths, settings, max_vocab, min_freq) -> TokenShards:
    """Build the vocabulary from the parts' counts and write the id and offset files."""
    counter: collections.Counter[str] = collections.Counter()
    n_tokens, n_docs = 0, 0
    for path in paths:  # in corpus order: ties in make_vocab keep first-occurrence order
        part = TokenizedCorpus.load(path)
        counter.update(part.counter())
        n_tokens += part.n_tokens
        n_docs += len(part)
    vocab = Vocab.from_counter(counter, min_freq=min_freq, max_vocab=max_vocab)
    dtype = id_dtype(len(vocab))
    tmp_tokens, tmp_offsets = directory / (TOKENS + ".tmp"), directory / (OFFSETS + ".tmp")
    tokens = np.memmap(tmp_tokens, dtype=dtype, mode="w+", shape=(max(n_tokens, 1),))
    offsets = np.memmap(tmp_offsets, dtype=np.int64, mode="w+", shape=(n_docs + 1,))
    offsets[0] = 0
    token_at, doc_at = 0, 0
    for path in paths:
        part = TokenizedCorpus.load(path)
        lookup = np.asarray(vocab.numericalize(part.tokens), dtype=dtype)
        tokens[token_at : token_at + part.n_tokens] = lookup[part.ids]
        offsets[doc_at + 1 : doc_at + 1 + len(part)] = part.offsets[1:] + token_at
        token_at += part.n_tokens
        doc_at += len(part)
    tokens.flush()
    offsets.flush()
    del tokens, offsets
    if n_tokens == 0:  # a memmap cannot be empty: keep a zero-length file
        tmp_tokens.write_bytes(b"")
    os.replace(tmp_tokens, directory / TOKENS)
    os.replace(tmp_offsets, directory / OFFSETS)
    (directory / VOCAB).write_text(json.dumps(vocab.itos, ensure_ascii=False), encoding="utf-8")
    manifest = dict(
        settings,
        n_docs=n_docs,
        n_tokens=n_tokens,
        vocab_size=len(vocab),
        dtype=dtype.name,
        vocab_sha256=hashlib.sha256(json.dumps(vocab.itos).encode()).hexdigest(),
    )
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, directory / MANIFEST)  # last: the shards are complete
    shutil.rmtree(directory / "parts", ignore_errors=True)
    return TokenShards.open(directory)
