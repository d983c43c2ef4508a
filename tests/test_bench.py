"""The benchmark program (`python -m benchmarks.bench`): FLOP counts by hand, rendering, and the
quick mode end to end on tiny shapes."""

import json

import pytest

from benchmarks import bench, bench_classifier, bench_common, bench_elmo, bench_lm

# Two LSTM layers 2 -> 3 -> 2 and a 5-word vocabulary.
TINY = dict(vocab=5, emb=2, hid=3, layers=2, batch=1, bptt=1)


def test_lm_flops_by_hand():
    # layer 0: 2*4*3*(2+3) = 120; layer 1: 2*4*2*(3+2) = 80; tied decoder 2*2*5 = 20.
    assert bench_lm.lstm_forward_flops(TINY) == 200
    assert bench_lm.flops_per_item(TINY) == 3 * (200 + 20)


def test_classifier_flops_by_hand():
    size = dict(TINY, width=4)
    # LSTMs 200 per token over 4 padded tokens; head [6, 50, 2]: 2*(6*50 + 50*2) = 800.
    assert bench_classifier.head_forward_flops(size) == 800
    assert bench_classifier.flops_per_item(size) == 3 * (200 * 4 + 800)


def test_elmo_flops_by_hand():
    size = bench_elmo.SIZES["tiny"]  # filters (1,4),(2,8); 1 highway; cell 32, projection 8
    conv = 2 * 50 * 1 * 16 * 4 + 2 * 49 * 2 * 16 * 8  # (chars - width + 1) * width * E * n
    highway = 2 * (2 * 12 * 12)
    projection = 2 * 12 * 8
    lstm = 2 * (8 * 128 + 8 * 128) + 2 * 32 * 8  # per direction and layer
    step = conv + highway + projection + 2 * 2 * lstm
    assert bench_elmo.step_flops(bench_elmo.bilm_config(size)) == step
    # Boundary steps: 5 tokens run as 7 steps.
    assert bench_elmo.flops_per_item(size) == pytest.approx(step * 7 / 5)


def test_released_elmo_flops():
    # The original model: ~0.2 GFLOP per step, dominated by the 4096-cell LSTMs.
    config = bench_elmo.bilm_config(bench_elmo.SIZES["original"])
    lstm = 2 * 2 * (2 * (512 * 16384 * 2) + 2 * 4096 * 512)
    assert bench_elmo.step_flops(config) == pytest.approx(lstm + 53.2e6, rel=0.01)


def test_compile_log_counts_recompilations():
    class Step:
        size = 0

        def _cache_size(self):
            return self.size

    step = Step()
    log = bench_common.CompileLog(step)
    for index, (width, size) in enumerate([(16, 1), (16, 2), (24, 3), (16, 3), (24, 3)]):
        step.size = size
        log.after(index, width)
    summary = log.summary()
    assert summary["distinct_widths"] == 2
    assert summary["step_compilations"] == 3
    assert summary["recompilations"] == 1  # the second step compiled at a width seen before
    assert summary["compiled_at"][1] == {"step": 1, "width": 16, "new_width": False}


def test_render_markdown_and_table():
    row = dict(
        benchmark="lm", size="tiny", variant="jax custom_vjp", unit="tokens/s", throughput=1234.5,
        step_s=0.1, compile_s=2.0, peak_mib=512.0, vs_torch=1.5, of_limit=0.25,
    )  # fmt: skip
    failed = dict(row, variant="torch nn.LSTM", error="exit 1: boom")
    result = {
        "date": "2026-01-01", "device": "cpu (test)", "threads": 2,
        "peak_flops": {"float32": 3e11}, "rows": [row, failed], "limits": [], "compile_checks": [],
    }  # fmt: skip
    text = bench_common.render_markdown(result)
    cells = "| lm | tiny | jax custom_vjp | 1,234 tokens/s | 0.100 | 2.0 | 512 | 1.50x | 25% |"
    assert cells in text
    assert "| lm | tiny | torch nn.LSTM | failed |" in text
    assert "300 GFLOP/s" in text
    table = bench_common.render_table([row])
    assert table.splitlines()[0].split()[:3] == ["benchmark", "size", "variant"]


def test_quick_mode_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    args = ["--quick", "--no-isolate", "--no-compile-checks"]
    bench.main([*args, "--json", str(out), "--markdown", str(md)])
    result = json.loads(out.read_text())
    for key in ("date", "device", "platform", "threads", "peak_flops", "rows", "limits"):
        assert key in result
    assert result["peak_flops"]["float32"] > 0
    torch_installed = any(r["variant"].startswith("torch") for r in result["rows"])
    expected = {("lm", "jax custom_vjp"), ("classifier", "jax custom_vjp"), ("elmo", "jax")}
    if torch_installed:
        expected |= {("lm", "torch nn.LSTM"), ("classifier", "torch nn.LSTM")}
        expected |= {("elmo", "torch nn.LSTM"), ("elmo", "torch loop (AllenNLP)")}
    assert {(r["benchmark"], r["variant"]) for r in result["rows"]} == expected
    for r in result["rows"]:
        assert "error" not in r, r
        assert r["size"] == "tiny"
        assert r["throughput"] > 0 and r["step_s"] > 0 and r["peak_mib"] > 0
        assert r["throughput"] == pytest.approx(r["items_per_step"] / r["step_s"])
        assert 0 < r["of_limit"] < 1
        if r["variant"].startswith("jax"):
            assert r["compile_s"] >= 0
        if torch_installed:
            assert r["vs_torch"] > 0
    assert "| benchmark | size | variant |" in md.read_text()
    # The markdown renders again from the saved JSON alone.
    again = bench.main(["--from-json", str(out)])
    assert again["rows"] == result["rows"]


@pytest.mark.slow
def test_epoch_compiles_each_width_once():
    check = bench_classifier.epoch_compilations(bench_classifier.QUICK_EPOCH)
    assert check["steps"] == 5 and check["distinct_widths"] >= 2
    assert check["step_compilations"] == check["distinct_widths"]
    assert check["recompilations"] == 0


def test_repeats_alternate_order_and_keep_each_variants_fastest_round():
    """`--repeats`: rounds run ours/torch, torch/ours, ...; each row keeps its best round."""
    calls = []
    step_s = {"jax custom_vjp": [2.0, 1.0, 3.0], "torch nn.LSTM": [1.5, 4.0, 2.5]}

    def fake_run(job):
        calls.append(job["variant"])
        return {"step_s": step_s[job["variant"]].pop(0)}

    names = ["jax custom_vjp", "torch nn.LSTM"]
    info = {"platform": "cpu", "peak_flops": {"float32": 1e12}}
    rows = bench.measure_size(fake_run, "lm", "tiny", names, info, steps=1, repeats=3)
    assert calls == names + names[::-1] + names
    by_variant = {row["variant"]: row for row in rows}
    assert by_variant["jax custom_vjp"]["step_s"] == 1.0
    assert by_variant["torch nn.LSTM"]["step_s"] == 1.5
    assert by_variant["jax custom_vjp"]["step_s_rounds"] == [2.0, 1.0, 3.0]
    assert by_variant["jax custom_vjp"]["vs_torch"] == pytest.approx(1.5)
