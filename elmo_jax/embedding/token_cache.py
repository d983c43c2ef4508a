"""A token-embedding cache: the character CNN run once per distinct word (AllenNLP's
`vocab_to_cache`, bilm-tf's `dump_token_embeddings` + `TokenBatcher`).

The character CNN, highway and projection are context-independent and, for the released models,
cost more than the biLSTM itself (~34 MFLOP per token against ~10 for the small model). The cache
keeps a table `float[rows, projection_dim]` with row 0 the padding token (zeros), row 1 `<S>`,
row 2 `</S>`, then one row per word; a batch becomes a table lookup on the host and the biLSTM
(`bilm_apply_embedded`) runs on the result. Words not in the table are embedded on first sight
(in fixed-size chunks, so one compiled shape) and kept, unless `grow=False`, where they raise.

    cache = TokenEmbeddingCache(params, config, vocab=words)
    emb, mask = cache.embed([["The", "cat"], ["Hi"]])          # float[2, 4, P], bool[2, 4]
    layers, mask, state = bilm_apply_embedded(params, config, emb, mask)

The lookups equal the character CNN's outputs to float rounding (the CNN runs on other batch
shapes), so results match `bilm_apply` within ~1e-6.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import h5py
import jax
import numpy as np

from elmo_jax.model.char_cnn import char_cnn_apply
from elmo_jax.model.characters import BOS_TOKEN, EOS_TOKEN, ELMoCharacterMapper
from elmo_jax.model.config import BiLMConfig

Params = dict

_BOS_ROW, _EOS_ROW, _FIRST_WORD_ROW = 1, 2, 3


class TokenEmbeddingCache:
    """Character-CNN outputs for a growing vocabulary.

    Args:
      params: the biLM parameters (`params["char_cnn"]` is used).
      config: the model config.
      vocab: words to precompute now (duplicates and `<S>`/`</S>` are fine).
      grow: embed unseen words on demand (True) or raise KeyError for them (False).
      chunk: tokens per char-CNN call; the only compiled shape.
    """

    def __init__(
        self,
        params: Params,
        config: BiLMConfig,
        vocab: Iterable[str] = (),
        *,
        grow: bool = True,
        chunk: int = 1024,
    ) -> None:
        self.config = config
        self.grow = grow
        self.chunk = chunk
        self._cnn_params = params["char_cnn"]
        self._mapper = ELMoCharacterMapper(config.max_characters_per_token)
        self._cnn = jax.jit(char_cnn_apply, static_argnums=1)
        self._table = np.zeros((max(4 * _FIRST_WORD_ROW, 1024), config.projection_dim), np.float32)
        self._rows = 1  # row 0 is the zero padding row
        self._index: dict[str, int] = {}
        self._add([BOS_TOKEN, EOS_TOKEN])  # rows 1 and 2
        self.add(vocab)

    # ---- building ---------------------------------------------------------------------------
    def add(self, words: Iterable[str]) -> None:
        """Embed the words not yet in the cache."""
        new = list(dict.fromkeys(w for w in words if w not in self._index))
        self._add(new)

    def _add(self, words: list[str]) -> None:
        for start in range(0, len(words), self.chunk):
            part = words[start : start + self.chunk]
            ids = np.zeros((self.chunk, self.config.max_characters_per_token), np.int32)
            for i, word in enumerate(part):
                ids[i] = self._mapper.convert_word_to_char_ids(word)
            emb = np.asarray(self._cnn(self._cnn_params, self.config, ids))[: len(part)]
            self._reserve(self._rows + len(part))
            self._table[self._rows : self._rows + len(part)] = emb
            for i, word in enumerate(part):
                self._index[word] = self._rows + i
            self._rows += len(part)

    def _reserve(self, rows: int) -> None:
        if rows > self._table.shape[0]:
            capacity = max(rows, 2 * self._table.shape[0])
            bigger = np.zeros((capacity, self._table.shape[1]), np.float32)
            bigger[: self._rows] = self._table[: self._rows]
            self._table = bigger

    # ---- lookups ----------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of cached words (the two sentence boundaries included)."""
        return len(self._index)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    @property
    def table(self) -> np.ndarray:
        """float[rows, projection_dim]: padding row 0, `<S>`, `</S>`, then the words."""
        return self._table[: self._rows]

    def ids(self, sentences: Sequence[Sequence[str]], pad_to: int | None = None) -> np.ndarray:
        """int32[B, T + 2] row ids with the boundaries added (0 = padding).

        Args:
          sentences: tokenized sentences, without `<S>`/`</S>`.
          pad_to: pad to this many tokens (boundaries excluded) instead of the longest.
        """
        if self.grow:
            self.add(w for s in sentences for w in s)
        longest = max((len(s) for s in sentences), default=0)
        time = longest if pad_to is None else pad_to
        if time < longest:
            raise ValueError(f"pad_to={pad_to} is shorter than the longest sentence ({longest})")
        out = np.zeros((len(sentences), time + 2), np.int32)
        for b, sentence in enumerate(sentences):
            try:
                out[b, 1 : len(sentence) + 1] = [self._index[w] for w in sentence]
            except KeyError as e:
                word = e.args[0]
                raise KeyError(f"word {word!r} is not in the token cache (grow=False)") from None
            out[b, 0] = _BOS_ROW
            out[b, len(sentence) + 1] = _EOS_ROW
        return out

    def embed(
        self, sentences: Sequence[Sequence[str]], pad_to: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Token embeddings with boundaries, ready for `bilm_apply_embedded`.

        Returns:
          `(embedding, mask)`: float32[B, T + 2, projection_dim], bool[B, T + 2].
        """
        ids = self.ids(sentences, pad_to)
        lengths = np.array([len(s) + 2 for s in sentences], np.int32)
        mask = np.arange(ids.shape[1])[None, :] < lengths[:, None]
        return self._table[ids], mask

    # ---- files ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, words: Sequence[str]) -> None:
        """Write `words`' embeddings as bilm-tf's `dump_token_embeddings` does: one dataset
        "embedding" float32[len(words), projection_dim], in the order given."""
        self.add(words)
        rows = np.array([self._index[w] for w in words], np.int64)
        with h5py.File(path, "w") as fout:
            fout.create_dataset("embedding", data=self._table[rows])
