"""biLM training data as bilm-tf reads it: a vocabulary file and packed bidirectional streams.

Vocabulary (bilm-tf `Vocabulary`): a text file, one token per line, `<S>`, `</S>`, `<UNK>` first
and the words after them by decreasing frequency. The order matters beyond the file format: the
log-uniform (Zipfian) negative sampler assumes id k is the k-th most frequent word.

Streams (bilm-tf `LMDataset`/`BidirectionalLMDataset` with `_get_batch`): every sentence is
`<S> w1 ... wn </S>`; each batch row is its own stream of whole sentences, handed out in corpus
order (a seeded shuffle per epoch when training) to whichever row needs the next one. A window of
`unroll_steps` tokens has inputs `s[k:k+n]` and targets `s[k+1:k+n+1]`, so a sentence's `</S>`
is only ever a target and the next sentence's `<S>` follows it. The backward direction is a
second, independent stream of the *reversed* sentences (`</S> wn ... w1 <S>`), with its own
shuffle, as bilm-tf's two `LMDataset`s each shuffle on load. Windows are always full: in test
mode the last, incomplete batch is dropped (bilm-tf does the same).

Inputs are characters (`ELMoCharacterMapper` ids, +1 shifted, of the real word, even when the
word is out of vocabulary); targets are vocabulary ids (unknown words become `<UNK>`).

    vocab = Vocabulary.build(sentences, min_count=3)
    corpus = encode_corpus(sentences, vocab)
    batches = BidirectionalBatches(corpus, batch_size=128, unroll_steps=20, seed=0)
    batch = next(batches)  # BiLMBatch(chars int32[2, 128, 20, 50], targets int32[2, 128, 20])
    position = batches.position()  # JSON; BidirectionalBatches(..., position=position) resumes

Several hosts: `BidirectionalBatches(..., shard_index=i, shard_count=n)` yields host `i`'s rows
`[i * b, (i + 1) * b)` (`b = batch_size // n`) of the single-host batch. Every host follows all
row streams (which sentence goes to which row depends on every row), which costs little; only
its own rows' characters are materialised. The position is the same on every host.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from elmo_jax.model.characters import BOS_TOKEN, EOS_TOKEN, MAX_WORD_LENGTH, ELMoCharacterMapper
from ulmfit_jax.core.data.hosts import host_batch_size
from ulmfit_jax.core.data.lines import iter_lines

UNK_TOKEN = "<UNK>"
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)


class Vocabulary:
    """Word ids of a biLM's softmax (bilm-tf's vocabulary file).

    Args:
      words: the tokens in id order; must contain `<S>`, `</S>` and `<UNK>` once each.
    """

    def __init__(self, words: Sequence[str]):
        words = list(words)
        missing = [t for t in SPECIAL_TOKENS if t not in words]
        if missing:
            raise ValueError(
                f"the vocabulary lacks the special tokens {missing}: bilm-tf vocabularies hold "
                f"{list(SPECIAL_TOKENS)} (one per line, usually first)"
            )
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}
        if len(self.index) != len(words):
            dup = next(w for w, n in collections.Counter(words).items() if n > 1)
            raise ValueError(f"the vocabulary lists {dup!r} more than once")
        self.bos, self.eos, self.unk = (self.index[t] for t in SPECIAL_TOKENS)

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(
        cls, sentences: Iterable[Sequence[str]], *, min_count: int = 1, max_size: int = 0
    ) -> Vocabulary:
        """The specials, then every word seen at least `min_count` times, most frequent first
        (ties in code-point order, so the file is deterministic).

        Args:
          sentences: tokenized sentences.
          min_count: drop rarer words (they become `<UNK>` targets).
          max_size: keep at most this many entries, specials included (0: no limit).
        """
        counts = collections.Counter(w for s in sentences for w in s)
        for token in SPECIAL_TOKENS:
            counts.pop(token, None)
        if not counts:
            raise ValueError("cannot build a vocabulary from an empty corpus")
        ranked = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        if max_size:
            if max_size <= len(SPECIAL_TOKENS):
                raise ValueError(f"max_size={max_size} leaves no room beside {SPECIAL_TOKENS}")
            ranked = ranked[: max_size - len(SPECIAL_TOKENS)]
        return cls([*SPECIAL_TOKENS, *ranked])

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Vocabulary:
        """Read a bilm-tf vocabulary file (one token per line; `!!!MAXTERMID` is skipped)."""
        with open(path, encoding="utf-8") as f:
            words = [line.strip() for line in f]
        words = [w for w in words if w and w != "!!!MAXTERMID"]
        try:
            return cls(words)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write the bilm-tf vocabulary file."""
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(w + "\n" for w in self.words)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """int32[len(tokens)] ids, `<UNK>` for unknown words (no boundaries added)."""
        get, unk = self.index.get, self.unk
        return np.fromiter((get(t, unk) for t in tokens), np.int32, len(tokens))


def read_sentence_files(paths: Sequence[str | os.PathLike], limit: int = 0) -> list[list[str]]:
    """Whitespace-tokenized sentences, one per non-blank line of UTF-8 files, in file order
    (read by the data layer's plain-text reader, `ulmfit_jax.core.data.lines`: an invalid byte
    becomes U+FFFD rather than stopping a long run, and is reported once per file).

    Blank lines are skipped (bilm-tf would turn one into a `<S> </S>` pair, a target with no
    content). `limit` > 0 keeps the first `limit` sentences.
    """
    if not paths:
        raise ValueError("no training text files given")
    sentences: list[list[str]] = []
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"{path}: not a file")
        for _, line in iter_lines(pathlib.Path(path)):
            tokens = line.split()
            if tokens:
                sentences.append(tokens)
                if limit and len(sentences) >= limit:
                    return sentences
    if not sentences:
        raise ValueError(f"{[str(p) for p in paths]}: no sentences (every line is blank)")
    return sentences


@dataclasses.dataclass(frozen=True)
class EncodedCorpus:
    """Sentences as flat arrays (boundaries included), ready to stream.

    Attributes:
      word_ids: int32[n_tokens], vocabulary ids of `<S> w1 ... wn </S>` per sentence.
      type_ids: int32[n_tokens], rows of `char_table` (the spelling of each token).
      offsets: int64[n_sentences + 1], sentence i is `[offsets[i], offsets[i + 1])`.
      char_table: int32[n_types, max_characters_per_token], character ids (+1 shifted) of each
        distinct spelling; rows 0 and 1 are `<S>` and `</S>`.
    """

    word_ids: np.ndarray
    type_ids: np.ndarray
    offsets: np.ndarray
    char_table: np.ndarray

    @property
    def num_sentences(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_tokens(self) -> int:
        """Predicted tokens per direction: the words and one boundary per sentence."""
        return len(self.word_ids) - self.num_sentences


def encode_corpus(
    sentences: Sequence[Sequence[str]],
    vocab: Vocabulary,
    max_characters_per_token: int = MAX_WORD_LENGTH,
) -> EncodedCorpus:
    """Encode tokenized sentences (without boundaries) for `BidirectionalBatches`."""
    if not sentences:
        raise ValueError("the corpus is empty: no sentences to train or evaluate on")
    mapper = ELMoCharacterMapper(max_characters_per_token)
    types: dict[str, int] = {BOS_TOKEN: 0, EOS_TOKEN: 1}
    n = sum(len(s) + 2 for s in sentences)
    word_ids = np.empty(n, np.int32)
    type_ids = np.empty(n, np.int32)
    offsets = np.zeros(len(sentences) + 1, np.int64)
    pos = 0
    for i, sentence in enumerate(sentences):
        k = len(sentence)
        word_ids[pos] = vocab.bos
        word_ids[pos + 1 : pos + k + 1] = vocab.encode(sentence)
        word_ids[pos + k + 1] = vocab.eos
        type_ids[pos] = 0
        type_ids[pos + 1 : pos + k + 1] = [types.setdefault(w, len(types)) for w in sentence]
        type_ids[pos + k + 1] = 1
        pos += k + 2
        offsets[i + 1] = pos
    char_table = np.stack([mapper.convert_word_to_char_ids(w) for w in types])
    return EncodedCorpus(word_ids, type_ids, offsets, char_table.astype(np.int32))


class BiLMBatch(NamedTuple):
    """One window of both directions.

    Attributes:
      chars: int32[2, B, T, max_characters_per_token], input characters; [0] forward, [1]
        backward, each in its own reading order.
      targets: int32[2, B, T], the next token's vocabulary id.
      negatives: whatever the training loop attaches (sampled softmax candidates), or None.
    """

    chars: np.ndarray
    targets: np.ndarray
    negatives: Any = None

    @property
    def tokens(self) -> np.ndarray:
        """The forward targets: `train_loop` counts tokens/s per direction, as bilm-tf does."""
        return self.targets[0]


class _Stream:
    """One direction: a sentence generator (per-epoch order) feeding B row streams."""

    def __init__(
        self,
        corpus: EncodedCorpus,
        direction: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        repeat: bool,
    ):
        self.corpus, self.direction = corpus, direction
        self.shuffle, self.seed, self.repeat = shuffle, seed, repeat
        self.epoch, self.cursor = 0, 0
        self.row_sentence = np.full(batch_size, -1, np.int64)  # -1: the row needs a sentence
        self.row_offset = np.zeros(batch_size, np.int64)
        self._order_epoch, self._order = -1, None

    def order(self) -> np.ndarray:
        if self._order_epoch != self.epoch:
            n = self.corpus.num_sentences
            if self.shuffle:
                rng = np.random.default_rng([self.seed, self.direction, self.epoch])
                self._order = rng.permutation(n)
            else:
                self._order = np.arange(n)
            self._order_epoch = self.epoch
        return self._order

    def next_sentence(self) -> int | None:
        if self.cursor == self.corpus.num_sentences:
            if not self.repeat:
                return None
            self.epoch, self.cursor = self.epoch + 1, 0
        sentence = int(self.order()[self.cursor])
        self.cursor += 1
        return sentence

    def sentence(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.corpus.offsets[i], self.corpus.offsets[i + 1]
        words, types = self.corpus.word_ids[start:end], self.corpus.type_ids[start:end]
        if self.direction == 1:  # bilm-tf: reverse the words, then `</S>` first, `<S>` last
            return words[::-1], types[::-1]
        return words, types

    def fill(self, unroll_steps: int) -> tuple[np.ndarray, np.ndarray] | None:
        """bilm-tf's `_get_batch` for one direction: (input types, targets) [B, T], or None
        when the (non-repeating) data ran out before the batch was full."""
        batch = len(self.row_sentence)
        inputs = np.zeros((batch, unroll_steps), np.int32)
        targets = np.zeros((batch, unroll_steps), np.int32)
        for row in range(batch):
            pos = 0
            while pos < unroll_steps:
                if self.row_sentence[row] >= 0:
                    words, types = self.sentence(int(self.row_sentence[row]))
                    offset = int(self.row_offset[row])
                if self.row_sentence[row] < 0 or len(words) - offset <= 1:
                    nxt = self.next_sentence()
                    if nxt is None:
                        return None
                    self.row_sentence[row], self.row_offset[row] = nxt, 0
                    words, types = self.sentence(nxt)
                    offset = 0
                n = min(len(words) - offset - 1, unroll_steps - pos)
                inputs[row, pos : pos + n] = types[offset : offset + n]
                targets[row, pos : pos + n] = words[offset + 1 : offset + n + 1]
                pos += n
                self.row_offset[row] = offset + n
        return inputs, targets

    def position(self) -> dict:
        return {
            "epoch": self.epoch,
            "cursor": self.cursor,
            "row_sentence": self.row_sentence.tolist(),
            "row_offset": self.row_offset.tolist(),
        }

    def restore(self, position: dict) -> None:
        if len(position["row_sentence"]) != len(self.row_sentence):
            raise ValueError(
                f"the saved data position has {len(position['row_sentence'])} rows, this run "
                f"{len(self.row_sentence)}: the batch size changed"
            )
        if (
            int(position["cursor"]) > self.corpus.num_sentences
            or max(position["row_sentence"], default=-1) >= self.corpus.num_sentences
        ):
            raise ValueError("the saved data position does not fit this corpus")
        self.epoch, self.cursor = int(position["epoch"]), int(position["cursor"])
        self.row_sentence[:] = position["row_sentence"]
        self.row_offset[:] = position["row_offset"]


class BidirectionalBatches:
    """bilm-tf's `BidirectionalLMDataset.iter_batches`, deterministic and resumable.

    Args:
      corpus: from `encode_corpus`.
      batch_size: rows (independent streams) per batch.
      unroll_steps: tokens per window (truncated BPTT length; bilm-tf's 20).
      shuffle: shuffle the sentence order of each epoch (training); else corpus order.
      seed: the shuffles' seed (the backward stream's shuffle is independent of the forward's).
      repeat: start a new epoch when the sentences run out (training, endless); else stop
        before the first incomplete batch (evaluation).
      position: a `position()` to resume from (None: the start).
      shard_index: this host's index.
      shard_count: number of hosts; must divide `batch_size`.
    """

    def __init__(
        self,
        corpus: EncodedCorpus,
        *,
        batch_size: int,
        unroll_steps: int,
        shuffle: bool = True,
        seed: int = 0,
        repeat: bool = True,
        position: dict | None = None,
        shard_index: int = 0,
        shard_count: int = 1,
    ):
        if batch_size < 1 or unroll_steps < 1:
            raise ValueError(
                f"batch_size ({batch_size}) and unroll_steps ({unroll_steps}) must be positive"
            )
        local_batch_size = host_batch_size(batch_size, shard_index, shard_count)
        self.local_rows = slice(
            shard_index * local_batch_size, (shard_index + 1) * local_batch_size
        )
        if corpus.num_sentences == 0:
            raise ValueError("the corpus is empty: no sentences to stream")
        self.corpus, self.unroll_steps = corpus, unroll_steps
        self.streams = [_Stream(corpus, d, batch_size, shuffle, seed, repeat) for d in range(2)]
        self.batches = 0
        if position is not None:
            for stream, saved in zip(self.streams, position["directions"], strict=True):
                stream.restore(saved)
            self.batches = int(position["batches"])

    def position(self) -> dict:
        """JSON-able position of the next batch."""
        return {"batches": self.batches, "directions": [s.position() for s in self.streams]}

    def batches_per_epoch(self) -> int:
        """Full windows in one pass over the corpus (bilm-tf's `n_train_tokens / (B * T)`)."""
        batch = len(self.streams[0].row_sentence)
        return self.corpus.num_tokens // (batch * self.unroll_steps)

    def __iter__(self) -> BidirectionalBatches:
        return self

    def __next__(self) -> BiLMBatch:
        filled = [s.fill(self.unroll_steps) for s in self.streams]
        if filled[0] is None or filled[1] is None:
            raise StopIteration
        types = np.stack([f[0][self.local_rows] for f in filled])
        targets = np.stack([f[1][self.local_rows] for f in filled])
        self.batches += 1
        return BiLMBatch(self.corpus.char_table[types], targets)
