"""The tokenizers against fastai's own output, their bad-input policies, and the corpus cache.

The expected tokens come from fastai 2.8.12 (``scripts/fixtures/make_tokenizer_fixture.py``) and are
committed under ``tests/fixtures/tokenizer/``, so these tests need neither fastai nor ../shared.
"""

import collections
import gzip
import itertools
import json
import pickle

import numpy as np
import pytest

from ulmfit_jax.text import token_cache
from ulmfit_jax.text.sentencepiece_tokenizer import SentencePieceTokenizer, default_vocab_size
from ulmfit_jax.text.token_cache import TokenizedCorpus, tokenize_corpus
from ulmfit_jax.text.tokenizer import (
    SPECIAL_TOKENS,
    WordTokenizer,
    as_texts,
    preprocess,
    replace_all_caps,
    replace_maj,
    replace_rep,
    replace_wrep,
    split_for_spacy,
    tokenize,
)
from ulmfit_jax.text.vocab import Vocab


def _load(fixtures_dir, name):
    with gzip.open(fixtures_dir / "tokenizer" / name, "rt", encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def fastai_docs(fixtures_dir):
    """(source, text, fastai tokens) for every fixture document."""
    rows = _load(fixtures_dir, "fastai_tokens.json.gz")["docs"]
    return [(src, text, toks.split(" ")) for src, text, toks in rows]


def _mismatches(docs, got):
    return [(src, exp, out) for (src, _, exp), out in zip(docs, got, strict=True) if exp != out]


def test_fixture_covers_what_it_claims(fastai_docs):
    sources = collections.Counter(src.split("/")[0] for src, _, _ in fastai_docs)
    assert sources["imdb"] == 300 and sources["trec"] == 5452 + 500 and sources["edge"] >= 30
    texts = [text for _, text, _ in fastai_docs]
    assert sum("<br />" in t for t in texts) >= 60
    flat = collections.Counter(tok for _, _, toks in fastai_docs for tok in toks)
    for special in ("xxbos", "xxmaj", "xxup", "xxrep", "xxwrep", "xxunk", "\n\n", "\n\n▁"):
        assert flat[special] > 0, special


def test_tokenize_matches_fastai_on_every_fixture_document(fastai_docs):
    got = tokenize([text for _, text, _ in fastai_docs])
    bad = _mismatches(fastai_docs, got)
    assert not bad, f"{len(bad)} of {len(fastai_docs)} documents differ, first: {bad[0]}"


def test_cutting_documents_anywhere_possible_keeps_fastai_tokens(fastai_docs):
    # max_chunk_chars=1 cuts at every whitespace-to-text boundary: the strongest check that the
    # long-document path cannot change a token.
    docs = [d for d in fastai_docs if not d[0].startswith("trec")]
    got = WordTokenizer(max_chunk_chars=1)([text for _, text, _ in docs])
    assert not _mismatches(docs, got)


def test_split_for_spacy_cuts_only_before_text_after_whitespace():
    text = "ab  cd\n\nef " + "x" * 30 + " g \t h"
    pieces = list(split_for_spacy(text, 4))
    assert "".join(pieces) == text
    for prev, piece in itertools.pairwise(pieces):
        assert prev[-1].isspace() and not piece[0].isspace()
    assert "x" * 30 + " " in pieces  # One run longer than the limit stays whole.
    assert list(split_for_spacy("short", 100)) == ["short"]


def test_document_longer_than_spacy_max_length(fastai_docs):
    import spacy

    body = "\n\n".join(text for src, text, _ in fastai_docs if src.startswith("imdb"))
    text = body * (1_200_000 // len(body) + 1)
    assert len(text) > spacy.blank("en").max_length  # fastai raises spaCy's E088 here.
    got = tokenize([text])[0]
    nlp = spacy.blank("en")
    for tok in SPECIAL_TOKENS:
        nlp.tokenizer.add_special_case(tok, [{spacy.symbols.ORTH: tok}])
    whole = [t.text.replace(" ", "▁") for t in nlp.tokenizer(preprocess(text))]
    assert got == whole and len(got) > 250_000


@pytest.mark.parametrize("text", ["", " ", "   ", "\n\n", "\t \r\n"])
def test_empty_and_blank_documents_give_only_bos(text):
    assert tokenize([text]) == [["xxbos"]]


def test_rules_on_examples():
    assert replace_rep("I'm sooooo happy") == "I'm s xxrep 5 o  happy"
    assert replace_wrep("it is very very very good") == "it is xxwrep 3 very  good"
    assert replace_all_caps("I'M SHOUTING AT YOU") == "xxup i'm xxup shouting xxup at xxup you"
    assert replace_maj("My name is Bob") == "xxmaj my name is xxmaj bob"
    assert tokenize([]) == []


def test_bytes_documents_are_utf8():
    text = "Crème brûlée is GREAT"
    assert tokenize([text.encode()]) == tokenize([text])
    bad = [b"fine", b"caf\xe9 latin-1"]
    with pytest.raises(ValueError, match=r"document 1 is not valid UTF-8.*byte 3"):
        tokenize(bad)
    assert tokenize(bad, errors="replace")[1] == ["xxbos", "caf", "\ufffd", "latin-1"]
    assert as_texts([bytearray(b"ok")]) == ["ok"]
    with pytest.raises(ValueError, match="errors must be one of"):
        tokenize(bad, errors="surrogateescape")


@pytest.mark.parametrize(
    "texts, error, match",
    [
        (["ok", None], TypeError, "document 1 is a NoneType"),
        (["ok", "ok", 3.5], TypeError, "document 2 is a float"),
        ("a single string", TypeError, "single str"),
        (["ok", "lone \ud800 surrogate"], ValueError, "document 1 holds a lone surrogate"),
    ],
)
def test_bad_documents_are_named(texts, error, match):
    with pytest.raises(error, match=match):
        tokenize(texts)


def test_tokenized_corpus_round_trip_and_counter_order():
    docs = [["xxbos", "b", "a"], [], ["xxbos", "a", "c", "a"]]
    corpus = TokenizedCorpus.from_lists(docs)
    assert corpus.to_lists() == docs and len(corpus) == 3 and corpus[2] == docs[2]
    expected = collections.Counter(t for d in docs for t in d)
    assert list(corpus.counter().items()) == list(expected.items())  # Same insertion order.
    halves = TokenizedCorpus.concatenate([TokenizedCorpus.from_lists(docs[:1]), corpus])
    assert halves.to_lists() == docs[:1] + docs
    assert halves.tokens == ["xxbos", "b", "a", "c"]
    vocab = Vocab(["xxunk", "a", "xxbos"])
    assert corpus.numericalize(vocab).tolist() == [2, 0, 1, 2, 1, 0, 1]


def test_tokenize_corpus_in_two_processes_keeps_order(fastai_docs):
    docs = fastai_docs[::30]
    corpus = tokenize_corpus([text for _, text, _ in docs], n_workers=2, chunk_size=7)
    assert not _mismatches(docs, corpus.to_lists())


class _CountingTokenizer:
    """A stand-in tokenizer that records its calls; its settings are part of the cache key."""

    def __init__(self, setting="a"):
        self.setting, self.calls = setting, 0

    def __call__(self, texts):
        self.calls += 1
        return [[self.setting] + t.split() for t in texts]

    def cache_settings(self):
        return {"setting": self.setting}


def test_cache_hits_misses_and_survives_corruption(tmp_path):
    texts = ["a b", "c", "d e f"]
    tok = _CountingTokenizer()
    first = tokenize_corpus(texts, tok, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # No temporary file left behind.
    again = tokenize_corpus(texts, tok, cache_dir=tmp_path)
    assert tok.calls == 1 and again.to_lists() == first.to_lists()

    tokenize_corpus(texts, _CountingTokenizer("b"), cache_dir=tmp_path)  # Setting changed.
    tokenize_corpus(["a b", "c d", "e f"], tok, cache_dir=tmp_path)  # Same words, new documents.
    assert len(list(tmp_path.iterdir())) == 3 and tok.calls == 2

    files[0].write_bytes(files[0].read_bytes()[:200])  # A torn file: zip header, no directory.
    with pytest.warns(UserWarning, match="unreadable cache file"):
        assert tokenize_corpus(texts, tok, cache_dir=tmp_path).to_lists() == first.to_lists()
    assert TokenizedCorpus.load(files[0]).to_lists() == first.to_lists()  # Rewritten.


def test_word_tokenizer_settings_change_the_cache_key():
    texts = ["some text"]
    keys = {
        token_cache.cache_key(texts, WordTokenizer()),
        token_cache.cache_key(texts, WordTokenizer(special_tokens=SPECIAL_TOKENS[:-1])),
        token_cache.cache_key(texts, WordTokenizer(lang="de")),
        token_cache.cache_key(["some", "text"], WordTokenizer()),
    }
    assert len(keys) == 4
    # The cut length does not change tokens, so it must not cost a cache miss.
    assert token_cache.cache_key(texts, WordTokenizer(max_chunk_chars=10)) in keys


def test_failed_cache_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        tokenize_corpus(["a"], _CountingTokenizer(), cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def fastai_sp(fixtures_dir):
    return _load(fixtures_dir, "fastai_sentencepiece.json.gz")


@pytest.fixture(scope="module")
def trained_sp(fastai_sp, fastai_docs):
    text_of = {src: text for src, text, _ in fastai_docs}
    train = [text_of[src] for src in fastai_sp["train_sources"]]
    return SentencePieceTokenizer.train(train, vocab_size=fastai_sp["vocab_sz"])


def test_sentencepiece_model_and_pieces_match_fastai(fastai_sp, trained_sp):
    assert trained_sp.pieces == fastai_sp["pieces_of_model"]
    assert trained_sp.pieces[:10] == ["▁" + s for s in SPECIAL_TOKENS] + ["<unk>"]
    got = trained_sp(fastai_sp["texts"])
    bad = [
        (t, e, g)
        for t, e, g in zip(fastai_sp["texts"], fastai_sp["pieces"], got, strict=True)
        if e != g
    ]
    assert not bad, bad[:3]


def test_sentencepiece_save_load_pickle_and_cache(tmp_path, trained_sp):
    path = tmp_path / "spm.model"
    trained_sp.save(path)
    loaded = SentencePieceTokenizer.load(path)
    text = ["Where is the EIFFEL tower ?"]
    assert loaded(text) == trained_sp(text) == pickle.loads(pickle.dumps(trained_sp))(text)
    corpus = tokenize_corpus(text * 3, trained_sp, cache_dir=tmp_path / "cache")
    assert corpus.to_lists() == trained_sp(text) * 3
    key_sp = token_cache.cache_key(text, trained_sp)
    assert key_sp != token_cache.cache_key(text, WordTokenizer())


def test_default_vocab_size_follows_fastai():
    assert default_vocab_size(["a b c"]) == 29  # A quarter of 3 words, raised to the minimum.
    words = [f"w{i}" for i in range(1000)]
    assert default_vocab_size([" ".join(words[:500]), "\n".join(words[400:])]) == 256
    assert default_vocab_size([" ".join(words)], max_vocab_size=100) == 100


def test_trec_fixture_inputs_are_the_shared_files(shared_dir, fastai_docs):
    fixture = {src: text for src, text, _ in fastai_docs}
    for split, name in (("train", "train_5500.label"), ("test", "TREC_10.label")):
        lines = (shared_dir / "data/trec" / name).read_bytes().decode("latin-1").splitlines()
        questions = [line.split(" ", 1)[1] for line in lines]
        assert questions == [fixture[f"trec/{split}/{i}"] for i in range(len(questions))]
