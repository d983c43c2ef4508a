"""The fused linear + cross-entropy against the plain loss, on one fastai-size LM batch.

    python -m benchmarks.bench_fused_xent            # 2,240 tokens, D=400, V=60,000
    python -m benchmarks.bench_fused_xent --json out.json

For each loss (plain: logits then `optax.softmax_cross_entropy_with_integer_labels`; fused:
`ulmfit_jax.core.nn.fused_cross_entropy.linear_cross_entropy` at a few chunk sizes) it times
one jitted forward + backward (value and gradients with respect to the hidden states, the tied
weight and the bias), and reads XLA's temporaries of the compiled program
(`memory_analysis().temp_size_in_bytes`). The variants are timed interleaved, round after
round, so a load change on a shared machine falls on all of them alike. The FLOP bound is the
three matmuls (forward logits, hidden and weight gradients) at the measured matmul peak.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import bench_common
from benchmarks.bench_common import cpu_threads, matmul_peak_flops
from ulmfit_jax.core.nn.fused_cross_entropy import linear_cross_entropy


def plain_loss(hidden, weight, bias, targets, weights):
    logits = hidden @ weight.T + bias
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return jnp.sum(nll * weights)


def fused_loss(chunk):
    def loss(hidden, weight, bias, targets, weights):
        return linear_cross_entropy(hidden, weight, bias, targets, weights, chunk_size=chunk)[0]

    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2240)  # fastai's LM batch: 32 x 70
    parser.add_argument("--dim", type=int, default=400)
    parser.add_argument("--vocab", type=int, default=60000)
    parser.add_argument("--chunks", default="128,256,512")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default="")
    args = parser.parse_args()

    keys = jax.random.split(jax.random.key(0), 4)
    hidden = jax.random.normal(keys[0], (args.tokens, args.dim))
    weight = jax.random.normal(keys[1], (args.vocab, args.dim)) * 0.05
    bias = jnp.zeros((args.vocab,))
    targets = jax.random.randint(keys[2], (args.tokens,), 0, args.vocab)
    weights = jnp.ones((args.tokens,))
    operands = (hidden, weight, bias, targets, weights)

    variants = {"plain": plain_loss}
    variants.update({f"fused (chunk {c})": fused_loss(int(c)) for c in args.chunks.split(",")})
    compiled, rows = {}, {}
    reference = None
    for name, loss in variants.items():
        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
        start = time.perf_counter()
        compiled[name] = step.lower(*operands).compile()
        compile_s = time.perf_counter() - start
        value, grads = compiled[name](*operands)
        jax.block_until_ready(grads)
        if reference is None:
            reference = (value, grads)
        error = max(
            float(jnp.max(jnp.abs(g - r)) / jnp.max(jnp.abs(r)))
            for g, r in zip(grads, reference[1], strict=True)
        )
        memory = compiled[name].memory_analysis()
        rows[name] = {
            "temp_mib": memory.temp_size_in_bytes / 2**20,
            "compile_s": compile_s,
            "loss_rel_diff": float(abs(value - reference[0]) / abs(reference[0])),
            "grad_max_rel_diff": error,
            "times": [],
        }
    for _ in range(args.rounds):  # interleaved: each round times every variant once
        for name in variants:
            start = time.perf_counter()
            jax.block_until_ready(compiled[name](*operands))
            rows[name]["times"].append(time.perf_counter() - start)
    peak = matmul_peak_flops()
    flops = 3 * 2 * args.tokens * args.dim * args.vocab
    result = {
        "tokens": args.tokens,
        "dim": args.dim,
        "vocab": args.vocab,
        "threads": cpu_threads(),
        "matmul_peak_gflops": peak / 1e9,
        "flop_bound_s": flops / peak,
        "variants": {},
    }
    print(f"{args.tokens} tokens, D={args.dim}, V={args.vocab}, {cpu_threads()} threads")
    print(f"FLOP bound (3 matmuls at {peak / 1e9:.0f} GFLOP/s): {flops / peak:.2f} s")
    print("| loss | fwd+bwd s (median) | min s | temporaries MiB | loss diff | grad diff |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in rows.items():
        times = row.pop("times")
        row["median_s"], row["min_s"] = float(np.median(times)), float(min(times))
        result["variants"][name] = row
        print(
            f"| {name} | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['temp_mib']:.0f} | "
            f"{row['loss_rel_diff']:.1e} | {row['grad_max_rel_diff']:.1e} |"
        )
    bench_common.save_json(args.json, result)


if __name__ == "__main__":
    main()
