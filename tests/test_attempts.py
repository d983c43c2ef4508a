"""A stage's time summed over its attempts (ulmfit_jax.core.runner.attempts)."""

import json

import pytest

from ulmfit_jax.core.runner import attempts


def write_attempts(workdir, starts):
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"start": s}) for s in starts]
    (workdir / attempts.ATTEMPTS).write_text("\n".join(lines) + "\n")


def write_metrics(path, times):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"step": i, "time": t}) for i, t in enumerate(times)]
    path.write_text("\n".join(lines) + '\n{"step": 9, "ti')  # a killed attempt's half line


def test_a_killed_attempt_counts_up_to_its_last_record(tmp_path):
    # Attempt 1 ran 100 -> 160 (killed after its last record at 160), the machine was away
    # until 1000, attempt 2 ran 1000 -> 1500 with records in a nested metrics file too.
    write_attempts(tmp_path, [1000.0, 100.0])  # order on disk does not matter
    write_metrics(tmp_path / "metrics.jsonl", [110.0, 160.0, 1010.0])
    write_metrics(tmp_path / "phase1" / "metrics.jsonl", [150.0, 1400.0])
    assert attempts.stage_seconds(tmp_path, end=1500.0) == pytest.approx(60.0 + 500.0)


def test_an_attempt_killed_before_any_record_counts_nothing(tmp_path):
    write_attempts(tmp_path, [100.0, 200.0, 300.0])
    write_metrics(tmp_path / "metrics.jsonl", [150.0, 350.0])
    assert attempts.stage_seconds(tmp_path, end=400.0) == pytest.approx(50.0 + 0.0 + 100.0)


def test_record_attempt_appends_and_a_workdir_without_any_has_no_time(tmp_path):
    assert attempts.stage_seconds(tmp_path, end=1.0) is None
    first = attempts.record_attempt(tmp_path / "stage")
    second = attempts.record_attempt(tmp_path / "stage")
    assert attempts.attempt_starts(tmp_path / "stage") == [first, second]
    assert attempts.stage_seconds(tmp_path / "stage", end=second + 5.0) == pytest.approx(5.0)
