"""Text generation from language models (fastai's `LMLearner.predict`): fastai's decoding of
special tokens, greedy and top-k decoding against a full-sequence reference, seeds, banned
tokens, and models from an export and from the fastai fixture."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ulmfit_jax.inference import generate as gen
from ulmfit_jax.models import awd_lstm
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.text.tokenizer import SPECIAL_TOKENS
from ulmfit_jax.weights.export import export_params

ITOS = list(SPECIAL_TOKENS) + ["the", "movie", "was", "good", "bad", ".", "i", "liked", "it", "!"]
ITOS += [f"w{i}" for i in range(32 - len(ITOS))]


@pytest.fixture(scope="module")
def lm():
    config = AWDLSTMConfig(vocab_size=len(ITOS), emb_sz=8, n_hid=12, n_layers=2)
    params = jax.device_get(awd_lstm.init_lm_params(jax.random.key(0), config))
    # Make xxunk and xxpad the most likely tokens everywhere: they must still never be drawn.
    params["decoder"]["bias"] = params["decoder"]["bias"].copy()
    params["decoder"]["bias"][:2] = 5.0
    return gen.LanguageModelPredictor(params, config, ITOS)


def _greedy_reference(lm, ids, n, banned=(0, 1)):
    """fastai's loop: the whole sequence from a zero state for every word; argmax."""
    ids = list(ids)
    for _ in range(n):
        logits, _ = awd_lstm.lm_apply(lm.params, lm.config, jnp.asarray([ids], jnp.int32))
        last = np.array(logits[0, -1])
        last[list(banned)] = -np.inf
        ids.append(int(np.argmax(last)))
    return ids[-n:]


def test_decode_spec_tokens_is_fastais():
    assert gen.decode_spec_tokens(["xxmaj", "this", "is", "xxup", "great"]) == [
        "This",
        "is",
        "GREAT",
    ]
    assert gen.decode_spec_tokens(["xxwrep", "3", "very"]) == ["very", "very", "very"]
    # fastai never resets the rule after a repetition: later tokens repeat too (kept as is).
    assert gen.decode_spec_tokens(["xxrep", "3", "!", "ok"]) == ["!!!", "okokok"]
    assert gen.decode_spec_tokens(["xxrep", "x", "y"]) == ["y"]  # bad count: dropped
    assert gen.detokenize(["xxbos", "xxmaj", "hi", "xxpad", "there"]) == "Hi there"


def test_prompt_uses_the_single_string_path():
    assert gen.tokenize_prompt("This movie is GREAT!") == [
        "xxbos",
        "xxmaj",
        "this",
        "movie",
        "is",
        "xxup",
        "great",
        "!",
    ]
    # A whitespace token keeps its space (no replace_space post-rule), as in learn.predict.
    assert "\n " in gen.tokenize_prompt("a\n b")


def test_greedy_and_top1_equal_argmax_decoding(lm):
    ids = lm.encode("I liked the movie")
    reference = _greedy_reference(lm, ids, 12)
    greedy = lm.generate_ids(ids, 12, temperature=0.0)
    assert greedy.tolist() == reference
    assert lm.generate_ids(ids, 12, temperature=1.0, top_k=1, seed=3).tolist() == reference
    assert lm.generate_ids(ids, 12, temperature=1e-6, seed=4).tolist() == reference


def test_sampling_is_seeded_and_never_draws_unk_or_pad(lm):
    ids = lm.encode("the movie was")
    a = lm.generate_ids(ids, 40, temperature=1.5, seed=7)
    compiled = gen._next_token._cache_size()
    assert a.tolist() == lm.generate_ids(ids, 40, temperature=1.5, seed=7).tolist()
    assert a.tolist() != lm.generate_ids(ids, 40, temperature=1.5, seed=8).tolist()
    assert not np.isin(a, [0, 1]).any()
    top3 = lm.generate_ids(ids, 40, top_k=3, seed=1)
    assert not np.isin(top3, [0, 1]).any()
    # fastai's own flags: without no_unk / no_pad the biased tokens do come out.
    free = lm.generate_ids(ids, 40, seed=7, no_unk=False, no_pad=False)
    assert np.isin(free, [0, 1]).any()
    text = lm.predict("The movie was", n_words=5, seed=2)
    assert text.startswith("The movie was ") and len(text.split()) >= 5
    assert "xxunk" not in text and "xxpad" not in text
    # One compilation serves every prompt length and option.
    assert gen._next_token._cache_size() == compiled


def test_from_an_export(tmp_path, lm):
    meta = {"stage": "finetune_lm", "model": dataclasses.asdict(lm.config), "vocab": ITOS}
    export_params(tmp_path, lm.params, meta)
    loaded = gen.LanguageModelPredictor.from_workdir(tmp_path)
    ids = lm.encode("i liked it")
    assert loaded.generate_ids(ids, 6, seed=5).tolist() == lm.generate_ids(ids, 6, seed=5).tolist()
    out = gen.generate(lm.params, lm.config, ITOS, "i liked it", 6, seed=5)
    assert out == loaded.generate("i liked it", 6, seed=5)


def test_from_the_fastai_fixture(fixtures_dir):
    root = fixtures_dir / "fastai"
    lm = gen.LanguageModelPredictor.from_fastai(root / "lm.pth", root / "lm_itos.pkl")
    ids = lm.encode("w1 w2 w3")
    assert lm.vocab.denumericalize(ids) == ["xxbos", "w1", "w2", "w3"]
    assert lm.generate_ids(ids, 8, temperature=0).tolist() == _greedy_reference(lm, ids, 8)
    text = lm.predict("w1 w2 w3", n_words=8, temperature=0.7, seed=0)
    assert text.startswith("w1 w2 w3 ") and len(text.split()) == 11
    assert "xxunk" not in text
