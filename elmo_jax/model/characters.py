"""Tokens to character ids, exactly as AllenNLP's `ELMoCharacterMapper` and bilm-tf's `Batcher`.

A token becomes `max_word_length` (50) ids: begin-of-word, the token's UTF-8 bytes truncated to
48, end-of-word, then padding; every id is shifted by +1 so that 0 marks a padded *token* (a row of
zeros). The literal tokens `<S>` and `</S>` map to the sentence-boundary ids; the model adds those
boundary tokens itself, so inputs normally do not contain them.

    >>> ids = batch_to_ids([["Hello", "world"], ["Hi"]])
    >>> ids.shape, ids.dtype.name, int(ids[1, 1].max())
    ((2, 2, 50), 'int32', 0)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

MAX_WORD_LENGTH = 50

# Ids 0..255 are UTF-8 bytes; the specials follow (before the +1 shift).
BEGINNING_OF_SENTENCE_CHARACTER = 256
END_OF_SENTENCE_CHARACTER = 257
BEGINNING_OF_WORD_CHARACTER = 258
END_OF_WORD_CHARACTER = 259
PADDING_CHARACTER = 260

BOS_TOKEN = "<S>"
EOS_TOKEN = "</S>"


def _special_word(character: int, max_word_length: int) -> np.ndarray:
    ids = np.full(max_word_length, PADDING_CHARACTER, np.int32)
    ids[0] = BEGINNING_OF_WORD_CHARACTER
    ids[1] = character
    ids[2] = END_OF_WORD_CHARACTER
    return ids + 1


class ELMoCharacterMapper:
    """Maps a token to its `int32[max_word_length]` character ids (already shifted by +1).

    Args:
      max_word_length: ids per token, including begin/end of word (options'
        `max_characters_per_token`; 50 for every released model).
      tokens_to_add: optional special tokens mapped to one chosen character id each (AllenNLP's
        `tokens_to_add`; with pretrained weights use an id below 261, e.g. an unused byte 1..32).
    """

    def __init__(
        self, max_word_length: int = MAX_WORD_LENGTH, tokens_to_add: dict[str, int] | None = None
    ) -> None:
        if max_word_length < 3:
            raise ValueError(f"max_word_length must be at least 3, got {max_word_length}")
        self.max_word_length = max_word_length
        self.tokens_to_add = dict(tokens_to_add or {})
        for token, char in self.tokens_to_add.items():
            # Out-of-range ids would silently read past the embedding table (NaN or clamped).
            if not 0 <= char <= PADDING_CHARACTER:
                raise ValueError(
                    f"tokens_to_add[{token!r}] = {char}: character ids must be in "
                    f"0..{PADDING_CHARACTER}"
                )
        self.bos_ids = _special_word(BEGINNING_OF_SENTENCE_CHARACTER, max_word_length)
        self.eos_ids = _special_word(END_OF_SENTENCE_CHARACTER, max_word_length)
        # Mappers are reused across a whole corpus: memoise the per-token Python loop.
        self._cached = functools.lru_cache(maxsize=1 << 18)(self._convert)

    def convert_word_to_char_ids(self, word: str) -> np.ndarray:
        """int32[max_word_length] ids for `word` (a read-only array shared between calls)."""
        return self._cached(word)

    def _convert(self, word: str) -> np.ndarray:
        if word in self.tokens_to_add:
            ids = _special_word(self.tokens_to_add[word], self.max_word_length)
        elif word == BOS_TOKEN:
            ids = self.bos_ids.copy()
        elif word == EOS_TOKEN:
            ids = self.eos_ids.copy()
        else:
            # "ignore" drops what UTF-8 cannot encode (lone surrogates), as the references do;
            # the byte truncation may cut a multi-byte character in half, as theirs does.
            encoded = word.encode("utf-8", "ignore")[: self.max_word_length - 2]
            ids = np.full(self.max_word_length, PADDING_CHARACTER, np.int32)
            ids[0] = BEGINNING_OF_WORD_CHARACTER
            ids[1 : len(encoded) + 1] = np.frombuffer(encoded, np.uint8)
            ids[len(encoded) + 1] = END_OF_WORD_CHARACTER
            ids += 1
        ids.flags.writeable = False
        return ids


@functools.lru_cache(maxsize=8)
def default_mapper(max_word_length: int = MAX_WORD_LENGTH) -> ELMoCharacterMapper:
    """A shared mapper (and its memo) per word length."""
    return ELMoCharacterMapper(max_word_length)


def batch_to_ids(
    sentences: Sequence[Sequence[str]],
    max_word_length: int = MAX_WORD_LENGTH,
    *,
    pad_to: int | None = None,
    mapper: ELMoCharacterMapper | None = None,
) -> np.ndarray:
    """Character ids for a batch of tokenized sentences (AllenNLP's `elmo.batch_to_ids`).

    Args:
      sentences: the tokens of each sentence; sentences may be empty.
      max_word_length: ids per token (50).
      pad_to: pad the time axis to this many tokens instead of the longest sentence (to bound
        the number of compiled shapes); must be at least the longest sentence.
      mapper: a custom mapper (e.g. with `tokens_to_add`).

    Returns:
      int32[batch, max_len, max_word_length], all-zero rows past each sentence's end.
    """
    mapper = mapper or default_mapper(max_word_length)
    longest = max((len(s) for s in sentences), default=0)
    time = longest if pad_to is None else pad_to
    if time < longest:
        raise ValueError(f"pad_to={pad_to} is shorter than the longest sentence ({longest})")
    out = np.zeros((len(sentences), time, mapper.max_word_length), np.int32)
    for b, sentence in enumerate(sentences):
        if isinstance(sentence, str):
            raise TypeError("sentences must be lists of tokens, not strings; split them first")
        for t, token in enumerate(sentence):
            out[b, t] = mapper.convert_word_to_char_ids(token)
    return out
