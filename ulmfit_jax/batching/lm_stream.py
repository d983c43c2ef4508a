"""Language-model batches: fastai's `LMDataLoader` layout, with static shapes for XLA.

Each epoch the documents are shuffled (seeded), concatenated into one token stream and cut into
`batch_size` contiguous rows of `row_length = (num_tokens - 1) // batch_size` tokens. Window `k`
holds columns `[k * bptt, k * bptt + seq_len)` of every row as inputs and the next token of each
as targets, so row `r` of window `k + 1` continues row `r` of window `k`: the model carries its
LSTM state from one batch to the next. For a fixed `bptt` the windows equal fastai 2.8's
`LMDataLoader` token for token (the short final window included).

Options:
* `variable_bptt`: the AWD-LSTM / ULMFiT sequence length, drawn per window: `bptt` with
  probability 0.95 else `bptt / 2`, then `max(5, int(N(that, 5)))`, capped at `max_seq_len`
  (default `bptt + 20`; the reference leaves it uncapped, which drew past `bptt + 20` with
  probability ~3e-5). The batch carries `lr_scale = seq_len / bptt` for the learning rate.
* Static shapes: windows are right-padded with `pad_id` to `ceil(seq_len / pad_multiple) *
  pad_multiple` columns. Positions `t >= seq_len` are padding: the model must mask their loss
  and carry the state from step `seq_len - 1` (e.g. mask state updates with `lengths`). With
  `bptt=70, pad_multiple=8` an epoch compiles 9-11 shapes, never more than
  `ceil(max_seq_len / 8) = 12`, with 95% of positions real (`pad_multiple=16`: 5-6 shapes, 89%;
  no padding: ~60 shapes); see `window_shapes`. A fixed `bptt` compiles one shape (the short
  final window is padded unless `pad_last=False`).
* `backward`: every document reversed, for the backward model of a bidirectional ULMFiT.
* `shard_index, shard_count`: each host materialises only its rows `[i * b, (i + 1) * b)`
  (`b = batch_size // shard_count`) of the global batch, which assembled in host order is the
  single-host batch (`ulmfit_jax.core.runner.sharding.put_batch`). The mesh orders devices host by
  host, so every device holds the same rows, and their carried LSTM state, at every step.
* Resuming: an epoch is a pure function of `(seed, epoch)`; `LoaderState(epoch, step, seed)`
  restores the exact next batch (see `BatchIterator`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from ulmfit_jax.core.data.hosts import host_batch_size

DocumentsLike = Sequence[np.ndarray] | tuple[np.ndarray, np.ndarray]


def flatten_documents(docs: DocumentsLike) -> tuple[np.ndarray, np.ndarray]:
    """Returns `(tokens: int32[total], offsets: int64[num_docs + 1])` for numericalized docs
    (`uint16` / `uint32` tokens, e.g. memory-mapped token shards, are returned unconverted).

    Args:
        docs: A sequence of 1-D integer arrays, or an already flat `(tokens, offsets)` pair
            where document `i` is `tokens[offsets[i]:offsets[i + 1]]`.
    """
    if isinstance(docs, tuple) and len(docs) == 2 and np.ndim(docs[0]) == 1:
        tokens, offsets = np.asarray(docs[0]), np.asarray(docs[1], dtype=np.int64)
        if offsets.ndim != 1 or offsets[0] != 0 or offsets[-1] != len(tokens):
            raise ValueError("offsets must run from 0 to len(tokens)")
        if np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must be non-decreasing")
    else:
        arrays = [np.asarray(d) for d in docs]
        if any(a.ndim != 1 for a in arrays):
            raise ValueError("each document must be a 1-D array of token ids")
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tokens = np.concatenate(arrays) if arrays else np.zeros(0, np.int32)
    if tokens.size and not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got {tokens.dtype}")
    if tokens.dtype in (np.uint16, np.uint32):
        # Token shards (`ulmfit_jax.text.token_shards`): kept as they are, maybe memory-mapped,
        # and not scanned (that would read the whole file); windows become int32 as they are read.
        return tokens, offsets
    if tokens.size and (tokens.min() < 0 or tokens.max() > np.iinfo(np.int32).max):
        raise ValueError("token ids must fit in int32 and be >= 0")
    return tokens.astype(np.int32, copy=False), offsets


def gather_stream(
    tokens: np.ndarray,
    offsets: np.ndarray,
    order: np.ndarray,
    start: int,
    stop: int,
    *,
    backward: bool = False,
    chunk: int = 1 << 22,
) -> np.ndarray:
    """Positions `[start, stop)` of the stream of documents in `order`, without building it.

    Args:
        tokens: int32[total] flat token ids.
        offsets: int64[num_docs + 1] document boundaries.
        order: int64[num_docs] document order.
        start: First stream position.
        stop: End stream position (exclusive).
        backward: Read every document reversed.
        chunk: Positions per vectorised step (bounds the int64 temporaries).

    Returns:
        int32[stop - start]
    """
    lengths = np.diff(offsets)[order]
    cum = np.concatenate([[0], np.cumsum(lengths)])
    out = np.empty(stop - start, dtype=np.int32)
    for a in range(start, stop, chunk):
        b = min(a + chunk, stop)
        first = int(np.searchsorted(cum, a, side="right")) - 1
        last = int(np.searchsorted(cum, b, side="left"))
        docs, doc_start = order[first:last], cum[first:last]
        # The part of each document inside [a, b), as positions within the document.
        lo = np.maximum(doc_start, a) - doc_start
        hi = np.minimum(cum[first + 1 : last + 1], b) - doc_start
        out_start = np.concatenate([[0], np.cumsum(hi - lo)[:-1]])
        # One arithmetic run per piece: source index = const +/- output index.
        if backward:
            const = offsets[docs] + np.diff(offsets)[docs] - 1 - lo + out_start
            source = np.repeat(const, hi - lo) - np.arange(b - a)
        else:
            const = offsets[docs] + lo - out_start
            source = np.repeat(const, hi - lo) + np.arange(b - a)
        out[a - start : b - start] = tokens[source]
    return out


@dataclasses.dataclass(frozen=True)
class LoaderState:
    """Position of a loader: the next batch is step `step` of epoch `epoch` under `seed`.

    Small and JSON-serialisable (`to_dict`), to be saved beside a checkpoint.
    """

    epoch: int = 0
    step: int = 0
    seed: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LoaderState:
        return cls(epoch=int(d["epoch"]), step=int(d["step"]), seed=int(d["seed"]))


class EpochLoader(Protocol):
    seed: int

    def num_batches(self, epoch: int = 0) -> int: ...

    def epoch_batches(self, epoch: int, start_step: int = 0) -> Iterator: ...


class BatchIterator:
    """Iterates batches across epochs and reports the position of the next one.

    Example:
        it = stream.iterator()
        batch = next(it)
        saved = it.state.to_dict()  # store with the checkpoint
        ...
        it = stream.iterator(LoaderState.from_dict(saved))  # next(it) is the following batch
    """

    def __init__(self, loader: EpochLoader, state: LoaderState, num_epochs: int | None = None):
        if state.seed != loader.seed:
            raise ValueError(f"state seed {state.seed} != loader seed {loader.seed}")
        self.loader, self.num_epochs = loader, num_epochs
        self._epoch, self._step = state.epoch, state.step
        self._batches: Iterator | None = None

    @property
    def state(self) -> LoaderState:
        return LoaderState(self._epoch, self._step, self.loader.seed)

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self):
        while True:
            if self.num_epochs is not None and self._epoch >= self.num_epochs:
                raise StopIteration
            if self._batches is None:
                self._batches = self.loader.epoch_batches(self._epoch, self._step)
            batch = next(self._batches, None)
            if batch is not None:
                self._step += 1
                return batch
            self._epoch, self._step, self._batches = self._epoch + 1, 0, None


class LMBatch(NamedTuple):
    """One window of the stream.

    Attributes:
        tokens: int32[batch, time] inputs; columns `>= seq_len` are `pad_id`.
        targets: int32[batch, time] next tokens; columns `>= seq_len` are `pad_id`.
        lengths: int32[batch], all `seq_len` (the same masking input as classifier batches).
        seq_len: Real (unpadded) window length.
        lr_scale: `seq_len / bptt` with `variable_bptt`, else 1.0.
        trainable: the training step's per-group flags (`ulmfit_jax.optim.optimizer`), set by
            the training loop for the phase; None from the stream.
    """

    tokens: np.ndarray
    targets: np.ndarray
    lengths: np.ndarray
    seq_len: int
    lr_scale: float
    trainable: Any = None


class LMStream:
    """Language-model batches over numericalized documents (see the module docstring).

    Args:
        docs: Documents as 1-D int arrays, or a flat `(tokens, offsets)` pair.
        batch_size: Global number of rows.
        bptt: Window length (fastai's `seq_len`, 72 by default; the ULMFiT paper used 70).
        seed: Seeds the per-epoch document shuffle and the variable lengths.
        shuffle: Shuffle documents each epoch (off for validation).
        backward: Reverse every document.
        variable_bptt: Draw window lengths as AWD-LSTM does.
        pad_multiple: Bucket padded widths to multiples of this; `None` pads nothing (one
            shape per distinct length). Ignored for fixed `bptt`.
        max_seq_len: Cap on drawn lengths (default `bptt + 20`).
        pad_last: Pad the short final window of a fixed-`bptt` epoch to `bptt`.
        pad_id: Padding token id (fastai's `xxpad` is 1).
        shard_index: This host's index.
        shard_count: Number of hosts; must divide `batch_size`.
    """

    def __init__(
        self,
        docs: DocumentsLike,
        *,
        batch_size: int,
        bptt: int = 72,
        seed: int = 0,
        shuffle: bool = True,
        backward: bool = False,
        variable_bptt: bool = False,
        pad_multiple: int | None = 8,
        max_seq_len: int | None = None,
        pad_last: bool = True,
        pad_id: int = 1,
        shard_index: int = 0,
        shard_count: int = 1,
    ):
        if batch_size < 1 or bptt < 1:
            raise ValueError(f"batch_size ({batch_size}) and bptt ({bptt}) must be >= 1")
        self.local_batch_size = host_batch_size(batch_size, shard_index, shard_count)
        self.tokens, self.offsets = flatten_documents(docs)
        self.batch_size, self.bptt, self.seed = batch_size, bptt, seed
        self.shuffle, self.backward, self.variable_bptt = shuffle, backward, variable_bptt
        self.pad_multiple, self.pad_last, self.pad_id = pad_multiple, pad_last, pad_id
        self.max_seq_len = max_seq_len if max_seq_len is not None else bptt + 20
        self.shard_index, self.shard_count = shard_index, shard_count
        # As fastai: the "- 1" leaves room for the last target; the remainder is dropped.
        self.row_length = (len(self.tokens) - 1) // batch_size
        if self.row_length < 1:
            raise ValueError(
                f"{len(self.tokens)} tokens are too few for {batch_size} rows of at least one "
                "window"
            )

    @property
    def num_documents(self) -> int:
        return len(self.offsets) - 1

    def document_order(self, epoch: int) -> np.ndarray:
        """The order of documents in the stream of `epoch`: `int64[num_documents]`."""
        if not self.shuffle:
            return np.arange(self.num_documents)
        return np.random.default_rng([self.seed, epoch, 0]).permutation(self.num_documents)

    def window_lengths(self, epoch: int = 0) -> np.ndarray:
        """Real length of every window of `epoch`: `int64[num_batches]`."""
        bl = self.row_length
        if not self.variable_bptt:
            n = math.ceil(bl / self.bptt)
            return np.array([self.bptt] * (n - 1) + [bl - (n - 1) * self.bptt], dtype=np.int64)
        rng = np.random.default_rng([self.seed, epoch, 1])
        lengths, done = [], 0
        while done < bl:
            base = self.bptt if rng.random() < 0.95 else self.bptt / 2.0
            seq_len = min(max(5, int(rng.normal(base, 5))), self.max_seq_len, bl - done)
            lengths.append(seq_len)
            done += seq_len
        return np.array(lengths, dtype=np.int64)

    def num_batches(self, epoch: int = 0) -> int:
        return len(self.window_lengths(epoch))

    def padded_width(self, seq_len: int) -> int:
        """Number of columns a window of `seq_len` real tokens is padded to."""
        if not self.variable_bptt:
            return self.bptt if self.pad_last else seq_len
        if self.pad_multiple is None:
            return seq_len
        m = self.pad_multiple
        return min(-(-seq_len // m) * m, -(-self.max_seq_len // m) * m)

    def window_shapes(self, epoch: int = 0) -> list[int]:
        """Distinct padded widths of `epoch`: the shapes a jitted step compiles for."""
        return sorted({self.padded_width(int(s)) for s in self.window_lengths(epoch)})

    def _rows(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """This host's rows as `(inputs, targets)`: `int32[local_batch, row_length]` each."""
        rows, bl = self.local_batch_size, self.row_length
        first = self.shard_index * rows
        start, stop = first * bl, (first + rows) * bl + 1
        order = self.document_order(epoch)
        segment = gather_stream(
            self.tokens, self.offsets, order, start, stop, backward=self.backward
        )
        return segment[:-1].reshape(rows, bl), segment[1:].reshape(rows, bl)

    def epoch_batches(self, epoch: int, start_step: int = 0) -> Iterator[LMBatch]:
        """Yields the batches of `epoch` from `start_step` on."""
        inputs, targets = self._rows(epoch)
        lengths = self.window_lengths(epoch)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        for k in range(start_step, len(lengths)):
            seq_len, at = int(lengths[k]), int(starts[k])
            width = self.padded_width(seq_len)
            x = np.full((self.local_batch_size, width), self.pad_id, np.int32)
            y = np.full((self.local_batch_size, width), self.pad_id, np.int32)
            x[:, :seq_len] = inputs[:, at : at + seq_len]
            y[:, :seq_len] = targets[:, at : at + seq_len]
            lr_scale = seq_len / self.bptt if self.variable_bptt else 1.0
            yield LMBatch(
                x, y, np.full(self.local_batch_size, seq_len, np.int32), seq_len, lr_scale
            )

    def iterator(
        self, state: LoaderState | None = None, *, num_epochs: int | None = None
    ) -> BatchIterator:
        """A resumable iterator over epochs, starting at `state` (epoch 0, step 0 if `None`)."""
        return BatchIterator(self, state or LoaderState(seed=self.seed), num_epochs)
