"""AllenNLP's `ElmoEmbedder` in Python: tokenized sentences in, numpy arrays of biLM layers out.

    embedder = ElmoEmbedder("options.json", "weights.hdf5")   # or ElmoEmbedder(model="small")
    vectors = embedder.embed_sentence(["The", "cat", "sat", "."])      # float32[3, 4, 1024]
    many = embedder.embed_sentences(sentences, batch_size=64)          # a list, input order
    embedder.embed_file("sentences.txt", "out.hdf5")                   # `elmo-jax embed`

or, functionally, `embed_sentences(params, config, sentences)` / `embed_sentence(params, config,
tokens)` with the `(params, config)` of `load_allennlp` / `load_pretrained`.

Shapes are AllenNLP's: `[num_output_layers, n_tokens, 2 * projection_dim]` per sentence (3 layers
and 1024 wide for the released "original" model), `<S>`/`</S>` removed; an empty sentence gives
`[3, 0, 1024]`. `layers="top"` / `"average"` give `[n_tokens, D]` (the `--top` / `--average` of
`allennlp elmo`).

One difference, deliberate: AllenNLP's embedder keeps the biLM state from batch to batch and
call to call (results depend on what was embedded before). Here every sentence starts from the
zero state (stateless, reproducible, batched by length); `stateful=True` gives AllenNLP's
within-call behaviour (input order, row r of a batch continues row r of the previous batch),
each call starting from zeros.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from elmo_jax.embedding.files import Embedder, embed_batches, embed_file
from elmo_jax.model.config import BiLMConfig

Params = dict
DEFAULT_BATCH_SIZE = 64  # AllenNLP's


def embed_sentences(
    params: Params,
    config: BiLMConfig,
    sentences: Iterable[Sequence[str]],
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    layers: str = "all",
    stateful: bool = False,
) -> list[np.ndarray]:
    """The biLM layers of each tokenized sentence, in input order.

    Args:
      params, config: the biLM.
      sentences: tokenized sentences (lists of strings).
      batch_size: sentences per biLM call.
      layers: "all" (float32[L, n_tokens, D] each), "top" or "average" ([n_tokens, D]).
      stateful: AllenNLP's carried state within this call (module docstring).

    Returns:
      One numpy array per sentence.
    """
    sentences = [list(s) for s in sentences]
    for s in sentences:
        if isinstance(s, str) or not all(isinstance(t, str) for t in s):
            raise ValueError("sentences must be lists of token strings, e.g. ['The', 'cat']")
    out: list[np.ndarray | None] = [None] * len(sentences)
    embedder = Embedder(params, config, layers)
    for i, vectors in embed_batches(embedder, sentences, batch_size=batch_size, stateful=stateful):
        out[i] = vectors
    return out


def embed_sentence(
    params: Params, config: BiLMConfig, tokens: Sequence[str], *, layers: str = "all"
) -> np.ndarray:
    """The biLM layers of one tokenized sentence: float32[L, n_tokens, D] (`embed_sentences`)."""
    if isinstance(tokens, str):
        raise ValueError("tokens must be a list of strings; use text.split() for a sentence")
    return embed_sentences(params, config, [tokens], 1, layers=layers)[0]


class ElmoEmbedder:
    """AllenNLP's `allennlp.commands.elmo.ElmoEmbedder`, on this project's biLM.

    Args:
      options_file, weight_file: the biLM's files (paths or addresses).
      model: instead, a released model name (`elmo_jax.weights.pretrained`); when neither is
        given, "original", AllenNLP's default.
      params, config: instead, a biLM already loaded.
      layers: "all", "top" or "average".
      stateful: module docstring.
    """

    def __init__(
        self,
        options_file: str | os.PathLike | None = None,
        weight_file: str | os.PathLike | None = None,
        *,
        model: str | None = None,
        params: Params | None = None,
        config: BiLMConfig | None = None,
        layers: str = "all",
        stateful: bool = False,
    ) -> None:
        if (params is None) != (config is None):
            raise ValueError("give both params and config, or neither")
        if (options_file is None) != (weight_file is None):
            raise ValueError("give both options_file and weight_file, or neither")
        if params is None:
            if options_file is not None:
                from elmo_jax.weights.allennlp import load_allennlp

                params, config = load_allennlp(options_file, weight_file)
            else:
                from elmo_jax.weights.pretrained import load_pretrained

                params, config = load_pretrained(model or "original")
        self.params, self.config = params, config
        self.layers, self.stateful = layers, stateful

    def embed_sentence(self, sentence: Sequence[str]) -> np.ndarray:
        """float32[L, n_tokens, D] for one tokenized sentence."""
        return self.embed_batch([sentence])[0]

    def embed_batch(self, batch: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """One array per sentence of `batch`, run as one batch."""
        return self.embed_sentences(batch, batch_size=max(1, len(batch)))

    def embed_sentences(
        self, sentences: Iterable[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> list[np.ndarray]:
        """One array per sentence, in input order (`embed_sentences`)."""
        return embed_sentences(
            self.params,
            self.config,
            sentences,
            batch_size,
            layers=self.layers,
            stateful=self.stateful,
        )

    def embed_file(
        self,
        input_file: str | os.PathLike,
        output_file_path: str | os.PathLike,
        output_format: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        forget_sentences: bool = False,
        use_sentence_keys: bool = False,
    ) -> None:
        """AllenNLP's `embed_file` (see `elmo_jax.embedding.files`); `output_format` is
        "all", "top" or "average" (default: this embedder's `layers`)."""
        embed_file(
            self.params,
            self.config,
            input_file,
            output_file_path,
            layers=output_format or self.layers,
            batch_size=batch_size,
            stateful=self.stateful,
            forget_sentences=forget_sentences,
            use_sentence_keys=use_sentence_keys,
        )
