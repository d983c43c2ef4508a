"""Text generation from a language model: fastai's `LMLearner.predict(text, n_words, ...)`.

    lm = LanguageModelPredictor.from_workdir("runs/finetune_lm")   # or .from_fastai(pth, itos)
    lm.predict("I liked this movie because", n_words=20, temperature=0.75)  # prompt + words
    lm.generate("I liked this movie because", n_words=20, seed=1)   # the continuation only

What fastai 2.8 does (`fastai/text/learner.py`), and so this module:

* the prompt goes through the tokenizer's single-string path (`Tokenizer._tokenize1`: the
  pre-rules, `xxbos` in front, spaCy, no `replace_space` post-rule) and is numericalized with the
  training vocabulary (unknown words become `xxunk`);
* each next token is drawn from the model's softmax with `xxunk` removed (`no_unk=True`), the
  probabilities below `min_p` removed when any reach it, and the rest raised to
  `1 / temperature`: the same as sampling `logits / temperature`;
* the text is every token but `xxbos` and `xxpad`, decoded by `decode_spec_tokens` and joined
  with spaces.

fastai recomputes the whole sequence from a reset state for each word; an LSTM is causal, so
feeding one token per step with the carried state gives the same probabilities. Here one jitted
function (one compilation per model, whatever the prompt length or the options) takes a token
and the state and returns the next token. Additions: `xxpad` is never drawn either
(`no_pad=True`; fastai only drops it from the text), `top_k`, a `seed` (`jax.random`), and
`temperature=0` for greedy (argmax) decoding.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ulmfit_jax.models import awd_lstm
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.text import tokenizer as tok
from ulmfit_jax.text.vocab import Vocab

_DECODE_RULES = (tok.TK_MAJ, tok.TK_UP, tok.TK_REP, tok.TK_WREP)


def tokenize_prompt(text: str) -> list[str]:
    """fastai's `Tokenizer(...)(text)` on one string (what `learn.predict` does): the default
    pre-rules and spaCy, without the batch path's `replace_space` post-rule."""
    (text,) = tok.as_texts([text])
    spacy_tok = tok._spacy_tokenizer("en", tok.SPECIAL_TOKENS)
    tokens: list[str] = []
    for piece in tok.split_for_spacy(tok.preprocess(text), 100_000):
        tokens += [t.text for t in spacy_tok(piece)]
    return tokens


def decode_spec_tokens(tokens: Sequence[str]) -> list[str]:
    """fastai's `decode_spec_tokens`, quirks included.

    `xxmaj w` -> `W`, `xxup w` -> `W` uppercased, `xxrep n c` -> `c * n`, `xxwrep n w` ->
    `n` copies of `w`; a non-integer count drops the token after it. As in fastai, after an
    `xxrep`/`xxwrep` the rule and count are never reset, so every later token is repeated too
    until the next rule token.
    """
    out: list[str] = []
    rule, arg = None, None
    for t in tokens:
        if t in _DECODE_RULES:
            rule = t
        elif rule is None:
            out.append(t)
        elif rule == tok.TK_MAJ:
            out.append(t[:1].upper() + t[1:].lower())
            rule = None
        elif rule == tok.TK_UP:
            out.append(t.upper())
            rule = None
        elif arg is None:
            try:
                arg = int(t)
            except ValueError:
                rule = None
        elif rule == tok.TK_REP:
            out.append(t * arg)
        else:
            out += [t] * arg
    return out


def detokenize(tokens: Sequence[str], sep: str = " ") -> str:
    """fastai's text of a token sequence: drop `xxbos` and `xxpad`, `decode_spec_tokens`,
    join with `sep` (the tokenizer's, a space)."""
    return sep.join(decode_spec_tokens([t for t in tokens if t not in (tok.BOS, tok.PAD)]))


@functools.partial(jax.jit, static_argnames="config")
def _next_token(params, config, state, token, key, banned, temperature, top_k, min_p):
    """One step: feed `token` int32[] with `state`; returns `(next int32[], state)`.

    banned: bool[vocab]; temperature: float32[] (<= 0: argmax); top_k: int32[] (0: off);
    min_p: float32[] (0: off).
    """
    logits, state = awd_lstm.lm_apply(params, config, token.reshape(1, 1), state)
    logits = logits[0, -1].astype(jnp.float32)
    probs = jax.nn.softmax(logits)  # fastai's min_p compares these, before removing xxunk
    neg = jnp.float32(-jnp.inf)
    logits = jnp.where(banned, neg, logits)
    keep = (probs >= min_p) & ~banned
    logits = jnp.where((min_p > 0) & jnp.any(keep), jnp.where(keep, logits, neg), logits)
    kth = jnp.sort(logits)[::-1][jnp.clip(top_k, 1, logits.shape[0]) - 1]
    logits = jnp.where((top_k > 0) & (logits < kth), neg, logits)
    greedy = jnp.argmax(logits)
    scaled = logits / jnp.maximum(temperature, jnp.float32(1e-30))
    sampled = jax.random.categorical(key, jnp.where(jnp.isfinite(logits), scaled, neg))
    return jnp.where(temperature > 0, sampled, greedy).astype(jnp.int32), state


class LanguageModelPredictor:
    """A language model ready to continue raw text (fastai's `LMLearner.predict`).

    Args:
      params: the LM parameters (`init_lm_params` layout).
      config: its `AWDLSTMConfig` (dropouts are not used: inference).
      vocab: the training vocabulary (`Vocab` or its list of tokens).
    """

    def __init__(self, params: dict[str, Any], config: AWDLSTMConfig, vocab: Vocab | Sequence):
        vocab = vocab if isinstance(vocab, Vocab) else Vocab(vocab)
        if len(vocab) != config.vocab_size:
            raise ValueError(
                f"vocabulary of {len(vocab)} tokens does not match the model's {config.vocab_size}"
            )
        self.params = jax.device_put(params)
        self.config, self.vocab = config, vocab

    @classmethod
    def from_workdir(cls, workdir: str | Path) -> LanguageModelPredictor:
        """The LM exported by a finished `pretrain` or `finetune_lm` stage."""
        from ulmfit_jax.weights.export import load_lm

        params, config, vocab, meta = load_lm(workdir)
        if meta.get("backward"):
            raise ValueError(f"{workdir} holds a backward language model: it cannot continue text")
        return cls(params, config, vocab)

    @classmethod
    def from_fastai(cls, pth_path: str | Path, itos_path: str | Path) -> LanguageModelPredictor:
        """A fastai AWD-LSTM LM (`.pth` state dict + `itos.pkl`, e.g. WT103's)."""
        from ulmfit_jax.weights.fastai import load_fastai_lm

        params, config, itos = load_fastai_lm(pth_path, itos_path)
        return cls(params, config, itos)

    def encode(self, text: str) -> np.ndarray:
        """int32[n]: the prompt's ids (single-string tokenization, `tokenize_prompt`)."""
        return self.vocab.numericalize(tokenize_prompt(text))

    def _banned(self, no_unk: bool, no_pad: bool) -> np.ndarray:
        banned = np.zeros(self.config.vocab_size, bool)
        for token, on in ((tok.UNK, no_unk), (tok.PAD, no_pad)):
            if on and token in self.vocab:
                banned[self.vocab.stoi[token]] = True
        return banned

    def generate_ids(
        self,
        ids: Sequence[int] | np.ndarray,
        n_words: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        min_p: float | None = None,
        seed: int = 0,
        no_unk: bool = True,
        no_pad: bool = True,
    ) -> np.ndarray:
        """int32[n_words]: the ids drawn after the prompt `ids` int[n] (n >= 1).

        Args:
          temperature: sampling temperature; 0 (or below) decodes greedily (argmax).
          top_k: sample among the k most likely tokens only (None: all).
          min_p: fastai's: drop tokens of probability below it (ignored when none reach it).
          seed: the `jax.random` seed: the same seed draws the same words.
          no_unk, no_pad: never draw `xxunk` / `xxpad`.
        """
        ids = np.asarray(ids, np.int32).reshape(-1)
        if ids.size == 0:
            raise ValueError("the prompt has no tokens (even an empty text gives xxbos)")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        if n_words < 0:
            raise ValueError(f"n_words must be >= 0, got {n_words}")
        options = (
            jnp.asarray(self._banned(no_unk, no_pad)),
            jnp.float32(temperature),
            jnp.int32(top_k or 0),
            jnp.float32(min_p or 0.0),
        )
        key = jax.random.key(seed)
        state = awd_lstm.zero_state(self.config, 1)
        token = None
        for t in ids.tolist():  # the prompt; its last step draws the first word
            token, state = _next_token(self.params, self.config, state, jnp.int32(t), key, *options)
        out: list[int] = []
        for i in range(n_words):
            out.append(int(token))
            if i + 1 < n_words:
                step_key = jax.random.fold_in(key, i + 1)
                token, state = _next_token(
                    self.params, self.config, state, token, step_key, *options
                )
        return np.asarray(out, np.int32)

    def generate(self, prompt: str, n_words: int, **kwargs) -> str:
        """The text of the `n_words` tokens drawn after `prompt` (decoded on their own); the
        options are `generate_ids`'."""
        new = self.generate_ids(self.encode(prompt), n_words, **kwargs)
        return detokenize(self.vocab.denumericalize(new))

    def predict(self, text: str, n_words: int = 1, **kwargs) -> str:
        """fastai's `learn.predict(text, n_words, ...)`: the prompt and its continuation as one
        decoded text (the options are `generate_ids`')."""
        ids = self.encode(text)
        new = self.generate_ids(ids, n_words, **kwargs)
        return detokenize(self.vocab.denumericalize(np.concatenate([ids, new])))


def generate(
    params: dict[str, Any],
    config: AWDLSTMConfig,
    vocab: Vocab | Sequence[str],
    prompt: str,
    n_words: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    **kwargs,
) -> str:
    """`LanguageModelPredictor(params, config, vocab).generate(prompt, n_words, ...)`."""
    return LanguageModelPredictor(params, config, vocab).generate(
        prompt, n_words, temperature=temperature, top_k=top_k, seed=seed, **kwargs
    )
