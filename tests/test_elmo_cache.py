"""The token-embedding cache: lookups equal the character CNN, and the biLM run on them."""

import jax
import numpy as np
import pytest
from elmo_fixtures import tiny_bilm_params

from elmo_jax.embedding.token_cache import TokenEmbeddingCache
from elmo_jax.model.bilm import bilm_apply, bilm_apply_embedded, embed_characters
from elmo_jax.model.characters import batch_to_ids

SENTENCES = [["The", "cat", "sat", "."], [], ["A", "cat", "wörd", "z" * 60]]


@pytest.fixture(scope="module")
def model():
    return tiny_bilm_params(0)


def test_lookups_equal_the_character_cnn(model):
    params, config = model
    cache = TokenEmbeddingCache(params, config, vocab=["The", "cat", "The"], chunk=16)
    assert len(cache) == 4 and "cat" in cache and "sat" not in cache  # <S>, </S>, The, cat
    emb, mask = cache.embed(SENTENCES, pad_to=5)
    assert len(cache) == 9 and emb.shape == (3, 7, 8) and mask.sum(1).tolist() == [6, 2, 6]
    want, want_mask = jax.jit(embed_characters, static_argnums=1)(
        params, config, batch_to_ids(SENTENCES, pad_to=5)
    )
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_allclose(emb * mask[..., None], want * mask[..., None], atol=1e-6)
    assert not emb[~mask].any()  # padding rows are the zero row
    assert not cache.table[0].any() and cache.table.shape == (10, 8)


def test_cached_bilm_equals_character_bilm(model):
    params, config = model
    cache = TokenEmbeddingCache(params, config, chunk=16)
    emb, mask = cache.embed(SENTENCES, pad_to=5)
    cached, _, _ = jax.jit(bilm_apply_embedded, static_argnums=1)(params, config, emb, mask)
    direct, _, _ = jax.jit(bilm_apply, static_argnums=1)(
        params, config, batch_to_ids(SENTENCES, pad_to=5)
    )
    for a, b in zip(cached, direct, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_frozen_cache_rejects_unknown_words_and_grows_its_table(model):
    params, config = model
    frozen = TokenEmbeddingCache(params, config, vocab=["known"], grow=False, chunk=16)
    frozen.embed([["known"]])
    with pytest.raises(KeyError, match="'unknown' is not in the token cache"):
        frozen.embed([["known", "unknown"]])
    big = TokenEmbeddingCache(params, config, vocab=[f"w{i}" for i in range(1500)], chunk=512)
    assert len(big) == 1502 and big.table.shape == (1503, 8)
