"""Two processes on localhost train like one: the real entry point, `jax.distributed` over gloo.

`python -m train.ulmfit` (tiny pretraining config, one short epoch, a loss logged every step)
runs once as a single process and once as two processes connected by
`JAX_COORDINATOR_ADDRESS`/`JAX_NUM_PROCESSES`/`JAX_PROCESS_ID` (what `--distributed=auto`
reads), each with two CPU devices and its own half of every batch. The per-step training
losses, the validation loss and the exported parameters (written collectively) must agree
(relative 1e-5); only process 0 writes logs and metrics.
"""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import jax
import numpy as np

from ulmfit_jax.models import awd_lstm
from ulmfit_jax.weights.export import load_export

REPO = Path(__file__).resolve().parents[1]
WORDS = "the a film story acting plot good bad great fine dull it is was and with".split()
TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_wikitext(root: Path) -> None:
    rng = np.random.default_rng(0)
    root.mkdir()
    for split, n in (("train", 24), ("valid", 6), ("test", 2)):
        articles = [
            f" = Article {i} = \n \n {' '.join(rng.choice(WORDS, 30))} \n \n" for i in range(n)
        ]
        (root / f"wiki.{split}.tokens").write_text("".join(articles))


def command(build, tmp_path: Path, workdir: Path) -> list[str]:
    """The tiny one-epoch pretraining run, logging every step."""
    overrides = ("--config.phases=((0, 1, 0.005),)", "--config.train.log_every=1")
    return build(
        workdir, tmp_path / "wiki", tmp_path, *overrides, "--config.train.checkpoint_every=1000"
    )


def environment(**extra) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    for key in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(key, None)
    env.update(extra)
    return env


def losses(workdir: Path) -> tuple[list[float], float]:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [r["train/loss"] for r in records if "train/loss" in r]
    valid = [r["valid/loss"] for r in records if "valid/loss" in r]
    return train, valid[0]


def final_params(workdir: Path):
    def template(meta):
        return awd_lstm.init_lm_params(jax.random.key(0), awd_lstm.AWDLSTMConfig(**meta["model"]))

    return load_export(workdir, template)[0]


def test_two_processes_give_the_single_process_losses(tmp_path, tiny_pretrain_command):
    write_wikitext(tmp_path / "wiki")
    single = tmp_path / "single"
    started = time.perf_counter()
    done = subprocess.run(
        command(tiny_pretrain_command, tmp_path, single),
        cwd=REPO,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    single_s = time.perf_counter() - started

    # Same command on both "hosts", one workdir (the checkpoints are written collectively);
    # the tokenized corpus is already cached by the run above.
    double = tmp_path / "double"
    port = free_port()
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            command(tiny_pretrain_command, tmp_path, double),
            cwd=REPO,
            env=environment(
                JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                JAX_NUM_PROCESSES="2",
                JAX_PROCESS_ID=str(i),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for p in processes:
            outputs.append(p.communicate(timeout=TIMEOUT)[0])
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, out in zip(processes, outputs, strict=True):
        assert p.returncode == 0, out
    double_s = time.perf_counter() - started
    print(f"1 process: {single_s:.1f} s, 2 processes: {double_s:.1f} s")

    assert "4 device(s) on 2 host(s)" in outputs[0]
    assert "pretrain" not in outputs[1]  # logs from process 0 only
    want_train, want_valid = losses(single)
    got_train, got_valid = losses(double)
    assert len(got_train) == len(want_train) > 3
    np.testing.assert_allclose(got_train, want_train, rtol=1e-5)
    np.testing.assert_allclose(got_valid, want_valid, rtol=1e-5)
    want, got = final_params(single), final_params(double)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
