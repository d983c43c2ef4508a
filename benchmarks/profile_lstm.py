"""Profile the AWD-LSTM LM training step (benchmarks.bench's "small" shape) and A/B its variants.

    python -m benchmarks.profile_lstm parts       # where one step's time goes
    python -m benchmarks.profile_lstm ab --variants custom_vjp,autodiff --rounds 4
    python -m benchmarks.profile_lstm peak        # is the matmul peak of benchmarks.bench sound?
    python -m benchmarks.profile_lstm layout      # the recurrence, feature- vs batch-major

The machine is shared, so absolute timings drift: `ab` compiles every variant first and then
times them interleaved, round after round, in one process, reporting each variant's median and
best step over all rounds. A variant is an `AWDLSTMConfig.lstm_impl`, optionally with XLA
compiler options after a colon (`custom_vjp:xla_cpu_use_onednn=true`), applied to that jitted
step only through `jax.jit(..., compiler_options=...)`.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import bench_lm
from ulmfit_jax.batching.lm_stream import LMBatch
from ulmfit_jax.core.nn import lstm
from ulmfit_jax.models import awd_lstm


def _parse_variant(spec: str) -> tuple[str, dict]:
    """`IMPL[@lstm_module.py][:opt=value+opt=value]` -> (IMPL[@module], compiler options)."""
    impl, _, opts = spec.partition(":")
    options = {}
    for item in filter(None, opts.split("+")):
        key, _, value = item.partition("=")
        options[key] = {"true": True, "false": False}.get(value, value)
        if isinstance(options[key], str) and options[key].isdigit():
            options[key] = int(options[key])
    return impl, options


class _LegacyLSTM:
    """Another version of ulmfit_jax/lstm.py (a file), standing in for the module in awd_lstm."""

    def __init__(self, path: str):
        import importlib.util

        spec = importlib.util.spec_from_file_location(f"lstm_{abs(hash(path))}", path)
        self.module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)

    def __getattr__(self, name):
        return getattr(self.module, name)

    def lstm_layer(self, *args, compute_dtype=None, **kwargs):
        if compute_dtype is not None:
            kwargs["compute_dtype"] = compute_dtype
        return self.module.lstm_layer(*args, **kwargs)


def make_train_step(size: dict, impl: str, compiler_options: dict | None = None):
    """benchmarks.bench's LM step (`bench_lm.make_step`: the library's train step) and a runner.

    `impl` may name another lstm.py to trace with instead of ulmfit_jax.core.nn.lstm:
    `IMPL@path.py`.
    """
    impl, _, module_path = impl.partition("@")
    if module_path:
        saved, awd_lstm.lstm = awd_lstm.lstm, _LegacyLSTM(module_path)
        try:
            return make_train_step(size, impl, compiler_options)
        finally:
            awd_lstm.lstm = saved
    jax.clear_caches()
    step, state, trainable = bench_lm.make_step(size, impl)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, size["vocab"], (size["batch"], size["bptt"] + 1), dtype=np.int32)
    x, y = jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])
    lengths = jnp.full((size["batch"],), size["bptt"], jnp.int32)
    state = jax.device_put(state)
    batch = step.place_batch(LMBatch(x, y, lengths, size["bptt"], 1.0, trainable))
    start = time.perf_counter()
    lowered = step.jitted.lower(state, batch)
    middle = time.perf_counter()
    compiled = lowered.compile(compiler_options)
    make_train_step.last_compiled = compiled
    make_train_step.last_times = (middle - start, time.perf_counter() - middle)
    carry = {"state": state}

    def run():
        carry["state"], metrics = compiled(carry["state"], batch)
        return jax.block_until_ready(metrics)

    return run


def ab(args) -> None:
    size = bench_lm.SIZES[args.size]
    tokens = size["batch"] * size["bptt"]
    runners, times = {}, {}
    for spec in args.variants.split(","):
        impl, options = _parse_variant(spec)
        jax.clear_caches()  # so no variant reuses another's traced inner jits
        run = make_train_step(size, impl, options or None)
        start = time.perf_counter()
        run()
        print(f"{spec}: first step (compile + run) {time.perf_counter() - start:.1f} s", flush=True)
        runners[spec], times[spec] = run, []
    cpu = {spec: [] for spec in runners}
    for r in range(args.rounds):
        for spec, run in runners.items():
            for _ in range(args.steps):
                start, start_cpu = time.perf_counter(), time.process_time()
                run()
                times[spec].append(time.perf_counter() - start)
                cpu[spec].append(time.process_time() - start_cpu)
        line = "  ".join(
            f"{s}={tokens / np.median(t[-args.steps :]):,.0f}" for s, t in times.items()
        )
        print(f"round {r}: tokens/s {line}", flush=True)
    base = None
    for spec, t in times.items():
        med, best = tokens / np.median(t), tokens / np.min(t)
        cpu_s = np.median(cpu[spec])
        base = base or (med, cpu_s)
        print(
            f"{spec:50s} median {med:6,.0f} tok/s best {best:6,.0f} ({med / base[0]:.3f}x); "
            f"CPU {cpu_s:.2f} s/step ({base[1] / cpu_s:.3f}x)"
        )


def _time(fn, *args, reps: int = 5) -> tuple[float, float]:
    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - start)
    return float(np.median(ts)), float(np.min(ts))


def parts(args) -> None:
    """Time the pieces of one step separately (medians; best in brackets)."""
    size = bench_lm.SIZES[args.size]
    b, t, hid, emb, vocab = size["batch"], size["bptt"], size["hid"], size["emb"], size["vocab"]
    key = jax.random.key(0)
    rows = []
    for n_in, n_out in [(emb, hid), (hid, hid), (hid, emb)]:
        p = lstm.init_lstm_params(key, n_in, n_out)
        x = jax.random.normal(key, (b, t, n_in))
        gx = jax.random.normal(key, (t, b, 4 * n_out))
        h0 = jnp.zeros((b, n_out))
        rec = jax.jit(lambda gx, w, h0: lstm.lstm_recurrence(gx, w, h0, h0, None)[0])
        fwd_vjp = jax.jit(lambda gx, w, h0, rec=rec: jax.vjp(rec, gx, w, h0))
        rec_grad = jax.jit(
            lambda gx, w, h0, rec=rec: jax.grad(lambda a, bb: rec(a, bb, h0).sum(), (0, 1))(gx, w)
        )
        proj = jax.jit(lambda x, w: jnp.einsum("bti,ig->tbg", x, w))
        proj_grad = jax.jit(
            jax.grad(lambda x, w: (jnp.einsum("bti,ig->tbg", x, w) ** 2).sum(), (0, 1))
        )
        layer_grad = jax.jit(jax.grad(lambda p, x: (lstm.lstm_layer(p, x)[0] ** 2).sum(), (0, 1)))
        rec_flops = 2 * b * t * n_out * 4 * n_out
        proj_flops = 2 * b * t * n_in * 4 * n_out
        tag = f"{n_in}->{n_out}"
        rows.append((f"{tag} recurrence fwd", _time(rec, gx, p["w_hh"], h0), rec_flops))
        rows.append((f"{tag} recurrence fwd+save", _time(fwd_vjp, gx, p["w_hh"], h0), rec_flops))
        rows.append(
            (f"{tag} recurrence fwd+bwd", _time(rec_grad, gx, p["w_hh"], h0), 3 * rec_flops)
        )
        rows.append((f"{tag} input proj fwd", _time(proj, x, p["w_ih"]), proj_flops))
        rows.append((f"{tag} input proj fwd+bwd", _time(proj_grad, x, p["w_ih"]), 3 * proj_flops))
        rows.append(
            (
                f"{tag} whole layer fwd+bwd",
                _time(layer_grad, p, x),
                3 * (rec_flops + proj_flops),
            )
        )
    hidden = jax.random.normal(key, (b, t, emb))
    weight = jax.random.normal(key, (vocab, emb)) * 0.1
    labels = jax.random.randint(key, (b, t), 0, vocab)

    def dec_loss(hidden, weight):
        logits = jnp.einsum("bte,ve->btv", hidden, weight)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    dec_flops = 2 * b * t * emb * vocab
    rows.append(("decoder+softmax fwd", _time(jax.jit(dec_loss), hidden, weight), dec_flops))
    rows.append(
        (
            "decoder+softmax fwd+bwd",
            _time(jax.jit(jax.grad(dec_loss, (0, 1))), hidden, weight),
            3 * dec_flops,
        )
    )
    config = awd_lstm.AWDLSTMConfig(vocab_size=vocab, emb_sz=emb, n_hid=hid, n_layers=3)
    params = awd_lstm.init_lm_params(key, config)
    opt = optax.adam(1e-3, b1=0.7, b2=0.99)
    opt_state = opt.init(params)

    @jax.jit
    def adam(params, grads, opt_state):
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    rows.append(("adam update", _time(adam, params, params, opt_state), 0))
    for name, (med, best), flops in rows:
        rate = f"{flops / med / 1e9:6.0f} GFLOP/s" if flops else ""
        print(f"{name:34s} {med * 1e3:8.1f} ms  [{best * 1e3:7.1f}]  {rate}", flush=True)
    total_flops = bench_lm.flops_per_item(size) * b * t
    print(f"step FLOPs {total_flops / 1e9:.0f} G")


KERNEL_BACKENDS = {
    "ynn": None,  # this jaxlib's default: YNNPACK for the dots it supports
    "eigen": {"xla_cpu_experimental_ynn_fusion_type": ""},
    "onednn": {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_use_onednn": True},
}


def _kernel_cases(size: dict) -> dict:
    """Every matmul shape of the LM step: name -> (fn, args, FLOPs)."""
    b, t, hid, emb, vocab = size["batch"], size["bptt"], size["hid"], size["emb"], size["vocab"]
    n, key = b * t, jax.random.key(0)
    r = lambda *shape: jax.random.normal(key, shape) * 0.01  # noqa: E731

    def scan_mm(transpose_w: bool):
        def fn(xs, w):
            def body(carry, x_t):
                y = (x_t + carry[:, : x_t.shape[1]] * 0.0) @ (w.T if transpose_w else w)
                return y[:, :1] * 0.0 + carry, y

            return jax.lax.scan(body, jnp.zeros((xs.shape[1], xs.shape[2])), xs)[1]

        return fn

    return {
        "2048^3": (lambda a: a @ a, (r(2048, 2048),), 2 * 2048**3),
        "rec fwd h@W_hh (scan)": (
            scan_mm(False),
            (r(t, b, hid), r(hid, 4 * hid)),
            2 * n * hid * 4 * hid,
        ),
        "rec bwd dz@W_hh^T (W.T in loop)": (
            scan_mm(True),
            (r(t, b, 4 * hid), r(hid, 4 * hid)),
            2 * n * hid * 4 * hid,
        ),
        "rec bwd dz@Wt (pre-transposed)": (
            scan_mm(False),
            (r(t, b, 4 * hid), r(4 * hid, hid)),
            2 * n * hid * 4 * hid,
        ),
        "proj x@W_ih [N,K]x[K,4H]": (
            lambda x, w: x @ w,
            (r(n, hid), r(hid, 4 * hid)),
            2 * n * hid * 4 * hid,
        ),
        "proj bti,ig->tbg": (
            lambda x, w: jnp.einsum("bti,ig->tbg", x, w),
            (r(b, t, hid), r(hid, 4 * hid)),
            2 * n * hid * 4 * hid,
        ),
        "dW x^T@dg (TN)": (lambda x, g: x.T @ g, (r(n, hid), r(n, 4 * hid)), 2 * n * hid * 4 * hid),
        "dx dg@W^T (NT)": (
            lambda g, w: g @ w.T,
            (r(n, 4 * hid), r(hid, 4 * hid)),
            2 * n * hid * 4 * hid,
        ),
        "decoder h@E^T (NT)": (
            lambda h, e: h @ e.T,
            (r(n, emb), r(vocab, emb)),
            2 * n * emb * vocab,
        ),
        "decoder dE dl^T@h (TN)": (
            lambda d, h: d.T @ h,
            (r(n, vocab), r(n, emb)),
            2 * n * emb * vocab,
        ),
        "decoder dh dl@E (NN)": (
            lambda d, e: d @ e,
            (r(n, vocab), r(vocab, emb)),
            2 * n * emb * vocab,
        ),
    }


def kernels(args) -> None:
    """Each matmul of the step under each XLA:CPU dot backend, interleaved over rounds."""
    cases = _kernel_cases(bench_lm.SIZES[args.size])
    backends = args.backends.split(",")
    compiled, times = {}, {}
    for name, (fn, fargs, _) in cases.items():
        for backend in backends:
            c = jax.jit(fn).lower(*fargs).compile(KERNEL_BACKENDS[backend])
            text = c.as_text()
            kind = "ynn" if "ynn_fusion" in text else ("onednn" if "onednn" in text else "dot")
            jax.block_until_ready(c(*fargs))
            compiled[name, backend], times[name, backend] = (c, fargs, kind), []
    cpu = {k: [] for k in times}
    for _ in range(args.rounds):
        for (name, backend), (c, fargs, _) in compiled.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(c(*fargs))
            times[name, backend].append(time.perf_counter() - start)
            cpu[name, backend].append(time.process_time() - start_cpu)
    for name, (_, _, flops) in cases.items():
        cells = []
        for backend in backends:
            ts = times[name, backend]
            kind = compiled[name, backend][2]
            cells.append(
                f"{backend}({kind}) {flops / np.median(ts) / 1e9:4.0f}/{flops / min(ts) / 1e9:4.0f}"
                f"/{flops / np.median(cpu[name, backend]) / 1e9:4.0f}"
            )
        print(f"{name:34s} " + "  ".join(cells), flush=True)
    print("GFLOP/s: wall median / wall best / per CPU-second (median)")


def trace(args) -> None:
    """Profile a few train steps with `jax.profiler`; sum each XLA:CPU thunk's time over threads.

    Prints, per HLO instruction, the thread-time per step, its share of all thunk time, how many
    times it ran per step, and the instruction (shape, kind, the JAX op it came from).
    """
    import collections
    import glob
    import re
    import tempfile

    size = bench_lm.SIZES[args.size]
    impl, options = _parse_variant(args.variants.split(",")[0])
    run = make_train_step(size, impl, {**options, "xla_cpu_enable_xprof_traceme": True})
    run()
    hlo = make_train_step.last_compiled.as_text()
    info = {}
    for line in hlo.splitlines():
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (\S+) (\w[\w-]*)\(", line)
        if m:
            op = re.search(r'op_name="([^"]+)"', line)
            info[m.group(1)] = f"{m.group(2)[:40]} {m.group(3)} {op.group(1)[-70:] if op else ''}"
    logdir = tempfile.mkdtemp(prefix="lstm_trace_")
    with jax.profiler.trace(logdir):
        for _ in range(args.steps):
            run()
    (path,) = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
    totals, counts = collections.Counter(), collections.Counter()
    for plane in jax.profiler.ProfileData.from_file(path).planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in info:
                    totals[event.name] += event.duration_ns
                    counts[event.name] += 1
    everything = sum(totals.values())
    print(f"thunk time over all threads: {everything / args.steps / 1e6:.0f} ms/step")
    for name, ns in totals.most_common(args.top):
        per_step = ns / args.steps / 1e6
        print(
            f"{per_step:8.1f} ms {ns / everything:5.1%} x{counts[name] / args.steps:<6.0f} "
            f"{name[:28]:28s} {info[name]}"
        )


def compile_times(args) -> None:
    """Trace+lower and XLA compile seconds of the train step, per variant (no step is run)."""
    size = bench_lm.SIZES[args.size]
    for spec in args.variants.split(","):
        impl, options = _parse_variant(spec)
        start_cpu = time.process_time()
        make_train_step(size, impl, options or None)
        lower_s, compile_s = make_train_step.last_times
        print(
            f"{spec}: trace+lower {lower_s:.1f} s, compile {compile_s:.1f} s "
            f"(CPU {time.process_time() - start_cpu:.1f} s)",
            flush=True,
        )


def peak(args) -> None:
    """Matmul throughput at several sizes, min and median over repeats."""
    for n in (512, 1024, 2048, 3072, 4096):
        a = jnp.ones((n, n), jnp.float32)
        med, best = _time(jax.jit(lambda x: x @ x), a, reps=args.rounds)
        print(
            f"{n}^3: best {2 * n**3 / best / 1e9:5.0f}  median {2 * n**3 / med / 1e9:5.0f} GFLOP/s"
        )


def _layout_case(t: int, batch: int, hid: int, rounds: int) -> str:
    rng = np.random.default_rng(0)
    gates_x = jnp.asarray(rng.standard_normal((t, batch, 4 * hid)), jnp.float32)
    w_hh = jnp.asarray(rng.standard_normal((hid, 4 * hid)) * 0.03, jnp.float32)
    h0 = jnp.asarray(rng.standard_normal((batch, hid)), jnp.float32)
    lengths = rng.integers(t // 2, t + 1, batch)
    mask = jnp.asarray(np.arange(t)[:, None] < lengths[None, :])
    d_out = jnp.asarray(rng.standard_normal((t, batch, hid)), jnp.float32)

    def make(feature_major):
        def loss(gates_x, w_hh, h0):
            out, h, c = lstm.lstm_recurrence(
                gates_x, w_hh, h0, h0, mask, feature_major=feature_major
            )
            return jnp.sum(out * d_out) + jnp.sum(h) + jnp.sum(c)

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))

    fns = {"feature-major": make(True), "batch-major": make(False)}
    times = {name: [] for name in fns}
    for fn in fns.values():
        jax.block_until_ready(fn(gates_x, w_hh, h0))
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(gates_x, w_hh, h0))
            times[name].append(time.perf_counter() - start)
    flops = 3 * 2 * t * batch * hid * 4 * hid  # the step matmuls, forward and backward
    cells = [
        f"{name} {flops / np.median(ts) / 1e9:4.0f}/{flops / min(ts) / 1e9:4.0f}"
        for name, ts in times.items()
    ]
    return f"batch {batch:4d}, hidden {hid}: " + "  ".join(cells) + "  GFLOP/s median/best"


def layout(args) -> None:
    """One layer's recurrence (`lstm.lstm_recurrence`, forward and backward, padded rows) with
    its loop state feature-major (`[H, batch]`) and batch-major, interleaved over rounds."""
    size = bench_lm.SIZES[args.size]
    for batch in (size["batch"], 2 * size["batch"]):
        print(_layout_case(size["bptt"], batch, size["hid"], args.rounds), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "mode", choices=["ab", "parts", "peak", "kernels", "trace", "compile", "layout"]
    )
    parser.add_argument("--top", type=int, default=60)
    parser.add_argument("--backends", default="ynn,eigen,onednn")
    parser.add_argument("--size", default="small")
    parser.add_argument("--variants", default="custom_vjp,autodiff")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    {
        "ab": ab,
        "parts": parts,
        "peak": peak,
        "kernels": kernels,
        "trace": trace,
        "compile": compile_times,
        "layout": layout,
    }[args.mode](args)


if __name__ == "__main__":
    main()
