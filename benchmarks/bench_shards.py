"""Memory does not grow with the corpus: token shards, then a tiny LM trained from them.

    python -m benchmarks.bench_shards --sizes-mb 100,400 --out shards.json

For each size, a synthetic corpus of that many MB of text (one document per line, sentences of
a 20,000-word Zipf vocabulary, seeded) is written to a temporary file, then, each step in a
fresh process so that the peak resident memory (`ru_maxrss`) is that step's alone:

- `tokenize`: `build_token_shards` over the file's lines (a generator: the text is never all in
  memory) with fastai's tokenizer, with 1 and with 2 worker processes: tokens/s, peak RSS of
  the main process and of the workers;
- `train`: open the finished shards (the cached second run: `first_batch_s` is the time from
  the `build_token_shards` call to the first LM batch, imports excluded), stream `LMStream`
  windows from the memory-mapped ids and train a 64/128 x 2 AWD-LSTM for `--steps` steps:
  peak RSS.

The goal is the larger corpus' peak within 1.2x of the smaller's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TOKENIZE = """
import json, resource, sys, time
from ulmfit_jax.text.token_shards import build_token_shards
path, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
def lines():
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield line.rstrip("\\n")
if __name__ == "__main__":
    start = time.perf_counter()
    shards = build_token_shards(lines(), out, n_workers=workers, chunk_size=2000, progress=False)
    seconds = time.perf_counter() - start
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "tokens": shards.n_tokens, "docs": shards.n_docs,
                      "vocab": len(shards.vocab), "peak_rss_mib": me,
                      "worker_peak_rss_mib": children}))
"""

TRAIN = """
import json, resource, sys, time
import jax, jax.numpy as jnp, optax
from ulmfit_jax.batching.lm_stream import LMStream
from ulmfit_jax.models import awd_lstm
from ulmfit_jax.text.token_shards import build_token_shards
out, steps = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
shards = build_token_shards([], out, progress=False, chunk_size=2000)  # finished: opened
stream = LMStream((shards.tokens, shards.offsets), batch_size=32, bptt=70, seed=0, shuffle=True)
batches = stream.epoch_batches(0)
first = next(batches)
first_batch_s = time.perf_counter() - start
config = awd_lstm.AWDLSTMConfig(vocab_size=len(shards.vocab), emb_sz=64, n_hid=128, n_layers=2)
params = awd_lstm.init_lm_params(jax.random.key(0), config)
opt = optax.adam(1e-3)
opt_state = opt.init(params)
@jax.jit
def step(params, opt_state, state, tokens, targets, key):
    def loss_fn(p):
        out = awd_lstm.lm_forward(p, config, tokens, state, train=True, rng=key)
        nll = optax.softmax_cross_entropy_with_integer_labels(out.logits, targets).mean()
        return nll, out.state
    (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = opt.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, state, loss
state, key, batch = awd_lstm.zero_state(config, 32), jax.random.key(1), first
for i in range(steps):
    key, sub = jax.random.split(key)
    inputs = (batch.tokens, batch.targets, sub)
    params, opt_state, state, loss = step(params, opt_state, state, *inputs)
    batch = next(batches)
loss = float(loss)
print(json.dumps({"first_batch_s": first_batch_s, "loss": loss,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

WORDS = 20000


def write_corpus(path: Path, megabytes: int, seed: int = 0) -> int:
    """Write ~`megabytes` MB of synthetic documents (one per line); returns the bytes written."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(WORDS)])
    weights = 1.0 / np.arange(1, WORDS + 1)
    weights /= weights.sum()
    written, target = 0, megabytes * 10**6
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            block = []
            for _ in range(1000):
                n = int(rng.integers(20, 400))
                doc = " ".join(rng.choice(words, size=n, p=weights))
                block.append(doc.capitalize() + ".")
            text = "\n".join(block) + "\n"
            f.write(text)
            written += len(text.encode("utf-8"))
    return written


def run(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="100,400")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes_mb.split(",")):
            corpus = Path(tmp) / f"corpus_{size}.txt"
            row = {"bytes": write_corpus(corpus, size)}
            for workers in (1, 2):
                shards = Path(tmp) / f"shards_{size}_{workers}"
                tokenized = run(TOKENIZE, corpus, shards, workers)
                tokenized["tokens_per_s"] = tokenized["tokens"] / tokenized["seconds"]
                row[f"tokenize_{workers}_workers"] = tokenized
            row["train"] = run(TRAIN, Path(tmp) / f"shards_{size}_2", args.steps)
            results[f"{size}MB"] = row
            print(json.dumps({f"{size}MB": row}), flush=True)
    print(
        "| corpus | tokens | tok/s (1 worker) | tok/s (2) | tokenize peak RSS MiB | "
        "train peak RSS MiB | first batch (cached) s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, row in results.items():
        one, two, train = row["tokenize_1_workers"], row["tokenize_2_workers"], row["train"]
        print(
            f"| {name} | {one['tokens']:,} | {one['tokens_per_s']:,.0f} | "
            f"{two['tokens_per_s']:,.0f} | {max(one['peak_rss_mib'], two['peak_rss_mib']):.0f} | "
            f"{train['peak_rss_mib']:.0f} | {train['first_batch_s']:.2f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
