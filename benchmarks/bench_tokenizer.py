"""Throughput of corpus tokenization: 1 and N worker processes, and the cached re-read.

    .venv/bin/python benchmarks/bench_tokenizer.py --data ../shared/data --workers 1 2

Reads the 25,000 IMDb train reviews straight from ``imdb/aclImdb_v1_without_feat.tar.gz`` (not
timed), then times ``tokenize_corpus`` without a cache for each worker count, once more writing
the cache, and the cached re-read (with and without building ``list[list[str]]``). Prints
tokens/s (wall clock) and CPU seconds, since other work on a shared machine slows the wall clock.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import tarfile
import tempfile
import time

from ulmfit_jax.text.token_cache import tokenize_corpus


def read_imdb_train(tar_path: pathlib.Path, limit: int | None) -> list[str]:
    texts = {}
    with tarfile.open(tar_path, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if (
                member.isfile()
                and len(parts) == 4
                and parts[1:3] in (["train", "pos"], ["train", "neg"])
            ):
                texts[member.name] = tar.extractfile(member).read().decode("utf-8")
    names = sorted(texts)[:limit]
    return [texts[n] for n in names]


def _cpu_seconds() -> float:
    # This process and its reaped children (the pool's workers, once it has shut down).
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(label: str, n_tokens: int | None, fn):
    """Runs `fn`, prints wall time, CPU time and tokens per wall-clock second."""
    start, cpu = time.perf_counter(), _cpu_seconds()
    out = fn()
    dt, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    n = n_tokens if n_tokens is not None else out.n_tokens
    print(f"{label:<34} {dt:8.2f} s wall {cpu:8.2f} s CPU {n / dt:>12,.0f} tokens/s")
    return out


def main() -> None:
    repo = pathlib.Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=pathlib.Path, default=repo.parent / "shared" / "data")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--limit", type=int, default=None, help="first N reviews only")
    parser.add_argument("--chunk-size", type=int, default=500)
    args = parser.parse_args()

    texts = read_imdb_train(args.data / "imdb/aclImdb_v1_without_feat.tar.gz", args.limit)
    n_chars = sum(map(len, texts))
    print(
        f"{len(texts):,} reviews, {n_chars:,} characters, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    reference = None
    for n in args.workers:
        corpus = timed(
            f"{n} worker(s), no cache",
            None,
            lambda n=n: tokenize_corpus(texts, n_workers=n, chunk_size=args.chunk_size),
        )
        if reference is None:
            reference = corpus
        assert corpus.to_lists() == reference.to_lists(), "results differ between worker counts"
    n_tokens = reference.n_tokens
    print(f"{n_tokens:,} tokens, {len(reference.tokens):,} distinct")
    with tempfile.TemporaryDirectory() as cache:
        n = max(args.workers)
        timed(
            f"{n} worker(s), writing the cache",
            n_tokens,
            lambda: tokenize_corpus(
                texts, n_workers=n, chunk_size=args.chunk_size, cache_dir=cache
            ),
        )
        size = sum(f.stat().st_size for f in pathlib.Path(cache).iterdir())
        print(f"cache file: {size / 2**20:.1f} MiB")
        cached = timed(
            "cached re-read (TokenizedCorpus)",
            n_tokens,
            lambda: tokenize_corpus(texts, cache_dir=cache),
        )
        timed(
            "cached re-read + to_lists()",
            n_tokens,
            lambda: tokenize_corpus(texts, cache_dir=cache).to_lists(),
        )
        assert cached.to_lists() == reference.to_lists()


if __name__ == "__main__":
    main()
