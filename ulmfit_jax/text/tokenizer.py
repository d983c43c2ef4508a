"""fastai's default word tokenizer: its text rules around spaCy's blank English tokenizer.

fastai v2 tokenizes with ``TokenizeWithRules(SpacyTokenizer())`` (the path of ``tokenize_texts``,
``tokenize_df`` and ``tokenize_folder``, hence of ``TextDataLoaders`` and of the WT103 vocabulary):

1. the pre-rules, in order, on the raw string: ``fix_html``, ``replace_rep``, ``replace_wrep``,
   ``spec_add_spaces``, ``rm_useless_spaces``, ``replace_all_caps``, ``replace_maj``,
   ``lowercase`` (which also puts ``xxbos`` in front);
2. ``spacy.blank('en')``'s tokenizer, with each special token added as a special case so that
   spaCy never splits it;
3. the post-rule ``replace_space`` on every token (a space inside a token becomes ``▁``).

This module re-implements those rules from their documented behaviour and checks the result
token for token against fastai on real text (``tests/test_tokenizer.py``). fastai's
``Tokenizer`` transform applied to one string (``Tokenizer._tokenize1``, e.g. in
``learn.predict``) skips the post-rule, so there a whitespace token holding a space stays
``'\\n '`` where the batch path, and this module, give ``'\\n▁'``.

Bad input, by policy:

* empty or blank documents give ``['xxbos']``, exactly as fastai;
* ``bytes`` documents are decoded as UTF-8 with ``errors`` (``'strict'`` by default, which raises a
  ``ValueError`` naming the document index and byte offset; ``'replace'`` substitutes U+FFFD);
* anything else that is not ``str`` raises ``TypeError`` naming the index, and so does passing one
  bare ``str`` instead of a list of documents;
* a ``str`` holding a lone surrogate (spaCy cannot encode it) raises ``ValueError`` naming it;
* documents longer than ``max_chunk_chars`` are tokenized in pieces cut at whitespace, at places
  where spaCy's result cannot change, so a document of millions of characters works (fastai raises
  spaCy's ``nlp.max_length`` error there) and gives the tokens spaCy would give in one piece.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import re
from collections.abc import Callable, Iterable, Iterator, Sequence

# fastai v2's special tokens, in the order that puts them first in every vocabulary.
UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ = (
    "xxunk xxpad xxbos xxeos xxfld xxrep xxwrep xxup xxmaj".split()
)
SPECIAL_TOKENS: tuple[str, ...] = (UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ)

# Bumped whenever a change here could change a token, so that on-disk caches keyed on the
# tokenizer's settings miss instead of serving stale tokens.
RULES_VERSION = 1

DECODE_ERRORS = ("strict", "replace", "ignore", "backslashreplace")

# fastai's `fix_html` substitutions, applied in this order before `html.unescape`. The order
# matters: '#39;' must go before 'amp;', '\\n' before '<br />', '...' last.
_HTML_FIXES = (
    ("#39;", "'"),
    ("amp;", "&"),
    ("#146;", "'"),
    ("nbsp;", " "),
    ("#36;", "$"),
    ("\\n", "\n"),
    ("quot;", "'"),
    ("<br />", "\n"),
    ('\\"', '"'),
    ("<unk>", UNK),
    (" @.@ ", "."),
    (" @-@ ", "-"),
    ("...", " …"),
)
_RE_CHAR_REP = re.compile(r"(\S)(\1{2,})")
_RE_WORD_REP = re.compile(r"(?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)")
_RE_SPEC_CHARS = re.compile(r"([/#\\])")
_RE_MULTI_SPACE = re.compile(" {2,}")
# `[A-Z]` is ASCII only, while `\s` is Unicode: that asymmetry is fastai's and is kept.
_RE_ALL_CAPS = re.compile(r"(\s|^)([A-Z]+[^a-z\s]*)(?=(\s|$))")
_RE_MAJ = re.compile(r"(\s|^)([A-Z][^A-Z\s]*)(?=(\s|$))")
# A cut point for long documents: the first non-space character after whitespace.
_RE_CUT = re.compile(r"\s(?=\S)")


def fix_html(text: str) -> str:
    """Undoes HTML escapes and other artefacts common in scraped text (``<br />`` -> newline)."""
    for old, new in _HTML_FIXES:
        text = text.replace(old, new)
    return html.unescape(text)


def replace_rep(text: str) -> str:
    """Replaces a character repeated 3+ times: ``'cccc'`` -> ``' xxrep 4 c '``."""
    return _RE_CHAR_REP.sub(lambda m: f" {TK_REP} {len(m[2]) + 1} {m[1]} ", text)


def replace_wrep(text: str) -> str:
    """Replaces a word repeated 3+ times: ``'w w w w'`` -> ``' xxwrep 4 w '``."""
    return _RE_WORD_REP.sub(lambda m: f" {TK_WREP} {len(m[2].split()) + 2} {m[1]} {m[3]}", text)


def spec_add_spaces(text: str) -> str:
    """Puts spaces around ``/``, ``#`` and ``\\`` so that spaCy splits them off."""
    return _RE_SPEC_CHARS.sub(r" \1 ", text)


def rm_useless_spaces(text: str) -> str:
    """Collapses runs of spaces (only U+0020; other whitespace is kept)."""
    return _RE_MULTI_SPACE.sub(" ", text)


def _lower_with_marker(marker: str) -> Callable[[re.Match[str]], str]:
    def repl(m: re.Match[str]) -> str:
        # A one-letter word ("I", "A") is lowercased without a marker.
        return m[1] + (f"{marker} " if len(m[2]) > 1 else "") + m[2].lower()

    return repl


def replace_all_caps(text: str) -> str:
    """Lowercases words in ALL CAPS and puts ``xxup`` before them."""
    return _RE_ALL_CAPS.sub(_lower_with_marker(TK_UP), text)


def replace_maj(text: str) -> str:
    """Lowercases Capitalised words and puts ``xxmaj`` before them."""
    return _RE_MAJ.sub(_lower_with_marker(TK_MAJ), text)


def lowercase(text: str) -> str:
    """Lowercases and strips the text and puts ``xxbos`` in front (fastai's ``add_bos=True``)."""
    return f"{BOS} " + text.lower().strip()


def replace_space(token: str) -> str:
    """Post-rule: a space inside a token (spaCy keeps some in whitespace tokens) becomes ``▁``."""
    return token.replace(" ", "▁")


PRE_RULES: tuple[Callable[[str], str], ...] = (
    fix_html,
    replace_rep,
    replace_wrep,
    spec_add_spaces,
    rm_useless_spaces,
    replace_all_caps,
    replace_maj,
    lowercase,
)


def preprocess(text: str) -> str:
    """Applies fastai's default pre-rules (``PRE_RULES``) in order."""
    for rule in PRE_RULES:
        text = rule(text)
    return text


def as_texts(texts: Iterable[str | bytes], errors: str = "strict") -> list[str]:
    """Validates documents and decodes ``bytes`` ones as UTF-8.

    Args:
      texts: a sequence (or any iterable) of documents, each ``str`` or ``bytes``.
      errors: how invalid UTF-8 in a ``bytes`` document is handled: ``'strict'`` raises, or one of
        ``'replace'``, ``'ignore'``, ``'backslashreplace'`` (see ``bytes.decode``).

    Returns:
      The documents as a list of ``str``.

    Raises:
      TypeError: ``texts`` is a single ``str``/``bytes``, or a document is neither (names it).
      ValueError: a ``bytes`` document is not valid UTF-8 and ``errors='strict'``, or a ``str``
        one holds a lone surrogate (the message names the document and the position).
    """
    if errors not in DECODE_ERRORS:
        raise ValueError(f"errors must be one of {DECODE_ERRORS}, got {errors!r}")
    if isinstance(texts, (str, bytes, bytearray)):
        raise TypeError(
            f"expected a sequence of documents, got a single {type(texts).__name__}; "
            "wrap it in a list"
        )
    out = []
    for i, text in enumerate(texts):
        if isinstance(text, str):
            try:
                # spaCy hashes every string as UTF-8; check here to name the document.
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(
                    f"document {i} holds a lone surrogate at index {e.start}; "
                    "it cannot be encoded as UTF-8"
                ) from None
            out.append(text)
        elif isinstance(text, (bytes, bytearray)):
            try:
                out.append(bytes(text).decode("utf-8", errors))
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"document {i} is not valid UTF-8 ({e.reason} at byte {e.start}); "
                    "pass errors='replace' to substitute U+FFFD"
                ) from None
        else:
            raise TypeError(f"document {i} is a {type(text).__name__}; expected str or bytes")
    return out


def split_for_spacy(text: str, max_chars: int) -> Iterator[str]:
    """Cuts ``text`` into pieces of about ``max_chars`` that spaCy tokenizes as the whole.

    spaCy's tokenizer treats each maximal run of whitespace or of non-whitespace on its own (a
    single leading U+0020 of a whitespace run only marks the previous token). Cutting just before
    a non-space character that follows whitespace therefore leaves every run, and every token,
    unchanged. A piece is longer than ``max_chars`` only where no such place exists.

    Args:
      text: the text to cut.
      max_chars: the length to aim for; pieces are at most this long where possible.

    Yields:
      Consecutive pieces whose concatenation is ``text``.
    """
    start, n = 0, len(text)
    while n - start > max_chars:
        cut = None
        for m in _RE_CUT.finditer(text, start, start + max_chars + 1):
            cut = m.end()
        if cut is None:  # One run longer than max_chars: cut at the next possible place.
            m = _RE_CUT.search(text, start + max_chars)
            if m is None:
                break
            cut = m.end()
        yield text[start:cut]
        start = cut
    yield text[start:]


@functools.lru_cache(maxsize=4)
def _spacy_tokenizer(lang: str, special_tokens: tuple[str, ...]):
    import spacy
    from spacy.symbols import ORTH

    nlp = spacy.blank(lang)
    for tok in special_tokens:
        nlp.tokenizer.add_special_case(tok, [{ORTH: tok}])
    # Calling the tokenizer directly skips `nlp.max_length` (meant for parser/NER memory); long
    # documents are cut by `split_for_spacy` instead.
    return nlp.tokenizer


@dataclasses.dataclass(frozen=True)
class WordTokenizer:
    """fastai's default tokenizer (``TokenizeWithRules(SpacyTokenizer())``) as a callable.

    Instances hold only settings, so they pickle cheaply to worker processes; spaCy is loaded
    lazily, once per process.

    Attributes:
      lang: the spaCy language of ``spacy.blank`` (no model download).
      special_tokens: tokens spaCy must never split (fastai's ``defaults.text_spec_tok``).
      max_chunk_chars: longer documents are tokenized in pieces (see ``split_for_spacy``); it
        bounds memory and does not change the tokens.
    """

    lang: str = "en"
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS
    max_chunk_chars: int = 100_000

    def __post_init__(self) -> None:
        # A list passed by the caller would make the instance unhashable.
        object.__setattr__(self, "special_tokens", tuple(self.special_tokens))
        if self.max_chunk_chars < 1:
            raise ValueError(f"max_chunk_chars must be positive, got {self.max_chunk_chars}")

    def cache_settings(self) -> dict:
        """Everything that determines the tokens, for cache keys (not ``max_chunk_chars``)."""
        import spacy

        return {
            "kind": "spacy+fastai-rules",
            "rules_version": RULES_VERSION,
            "lang": self.lang,
            "special_tokens": list(self.special_tokens),
            "spacy": spacy.__version__,
        }

    def tokenize_one(self, text: str) -> list[str]:
        """Tokenizes one ``str`` document (already validated)."""
        spacy_tok = _spacy_tokenizer(self.lang, self.special_tokens)
        tokens: list[str] = []
        for piece in split_for_spacy(preprocess(text), self.max_chunk_chars):
            tokens += [t.text for t in spacy_tok(piece)]
        return [replace_space(t) if " " in t else t for t in tokens]

    def __call__(self, texts: Sequence[str | bytes], errors: str = "strict") -> list[list[str]]:
        """Tokenizes documents; see ``tokenize``."""
        return [self.tokenize_one(text) for text in as_texts(texts, errors)]


def tokenize(texts: Sequence[str | bytes], *, errors: str = "strict") -> list[list[str]]:
    """Tokenizes documents exactly as fastai's default tokenizer does.

    Example:
      >>> tokenize(["This movie is GREAT!!! <br />Loved it."])
      [['xxbos', 'xxmaj', 'this', 'movie', 'is', 'xxup', 'great', 'xxrep', '3', '!', '\\n',
        'xxmaj', 'loved', 'it', '.']]

    Args:
      texts: the documents, ``str`` or UTF-8 ``bytes``.
      errors: the UTF-8 error policy for ``bytes`` documents (see ``as_texts``).

    Returns:
      One list of tokens per document, each starting with ``xxbos``.

    Raises:
      TypeError: a document is not ``str``/``bytes`` (the message names its index).
      ValueError: a ``bytes`` document is not valid UTF-8 under ``errors='strict'``, or a document
        holds a lone surrogate (the message names its index).
    """
    return WordTokenizer()(texts, errors)
