"""One prepared device check (issue 22): tests, benchmarks and a time estimate on a lent GPU.

    bash benchmarks/gpu_check.sh            # on the GPU machine: installs .whl/, then this
    python -m benchmarks.gpu_check [--quick] [--out DIR] [--deadline-s 480] [--parts ...]

Parts, in order, each in its own process with its own time budget, all under one global
deadline; a part that fails or runs out of time is recorded as such and the next one runs:

1. `device`: platform, versions, and the measured float32 and bfloat16 matmul peaks (random
   `n x n` operands, n = 8192 on a GPU; float32 at JAX's default precision, the one the
   models' matmuls use, which may run as TF32 on a GPU);
2. `tests`: pytest on the GPU-relevant tests (cuDNN against the scan path, bfloat16, the
   sharding tests that run on one device), pass/fail counts and the failures' short text;
3. `fragments`: N steps of the real LM and classifier train steps at `train.reproduce --size
   full` shapes and the extrapolated time of that whole run (`benchmarks.gpu_fragments`);
4. `bench`: `benchmarks.bench`'s LM, classifier and ELMo rows, full sizes first, then small:
   custom VJP, autodiff scan and cuDNN, float32 and bfloat16, PyTorch (fastai's AWD-LSTM from
   `nn.LSTM`'s kernel with weight dropout, and plain `nn.LSTM` without it), each variant in a
   fresh process (compile time, device peak memory, fraction of the measured matmul peak).

Writes `gpu_check.json`, `gpu_check.md`, `gpu_check.log` (every part's output) and
`pytest.xml` under `--out` (default `$OUT`, else `./gpu_check_out`). `--quick` runs the same
parts on tiny shapes in about a minute or two on a CPU (cuDNN rows recorded as skipped), which
`tests/test_gpu_check.py` runs so the script keeps working between GPU sessions.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("device", "tests", "fragments", "bench")
BUDGETS = {"device": 60, "tests": 110, "fragments": 120, "bench": 400}  # seconds, GPU
QUICK_BUDGETS = {"device": 60, "tests": 60, "fragments": 150, "bench": 150}
QUICK_VARIANTS = ("jax custom_vjp", "torch nn.LSTM")  # the rest recorded as skipped
MARGIN_S = 10  # kept back from the deadline for writing the results

GPU_TESTS = [
    "tests/test_cudnn_lstm.py",
    "tests/test_precision.py",
    # The sharding tests that need no 8 devices; the 1-device sharded steps run in `fragments`.
    "tests/test_sharding.py::test_auto_mesh_and_errors",
    "tests/test_sharding.py::test_bilm_streams_split_by_host_into_the_single_host_batch",
]
QUICK_TESTS = [
    "tests/test_cudnn_lstm.py::test_pack_weights_layout",
    "tests/test_cudnn_lstm.py::test_cudnn_refuses_what_it_cannot_do",
]
# (benchmark, size): full sizes first, so that a short deadline still measures them.
BENCH_ORDER = [
    ("lm", "full"), ("classifier", "full"), ("elmo", "original"),
    ("lm", "small"), ("classifier", "small"), ("elmo", "small"),
]  # fmt: skip
IMPLS = ("custom_vjp", "autodiff", "cudnn")
DTYPES = ("float32", "bfloat16")


# --------------------------------------------------------------------------------------------
# Part 1: the device (runs in its own process)
# --------------------------------------------------------------------------------------------


def matmul_peak(dtype: str, n: int, repeats: int = 10) -> dict:
    """Best and median FLOP/s of an `n x n` matmul on random operands (two pairs, alternated)."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(0), 4)
    pairs = [
        (jax.random.normal(keys[i], (n, n), dtype), jax.random.normal(keys[i + 1], (n, n), dtype))
        for i in (0, 2)
    ]
    f = jax.jit(jnp.matmul)
    jax.block_until_ready([f(*p) for p in pairs])
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        f(*pairs[k % 2]).block_until_ready()
        times.append(time.perf_counter() - start)
    times.sort()
    flops = 2 * n**3
    return {"n": n, "best": flops / times[0], "median": flops / times[len(times) // 2]}


def device_part(quick: bool) -> dict:
    import jax

    from benchmarks import bench_common

    device = jax.devices()[0]
    n = 8192 if device.platform == "gpu" and not quick else 512
    peaks = {dtype: matmul_peak(dtype, n) for dtype in DTYPES}
    info = {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "device": f"{device.platform} ({device.device_kind})",
        "device_count": jax.device_count(),
        "threads": bench_common.cpu_threads(),
        "jax_version": jax.__version__,
        "python": sys.version.split()[0],
        "matmul": peaks,
        "peak_flops": {dtype: peak["best"] for dtype, peak in peaks.items()},
        "memory_stats": sorted((device.memory_stats() or {}).keys()),
    }
    if importlib.util.find_spec("torch") is not None:
        import torch

        cuda = torch.cuda.is_available()
        info["torch"] = {
            "version": torch.__version__,
            "cuda": cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        }
    return info


# --------------------------------------------------------------------------------------------
# Running a part under its budget and the deadline
# --------------------------------------------------------------------------------------------


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic() - MARGIN_S


def run_command(cmd: list[str], timeout: float, log, env: dict | None = None) -> dict:
    """Run `cmd` in the repository root; its output goes to `log`. Returns the part's record."""
    if timeout < 5:
        return {"status": "skipped", "reason": "no time left before the global deadline"}
    start = time.monotonic()
    log.write(f"\n$ {' '.join(cmd)}   (timeout {timeout:.0f} s)\n")
    log.flush()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
        )
        out, status, rc = (
            proc.stdout + proc.stderr,
            "ok" if proc.returncode == 0 else "failed",
            (proc.returncode),
        )
    except subprocess.TimeoutExpired as e:
        out = "".join(
            x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
            for x in (e.stdout, e.stderr)
        )
        status, rc = "timeout", None
    log.write(out)
    log.flush()
    record = {"status": status, "seconds": round(time.monotonic() - start, 1), "returncode": rc}
    if status != "ok":
        record["tail"] = out.strip().splitlines()[-15:]
    return record


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


# --------------------------------------------------------------------------------------------
# Part 2: the tests
# --------------------------------------------------------------------------------------------


def parse_junit(path: Path) -> dict:
    """Counts per file and the failures' short text from pytest's `--junitxml`."""
    root = ET.parse(path).getroot()
    files: dict[str, dict] = {}
    failures = []
    for case in root.iter("testcase"):
        name = case.get("classname", "").split(".")[-1] + "::" + case.get("name", "")
        counts = files.setdefault(
            case.get("classname", "?"), {"passed": 0, "failed": 0, "skipped": 0}
        )
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            counts["failed"] += 1
            text = (bad.get("message") or bad.text or "").strip().splitlines()
            failures.append({"test": name, "message": " ".join(text[:3])[:400]})
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    total = {k: sum(c[k] for c in files.values()) for k in ("passed", "failed", "skipped")}
    return {**total, "files": files, "failures": failures}


def tests_part(out: Path, quick: bool, platform: str, timeout: float, log) -> dict:
    xml = out / "pytest.xml"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if platform == "gpu":  # tests/conftest.py picks the CPU unless JAX_PLATFORMS says otherwise
        env["JAX_PLATFORMS"] = "cuda,cpu"
    selection = QUICK_TESTS if quick else GPU_TESTS
    cmd = python("-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *selection)
    record = run_command(cmd, timeout, log, env)
    record["selection"] = selection
    if xml.exists():
        record.update(parse_junit(xml))
        if record["status"] == "failed" and record.get("failed"):
            record["status"] = "ok"  # pytest ran; the failures are the result, counted above
    return record


# --------------------------------------------------------------------------------------------
# Part 4: the benchmarks (orchestrated here, every variant in its own process)
# --------------------------------------------------------------------------------------------


def bench_variants(
    benchmark: str, platform: str, torch: bool, quick: bool = False
) -> tuple[list[str], dict[str, str]]:
    """(variants to measure, {variant: why skipped}): cuDNN's without a GPU, most in quick."""
    from benchmarks import bench

    module = bench.BENCHMARKS[benchmark]
    names = bench.variants(benchmark, list(IMPLS), list(DTYPES), torch)
    if torch:
        names += list(getattr(module, "TORCH_EXTRA_VARIANTS", ()))
    skipped = {}
    for name in names:
        if "cudnn" in name.split() and platform != "gpu":
            skipped[name] = "skipped: cuDNN needs an NVIDIA GPU"
        elif quick and name not in QUICK_VARIANTS:
            skipped[name] = "skipped: --quick"
    return [n for n in names if n not in skipped], skipped


def bench_part(info: dict, quick: bool, deadline: Deadline, budget: float, log) -> dict:
    from benchmarks import bench, bench_common

    start = time.monotonic()
    end = min(deadline.left(), budget) + start
    torch = importlib.util.find_spec("torch") is not None
    steps = 2 if quick else 10
    order = [("lm", "tiny")] if quick else BENCH_ORDER
    result = {
        "date": time.strftime("%Y-%m-%d"),
        **{k: info[k] for k in ("platform", "device_kind", "device", "threads", "jax_version")},
        "peak_flops": dict(info["peak_flops"]),
        "steps": steps,
        "repeats": 1,
        "isolated": True,
        "rows": [],
        "limits": [],
        "compile_checks": [],
    }
    per_variant = 90

    def run(job: dict) -> dict:
        left = end - time.monotonic()
        if left < 5:
            return {"error": "skipped: no time left in the bench part", "skipped": True}
        log.write(f"bench {job['benchmark']} {job['size']} {job['variant']}\n")
        log.flush()
        return bench.run_isolated(job, timeout=min(per_variant, left))

    for benchmark, size_name in order:
        module = bench.BENCHMARKS[benchmark]
        flops = module.flops_per_item(module.SIZES[size_name])
        result["limits"].append(
            {"benchmark": benchmark, "size": size_name, "unit": module.UNIT}
            | {"flops_per_item": flops, "limit": info["peak_flops"]["float32"] / flops}
        )
        names, skipped = bench_variants(benchmark, info["platform"], torch, quick)
        rows = bench.measure_size(run, benchmark, size_name, names, info, steps)
        for name, why in skipped.items():
            row = bench._row(
                benchmark, size_name, name, {"error": why, "skipped": True},
                module, module.SIZES[size_name], info["peak_flops"],
            )  # fmt: skip
            rows.append(row)
        result["rows"] += rows
    bench.finalize_limits(result)
    for row in result["rows"]:
        row.pop("matmul_peak_flops", None)  # the 2048 check beside each variant; see `device`
    failed = [r for r in result["rows"] if r.get("error") and not r.get("skipped")]
    status = "ok" if not failed else "failed"
    log.write(bench_common.render_table(result["rows"]) + "\n")
    return {"status": status, "seconds": round(time.monotonic() - start, 1), **result}


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def _rate(flops: float) -> str:
    return f"{flops / 1e12:,.1f} TFLOP/s" if flops >= 1e12 else f"{flops / 1e9:,.1f} GFLOP/s"


def render_markdown(report: dict) -> str:
    from benchmarks import bench_common

    parts = report["parts"]
    lines = [f"# GPU check, {report['date']}: {report.get('device', '?')}", ""]
    lines += ["| part | status | seconds | budget s |", "| --- | --- | ---: | ---: |"]
    for name in PARTS:
        p = parts.get(name, {})
        lines.append(
            f"| {name} | {p.get('status', '-')} | {p.get('seconds', '-')} | "
            f"{report['budgets'].get(name, '-')} |"
        )
    device = parts.get("device", {})
    if device.get("matmul"):
        lines += [""] + [
            f"- matmul {d} {m['n']}^3: {_rate(m['best'])} best, {_rate(m['median'])} median"
            for d, m in device["matmul"].items()
        ]
    tests = parts.get("tests", {})
    if "passed" in tests:
        lines += ["", f"Tests: {tests['passed']} passed, {tests['failed']} failed, "
                  f"{tests['skipped']} skipped."]  # fmt: skip
        lines += [f"- FAILED {f['test']}: {f['message']}" for f in tests["failures"]]
    frag = parts.get("fragments", {})
    if frag.get("lm"):
        lm = frag["lm"]
        lines += [
            "",
            f"LM step at {lm['shape']}: {lm['step_s']:.4f} s "
            f"({lm['tokens_per_s']:,.0f} tokens/s), compile {lm['compile_s']:.1f} s.",
        ]
        for c in frag.get("classifier", []):
            lines.append(
                f"Classifier step, batch {c['batch']} width {c['width']}: {c['step_s']:.4f} s, "
                f"compile {c['compile_s']:.1f} s."
            )
        est = frag.get("estimate")
        if est:
            lines += [
                "",
                f"`train.reproduce --size full` on this device: about {est['total_h']:.1f} h "
                "(the formula and every stage's seconds are in the JSON).",
            ]
    bench = parts.get("bench", {})
    if bench.get("rows"):
        lines += ["", bench_common.render_markdown(bench)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, CPU, about a minute")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
    parser.add_argument("--deadline-s", type=float, default=None, help="default 480 (quick 420)")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--part", default=None, help=argparse.SUPPRESS)  # the device worker
    args = parser.parse_args(argv)
    if args.part == "device":
        print("GPU_CHECK_DEVICE " + json.dumps(device_part(args.quick)), flush=True)
        return {}

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budgets = QUICK_BUDGETS if args.quick else BUDGETS
    deadline = Deadline(args.deadline_s or (420 if args.quick else 480))
    wanted = args.parts.split(",")
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "quick": args.quick,
        "budgets": budgets,
        "deadline_s": args.deadline_s or (420 if args.quick else 480),
        "parts": {},
    }
    started = time.monotonic()
    with open(out / "gpu_check.log", "w") as log:

        def budget(name):
            return min(budgets[name], deadline.left())

        # 1. The device: needed by the others (platform, peaks); its failure ends the check.
        cmd = python("-m", "benchmarks.gpu_check", "--part", "device")
        record = run_command(cmd + (["--quick"] if args.quick else []), budget("device"), log)
        text = (out / "gpu_check.log").read_text()
        marker = [line for line in text.splitlines() if line.startswith("GPU_CHECK_DEVICE ")]
        if record["status"] == "ok" and marker:
            record.update(json.loads(marker[-1].split(" ", 1)[1]))
            report["device"] = record["device"]
        report["parts"]["device"] = record
        platform = record.get("platform", "unknown")
        info = record if "peak_flops" in record else None

        for name in PARTS[1:]:
            if name not in wanted:
                report["parts"][name] = {"status": "skipped", "reason": "not in --parts"}
            elif info is None:
                report["parts"][name] = {"status": "skipped", "reason": "the device part failed"}
            elif name == "tests":
                report["parts"][name] = tests_part(out, args.quick, platform, budget(name), log)
            elif name == "fragments":
                frag_json = out / "fragments.json"
                cmd = python("-m", "benchmarks.gpu_fragments", "--json", str(frag_json))
                record = run_command(cmd + (["--quick"] if args.quick else []), budget(name), log)
                if frag_json.exists():  # written after each fragment: partial on a timeout
                    record.update(json.loads(frag_json.read_text()))
                    frag_json.unlink()
                report["parts"][name] = record
            else:
                left = deadline.left()
                report["parts"][name] = (
                    bench_part(info, args.quick, deadline, budgets[name], log)
                    if left > 5
                    else {"status": "skipped", "reason": "no time left before the deadline"}
                )
            print(f"{name}: {report['parts'][name]['status']}", flush=True)
    report["seconds"] = round(time.monotonic() - started, 1)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=float))
    markdown = render_markdown(report)
    (out / "gpu_check.md").write_text(markdown + "\n")
    print(markdown)
    return report


if __name__ == "__main__":
    main()
