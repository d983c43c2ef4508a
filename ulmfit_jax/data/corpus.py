"""From a `DataSpec` to tokenized, numericalized documents: what the ULMFiT stages train on.

Texts are tokenized with fastai's default tokenizer in worker processes and cached on disk
(`cache_dir/tokens`), so the second stage of a pipeline does not tokenize the corpus again.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ulmfit_jax.core.data import classification
from ulmfit_jax.core.data.sources import TextSource
from ulmfit_jax.core.data.spec import DataSpec, open_split
from ulmfit_jax.core.paths import DEFAULT_CACHE
from ulmfit_jax.text.token_cache import tokenize_corpus
from ulmfit_jax.text.vocab import Vocab


def take(
    source: TextSource, limit: int | None = None, seed: int = 0
) -> tuple[list[str], np.ndarray | None]:
    """Texts and labels of a source, optionally a seeded random subset of `limit` records.

    Empty documents are dropped (they cannot be classified or add to an LM stream).
    """
    indices = np.arange(len(source))
    if limit is not None and 0 < limit < len(indices):
        indices = np.sort(np.random.default_rng(seed).choice(len(source), limit, replace=False))
    records = source.get_many(indices.tolist())
    kept = [r for r in records if r.text.strip()]
    texts = [r.text for r in kept]
    if any(r.label is None for r in kept):
        return texts, None
    return texts, np.array([r.label for r in kept], np.int32)


def tokenize_texts(
    texts: Sequence[str], *, cache_dir: Path | None = DEFAULT_CACHE, n_workers: int | None = None
) -> list[list[str]]:
    """fastai-exact tokens for each text, from worker processes and the on-disk cache."""
    workers = n_workers if n_workers is not None else min(os.cpu_count() or 1, 8)
    corpus = tokenize_corpus(
        list(texts),
        n_workers=workers,
        cache_dir=None if cache_dir is None else Path(cache_dir) / "tokens",
    )
    return corpus.to_lists()


def numericalize(docs: Sequence[Sequence[str]], vocab: Vocab) -> list[np.ndarray]:
    """Token lists to int32 id arrays (unknown tokens map to xxunk, id 0)."""
    return [vocab.numericalize(doc).astype(np.int32) for doc in docs]


def build_vocab(docs: Sequence[Sequence[str]], *, max_vocab: int, min_freq: int) -> Vocab:
    """fastai's `make_vocab` over tokenized documents (counted in document order)."""
    counter: collections.Counter[str] = collections.Counter()
    for doc in docs:
        counter.update(doc)
    return Vocab.from_counter(counter, min_freq=min_freq, max_vocab=max_vocab)


def load_tokenized(
    spec: DataSpec,
    split: str,
    limit: int = 0,
    *,
    seed: int = 0,
    cache_dir: Path | None = DEFAULT_CACHE,
    n_workers: int | None = None,
) -> tuple[list[list[str]], np.ndarray | None]:
    """Tokens and labels (None when unlabelled) of a split, or of a seeded subset of `limit`."""
    texts, labels = take(open_split(spec, split), limit or None, seed=seed)
    return tokenize_texts(texts, cache_dir=cache_dir, n_workers=n_workers), labels


def lm_corpus(
    spec: DataSpec,
    *,
    seed: int = 0,
    cache_dir: Path | None = DEFAULT_CACHE,
    n_workers: int | None = None,
) -> tuple[list[list[str]], list[list[str]]]:
    """(train documents, validation documents) of a language-model stage.

    With `spec.valid_split` set, validation is that split; otherwise a seeded `valid_pct` of
    the documents is held out, as fastai's `TextDataLoaders(..., is_lm=True, valid_pct=0.1)`.
    """
    options = dict(seed=seed, cache_dir=cache_dir, n_workers=n_workers)

    def load(split: str, limit: int) -> list[list[str]]:
        if not classification.uses_tables(spec):
            return load_tokenized(spec, split, limit, **options)[0]
        texts = classification.read_split(spec, split).texts  # a CSV/TSV/JSONL table's text
        if limit and limit < len(texts):
            keep = np.sort(np.random.default_rng(seed).choice(len(texts), limit, replace=False))
            texts = [texts[i] for i in keep]
        return tokenize_texts(texts, cache_dir=cache_dir, n_workers=n_workers)

    docs = []
    for split in spec.lm_splits:
        docs += load(split, spec.train_limit)
    if spec.valid_split:
        return docs, load(spec.valid_split, spec.valid_limit)
    order = np.random.default_rng(seed).permutation(len(docs))
    n_valid = max(1, int(len(docs) * spec.valid_pct))
    return [docs[i] for i in order[n_valid:]], [docs[i] for i in order[:n_valid]]
