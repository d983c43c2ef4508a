"""Token shards: the same ids, vocabulary and LM batches as the in-memory path, resumable."""

import json

import numpy as np
import pytest

from ulmfit_jax.batching import corpus
from ulmfit_jax.batching.lm_stream import LMStream
from ulmfit_jax.text.token_shards import TokenShards, build_token_shards, id_dtype

TEXTS = [
    f"Document {i}: the quick brown fox {'jumps ' * (i % 5)}over the lazy dog. It's "
    f"{['great', 'fine', 'dull'][i % 3]}!"
    for i in range(57)
]


class SplitTokenizer:
    """A picklable whitespace tokenizer that counts its calls in a file (and can fail)."""

    def __init__(self, log=None, fail_after=None):
        self.log, self.fail_after = log, fail_after

    def __call__(self, texts):
        if self.log is not None:
            calls = int(self.log.read_text() or 0) if self.log.exists() else 0
            if self.fail_after is not None and calls >= self.fail_after:
                raise RuntimeError("killed")
            self.log.write_text(str(calls + 1))
        return [t.split() for t in texts]

    def cache_settings(self):
        return {"name": "split"}


def test_ids_offsets_and_vocab_equal_the_in_memory_path(tmp_path):
    shards = build_token_shards(
        TEXTS, tmp_path / "s", chunk_size=10, max_vocab=60000, min_freq=2, progress=False
    )
    docs = corpus.tokenize_texts(TEXTS, cache_dir=None, n_workers=1)
    vocab = corpus.build_vocab(docs, max_vocab=60000, min_freq=2)
    assert shards.vocab.itos == vocab.itos
    assert shards.tokens.dtype == np.uint16 and shards.n_docs == len(TEXTS)
    want = corpus.numericalize(docs, vocab)
    for i in range(len(TEXTS)):
        np.testing.assert_array_equal(shards.document(i), want[i])
    again = TokenShards.open(tmp_path / "s")  # reused, read-only
    assert again.manifest == shards.manifest and not (tmp_path / "s" / "parts").exists()


def test_lm_batches_from_shards_equal_those_from_documents(tmp_path):
    shards = build_token_shards(TEXTS, tmp_path / "s", chunk_size=16, min_freq=1, progress=False)
    docs = [shards.document(i) for i in range(shards.n_docs)]
    options = dict(batch_size=4, bptt=7, seed=3, shuffle=True)
    for backward in (False, True):
        from_docs = LMStream(docs, backward=backward, **options)
        from_file = LMStream((shards.tokens, shards.offsets), backward=backward, **options)
        for a, b in zip(from_docs.epoch_batches(1), from_file.epoch_batches(1), strict=True):
            assert a.tokens.dtype == b.tokens.dtype == np.int32
            np.testing.assert_array_equal(a.tokens, b.tokens)
            np.testing.assert_array_equal(a.targets, b.targets)


def test_a_killed_build_resumes_and_does_not_trust_half_work(tmp_path):
    log = tmp_path / "calls"
    with pytest.raises(RuntimeError, match="killed"):
        build_token_shards(
            TEXTS, tmp_path / "s", tokenizer=SplitTokenizer(log, 3), chunk_size=10, progress=False
        )
    assert int(log.read_text()) == 3 and not (tmp_path / "s" / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="no finished token shards"):
        TokenShards.open(tmp_path / "s")
    (tmp_path / "s" / "parts" / ".part-000003.npz.x.tmp").write_bytes(b"half a file")
    shards = build_token_shards(
        TEXTS, tmp_path / "s", tokenizer=SplitTokenizer(log), chunk_size=10, progress=False
    )
    assert int(log.read_text()) == 6  # the 3 finished parts were kept, 3 more tokenized
    fresh = build_token_shards(
        TEXTS, tmp_path / "t", tokenizer=SplitTokenizer(), chunk_size=10, progress=False
    )
    np.testing.assert_array_equal(np.asarray(shards.tokens), np.asarray(fresh.tokens))
    assert shards.vocab.itos == fresh.vocab.itos


def test_two_workers_give_the_same_shards(tmp_path):
    one = build_token_shards(TEXTS, tmp_path / "a", chunk_size=8, min_freq=1, progress=False)
    two = build_token_shards(
        iter(TEXTS), tmp_path / "b", chunk_size=8, min_freq=1, n_workers=2, progress=False
    )
    np.testing.assert_array_equal(np.asarray(one.tokens), np.asarray(two.tokens))
    np.testing.assert_array_equal(np.asarray(one.offsets), np.asarray(two.offsets))


def test_other_settings_or_corpus_in_the_same_directory_are_refused(tmp_path):
    build_token_shards(TEXTS, tmp_path / "s", key="corpus-a", chunk_size=20, progress=False)
    with pytest.raises(ValueError, match="key, min_freq differ"):
        build_token_shards(TEXTS, tmp_path / "s", key="b", min_freq=1, progress=False)


def test_empty_corpus_and_huge_vocabularies_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="the corpus is empty"):
        build_token_shards([], tmp_path / "e", progress=False)
    assert id_dtype(65536) == np.uint16 and id_dtype(65537) == np.uint32
    with pytest.raises(ValueError, match="does not fit uint32"):
        id_dtype(2**32 + 1)


def test_a_vocabulary_past_uint16_is_stored_as_uint32(tmp_path):
    texts = [" ".join(f"w{i}" for i in range(j, j + 1000)) for j in range(0, 70000, 1000)]
    shards = build_token_shards(
        texts,
        tmp_path / "big",
        tokenizer=SplitTokenizer(),
        min_freq=1,
        max_vocab=10**6,
        chunk_size=20,
        progress=False,
    )
    assert shards.tokens.dtype == np.uint32 and len(shards.vocab) > 65536
    assert json.loads((tmp_path / "big" / "manifest.json").read_text())["dtype"] == "uint32"
    assert shards.vocab.itos[shards.document(69)[-1]] == "w69999"
