"""Throughput of the jitted biLM and the speed-up of the token-embedding cache.

    .venv/bin/python benchmarks/bench_elmo_cache.py [--preset small] [--batch 32] [--length 20]
        [--fixture ../shared/fixtures/elmo_allennlp] [--repeats 10]

Reports tokens/s (sentence tokens, boundaries excluded) of `bilm_apply` on random released-shape
weights (and on AllenNLP's fixture model when found), and of the cached path (`TokenEmbeddingCache`
lookups + `bilm_apply_embedded`), and the character CNN alone against a table lookup.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import jax
import numpy as np

from elmo_jax.embedding.files import embed_file
from elmo_jax.embedding.token_cache import TokenEmbeddingCache
from elmo_jax.model.bilm import bilm_apply, bilm_apply_embedded
from elmo_jax.model.char_cnn import char_cnn_apply
from elmo_jax.model.characters import batch_to_ids
from elmo_jax.model.config import preset
from elmo_jax.model.init import init_bilm
from elmo_jax.weights.allennlp import load_allennlp


def _timeit(fn, repeats: int) -> float:
    """Best of `repeats` after a warm-up call (the minimum: the machine is shared, and other
    jobs only ever add time)."""
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def _sentences(batch: int, length: int, vocab_size: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, rng.integers(2, 11))) for _ in range(vocab_size)]
    return [[vocab[i] for i in rng.integers(0, vocab_size, length)] for _ in range(batch)]


def bench(name: str, params, config, batch: int, length: int, repeats: int) -> None:
    sentences = _sentences(batch, length, vocab_size=2000)
    tokens = batch * length
    ids = batch_to_ids(sentences)
    full = jax.jit(bilm_apply, static_argnums=1)
    t_full = _timeit(lambda: full(params, config, ids), repeats)

    cache = TokenEmbeddingCache(params, config)
    cache.add(w for s in sentences for w in s)  # precomputed vocabulary: lookups only below
    contextual = jax.jit(bilm_apply_embedded, static_argnums=1)

    def cached():
        emb, mask = cache.embed(sentences)  # host lookup, included in the timing
        return contextual(params, config, emb, mask)

    t_cached = _timeit(cached, repeats)
    cnn = jax.jit(char_cnn_apply, static_argnums=1)
    t_cnn = _timeit(lambda: cnn(params["char_cnn"], config, ids), repeats)
    t_lookup = _timeit(lambda: cache.embed(sentences)[0], repeats)
    print(
        f"{name}: batch {batch} x {length} tokens on {jax.devices()[0].platform}\n"
        f"  bilm_apply (char CNN + biLSTM)    {tokens / t_full:10,.0f} tokens/s "
        f"({t_full * 1e3:.1f} ms/batch)\n"
        f"  cached tokens + biLSTM            {tokens / t_cached:10,.0f} tokens/s "
        f"({t_cached * 1e3:.1f} ms/batch)  speed-up x{t_full / t_cached:.2f}\n"
        f"  char CNN alone vs cache lookup    {t_cnn * 1e3:.2f} ms vs {t_lookup * 1e3:.2f} ms "
        f"(x{t_cnn / t_lookup:.0f})"
    )


def bench_file(params, config, sentences: int, batch: int) -> None:
    """The embed command on a Zipf-distributed corpus, with and without the token cache; each
    run twice, the second (compiled shapes already cached) reported."""
    rng = np.random.default_rng(1)
    vocab = [w for s in _sentences(1, 20_000, 20_000, seed=2) for w in s]
    ranks = np.minimum(rng.zipf(1.2, size=sentences * 40), len(vocab)) - 1
    lengths = rng.integers(5, 41, sentences)
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "corpus.txt"
        ends = np.cumsum(lengths)
        lines = [
            " ".join(vocab[r] for r in ranks[e - n : e]) for n, e in zip(lengths, ends, strict=True)
        ]
        path.write_text("\n".join(lines) + "\n")
        results = {}
        for name in ("char CNN", "token cache"):
            cache = TokenEmbeddingCache(params, config) if name == "token cache" else None
            for _ in range(2):
                stats = embed_file(
                    params, config, path, pathlib.Path(tmp) / "out.hdf5",
                    batch_size=batch, token_cache=cache, progress=False,
                )  # fmt: skip
            results[name] = stats.tokens_per_second
        print(
            f"embed command, {sentences} sentences, {stats.tokens} tokens, batch {batch}, "
            f"{len(set(ranks))} distinct words: {results['char CNN']:,.0f} tokens/s, "
            f"with --token-cache {results['token cache']:,.0f} tokens/s "
            f"(x{results['token cache'] / results['char CNN']:.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--file-sentences", type=int, default=0, help="also time the command")
    here = pathlib.Path(__file__).resolve().parents[1]
    parser.add_argument("--fixture", default=str(here.parent / "shared/fixtures/elmo_allennlp"))
    args = parser.parse_args()

    fixture = pathlib.Path(args.fixture)
    if (fixture / "lm_weights.hdf5").exists():
        params, config = load_allennlp(fixture / "options.json", fixture / "lm_weights.hdf5")
        bench("AllenNLP fixture model", params, config, args.batch, args.length, args.repeats)
    config = preset(args.preset)
    params = init_bilm(jax.random.key(0), config)
    bench(f"{args.preset} (random weights)", params, config, args.batch, args.length, args.repeats)
    if args.file_sentences:
        bench_file(params, config, args.file_sentences, 64)


if __name__ == "__main__":
    main()
