"""The command line under mistakes and faults (issue 23).

One live run per workdir (the lock, its stale takeover and release); what `--resume` may change;
one-line errors from the three training programs; Ctrl-C during `elmo-jax embed`; a damaged
checkpoint. Subprocesses only where the behaviour is the process's (exit status, stderr,
signals); the rest runs in process on `Run` and a counting loop.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from elmo_fixtures import fixture_dir
from test_run import good_step, loop

from ulmfit_jax.core.runner import workdir as workdir_lib
from ulmfit_jax.core.runner.run import Run
from ulmfit_jax.core.runner.workdir import WorkdirInUse, WorkdirLock

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "train" / "configs"
IDENTITY = {"program": "ulmfit", "stage": "classify", "backward": False}


def child_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one device: faster start
    env.pop("ULMFIT_TRACEBACK", None)
    return env


def program(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", name, *map(str, args)],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_line(result: subprocess.CompletedProcess, name: str) -> str:
    """The one `NAME: error: ...` line of a failed run, after checking status and stderr."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{name}: error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- one-line errors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, config",
    [
        ("train.ulmfit", "classify_trec.py:tiny"),
        ("train.elmo", "elmo_lm1b.py:tiny"),
        ("train.elmo_downstream", "elmo_trec.py:tiny"),
    ],
)
def test_misspelt_config_key_is_one_line(name, config, tmp_path):
    result = program(
        name, f"--config={CONFIGS / config}", f"--workdir={tmp_path}", "--config.train.batchsize=3"
    )
    line = error_line(result, name)
    assert "'batchsize'" in line and "--config.train.batchsize=3" in line
    assert '"batch_size"' in line  # ml_collections' suggestion survives
    assert not (tmp_path / "run.json").exists()


@pytest.mark.parametrize("name", ["train.elmo_downstream", "train.elmo_tagger"])
def test_old_mode_key_is_one_line_naming_stage(name, tmp_path):
    config = "elmo_trec.py:tiny" if name == "train.elmo_downstream" else "elmo_tagger.py:tiny"
    result = program(
        name, f"--config={CONFIGS / config}", f"--workdir={tmp_path}", "--config.mode=predict"
    )
    assert "--config.stage=predict" in error_line(result, name)
    assert not (tmp_path / "run.json").exists()


def test_unknown_variant_is_one_line_and_verbose_shows_the_traceback(tmp_path):
    args = [f"--config={CONFIGS / 'classify_trec.py'}:tinyy", f"--workdir={tmp_path}"]
    assert "unknown config variant 'tinyy'" in error_line(
        program("train.ulmfit", *args), "train.ulmfit"
    )
    verbose = program("train.ulmfit", *args, "--verbose")
    assert verbose.returncode == 2
    assert "Traceback" in verbose.stderr and "train.ulmfit: error: " in verbose.stderr


def test_bad_inputs_of_a_run_are_one_line(tmp_path, fixtures_dir, shared_dir):
    """A truncated fastai `.pth`, batch size 0, a workdir that cannot be created (the IMDb
    config reads ../shared, so the test skips without it)."""
    truncated = tmp_path / "lm.pth"
    truncated.write_bytes((fixtures_dir / "fastai" / "lm.pth").read_bytes()[:3000])
    result = program(
        "train.ulmfit",
        f"--config={CONFIGS / 'finetune_lm_imdb.py'}:tiny",
        f"--workdir={tmp_path / 'lm'}",
        f"--config.init.fastai_pth={truncated}",
        f"--config.init.fastai_itos={fixtures_dir / 'fastai' / 'lm_itos.pkl'}",
        f"--config.data.path={tmp_path / 'no-data'}",
    )
    assert "not a readable PyTorch state dict" in error_line(result, "train.ulmfit")

    sentences = tmp_path / "sentences.txt"
    sentences.write_text("a b c d\ne f g\n")
    result = program(
        "train.elmo",
        f"--config={CONFIGS / 'elmo_lm1b.py'}:tiny",
        f"--workdir={tmp_path / 'elmo'}",
        f"--config.data.train_files=('{sentences}',)",
        f"--config.data.valid_files=('{sentences}',)",
        "--config.train.batch_size=0",
    )
    assert "batch_size (0)" in error_line(result, "train.elmo")

    (tmp_path / "a-file").write_text("")
    result = program(
        "train.ulmfit",
        f"--config={CONFIGS / 'classify_trec.py'}:tiny",
        f"--workdir={tmp_path / 'a-file' / 'run'}",
    )
    assert "cannot write the workdir" in error_line(result, "train.ulmfit")


def test_phases_without_epochs_are_a_value_error():
    from train.configs import classify_trec
    from ulmfit_jax.stages import phases

    config = classify_trec.get_config("tiny")
    config.phases = ((1, 0, 0.01),)
    with pytest.raises(ValueError, match="epochs>=1"):
        phases.phases(config)


# -- one run per workdir -------------------------------------------------------------------------
HOLD = """
import sys, time
from ulmfit_jax.core.runner.run import Run
with Run(sys.argv[1], {"program": "ulmfit", "stage": "classify", "backward": False}, {}) as run:
    print("holding", flush=True)
    while not run.stop_requested:
        time.sleep(0.05)
print("released", flush=True)
"""


def test_second_run_on_a_held_workdir_stops_at_once(tmp_path):
    workdir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(workdir)],
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        lock = json.loads((workdir / ".lock").read_text())
        assert lock["pid"] == holder.pid and lock["host"] == socket.gethostname()
        assert "python" in lock["command"] and lock["started"]
        result = program(
            "train.ulmfit", f"--config={CONFIGS / 'classify_trec.py'}:tiny", f"--workdir={workdir}"
        )
        line = error_line(result, "train.ulmfit")
        assert "in use by another run" in line and f"pid {holder.pid}" in line
        assert "classify:" not in result.stdout  # refused before reading any data
        holder.send_signal(signal.SIGTERM)  # released on SIGTERM
        assert holder.communicate(timeout=60)[0].strip() == "released"
        assert holder.returncode == 0
    finally:
        if holder.poll() is None:
            holder.kill()
    assert not (workdir / ".lock").exists()


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_stale_lock_is_taken_over_and_a_foreign_one_refused(tmp_path):
    lock = tmp_path / ".lock"
    stale = {"pid": dead_pid(), "host": socket.gethostname(), "started": "x", "command": "old"}
    lock.write_text(json.dumps(stale))
    with pytest.warns(UserWarning, match="stale lock"), Run(tmp_path, IDENTITY, {}):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()

    elsewhere = {"pid": 1, "host": "another-host", "started": "x", "command": "train"}
    lock.write_text(json.dumps(elsewhere))
    with pytest.raises(WorkdirInUse, match="another-host"):
        Run(tmp_path, IDENTITY, {})
    assert json.loads(lock.read_text()) == elsewhere  # not ours: left alone
    lock.unlink()


def test_lock_is_released_on_errors_and_shared_within_a_process(tmp_path):
    with Run(tmp_path, IDENTITY, {}):
        pass
    with pytest.raises(ValueError, match="belongs to another run"):
        Run(tmp_path, {"program": "elmo"}, {})
    assert not (tmp_path / ".lock").exists()
    with WorkdirLock(tmp_path):  # as the programs do before reading data
        with Run(tmp_path, IDENTITY, {}):
            pass
        assert (tmp_path / ".lock").exists()
    assert not (tmp_path / ".lock").exists()


# -- what a resume may change --------------------------------------------------------------------
def config(lr=1.0, **train):
    return {"seed": 0, "cache_dir": "a", "train": {"lr": lr, "log_every": 2, **train}}


def test_resume_refuses_result_changing_keys_unless_accepted(tmp_path):
    with Run(tmp_path, IDENTITY, config()) as run:
        loop(run, good_step, num_steps=4)
    neutral = dict(config(log_every=7, checkpoint_every=1), cache_dir="b", tokenizer_workers=4)
    with Run(tmp_path, IDENTITY, neutral, resume=True) as run:
        loop(run, good_step, num_steps=5)
    with pytest.raises(ValueError, match=r"train\.lr: 1\.0 -> 2\.0.*--resume_changed"):
        Run(tmp_path, IDENTITY, config(lr=2.0), resume=True)
    with pytest.raises(ValueError, match=r"train\.bptt: '<absent>' -> 16"):
        Run(tmp_path, IDENTITY, config(bptt=16), resume=True)
    assert not (tmp_path / ".lock").exists()

    with Run(tmp_path, IDENTITY, config(lr=2.0), resume=True, resume_changed=True) as run:
        state = loop(run, good_step, num_steps=6)
    np.testing.assert_array_equal(state["w"], np.full(3, 6.0))
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["config"]["train"]["lr"] == 2.0
    [accepted] = record["resume_changes"]
    assert accepted["changes"] == {"train.lr": [1.0, 2.0]} and accepted["time"]
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    events = [e for e in events if e.get("event") == "resume_changed"]
    assert [(e["step"], e["changes"]) for e in events] == [(5, {"train.lr": [1.0, 2.0]})]
    # The accepted config is now the reference; the history stays.
    with Run(tmp_path, IDENTITY, config(lr=2.0), resume=True):
        pass
    assert len(json.loads((tmp_path / "run.json").read_text())["resume_changes"]) == 1


def test_result_neutral_keys_are_one_list():
    changes = workdir_lib.config_changes(
        {"train": {"log_every": 1, "batch_size": 4}, "phases": [[0, 1, 0.1]]},
        {"train": {"log_every": 2, "batch_size": 4}, "phases": ((0, 2, 0.1),)},
    )
    assert changes == {"phases": [[[0, 1, 0.1]], [[0, 2, 0.1]]]}
    assert "train.batch_size" not in workdir_lib.RESULT_NEUTRAL_KEYS


# -- a damaged checkpoint ------------------------------------------------------------------------
def test_damaged_checkpoint_is_a_short_message(tmp_path):
    with Run(tmp_path, IDENTITY, {}) as run:
        loop(run, good_step, num_steps=6)  # checkpoints 3 and 6
    step_dir = tmp_path / "checkpoints" / "6"
    for path in (step_dir / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[:7])
    with pytest.raises(ValueError) as error, Run(tmp_path, IDENTITY, {}, resume=True) as run:
        loop(run, good_step, num_steps=8)
    message = str(error.value)
    assert len(message) < 400, message
    assert f"checkpoint {step_dir} is damaged" in message
    assert f"delete {step_dir} to resume from step 3" in message
    assert "tensorstore_spec" not in message
    shutil.rmtree(step_dir)  # the advice works
    with Run(tmp_path, IDENTITY, {}, resume=True) as run:
        state = loop(run, good_step, num_steps=8)
    np.testing.assert_array_equal(state["w"], np.full(3, 8.0))


# -- Ctrl-C during `elmo-jax embed` --------------------------------------------------------------
SLOW_EMBED = """
import signal, sys, time
# Ctrl-C as a terminal delivers it, whatever mask or disposition the test process passed on
# (a child inherits a blocked or ignored SIGINT from the process that starts it).
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
signal.signal(signal.SIGINT, signal.default_int_handler)
from elmo_jax.embedding import files
call = files.Embedder.__call__

def slow(self, *args, **kwargs):
    print("batch", flush=True)
    time.sleep(0.3)
    return call(self, *args, **kwargs)

files.Embedder.__call__ = slow
from elmo_jax.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_embed_leaves_no_output(shared_dir, tmp_path):
    model = fixture_dir(shared_dir)
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(f"the cat sat on mat number {i} ." for i in range(40)) + "\n")
    output = tmp_path / "out.hdf5"
    args = ["embed", "--options", model / "options.json", "--weights", model / "lm_weights.hdf5"]
    args += ["--batch-size", "1"]
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_EMBED, *map(str, args), str(sentences), str(output)],
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "batch"
        assert list(tmp_path.glob("out.hdf5.*.partial"))  # being written beside the target
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert f"elmo-jax: interrupted; {output} was not written" in stderr
    assert not output.exists()
    assert not list(tmp_path.glob("*.partial"))
