"""SentencePiece subword tokenization, shaped like fastai's ``SentencePieceTokenizer``.

As in fastai (and MultiFiT, which uses a 15k unigram model), the text first goes through the same
pre-rules as the word tokenizer (``tokenizer.preprocess``: ``xxbos`` in front, ``xxmaj``/``xxup``
markers, lowercasing), and the model is trained with the special tokens as user-defined symbols
(``▁xxbos``, ``▁xxmaj``, ...) so that they are never split, ``<unk>`` right after them, and no
pad/bos/eos pieces. Trained on the same texts with the same options, the model and its pieces are
fastai's (checked in ``tests/test_tokenizer.py``).

A tokenizer holds the serialized model (bytes), so it pickles to worker processes without a file
and its cache key is the model's hash.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
from collections.abc import Iterable, Sequence

from ulmfit_jax.core.paths import atomic_writer
from ulmfit_jax.text.tokenizer import RULES_VERSION, SPECIAL_TOKENS, as_texts, preprocess

# fastai's `eu_langs`: these get a higher character coverage by default.
EU_LANGS = frozenset(
    "bg cs da de el en es et fi fr ga hr hu it lt lv mt nl pl pt ro sk sl sv".split()
)


def default_vocab_size(texts: Iterable[str], max_vocab_size: int = 30000) -> int:
    """fastai's vocabulary size when none is given: a quarter of the distinct words.

    Rounded up to a multiple of 8, at least 29, at most ``max_vocab_size`` (which wins when the
    quarter exceeds it).

    Args:
      texts: the pre-processed training texts.
      max_vocab_size: the cap.
    """
    words: set[str] = set()
    for text in texts:
        words.update(text.split())
    quarter = len(words) // 4
    if quarter > max_vocab_size:
        return max_vocab_size
    return max(-(-quarter // 8) * 8, 29)


class SentencePieceTokenizer:
    """Encodes documents to SentencePiece pieces after fastai's pre-rules.

    Build one with ``SentencePieceTokenizer.train(texts, ...)`` or ``.load(path)``.
    """

    def __init__(self, model_proto: bytes):
        """Wraps a serialized SentencePiece model (the bytes of a ``.model`` file)."""
        import sentencepiece

        self.model_proto = bytes(model_proto)
        self._sp = sentencepiece.SentencePieceProcessor(model_proto=self.model_proto)

    @classmethod
    def train(
        cls,
        texts: Sequence[str | bytes],
        *,
        vocab_size: int | None = None,
        max_vocab_size: int = 30000,
        model_type: str = "unigram",
        character_coverage: float | None = None,
        lang: str = "en",
        special_tokens: Sequence[str] = SPECIAL_TOKENS,
        errors: str = "strict",
    ) -> SentencePieceTokenizer:
        """Trains a model on ``texts`` with fastai's options.

        Args:
          texts: the training documents (raw; the pre-rules are applied here).
          vocab_size: pieces wanted (e.g. 15000 as in MultiFiT); ``None`` uses fastai's
            ``default_vocab_size``. It is a soft limit (``hard_vocab_limit=false``), as in fastai.
          max_vocab_size: the cap of the default size.
          model_type: ``'unigram'`` (fastai's default) or ``'bpe'``, ``'char'``, ``'word'``.
          character_coverage: ``None`` gives fastai's 0.99999 for European languages, else 0.9998.
          lang: only chooses the default coverage.
          special_tokens: kept whole as user-defined symbols ``'▁' + token``.
          errors: the UTF-8 error policy for ``bytes`` documents (see ``tokenizer.as_texts``).

        Returns:
          The trained tokenizer.
        """
        import sentencepiece

        lines = [preprocess(t) for t in as_texts(texts, errors)]
        if vocab_size is None:
            vocab_size = default_vocab_size(lines, max_vocab_size)
        if character_coverage is None:
            character_coverage = 0.99999 if lang in EU_LANGS else 0.9998
        with tempfile.TemporaryDirectory() as tmp:
            # One text per line, as fastai writes its training file (a text's own newlines make
            # more lines there too).
            corpus = pathlib.Path(tmp, "texts.txt")
            corpus.write_text("".join(f"{t}\n" for t in lines), encoding="utf-8")
            sentencepiece.SentencePieceTrainer.train(
                input=str(corpus),
                vocab_size=vocab_size,
                model_prefix=str(pathlib.Path(tmp, "spm")),
                character_coverage=character_coverage,
                model_type=model_type,
                unk_id=len(special_tokens),
                pad_id=-1,
                bos_id=-1,
                eos_id=-1,
                minloglevel=2,
                user_defined_symbols=["▁" + s for s in special_tokens],
                hard_vocab_limit=False,
            )
            return cls(pathlib.Path(tmp, "spm.model").read_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SentencePieceTokenizer:
        """Loads a ``.model`` file (ours or fastai's ``spm.model``)."""
        return cls(pathlib.Path(path).read_bytes())

    def save(self, path: str | os.PathLike) -> None:
        """Writes the ``.model`` file atomically (temporary file, then rename)."""
        with atomic_writer(path) as file:
            file.write(self.model_proto)

    @property
    def pieces(self) -> list[str]:
        """Every piece of the model, in id order."""
        return [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]

    def __len__(self) -> int:
        return self._sp.get_piece_size()

    def __call__(self, texts: Sequence[str | bytes], errors: str = "strict") -> list[list[str]]:
        """Pre-processes and encodes documents to pieces (fastai's ``EncodeAsPieces``).

        Args:
          texts: the documents, ``str`` or UTF-8 ``bytes``.
          errors: the UTF-8 error policy for ``bytes`` documents.

        Returns:
          One list of pieces per document; each starts with ``'▁xxbos'``.
        """
        texts = [preprocess(t) for t in as_texts(texts, errors)]
        return self._sp.encode(texts, out_type=str)

    def cache_settings(self) -> dict:
        """What determines the pieces, for ``token_cache`` keys."""
        import sentencepiece

        return {
            "kind": "sentencepiece+fastai-rules",
            "rules_version": RULES_VERSION,
            "model_sha256": hashlib.sha256(self.model_proto).hexdigest(),
            "sentencepiece": sentencepiece.__version__,
        }

    def __getstate__(self) -> dict:
        return {"model_proto": self.model_proto}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model_proto"])
