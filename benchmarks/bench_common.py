"""What every benchmark of `benchmarks.bench` shares: step timing, the matmul peak, peak memory,
compilation counting, and the table renderers.

A measurement is a plain dict (it crosses a process boundary as JSON):

    {"step_s": median seconds per step, "min_s": fastest step, "first_s": the first call,
     "compile_s": first_s - step_s (JAX; None for eager PyTorch), "peak_mib": ...,
     "base_mib": ..., "peak_scope": "variant" | "process" | "device"}
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from collections.abc import Callable

import numpy as np


def save_json(path: str, result: dict) -> None:
    """Write a benchmark's result as indented JSON (nothing when `path` is empty)."""
    if path:
        import json

        with open(path, "w") as f:
            json.dump(result, f, indent=2)


def cpu_threads() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def time_steps(step: Callable[[], None], steps: int) -> dict:
    """Time `step` (which must block until its work is done): the first call, the second, then
    `steps` more.

    Returns `{"first_s", "second_s", "step_s" (median of the last `steps`), "min_s"}`. The
    second call is kept out of the median: a step whose outputs are placed differently from its
    first inputs compiles again there (`second_s` shows it). The median is the steady state; the
    minimum is the least disturbed by other jobs on a shared machine.
    """
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    start = time.perf_counter()
    step()
    second = time.perf_counter() - start
    times = []
    for _ in range(max(steps, 1)):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median, fastest = float(np.median(times)), float(min(times))
    return {"first_s": first, "second_s": second, "step_s": median, "min_s": fastest}


def time_train_step(step: Callable, state, batch, steps: int) -> dict:
    """`time_steps` of a `(state, batch) -> (state, metrics)` train step on one fixed batch,
    each call taking the state the previous one returned (a donated state cannot be reused)."""
    import jax

    carry = {"state": state}

    def one():
        carry["state"], metrics = step(carry["state"], batch)
        jax.block_until_ready(metrics)

    return time_steps(one, steps)


def matmul_peak_flops(dtype: str = "float32", n: int = 2048, repeats: int = 5) -> float:
    """Measured `n x n` matmul throughput of the default JAX device in FLOP/s (best of repeats)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times)


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------


def current_rss_mib() -> float:
    """Resident memory of this process now (Linux `/proc`; the high-water mark elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return max_rss_mib()


def max_rss_mib() -> float:
    """This process's peak resident memory (`ru_maxrss`: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def jax_peak_mib() -> tuple[float, str]:
    """Peak memory of the JAX device: the allocator's `peak_bytes_in_use` where the device
    reports it (GPU, TPU), else the process's peak RSS (CPU). Returns `(MiB, scope)`."""
    import jax

    stats = jax.devices()[0].memory_stats()
    if stats and "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, "device"
    return max_rss_mib(), "process"


def torch_peak_mib(device: str) -> tuple[float, str]:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20, "device"
    return max_rss_mib(), "process"


def torch_setup(device: str):
    """Import torch with one thread per available CPU, as JAX's CPU backend uses them all."""
    import torch

    torch.set_num_threads(cpu_threads())
    torch.manual_seed(0)
    return torch, torch.device(device)


def torch_sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_torch_train_step(loss_of_step: Callable, opt, device: str, steps: int) -> dict:
    """`time_steps` of a PyTorch training step: `loss_of_step()` (the forward pass, a scalar
    loss tensor), its backward pass and `opt.step()`, then a device sync."""

    def one():
        opt.zero_grad()
        loss_of_step().backward()
        opt.step()
        torch_sync(device)

    return time_steps(one, steps)


def ar_tar(dropped, raw):
    """fastai's activation (alpha 2) and temporal activation (beta 1) regularisation of a
    PyTorch LSTM's outputs float[batch, time, emb]: `dropped` after its output dropout."""
    return 2.0 * dropped.pow(2).mean() + (raw[:, 1:] - raw[:, :-1]).pow(2).mean()


# --------------------------------------------------------------------------------------------
# Compilations
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def count_compilations():
    """Count XLA backend compilations (every jitted function) inside the block.

    Yields a dict whose "compilations" and "compile_s" fill in as the block runs.
    """
    import jax

    counts = {"compilations": 0, "compile_s": 0.0}

    def listener(name, duration, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            counts["compilations"] += 1
            counts["compile_s"] += duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def jit_cache_size(fn) -> int | None:
    """Number of compiled specialisations a `jax.jit` function holds (None if unknown). A
    wrapper that exposes its jitted core as `.jitted` (the library's train steps) is looked
    through."""
    size = getattr(getattr(fn, "jitted", fn), "_cache_size", None)
    return size() if callable(size) else None


class CompileLog:
    """Which steps of a loop made a jitted step compile, and whether their width was new.

    A compilation at a width already seen is a recompilation inside the epoch (what issue 7
    forbids); one compilation per distinct width is the expected count.
    """

    def __init__(self, step):
        self.step, self.widths, self.events = step, set(), []
        self._size = jit_cache_size(step) or 0

    def after(self, index: int, width: int) -> None:
        size = jit_cache_size(self.step)
        new_width = width not in self.widths
        self.widths.add(width)
        if size is not None and size > self._size:
            self.events.append({"step": index, "width": width, "new_width": new_width})
            self._size = size

    def summary(self) -> dict:
        return {
            "distinct_widths": len(self.widths),
            "max_width": max(self.widths, default=0),
            "step_compilations": len(self.events),
            "recompilations": sum(not e["new_width"] for e in self.events),
            "compiled_at": self.events,
        }


def epoch_compilations(name: str, step, step_fn, state, batches, on_batch=None) -> dict:
    """Run a real train step over one epoch and count its compilations.

    `step` is the jitted step (whose cache `CompileLog` watches), `step_fn(state, batch)` what
    the training loop calls, `batches` the epoch (each batch's `tokens` is `[batch, width]`);
    `on_batch(batch)` sees every batch, for the caller's own tallies. Returns the row of the
    README's compilations table: name, steps, `CompileLog.summary()`, and the XLA compilations
    and seconds of the whole epoch.
    """
    import jax

    log, n_steps, metrics = CompileLog(step), 0, None
    with count_compilations() as counts:
        for n_steps, batch in enumerate(batches, 1):
            state, metrics = step_fn(state, batch)
            log.after(n_steps - 1, batch.tokens.shape[1])
            if on_batch is not None:
                on_batch(batch)
        jax.block_until_ready(metrics)
    return {
        "name": name,
        "steps": n_steps,
        **log.summary(),
        "xla_compilations": counts["compilations"],
        "compile_s": counts["compile_s"],
    }


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

COLUMNS = (
    ("benchmark", "benchmark"),
    ("size", "size"),
    ("variant", "variant"),
    ("throughput", "throughput"),
    ("step s", "step_s"),
    ("compile s", "compile_s"),
    ("peak MiB", "peak_mib"),
    ("vs torch", "vs_torch"),
    ("of limit", "of_limit"),
)


def _throughput(x: float) -> str:
    """Three significant figures for small rates (0.43 docs/s), whole numbers from 100 up."""
    return f"{x:,.{0 if x >= 100 else 1 if x >= 10 else 2}f}"


def _cells(row: dict) -> list[str]:
    def num(x, fmt):
        return "-" if x is None else format(x, fmt)

    if row.get("error"):
        status = "skipped" if row.get("skipped") else "failed"
        return [row["benchmark"], row["size"], row["variant"], status, *["-"] * 5]
    return [
        row["benchmark"],
        row["size"],
        row["variant"],
        f"{_throughput(row['throughput'])} {row['unit']}",
        num(row["step_s"], ".3f"),
        num(row["compile_s"], ".1f"),
        num(row["peak_mib"], ",.0f"),
        "-" if row["vs_torch"] is None else f"{row['vs_torch']:.2f}x",
        num(row["of_limit"], ".0%"),
    ]


def render_table(rows: list[dict]) -> str:
    """A fixed-width text table of benchmark rows (see `benchmarks.bench` for the row fields)."""
    header = [name for name, _ in COLUMNS]
    body = [_cells(r) for r in rows]
    widths = [max(len(c) for c in col) for col in zip(header, *body, strict=True)]
    left = {0, 1, 2}

    def line(cells):
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), *(line(c) for c in body)])


def render_markdown(result: dict) -> str:
    """The README's table: a caption with date, device and peak, the rows, the limits and the
    compilation checks of a `benchmarks.bench` JSON result."""
    peaks = ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in result["peak_flops"].items())
    lines = [
        f"Measured {result['date']} on {result['device']} ({result['threads']} threads; "
        f"matmul peak {peaks}); `python -m benchmarks.bench`.",
        "",
        "| " + " | ".join(name for name, _ in COLUMNS) + " |",
        "| " + " | ".join("---" if i < 3 else "---:" for i in range(len(COLUMNS))) + " |",
    ]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in result["rows"]]
    if result.get("limits"):
        lines += ["", "| benchmark | size | FLOPs per item | limit at the matmul peak |"]
        lines += ["| --- | --- | ---: | ---: |"]
        for lim in result["limits"]:
            lines.append(
                f"| {lim['benchmark']} | {lim['size']} | {lim['flops_per_item'] / 1e6:,.1f} M | "
                f"{lim['limit']:,.0f} {lim['unit']} |"
            )
    if result.get("compile_checks"):
        lines += [
            "",
            "| epoch simulated | steps | distinct widths | step compilations | at a seen width |",
        ]
        lines += ["| --- | ---: | ---: | ---: | ---: |"]
        for c in result["compile_checks"]:
            lines.append(
                f"| {c['name']} | {c['steps']} | {c['distinct_widths']} | "
                f"{c['step_compilations']} | {c['recompilations']} |"
            )
    return "\n".join(lines)
