"""What the in-program id checks (`ulmfit_jax.core.nn.id_checks`) cost the training steps.

The LM and classifier train steps (`benchmarks.bench_lm.make_step`,
`benchmarks.bench_classifier.make_step`: the steps the programs run) are built twice, with the
checks compiled in and without (`set_id_checks`), and timed interleaved: `--pairs` pairs of one
step each, in alternating order, so drift on a shared machine (other jobs, thermal) falls on
both alike. The cost is the median over pairs of (with / without - 1).

    python -m benchmarks.bench_id_checks                 # small size
    python -m benchmarks.bench_id_checks --size small-b8 # its model, batch 8 (a slow CPU)
    python -m benchmarks.bench_id_checks --size tiny --pairs 10 --json out.json
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from benchmarks import bench_classifier, bench_common, bench_lm


def _lm_runner(size: dict):
    import jax
    import jax.numpy as jnp

    step, state, trainable = bench_lm.make_step(size)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, size["vocab"], (size["batch"], size["bptt"] + 1), dtype=np.int32)
    x, y = jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])
    lengths = jnp.full((size["batch"],), size["bptt"], jnp.int32)
    carry = {"state": state}

    def one():
        carry["state"], metrics = step(carry["state"], x, y, lengths, jnp.float32(1.0), trainable)
        jax.block_until_ready(metrics)

    return one


def _classifier_runner(size: dict):
    import jax
    import jax.numpy as jnp

    step, state, trainable = bench_classifier.make_step(size)
    tokens, lengths, labels = (jnp.asarray(a) for a in bench_classifier._batch(size))
    weights = jnp.ones((size["batch"],), jnp.float32)
    carry = {"state": state}

    def one():
        carry["state"], metrics = step(carry["state"], tokens, lengths, labels, weights, trainable)
        jax.block_until_ready(metrics)

    return one


# The small size's model with a smaller batch ("small-b8"): a small-size step takes tens of
# seconds on a shared 2-core CPU. The check's cost does not grow with the model, so a smaller
# batch makes the measured fraction larger, not smaller: an upper bound for "small".
LM_SIZES = dict(bench_lm.SIZES, **{"small-b8": dict(bench_lm.SIZES["small"], batch=8, bptt=20)})
CLASSIFIER_SIZES = dict(
    bench_classifier.SIZES,
    **{"small-b8": dict(bench_classifier.SIZES["small"], batch=8, bptt=24, width=48)},
)
RUNNERS = {"lm": (_lm_runner, LM_SIZES), "classifier": (_classifier_runner, CLASSIFIER_SIZES)}


def _built(kind: str, size_name: str, checks: bool):
    """A compiled step of `kind` with the checks on or off (compiled here, while set)."""
    from ulmfit_jax.core.nn import id_checks

    make, sizes = RUNNERS[kind]
    previous = id_checks.set_id_checks(checks)
    try:
        one = make(sizes[size_name])
        one()  # traces and compiles with the setting above
        one()
    finally:
        id_checks.set_id_checks(previous)
    return one


def _seconds(one) -> float:
    start = time.perf_counter()
    one()
    return time.perf_counter() - start


def measure(kind: str, size_name: str, pairs: int) -> dict:
    """Interleaved timing of one step kind with and without the checks: `pairs` pairs of
    single steps, the order alternating, each pair's ratio taken while the machine is in the
    same state (on a busy 2-core machine the step time itself drifts by tens of percent)."""
    with_checks, without = _built(kind, size_name, True), _built(kind, size_name, False)
    on, off, ratios = [], [], []
    for pair in range(pairs):
        if pair % 2:
            off.append(_seconds(without))
            on.append(_seconds(with_checks))
        else:
            on.append(_seconds(with_checks))
            off.append(_seconds(without))
        ratios.append(on[-1] / off[-1] - 1)
    return {
        "kind": kind,
        "size": size_name,
        "pairs": pairs,
        "with_s": float(np.median(on)),
        "without_s": float(np.median(off)),
        "cost_pct": 100 * float(np.median(ratios)),
        "cost_pct_quartiles": [round(100 * float(q), 2) for q in np.percentile(ratios, [25, 75])],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=sorted(LM_SIZES))
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--kinds", default="lm,classifier")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    import jax

    device = jax.devices()[0]
    results = {
        "device": f"{device.platform} {device.device_kind}",
        "cpu_threads": bench_common.cpu_threads(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "steps": [measure(k, args.size, args.pairs) for k in args.kinds.split(",")],
    }
    for r in results["steps"]:
        print(
            f"{r['kind']:>10} {r['size']}: median step with checks {1e3 * r['with_s']:.1f} ms, "
            f"without {1e3 * r['without_s']:.1f} ms: cost {r['cost_pct']:+.2f}% (median of "
            f"{r['pairs']} interleaved pairs; quartiles {r['cost_pct_quartiles']}%)"
        )
    bench_common.save_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
