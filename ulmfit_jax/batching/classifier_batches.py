"""Classifier batches: fastai's `SortedDL` order, right padding, bounded shapes.

Training order (per epoch, seeded) follows fastai 2.8's `SortedDL.shuffle_fn`: permute the
examples, move the longest to the front, sort chunks of `50 * batch_size` by length
(descending, stable), cut into batches, shuffle all batches but the first and the last. The
first batch is therefore the longest of the epoch, so an out-of-memory error shows at step 0.
As fastai's training loader, a final partial batch is dropped (`drop_last`).

Evaluation order (`shuffle=False`) is all examples sorted by length, longest first (stable),
every example kept: the last batch is filled up to `batch_size` with filler rows whose `indices`
are -1. `indices` maps every row back to its position in the input (`scatter_to_input_order`).

Padding differs from fastai on purpose: documents are right-padded with `pad_id` (fastai pads
at the front) and every batch carries `lengths`, which the model uses for masking. The width
is the batch's longest document rounded up to a multiple of `pad_multiple` (fastai's
`seq_len`, 72), so an epoch compiles at most `ceil(longest / 72)` shapes; `batch_shapes` lists
them. Measured on IMDb train (25k reviews up to ~2,900 word/punctuation tokens, batch 64): 22
widths per epoch out of 41 possible, 82% of padded positions real.

Multi-host: with `shard_count` hosts, host `i` yields rows `[i * b, (i + 1) * b)` of each global
batch (`b = batch_size // shard_count`), padded to the width of the global batch so that every
host compiles the same shapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from ulmfit_jax.batching.lm_stream import (
    BatchIterator,
    DocumentsLike,
    LoaderState,
    flatten_documents,
)
from ulmfit_jax.core.data.hosts import host_batch_size


class ClassifierBatch(NamedTuple):
    """A padded classifier batch.

    Attributes:
        tokens: int32[batch, time], right-padded with `pad_id`.
        lengths: int32[batch] real lengths (1 for filler rows, so pooling stays finite).
        labels: int32[batch] class ids (0 for filler rows).
        indices: int32[batch] input position of each row; -1 marks a filler row.
        trainable: the training step's per-group flags (`ulmfit_jax.optim.optimizer`), set by
            the training loop for the phase; None from the loader.
    """

    tokens: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    trainable: Any = None

    @property
    def mask(self) -> np.ndarray:
        """bool[batch]: rows holding a real example (weight the loss and metrics by it)."""
        return self.indices >= 0


def sorted_batch_order(
    lengths: np.ndarray,
    batch_size: int,
    permutation: np.ndarray,
    batch_permutation: np.ndarray,
    chunk_batches: int = 50,
) -> np.ndarray:
    """fastai's `SortedDL` training order, given its two random draws.

    Args:
        lengths: int[num_examples] sort keys.
        batch_size: Examples per batch.
        permutation: int[num_examples], a permutation of the examples.
        batch_permutation: int[max(num_batches - 2, 0)], the order of the middle batches.
        chunk_batches: Batches per sorted chunk (fastai: 50).

    Returns:
        int64[num_examples], the example order; batch `k` is `order[k * bs:(k + 1) * bs]`.
    """
    idxs = np.array(permutation, dtype=np.int64)
    if len(idxs) == 0:
        return idxs
    # The longest example (first one on ties, as np.argmax) goes first.
    at = int(np.flatnonzero(idxs == int(np.argmax(lengths)))[0])
    idxs[0], idxs[at] = idxs[at], idxs[0]
    size = batch_size * chunk_batches
    for s in range(0, len(idxs), size):
        chunk = idxs[s : s + size]
        idxs[s : s + size] = chunk[np.argsort(-lengths[chunk], kind="stable")]
    batches = [idxs[s : s + batch_size] for s in range(0, len(idxs), batch_size)]
    if len(batches) <= 2:
        return idxs
    middle = [batches[1 + int(i)] for i in batch_permutation]
    return np.concatenate([batches[0], *middle, batches[-1]])


def scatter_to_input_order(
    values: Sequence[np.ndarray], indices: Sequence[np.ndarray], num_examples: int
) -> np.ndarray:
    """Puts per-batch results back in input order, dropping filler rows.

    Args:
        values: Per batch, `[batch, ...]` results (e.g. logits).
        indices: Per batch, the `ClassifierBatch.indices` (int32[batch]).
        num_examples: Number of input examples.

    Returns:
        `[num_examples, ...]`, row `i` holding the result for input `i`.
    """
    vals = np.concatenate([np.asarray(v) for v in values])
    idx = np.concatenate([np.asarray(i) for i in indices])
    keep = idx >= 0
    if np.sort(idx[keep]).tolist() != list(range(num_examples)):
        raise ValueError("indices do not cover every input example exactly once")
    out = np.empty((num_examples, *vals.shape[1:]), dtype=vals.dtype)
    out[idx[keep]] = vals[keep]
    return out


class ClassifierBatches:
    """Sorted-ish, right-padded classifier batches (see the module docstring).

    Args:
        docs: Documents as 1-D int arrays, or a flat `(tokens, offsets)` pair.
        labels: int[num_docs] class ids, float[num_docs, n_class] multi-hot rows or
            float[num_docs] regression targets; `None` for prediction (labels are then 0).
        batch_size: Global examples per batch.
        seed: Seeds the per-epoch order.
        shuffle: fastai's training order if true, else the evaluation order.
        drop_last: Drop a final partial batch; defaults to `shuffle` (as fastai).
        pad_multiple: Widths are multiples of this (fastai's `seq_len`, 72).
        max_len: Keep only the first `max_len` tokens of a document (`None`: keep all, as
            fastai, whose encoder reads whole documents).
        backward: Reverse every document (after truncation), for a backward model; padding
            stays on the right.
        pad_id: Padding token id (fastai's `xxpad` is 1).
        shard_index: This host's index.
        shard_count: Number of hosts; must divide `batch_size`.

    Raises:
        ValueError: An empty document (the model could not pool it), mismatched labels, or a
            bad shard layout.
    """

    def __init__(
        self,
        docs: DocumentsLike,
        labels: Sequence[int] | np.ndarray | None = None,
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool | None = None,
        pad_multiple: int = 72,
        max_len: int | None = None,
        backward: bool = False,
        pad_id: int = 1,
        shard_index: int = 0,
        shard_count: int = 1,
    ):
        if batch_size < 1 or pad_multiple < 1:
            raise ValueError(f"batch_size ({batch_size}) and pad_multiple must be >= 1")
        self.local_batch_size = host_batch_size(batch_size, shard_index, shard_count)
        self.tokens, self.offsets = flatten_documents(docs)
        self.lengths = np.diff(self.offsets)
        if max_len is not None:
            self.lengths = np.minimum(self.lengths, max_len)
        empty = np.flatnonzero(self.lengths == 0)
        if len(empty):
            raise ValueError(
                f"{len(empty)} empty document(s), first at index {empty[0]}: drop them or "
                "add a BOS token"
            )
        n = len(self.lengths)
        if labels is None:
            self.labels = np.zeros(n, np.int32)
        else:
            # int class ids, float multi-hot rows [n, n_class] or float regression targets.
            labels = np.asarray(labels)
            self.labels = labels if labels.dtype.kind == "f" else labels.astype(np.int32)
            if self.labels.shape[:1] != (n,):
                raise ValueError(f"labels have shape {self.labels.shape}, expected ({n}, ...)")
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.drop_last = shuffle if drop_last is None else drop_last
        self.pad_multiple, self.pad_id, self.backward = pad_multiple, pad_id, backward
        self.shard_index, self.shard_count = shard_index, shard_count
        if self.num_batches() == 0:
            raise ValueError(f"{n} examples make no full batch of {batch_size}")

    def __len__(self) -> int:
        return len(self.lengths)

    def epoch_order(self, epoch: int = 0) -> np.ndarray:
        """int64[num_examples]: example order of `epoch` (before cutting into batches)."""
        if not self.shuffle:
            return np.argsort(-self.lengths, kind="stable")
        n, bs = len(self), self.batch_size
        rng = np.random.default_rng([self.seed, epoch, 2])
        permutation = rng.permutation(n)
        batch_permutation = rng.permutation(max(-(-n // bs) - 2, 0))
        return sorted_batch_order(self.lengths, bs, permutation, batch_permutation)

    def num_batches(self, epoch: int = 0) -> int:
        n, bs = len(self), self.batch_size
        return n // bs if self.drop_last else -(-n // bs)

    def _batch_rows(self, order: np.ndarray, k: int) -> np.ndarray:
        return order[k * self.batch_size : (k + 1) * self.batch_size]

    def _width(self, rows: np.ndarray) -> int:
        m = self.pad_multiple
        return int(-(-self.lengths[rows].max() // m) * m)

    def batch_shapes(self, epoch: int = 0) -> list[int]:
        """Distinct padded widths of `epoch`: the shapes a jitted step compiles for."""
        order = self.epoch_order(epoch)
        return sorted({self._width(self._batch_rows(order, k)) for k in range(self.num_batches())})

    def epoch_batches(self, epoch: int, start_step: int = 0) -> Iterator[ClassifierBatch]:
        """Yields the batches of `epoch` from `start_step` on."""
        order = self.epoch_order(epoch)
        b = self.local_batch_size
        for k in range(start_step, self.num_batches(epoch)):
            rows = self._batch_rows(order, k)
            width = self._width(rows)
            mine = rows[self.shard_index * b : (self.shard_index + 1) * b]
            tokens = np.full((b, width), self.pad_id, np.int32)
            lengths = np.ones(b, np.int32)
            labels = np.zeros((b, *self.labels.shape[1:]), self.labels.dtype)
            indices = np.full(b, -1, np.int32)
            for j, i in enumerate(mine):
                n = self.lengths[i]
                doc = self.tokens[self.offsets[i] : self.offsets[i] + n]
                tokens[j, :n] = doc[::-1] if self.backward else doc
                lengths[j], labels[j], indices[j] = n, self.labels[i], i
            yield ClassifierBatch(tokens, lengths, labels, indices)

    def iterator(
        self, state: LoaderState | None = None, *, num_epochs: int | None = None
    ) -> BatchIterator:
        """A resumable iterator over epochs, starting at `state` (epoch 0, step 0 if `None`)."""
        return BatchIterator(self, state or LoaderState(seed=self.seed), num_epochs)


def prediction_batches(
    docs: Sequence[np.ndarray],
    *,
    batch_size: int,
    pad_multiple: int,
    backward: bool = False,
    max_len: int | None = None,
) -> ClassifierBatches:
    """Every document once, in the evaluation order, with no labels: what a predictor runs.

    Args:
        docs: Numericalized documents, 1-D int arrays.
        batch_size, pad_multiple, backward, max_len: As `ClassifierBatches`.

    Returns:
        Unshuffled batches that keep the last partial one; `batch.indices` (-1 on padding rows)
        put the outputs back in input order.
    """
    return ClassifierBatches(
        list(docs),
        batch_size=batch_size,
        shuffle=False,
        pad_multiple=pad_multiple,
        backward=backward,
        max_len=max_len,
    )
