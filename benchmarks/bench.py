"""Benchmark ULMFiT and ELMo against PyTorch and the hardware limit, on this machine, in one run.

    python -m benchmarks.bench [--benchmarks lm,classifier,elmo] [--sizes small,full] [--steps 5]
        [--impls custom_vjp,autodiff] [--dtypes float32] [--no-torch] [--json out.json]
        [--markdown out.md] [--quick] [--no-isolate] [--no-compile-checks]
    python -m benchmarks.bench --from-json out.json --markdown -      # re-render a saved run

Benchmarks (one module each):

* `lm` (benchmarks/bench_lm.py): AWD-LSTM language-model training, tokens/s;
* `classifier` (benchmarks/bench_classifier.py): ULMFiT classifier training (BPT3C), documents/s;
* `elmo` (benchmarks/bench_elmo.py): ELMo embedding (inference, random weights), tokens/s.

Each variant (ours per LSTM implementation and dtype; PyTorch equivalents when torch is
installed) runs in a fresh subprocess, so its peak memory is its own: the device allocator's
`peak_bytes_in_use` where the device reports one, else the process's peak RSS (which includes
the interpreter and libraries: `base_mib` in the JSON is the RSS before the model was built).
Step time is the median over `--steps` steps after the first; compile time is the first step
minus that median. The limit is FLOPs per item (token or document) over the measured matmul
peak of the device; `of limit` is the fraction of it reached. The compilation checks run the
real train steps (tiny model) over a simulated epoch of real-length-distributed batches and
compare the step's compilations with the epoch's distinct padded widths.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time

from benchmarks import bench_classifier, bench_common, bench_elmo, bench_lm

BENCHMARKS = {"lm": bench_lm, "classifier": bench_classifier, "elmo": bench_elmo}
SIZE_ALIASES = {"elmo": {"full": "original"}}
MARKER = "BENCH_RESULT "


def supports_compute_dtype(benchmark: str) -> bool:
    """Whether a benchmark's model config takes a `compute_dtype` (for bfloat16 rows)."""
    from ulmfit_jax import AWDLSTMConfig, ClassifierConfig

    config = {"lm": AWDLSTMConfig, "classifier": ClassifierConfig}.get(benchmark)
    return config is not None and "compute_dtype" in {f.name for f in dataclasses.fields(config)}


def variants(benchmark: str, impls: list[str], dtypes: list[str], torch: bool) -> list[str]:
    """Ours for every LSTM impl and dtype the model supports, then the PyTorch equivalents."""
    module = BENCHMARKS[benchmark]
    if not supports_compute_dtype(benchmark):
        dtypes = ["float32"]
    if benchmark == "elmo":
        ours = ["jax"]  # the biLM has one implementation
    else:
        ours = [
            f"jax {impl}" + ("" if dtype == "float32" else f" {dtype}")
            for impl in impls
            for dtype in dtypes
            if impl != "cudnn" or dtype == "float32"  # cuDNN's binding has no bfloat16 path
        ]
    return ours + (list(module.TORCH_VARIANTS) if torch else [])


# --------------------------------------------------------------------------------------------
# One measurement, in this process (the worker's job)
# --------------------------------------------------------------------------------------------


def _device_info(dtypes: list[str]) -> dict:
    import jax

    device = jax.devices()[0]
    info = {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "threads": bench_common.cpu_threads(),
        "jax_version": jax.__version__,
        "peak_flops": {d: bench_common.matmul_peak_flops(d) for d in dtypes},
    }
    name = device.device_kind
    if device.platform == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                name = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
        except (OSError, StopIteration):
            pass
    info["device"] = f"{device.platform} ({name})"
    return info


def run_job(job: dict) -> dict:
    """Run one job: `{"info": dtypes}`, `{"check": benchmark, "quick": bool}` or a measurement
    `{"benchmark", "size", "variant", "steps", "platform"}`."""
    if "info" in job:
        return _device_info(job["info"])
    if "check" in job:
        module = BENCHMARKS[job["check"]]
        spec = module.QUICK_EPOCH if job.get("quick") else module.EpochSpec()
        return module.epoch_compilations(spec)
    module = BENCHMARKS[job["benchmark"]]
    size = module.SIZES[job["size"]]
    if job["variant"].startswith("torch"):
        torch_device = "cpu"
        import torch

        if job.get("platform") == "gpu" and torch.cuda.is_available():
            torch_device = "cuda"
        base = bench_common.current_rss_mib()
        result = module.measure_torch(size, job["variant"], job["steps"], torch_device)
        peak, scope = bench_common.torch_peak_mib(torch_device)
        result["compile_s"] = None  # eager: nothing to compile
        result["torch_version"] = torch.__version__
        result["torch_device"] = torch_device
    else:
        import jax

        jax.devices()  # start the backend before taking the baseline
        base = bench_common.current_rss_mib()
        result = module.measure_jax(size, job["variant"], job["steps"])
        peak, scope = bench_common.jax_peak_mib()
        result["compile_s"] = max(result["first_s"] - result["step_s"], 0.0)
        # Measured again beside each variant: on a shared machine one early measurement can
        # catch a busy moment; the run keeps the highest (`finalize_limits`).
        result["matmul_peak_flops"] = bench_common.matmul_peak_flops("float32", repeats=3)
    return {**result, "peak_mib": peak, "base_mib": base, "peak_scope": scope}


def _worker(job_json: str) -> None:
    result = run_job(json.loads(job_json))
    print(MARKER + json.dumps(result), flush=True)


def run_isolated(job: dict, timeout: float | None = None) -> dict:
    """Run a job in a fresh Python process; `{"error": ...}` when it fails."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "benchmarks.bench", "--worker", json.dumps(job)]
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {proc.returncode}: {tail}"}


def run_here(job: dict) -> dict:
    try:
        result = run_job(job)
    except Exception as e:  # noqa: BLE001 (one failed variant must not end the benchmark)
        return {"error": f"{type(e).__name__}: {e}"}
    if "peak_scope" in result and result["peak_scope"] == "process":
        result["peak_scope"] = "process (not isolated)"
    return result


# --------------------------------------------------------------------------------------------
# The whole program
# --------------------------------------------------------------------------------------------


def _row(benchmark, size_name, variant, measurement, module, size, peak_flops) -> dict:
    dtype = variant.split()[2] if variant.startswith("jax") and len(variant.split()) > 2 else None
    flops = module.flops_per_item(size)
    peak = peak_flops.get(dtype or "float32", peak_flops["float32"])
    row = {
        "benchmark": benchmark,
        "size": size_name,
        "variant": variant,
        "dtype": dtype or "float32",
        "unit": module.UNIT,
        "items_per_step": module.items_per_step(size),
        "flops_per_item": flops,
        "throughput": 0.0,
        "step_s": None,
        "compile_s": None,
        "peak_mib": None,
        "vs_torch": None,
        "of_limit": None,
        **measurement,
    }
    if "error" not in measurement:
        row["throughput"] = row["items_per_step"] / row["step_s"]
        row["of_limit"] = row["throughput"] * flops / peak
    return row


def measure_size(
    run, benchmark: str, size_name: str, names: list[str], info: dict, steps: int, repeats: int = 1
) -> list[dict]:
    """Rows of one benchmark size: every variant, then the ratios to the PyTorch reference.

    With `repeats > 1` the variants are measured in rounds, each round in the reverse order of
    the one before (ours, torch, torch, ours, ...), so that a machine whose speed drifts during
    the run favours no variant; each row keeps its fastest round (`step_s_rounds` lists all).
    """
    module = BENCHMARKS[benchmark]
    size = module.SIZES[size_name]
    best: dict[str, dict] = {}
    rounds: dict[str, list] = {variant: [] for variant in names}
    for round_index in range(max(repeats, 1)):
        order = names if round_index % 2 == 0 else names[::-1]
        for variant in order:
            job = {"benchmark": benchmark, "size": size_name, "variant": variant, "steps": steps}
            measured = run(job | {"platform": info["platform"]})
            rounds[variant].append(measured.get("step_s"))
            kept = best.get(variant)
            if (
                kept is None
                or "error" in kept
                or ("error" not in measured and measured["step_s"] < kept["step_s"])
            ):
                best[variant] = measured
            status = measured.get("error") or f"{measured['step_s']:.3f} s/step"
            print(f"  {variant} (round {round_index + 1}): {status}", flush=True)
    rows = []
    for variant in names:
        measured = dict(best[variant])
        if repeats > 1:
            measured["step_s_rounds"] = rounds[variant]
        row = _row(benchmark, size_name, variant, measured, module, size, info["peak_flops"])
        rows.append(row)
        status = row.get("error") or f"{row['throughput']:,.1f} {module.UNIT}"
        print(f"  {variant}: {status}", flush=True)
    reference = next((r for r in rows if r["variant"] == module.REFERENCE), None)
    if reference and "error" not in reference:
        for r in rows:
            if "error" not in r:
                r["vs_torch"] = r["throughput"] / reference["throughput"]
    return rows


def finalize_limits(result: dict) -> None:
    """Set the float32 peak to the highest measured in the run, then every limit from it."""
    seen = [r["matmul_peak_flops"] for r in result["rows"] if r.get("matmul_peak_flops")]
    peaks = result["peak_flops"]
    peaks["float32"] = max([peaks["float32"], *seen])
    for lim in result["limits"]:
        lim["limit"] = peaks["float32"] / lim["flops_per_item"]
    for r in result["rows"]:
        if "error" not in r:
            r["of_limit"] = (
                r["throughput"] * r["flops_per_item"] / peaks.get(r["dtype"], peaks["float32"])
            )


def measure(args) -> dict:
    run = run_here if args.no_isolate else run_isolated
    torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    dtypes = args.dtypes.split(",")
    for benchmark in args.benchmarks.split(","):
        if dtypes != ["float32"] and not supports_compute_dtype(benchmark):
            print(f"{benchmark}: float32 only (its config has no compute_dtype)")
    info = run({"info": sorted(set(dtypes) | {"float32"})})
    if "error" in info:
        raise SystemExit(f"could not start JAX: {info['error']}")
    peaks = ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in info["peak_flops"].items())
    print(f"device: {info['device']}, {info['threads']} threads; matmul peak {peaks}")
    result = {
        "date": time.strftime("%Y-%m-%d"),
        **info,
        "steps": args.steps,
        "repeats": args.repeats,
        "isolated": not args.no_isolate,
        "rows": [],
        "limits": [],
        "compile_checks": [],
    }
    for benchmark in args.benchmarks.split(","):
        module = BENCHMARKS[benchmark]
        for size_name in args.sizes.split(","):
            size_name = SIZE_ALIASES.get(benchmark, {}).get(size_name, size_name)
            size = module.SIZES[size_name]
            flops = module.flops_per_item(size)
            limit = info["peak_flops"]["float32"] / flops
            result["limits"].append(
                {"benchmark": benchmark, "size": size_name, "unit": module.UNIT}
                | {"flops_per_item": flops, "limit": limit}
            )
            print(f"{benchmark} {size_name}: {size}; limit {limit:,.0f} {module.UNIT}")
            names = variants(benchmark, args.impls.split(","), dtypes, torch)
            result["rows"] += measure_size(
                run, benchmark, size_name, names, info, args.steps, args.repeats
            )
        if not args.no_compile_checks and hasattr(module, "epoch_compilations"):
            check = run({"check": benchmark, "quick": args.quick})
            if "error" not in check:
                result["compile_checks"].append(check)
            print(f"  compilations over an epoch: {check}", flush=True)
    finalize_limits(result)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", default="lm,classifier,elmo")
    parser.add_argument("--sizes", default="small,full", help="'full' is ELMo's 'original'")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds per variant, alternating order; keeps best"
    )
    parser.add_argument(
        "--impls", default=None, help="LSTM impls (default custom_vjp,autodiff; quick: custom_vjp)"
    )
    parser.add_argument("--dtypes", default="float32", help="e.g. float32,bfloat16")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--markdown", default=None, help="write the README table here (- prints)")
    parser.add_argument("--from-json", default=None, help="render a saved result, measure nothing")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, 2 steps (smoke test)")
    parser.add_argument("--no-isolate", action="store_true", help="measure in this process")
    parser.add_argument("--no-compile-checks", action="store_true")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker)
        return {}
    if args.quick:
        args.sizes, args.steps = "tiny", min(args.steps, 2)
    if args.impls is None:
        args.impls = "custom_vjp" if args.quick else "custom_vjp,autodiff"

    if args.from_json:
        with open(args.from_json) as f:
            result = json.load(f)
    else:
        result = measure(args)
    print(bench_common.render_table(result["rows"]))
    for check in result["compile_checks"]:
        print(
            f"{check['name']}: {check['steps']} steps, {check['distinct_widths']} distinct "
            f"widths, {check['step_compilations']} step compilations, {check['recompilations']} "
            f"at a width already compiled ({check['compile_s']:.1f} s of XLA compilation)"
        )
    bench_common.save_json(args.json, result)
    if args.markdown:
        text = bench_common.render_markdown(result)
        if args.markdown == "-":
            print(text)
        else:
            with open(args.markdown, "w") as f:
                f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
