"""bfloat16 mixed precision against float32 on real data: an AWD-LSTM LM on WikiText-2.

    nice python scripts/experiments/bf16_check.py [--data ../shared/data/wikitext-2] [--steps 300] \
        [--out runs/bf16_check.json]

Both runs start from the same float32 initialisation and read the same batches with the same
dropout keys; only `compute_dtype` differs. The corpus comes through the library's own
pipeline (the local "wikitext" source, fastai's tokenizer and its cache, fastai's vocabulary),
the step is the training program's (`make_lm_train_step`: fastai Adam, AR/TAR, 1cycle). Prints
the training loss every `--log-every` steps (the batch's loss and the mean since the previous
report), tokens/s of the steps after the first (compilation excluded), and the validation
loss of each final model; writes the same as JSON to `--out`. Skips with a message when the
data is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

from train.configs import pretrain_wikitext2
from ulmfit_jax import optim
from ulmfit_jax.batching import corpus as text_data
from ulmfit_jax.batching.lm_stream import LMStream
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.core.runner.train_state import create_train_state
from ulmfit_jax.models import awd_lstm
from ulmfit_jax.optim.param_groups import lm_param_groups
from ulmfit_jax.stages.lm_steps import (
    evaluate_lm,
    make_lm_train_step,
)

DEFAULT_DATA = os.environ.get("ULMFIT_WIKITEXT2", "../shared/data/wikitext-2")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="folder with wiki.{train,valid}.tokens")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bptt", type=int, default=50)
    p.add_argument("--emb-sz", type=int, default=64)
    p.add_argument("--n-hid", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--max-vocab", type=int, default=10000)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--valid-batches", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bf16_check.json")
    return p.parse_args(argv)


def load_corpus(args):
    """Numericalized train and validation documents and the vocabulary size."""
    c = pretrain_wikitext2.get_config()
    c.data.path = args.data
    c.vocab.max_vocab = args.max_vocab
    c.tokenizer_workers = 1
    train_docs, valid_docs = text_data.lm_corpus(
        DataSpec.from_config(c.data), seed=c.seed, n_workers=c.tokenizer_workers
    )
    vocab = text_data.build_vocab(train_docs, max_vocab=c.vocab.max_vocab, min_freq=3)
    return (
        text_data.numericalize(train_docs, vocab),
        text_data.numericalize(valid_docs, vocab),
        len(vocab),
    )


def train(config, params, train_ids, valid_ids, args) -> tuple[dict, dict]:
    """`args.steps` steps of the training program's LM step: final params and a record (the
    loss curve, the speed, the validation loss)."""
    labels = lm_param_groups(params)
    tx = optim.make_optimizer(labels, lr=args.lr, total_steps=args.steps, schedule="one_cycle")
    state = create_train_state(
        params, tx, seed=args.seed, lstm_state=awd_lstm.zero_state(config, args.batch_size)
    )
    step = make_lm_train_step(config, tx)
    trainable = optim.trainable_groups(labels)
    loader = LMStream(
        train_ids, batch_size=args.batch_size, bptt=args.bptt, seed=args.seed, shuffle=True
    )
    batches = (b for epoch in range(10**6) for b in loader.epoch_batches(epoch))
    curve, window, tokens, start = [], [], 0, None
    for i in range(args.steps + 1):
        batch = next(batches)._replace(trainable=trainable)
        state, metrics = step(state, batch)
        loss = float(metrics["loss"])  # waits for the step
        if not math.isfinite(loss):
            raise FloatingPointError(f"{config.compute_dtype}: loss {loss} at step {i}")
        if i == 0:
            start = time.perf_counter()  # after compilation
        else:
            tokens += int(np.sum(batch.lengths))
        window.append(loss)
        if i % args.log_every == 0:
            mean = float(np.mean(window))
            curve.append({"step": i, "loss": loss, "mean_loss": mean})
            print(f"  [{config.compute_dtype}] step {i:4d}  loss {loss:.4f}  (mean {mean:.4f})")
            window = []
    seconds = time.perf_counter() - start
    valid = LMStream(valid_ids, batch_size=args.batch_size, bptt=args.bptt, shuffle=False)
    valid_batches = itertools.islice(valid.epoch_batches(0), args.valid_batches)
    valid_metrics = evaluate_lm(state.params, config, valid_batches)
    dtypes = {str(x.dtype) for x in jax.tree.leaves((state.params, state.opt_state))}
    return state.params, {
        "compute_dtype": config.compute_dtype,
        "curve": curve,
        "tokens_per_second": tokens / seconds,
        "seconds": seconds,
        "valid_loss": valid_metrics["loss"],
        "valid_perplexity": valid_metrics["perplexity"],
        "state_dtypes": sorted(dtypes),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    data = Path(args.data)
    if not (data / "wiki.train.tokens").is_file():
        print(f"bf16_check: skipped, no WikiText-2 at {data} (set --data or $ULMFIT_WIKITEXT2)")
        return 0
    t0 = time.perf_counter()
    train_ids, valid_ids, vocab_size = load_corpus(args)
    print(
        f"WikiText-2: {sum(map(len, train_ids)):,} train tokens, vocab {vocab_size:,} "
        f"(corpus ready in {time.perf_counter() - t0:.0f} s); jax {jax.__version__} on "
        f"{jax.devices()[0].device_kind}"
    )
    f32 = awd_lstm.AWDLSTMConfig(
        vocab_size=vocab_size,
        emb_sz=args.emb_sz,
        n_hid=args.n_hid,
        n_layers=args.n_layers,
        drop_mult=0.5,
    )
    params = awd_lstm.init_lm_params(jax.random.key(args.seed), f32)
    runs, final = {}, {}
    for dtype in ("float32", "bfloat16"):
        config = dataclasses.replace(f32, compute_dtype=dtype)
        print(f"{dtype}: {args.steps} steps of {args.batch_size}x{args.bptt}")
        fresh = jax.tree.map(np.array, params)  # the step donates its state: a copy per run
        final[dtype], runs[dtype] = train(config, fresh, train_ids, valid_ids, args)
    print(f"\n{'step':>6} {'float32':>10} {'bfloat16':>10}   (batch loss; mean since last row)")
    for a, b in zip(runs["float32"]["curve"], runs["bfloat16"]["curve"], strict=True):
        print(
            f"{a['step']:6d} {a['loss']:10.4f} {b['loss']:10.4f}   "
            f"({a['mean_loss']:.4f} {b['mean_loss']:.4f})"
        )
    for dtype, r in runs.items():
        print(
            f"{dtype:>9}: {r['tokens_per_second']:,.0f} tokens/s, valid loss {r['valid_loss']:.4f}"
            f" (ppl {r['valid_perplexity']:.1f}), params/optimiser dtypes {r['state_dtypes']}"
        )
    diff = jax.tree.map(
        lambda a, b: float(np.linalg.norm(a - b)), final["bfloat16"], final["float32"]
    )
    norm = jax.tree.map(lambda a: float(np.linalg.norm(a)), final["float32"])
    relative = float(np.linalg.norm(jax.tree.leaves(diff)) / np.linalg.norm(jax.tree.leaves(norm)))
    print(f"final parameters: |bf16 - f32| / |f32| = {relative:.2e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "args": vars(args),
        "vocab_size": vocab_size,
        "runs": runs,
        "final_params_relative_difference": relative,
    }
    out.write_text(json.dumps(record, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
