"""The shared training loop: NaN handling, logging, and the workdir record."""

import json

import numpy as np
import pytest

from ulmfit_jax.core.runner.run import NonFiniteLoss, Run, train_loop


class Counter:
    """A resumable iterator of integers, standing in for a batch stream."""

    def __init__(self, start=0):
        self.next_value = start

    def __iter__(self):
        return self

    def __next__(self):
        value = self.next_value
        self.next_value += 1
        return value


def loop(run, step_fn, num_steps=10):
    state = {"step": np.int32(0), "w": np.zeros(3, np.float32)}
    return train_loop(
        run,
        state=state,
        step_fn=step_fn,
        make_iterator=lambda position: Counter((position or {}).get("next", 0)),
        iterator_position=lambda it: {"next": it.next_value, "step": it.next_value},
        num_steps=num_steps,
        checkpoint_every=3,
        log_every=2,
    )


def good_step(state, batch):
    w = state["w"] + 1.0
    return {"step": state["step"] + 1, "w": w}, {"loss": np.float32(1.0 / (batch + 1))}


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    def step(state, batch):
        new, metrics = good_step(state, batch)
        if batch >= 4:
            metrics["loss"] = np.float32("nan")
        return new, metrics

    with Run(tmp_path, {"program": "test"}, {}) as run:
        with pytest.raises(NonFiniteLoss, match="last good checkpoint \\(step 3\\)"):
            loop(run, step)
        assert run.checkpointer.all_steps() == [3]


def test_metrics_and_resume(tmp_path):
    with Run(tmp_path, {"program": "test"}, {"lr": 1}) as run:
        state = loop(run, good_step, num_steps=5)
    assert int(state["step"]) == 5
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 5]
    assert all("train/tokens_per_s" in r and "train/perplexity" in r for r in records)
    with Run(tmp_path, {"program": "test"}, {"lr": 1}, resume=True) as run:
        state = loop(run, good_step, num_steps=8)
    np.testing.assert_array_equal(state["w"], np.full(3, 8.0))
    assert json.loads((tmp_path / "run.json").read_text())["identity"] == {"program": "test"}
