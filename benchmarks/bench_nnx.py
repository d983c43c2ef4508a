"""What the Flax NNX skin costs: `ulmfit_jax.nnx.LanguageModel` against `lm_apply`, same config.

    python -m benchmarks.bench_nnx --size=small --rounds=7 --steps=20

Every variant's steps are interleaved one by one with the others' (see `measure`); each is
reported as the median and the minimum step time, and as ratios to the functional step:

* forward, evaluation mode: `jax.jit(lm_apply)` against `model(x)` under NNX;
* train step (dropout on, cross-entropy, `make_optimizer`'s fastai Adam, all groups training):
  the functional `jax.jit` step over `(params, opt_state)` against NNX over
  `(model, nnx.Optimizer)`.

NNX is jitted three ways: plain `nnx.jit` (graph mode: every call walks the module graph in
Python, a fixed cost per call), `nnx.cached_partial(nnx.jit(f), model, optimizer)` (Flax's way
to walk it once) and `nnx.jit(f, graph=False)` (tree mode: modules flattened as pytrees).

Prints one JSON object: seconds per step of each variant and the NNX / functional ratios.
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import numpy as np
import optax
from flax import nnx

from ulmfit_jax import optim
from ulmfit_jax.models import awd_lstm
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.nnx import LanguageModel, make_nnx_optimizer
from ulmfit_jax.optim import param_groups

SIZES = {
    "tiny": dict(vocab=200, emb=16, hid=32, layers=3, batch=8, bptt=8),
    "small": dict(vocab=2000, emb=64, hid=192, layers=3, batch=16, bptt=32),
    "medium": dict(vocab=10_000, emb=400, hid=1152, layers=3, batch=32, bptt=70),
}


def build(size: dict):
    """The variants: name -> a zero-argument callable running one blocking step."""
    config = AWDLSTMConfig(
        vocab_size=size["vocab"], emb_sz=size["emb"], n_hid=size["hid"], n_layers=size["layers"]
    )
    rng = np.random.default_rng(0)
    shape = (size["batch"], size["bptt"])
    x = jax.device_put(rng.integers(0, size["vocab"], shape).astype(np.int32))
    y = jax.device_put(rng.integers(0, size["vocab"], shape).astype(np.int32))

    # Functional.
    params = awd_lstm.init_lm_params(jax.random.key(0), config)
    forward = jax.jit(lambda p, t: awd_lstm.lm_apply(p, config, t)[0])
    labels = param_groups.lm_param_groups(params)
    tx = optim.make_optimizer(labels, lr=1e-3, total_steps=10**6)
    f_state = {"params": params, "opt": tx.init(params), "key": jax.random.key(1)}

    @jax.jit
    def f_train(params, opt_state, key, x, y):
        key, sub = jax.random.split(key)

        def loss_fn(p):
            logits, _ = awd_lstm.lm_apply(p, config, x, train=True, rng=sub)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, key, loss

    def functional_train():
        p, o, k, loss = f_train(f_state["params"], f_state["opt"], f_state["key"], x, y)
        f_state.update(params=p, opt=o, key=k)
        loss.block_until_ready()

    # NNX, the same parameters; one model and optimizer per way of jitting.
    def train_body(model, optimizer, x, y):
        def loss_fn(m):
            logits, _ = m(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    def forward_body(model, x):
        return model(x)[0]

    variants = {"forward/functional": lambda: forward(params, x).block_until_ready()}
    for name, jit in JITS.items():
        model = LanguageModel(config, params=params)
        step = jit(forward_body, model)
        variants[f"forward/{name}"] = lambda step=step: step(x).block_until_ready()
    variants["train/functional"] = functional_train
    for name, jit in JITS.items():
        model = LanguageModel(config, params=params, rngs=nnx.Rngs(dropout=1))
        model.train()
        optimizer = make_nnx_optimizer(model, lr=1e-3, total_steps=10**6)
        step = jit(train_body, model, optimizer)
        variants[f"train/{name}"] = lambda step=step: step(x, y).block_until_ready()
    return config, variants


# How the NNX step is jitted: `jit(fn, *graph_nodes)` returns `f(*arrays)`.
JITS = {
    "nnx.jit": lambda fn, *nodes: functools.partial(nnx.jit(fn), *nodes),
    "nnx.jit+cached_partial": lambda fn, *nodes: nnx.cached_partial(nnx.jit(fn), *nodes),
    "nnx.jit(graph=False)": lambda fn, *nodes: functools.partial(nnx.jit(fn, graph=False), *nodes),
}


def measure(variants: dict, rounds: int, steps: int) -> dict:
    """Per variant: the median and the minimum of `rounds * steps` single-step times, taken
    round-robin (one step of each variant in turn, the order rotating every time), so that a
    busy neighbour or a slow drift of the machine weighs on every variant alike."""
    for run in variants.values():  # compile and warm up
        run()
        run()
    names = list(variants)
    times = {name: [] for name in names}
    for i in range(rounds * steps):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return {
        name: {"median_s": float(np.median(t)), "min_s": float(np.min(t))}
        for name, t in times.items()
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    _, variants = build(size)
    seconds = measure(variants, args.rounds, args.steps)
    ratios = {
        f"{kind} {name} / functional ({stat})": (
            seconds[f"{kind}/{name}"][stat] / seconds[f"{kind}/functional"][stat]
        )
        for stat in ("median_s", "min_s")
        for kind in ("forward", "train")
        for name in JITS
    }
    result = {
        "size": args.size,
        **size,
        "backend": jax.default_backend(),
        "rounds": args.rounds,
        "steps": args.steps,
        "step_s": seconds,
        "ratios": ratios,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
