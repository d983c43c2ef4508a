"""The one training loop (`fit`): callbacks see every epoch and can stop training, their state
survives a SIGTERM or a kill and `--resume`, and the resumed run ends where an uninterrupted one
does, bit for bit, across a phase boundary; a fresh run never reuses an old run's history."""

import json
import os
import signal
from typing import NamedTuple

import jax
import numpy as np
import optax
import pytest

from ulmfit_jax.core.runner.callbacks import Callback
from ulmfit_jax.core.runner.fit import Phase, fit
from ulmfit_jax.core.runner.run import Preempted, Run
from ulmfit_jax.core.runner.train_state import create_train_state

STEPS_PER_EPOCH = 4
PHASES = (Phase(2, lr=0.1, name="first"), Phase(1, lr=0.05, name="second"))  # 3 epochs
OPTIMIZER = optax.sgd(0.1)


class ToyBatch(NamedTuple):
    x: np.ndarray  # float32[3]


class ToyEpochs:
    """Epoch e's batch i is a pure function of (e, i)."""

    steps_per_epoch = STEPS_PER_EPOCH

    def iterator(self, epoch, position):
        position = position or {"epoch": epoch, "step": 0}
        return ToyIterator(position["epoch"], position["step"])

    def position(self, iterator):
        return {"epoch": iterator.epoch, "step": iterator.step}


class ToyIterator:
    def __init__(self, epoch, step):
        self.epoch, self.step = epoch, step

    def __iter__(self):
        return self

    def __next__(self):
        rng = np.random.default_rng([self.epoch, self.step])
        self.step += 1
        return ToyBatch(rng.normal(size=3).astype(np.float32))


def toy_step(state, batch):
    """SGD on 0.5 * |w - x|^2 plus a little noise from the state's key (as dropout would)."""
    next_key, step_key = state.split_key()
    noise = jax.random.normal(step_key, (3,)) * 0.01
    grads = {"w": state.params["w"] - batch.x + noise}
    loss = 0.5 * np.sum(np.square(np.asarray(state.params["w"]) - batch.x))
    return state.apply_gradients(grads, OPTIMIZER, next_key), {"loss": np.float32(loss)}


def evaluate(params):
    return {"loss": float(np.sum(np.square(np.asarray(params["w"]) - 0.5)))}


class Recorder(Callback):
    """Counts what it sees, and keeps the counts across a resume."""

    def __init__(self, stop_after_epoch=None, kill_at_step=None):
        self.phases, self.epochs, self.steps = [], [], 0
        self.stop_after_epoch, self.kill_at_step = stop_after_epoch, kill_at_step

    def on_phase_start(self, loop, phase):
        self.phases.append(phase.name)

    def on_step_end(self, loop, step, metrics):
        self.steps += 1
        if step == self.kill_at_step:
            os.kill(os.getpid(), signal.SIGTERM)  # a preemption notice: save and exit

    def on_epoch_end(self, loop, epoch, metrics):
        self.epochs.append([epoch, round(metrics["loss"], 6)])
        return epoch == self.stop_after_epoch

    def state_dict(self):
        return {"phases": self.phases, "epochs": self.epochs, "steps": self.steps}

    def load_state_dict(self, state):
        self.phases, self.epochs, self.steps = state["phases"], state["epochs"], state["steps"]


def train(workdir, callbacks=(), resume=False, evaluate=evaluate):
    state = create_train_state({"w": np.zeros(3, np.float32)}, OPTIMIZER, seed=0)
    with Run(workdir, {"program": "toy"}, {"lr": 0.1}, resume=resume) as run:
        return fit(
            run,
            state=state,
            train_step=toy_step,
            data=ToyEpochs(),
            phases=PHASES,
            checkpoint_every=3,
            log_every=2,
            evaluate=evaluate,
            monitor="loss",
            callbacks=callbacks,
        )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    recorder = Recorder()
    result = train(tmp_path_factory.mktemp("fit") / "reference", [recorder])
    return result, recorder


def assert_same_run(result, recorder, reference):
    expected, expected_recorder = reference
    np.testing.assert_array_equal(result.state.params["w"], expected.state.params["w"])
    np.testing.assert_array_equal(result.state.key, expected.state.key)
    np.testing.assert_array_equal(result.best_params["w"], expected.best_params["w"])
    assert result.best == expected.best and result.valid == expected.valid
    assert recorder.state_dict() == expected_recorder.state_dict()


def test_a_callback_sees_every_epoch_phase_and_step(reference):
    result, recorder = reference
    assert [epoch for epoch, _ in recorder.epochs] == [0, 1, 2]
    assert recorder.phases == ["first", "second"]
    assert recorder.steps == 3 * STEPS_PER_EPOCH == int(result.state.step)
    assert not result.stopped_early


def test_a_callback_stops_training(tmp_path):
    recorder = Recorder(stop_after_epoch=0)
    result = train(tmp_path / "stop", [recorder])
    assert [epoch for epoch, _ in recorder.epochs] == [0]
    assert int(result.state.step) == STEPS_PER_EPOCH and result.stopped_early

    class StopNow(Callback):
        def on_epoch_end(self, loop, epoch, metrics):
            if epoch == 1:
                loop.stop()

    result = train(tmp_path / "stop_method", [StopNow()])
    assert int(result.state.step) == 2 * STEPS_PER_EPOCH and result.stopped_early


@pytest.mark.parametrize("kill_at_step", [6, 9])  # inside phase 1; inside phase 2
def test_sigterm_then_resume_keeps_the_callback_state_and_the_result(
    tmp_path, reference, kill_at_step
):
    workdir = tmp_path / "preempted"
    with pytest.raises(Preempted):
        train(workdir, [Recorder(kill_at_step=kill_at_step)])
    recorder = Recorder()  # a new process: only the checkpoint remembers
    result = train(workdir, [recorder], resume=True)
    assert_same_run(result, recorder, reference)


def test_kill_at_an_epoch_end_before_its_validation_resumes_exactly(tmp_path, reference):
    """Killed after the checkpoint ending epoch 2 (the phase boundary, step 8), before that
    epoch's validation: the resumed run validates it, then starts phase 2 as usual."""
    workdir = tmp_path / "killed"

    calls = []

    def dies_at_epoch_2(params):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return evaluate(params)

    with pytest.raises(KeyboardInterrupt):
        train(workdir, [Recorder()], evaluate=dies_at_epoch_2)
    recorder = Recorder()
    result = train(workdir, [recorder], resume=True)
    assert_same_run(result, recorder, reference)


def test_a_fresh_run_does_not_reuse_an_old_history(tmp_path, reference):
    workdir = tmp_path / "old"
    workdir.mkdir()
    old = {"monitor": "loss", "best": {"epoch": 0, "step": 4, "value": -1.0, "monitor": "loss"}}
    old["epochs"] = [{"epoch": 0, "step": 4, "loss": -1.0}]
    (workdir / "valid_history.json").write_text(json.dumps(old))
    result = train(workdir, [Recorder()])
    assert result.best == reference[0].best and result.valid == reference[0].valid
    history = json.loads((workdir / "valid_history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [0, 1, 2]


def test_resume_with_nothing_to_resume_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="nothing to resume in .*no run.json, no checkpoints"):
        Run(tmp_path / "typo", {"program": "toy"}, {}, resume=True)
    assert not (tmp_path / "typo").exists()
    # A run killed before its first checkpoint: --resume starts it again from step 0.
    with Run(tmp_path / "early", {"program": "toy"}, {}):
        pass
    with Run(tmp_path / "early", {"program": "toy"}, {}, resume=True) as run:
        assert not run.resume


def test_every_training_program_uses_the_one_loop():
    """The resume logic lives in `core/runner` only: no program calls `train_loop` or restores
    a checkpoint itself, and each training program calls `fit` (directly or through
    `phases.fit_phases`)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    loop_files = {"run.py", "fit.py", "checkpointing.py", "best.py"}
    for path in [*root.glob("ulmfit_jax/**/*.py"), *root.glob("elmo_jax/**/*.py")]:
        if path.parent.name == "runner" and path.parent.parent.name == "core":
            if path.name in loop_files:
                continue
        code = path.read_text()
        assert "train_loop(" not in code and "checkpointer.restore(" not in code, path
    programs = {
        "ulmfit_jax/stages/lm_stage.py": "fit_phases(",
        "ulmfit_jax/stages/classifier_stage.py": "fit_phases(",
        "ulmfit_jax/stages/phases.py": "fit.fit(",
        "elmo_jax/downstream/train.py": "fit(",
        "elmo_jax/downstream/tagger_stage.py": "fit_epochs(",
        "elmo_jax/training/pretrain.py": "fit(",
    }
    for name, call in programs.items():
        assert call in (root / name).read_text(), name
