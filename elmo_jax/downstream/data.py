"""Labelled sentences for the ELMo sentence program: tables or local formats, tokenized.

Where the documents come from is `ulmfit_jax.core.data.classification` (shared with ULMFiT):
CSV/TSV/JSONL tables with named `data.text_fields` and `data.label_field` (read by
`read_table`), or any labelled local format (`trec` `.label` files, `sst`/`sst2` trees, class
folders); validation is `data.valid_col`, else `data.valid_split`, else a seeded
`data.valid_pct` of train; labels are encoded by name (`LabelEncoder`, fitted on train). Several
text fields are joined fastai-style (`xxfld 1 ... xxfld 2 ...`), so the biLM sees the field
marks as words.

Tokenizers (`data.tokenizer`):

    "spacy"       spaCy's rule-based English tokenizer (`spacy.blank("en")`, no model download),
                  whitespace tokens dropped: AllenNLP's default `SpacyTokenizer` splits the same
                  way (its `en_core_web_sm` tokenizer uses the same English rules)
    "whitespace"  `str.split()`, for text that is already tokenized
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

TOKENIZERS = ("spacy", "whitespace")


@functools.lru_cache(maxsize=2)
def _spacy(lang: str):
    import spacy

    return spacy.blank(lang).tokenizer


def tokenizer(kind: str = "spacy", lang: str = "en") -> Callable[[str], list[str]]:
    """A text -> tokens function (module docstring)."""
    if kind == "whitespace":
        return str.split
    if kind != "spacy":
        raise ValueError(f"data.tokenizer must be one of {TOKENIZERS}, got {kind!r}")
    spacy_tokenizer = _spacy(lang)

    def tokenize(text: str) -> list[str]:
        return [t.text for t in spacy_tokenizer(text) if not t.is_space]

    return tokenize


def tokenize_all(texts: Sequence[str], kind: str = "spacy") -> list[list[str]]:
    """Every text tokenized with `tokenizer(kind)`."""
    tokenize = tokenizer(kind)
    return [tokenize(t) for t in texts]
