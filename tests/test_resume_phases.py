"""Exact resume across gradual-unfreezing phases (issue 24, item 1).

A tiny TREC classifier from scratch trains in two phases (steps 0..10 with the top group, then
10..30 with all groups), checkpointing every 5 steps. A run killed with SIGKILL right after the
checkpoint at the end of phase 1 (step 10), or after one strictly inside phase 2 (step 15), and
resumed with `--resume`, must export the parameters of an uninterrupted run bit for bit.

The interrupted run is the real program with `Checkpointer.save` wrapped to wait after the chosen
step, so the kill lands exactly there whatever the machine's speed. All runs share a persistent
compilation cache: the first compiles, the others mostly load.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from ulmfit_jax.models import classifier
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.weights.export import load_export

REPO = Path(__file__).resolve().parents[1]
PHASES = "--config.phases=((1, 1, 0.01), (0, 2, 0.0005))"  # 10 batches per epoch: 0..10..30

# The program, with a pause after the checkpoint of step STOP_AFTER_STEP.
PAUSE_AFTER_SAVE = """
import os, runpy, sys, time
from ulmfit_jax.core.runner import checkpointing

save = checkpointing.Checkpointer.save
stop_after = int(os.environ["STOP_AFTER_STEP"])

def save_then_wait(self, step, *args, **kwargs):
    save(self, step, *args, **kwargs)
    if step == stop_after and self.directory.name == "checkpoints":
        print(f"saved step {step}", flush=True)
        time.sleep(600)

checkpointing.Checkpointer.save = save_then_wait
sys.argv = ["train.ulmfit", *sys.argv[1:]]
runpy.run_module("train.ulmfit", run_name="__main__", alter_sys=True)
"""

WORDS = {
    "HUM": "who person name president wrote singer".split(),
    "LOC": "where city country river located capital".split(),
    "NUM": "how many year much long when".split(),
}
FILLER = "the of is a in what was to for on".split()


def write_trec(folder: Path) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for name, n in (("train_5500.label", 48), ("TREC_10.label", 12)):
        lines = []
        for i in range(n):
            label = list(WORDS)[i % len(WORDS)]
            words = [
                rng.choice(WORDS[label]) if rng.random() < 0.4 else rng.choice(FILLER)
                for _ in range(int(rng.integers(4, 12)))
            ]
            lines.append(f"{label}:x {' '.join(words)} ?")
        (folder / name).write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("phases")
    write_trec(root / "trec")
    env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    env.update(
        JAX_COMPILATION_CACHE_DIR=str(root / "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )

    def args(workdir: Path, *extra: str) -> list[str]:
        return [
            f"--config={REPO / 'train/configs/classify_trec.py'}:tiny",
            f"--workdir={workdir}",
            "--config.init.workdir=",
            f"--config.data.path={root / 'trec'}",
            f"--config.cache_dir={root / 'cache'}",
            f"--config.data.tfds_dir={root / 'tfds'}",
            PHASES,
            "--config.train.checkpoint_every=5",
            *extra,
        ]

    reference = root / "reference"
    done = subprocess.run(
        [sys.executable, "-m", "train.ulmfit", *args(reference)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {"root": root, "env": env, "args": args, "reference": reference}


def final_params(workdir: Path):
    def template(meta):
        return classifier.init_classifier_params(
            jax.random.key(0), ClassifierConfig(**meta["model"])
        )

    return load_export(workdir, template)[0]


def steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def kill_after(setup, workdir: Path, step: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", PAUSE_AFTER_SAVE, *setup["args"](workdir)],
        cwd=REPO,
        env=dict(setup["env"], STOP_AFTER_STEP=str(step)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = []
        for line in process.stdout:
            output.append(line)
            if line.strip() == f"saved step {step}":
                break
        else:
            pytest.fail(f"the run ended before step {step}:\n{''.join(output)}")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert steps(workdir)[-1] == step
    assert not (workdir / "export").exists()


@pytest.mark.parametrize(
    "kill_step, resume_flags",
    [
        # The end of phase 1; a result-neutral key may change freely on resume.
        (10, ("--config.train.log_every=3",)),
        # Inside phase 2; a key the classify stage does not read, accepted explicitly.
        (15, ("--config.predict.text_field=question", "--resume_changed")),
    ],
    ids=["phase-boundary", "inside-phase-2"],
)
def test_killed_run_resumes_bit_exactly(setup, tmp_path, kill_step, resume_flags):
    workdir = tmp_path / "run"
    kill_after(setup, workdir, kill_step)
    resumed = subprocess.run(
        [sys.executable, "-m", "train.ulmfit", *setup["args"](workdir, "--resume", *resume_flags)],
        cwd=REPO,
        env=setup["env"],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed from step {kill_step}" in resumed.stdout
    assert "stale lock" in resumed.stderr  # the killed run's lock, taken over
    want, got = final_params(setup["reference"]), final_params(workdir)
    paths = jax.tree_util.tree_flatten_with_path(want)[0]
    for (path, a), b in zip(paths, jax.tree.leaves(got), strict=True):
        np.testing.assert_array_equal(
            np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path)
        )
    if "--resume_changed" in resume_flags:
        import json

        record = json.loads((workdir / "run.json").read_text())
        changes = [entry["changes"] for entry in record["resume_changes"]]
        assert changes == [{"predict.text_field": ["text", "question"]}]


def test_damaged_checkpoint_through_the_program(setup, tmp_path):
    """The program's whole stderr on a damaged checkpoint: one short line, no TensorStore dump."""
    workdir = tmp_path / "run"
    shutil.copytree(setup["reference"], workdir)
    last = workdir / "checkpoints" / str(steps(workdir)[-1])
    for path in (last / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(b"damaged")
    result = subprocess.run(
        [sys.executable, "-m", "train.ulmfit", *setup["args"](workdir, "--resume")],
        cwd=REPO,
        env=setup["env"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Event loop is closed" not in result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("train.ulmfit: error: ")]
    assert f"checkpoint {last} is damaged" in line and "delete" in line and len(line) < 500
