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

from ulmfit_jax.core.data.readers import open_split
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.core.paths import DEFAULT_CACHE
from ulmfit_jax.text.token_cache import tokenize_corpus
from ulmfit_jax.text.vocab import Vocab


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

    def load(split: str, limit: int) -> list[list[str]]:
        """The split's tokenized documents, or a seeded random `limit` of them."""
        texts = open_split(spec, split).texts
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
