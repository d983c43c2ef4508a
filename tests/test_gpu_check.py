"""The GPU check (`python -m benchmarks.gpu_check`, issue 22) in its `--quick` mode on the CPU,
so that the script a GPU session runs in one call cannot rot between such sessions."""

import json
import os
import subprocess
import sys

from conftest import REPO_ROOT

from benchmarks import gpu_check, gpu_fragments

PART_STATUSES = {"ok", "failed", "timeout", "skipped"}


def test_parse_junit(tmp_path):
    xml = tmp_path / "pytest.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="assert 1 == 2">'
        "trace</failure></testcase>"
        '<testcase classname="tests.test_b" name="test_gpu"><skipped message="no GPU"/></testcase>'
        "</testsuite></testsuites>"
    )
    result = gpu_check.parse_junit(xml)
    assert (result["passed"], result["failed"], result["skipped"]) == (1, 1, 1)
    assert result["failures"] == [{"test": "test_a::test_bad", "message": "assert 1 == 2"}]
    assert result["files"]["tests.test_b"] == {"passed": 0, "failed": 0, "skipped": 1}


def test_variants_skip_cudnn_without_a_gpu_and_in_bfloat16():
    names, skipped = gpu_check.bench_variants("lm", "cpu", torch=True)
    assert "jax cudnn" in skipped and "jax cudnn bfloat16" not in names + list(skipped)
    assert {"jax custom_vjp bfloat16", "jax autodiff", "torch nn.LSTM"} <= set(names)
    assert "torch nn.LSTM, no weight dropout" in names
    names, skipped = gpu_check.bench_variants("lm", "gpu", torch=True)
    assert "jax cudnn" in names and not skipped
    assert gpu_check.bench_variants("elmo", "gpu", torch=False) == (["jax"], {})


def test_quick_mode_end_to_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a GPU
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--quick", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p.name for p in tmp_path.iterdir()} >= {
        "gpu_check.json",
        "gpu_check.md",
        "gpu_check.log",
    }
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["quick"] is True and set(report["parts"]) == set(gpu_check.PARTS)
    for name, part in report["parts"].items():
        assert part["status"] in PART_STATUSES, (name, part)
    device = report["parts"]["device"]
    assert device["status"] == "ok" and device["platform"] == "cpu"
    assert set(device["peak_flops"]) == {"float32", "bfloat16"}
    assert all(device["peak_flops"][d] > 0 for d in ("float32", "bfloat16"))

    tests = report["parts"]["tests"]
    assert tests["status"] == "ok" and tests["passed"] == len(gpu_check.QUICK_TESTS)
    assert tests["failed"] == 0 and tests["failures"] == []

    frag = report["parts"]["fragments"]
    assert frag["status"] == "ok", frag.get("tail")
    assert frag["lm"]["step_s"] > 0 and frag["lm"]["tokens_per_s"] > 0
    assert frag["classifier"] and all(c["step_s"] > 0 for c in frag["classifier"])
    estimate = frag["estimate"]
    assert estimate["formula"] == gpu_fragments.FORMULA and estimate["total_s"] > 0
    assert {"pretrain", "lm_imdb", "imdb25k_ulmfit", "trec_ensemble"} <= set(
        estimate["per_stage_s"]
    )

    bench = report["parts"]["bench"]
    assert bench["status"] in {"ok", "failed"} and bench["peak_flops"]["float32"] > 0
    rows = {row["variant"]: row for row in bench["rows"]}
    assert rows["jax cudnn"]["skipped"] and "GPU" in rows["jax cudnn"]["error"]
    ours = rows["jax custom_vjp"]
    assert "error" not in ours, ours
    assert ours["throughput"] > 0 and ours["compile_s"] >= 0 and ours["peak_mib"] > 0
    assert 0 < ours["of_limit"] < 1
    assert "| part | status | seconds | budget s |" in (tmp_path / "gpu_check.md").read_text()
