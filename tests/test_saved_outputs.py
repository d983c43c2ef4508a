"""saved_outputs: the test outputs a stage keeps, and ensembles scored from them."""

import numpy as np
import pytest

from ulmfit_jax.inference.saved_outputs import (
    TEST_OUTPUTS,
    ensemble_accuracy,
    load_test_outputs,
    save_test_outputs,
)


def saved(tmp_path, name, outputs, targets, labels=("neg", "pos")):
    (tmp_path / name).mkdir()
    save_test_outputs(tmp_path / name, np.array(outputs), np.array(targets), labels)
    return tmp_path / name


def test_outputs_round_trip(tmp_path):
    w = saved(tmp_path, "clas", [[0.9, 0.1], [0.2, 0.8]], [0, 1])
    got = load_test_outputs(w)
    assert got["outputs"].dtype == np.float32
    np.testing.assert_array_equal(got["targets"], [0, 1])
    assert list(got["label_names"]) == ["neg", "pos"]
    assert [p.name for p in w.iterdir()] == [TEST_OUTPUTS]  # no temporary file left behind


def test_ensemble_averages_probabilities(tmp_path):
    # Example 0: the forward model is wrong but less sure than the backward one is right.
    fwd = saved(tmp_path, "fwd", [[0.4, 0.6], [0.3, 0.7], [0.2, 0.8]], [0, 1, 1])
    bwd = saved(tmp_path, "bwd", [[0.9, 0.1], [0.6, 0.4], [0.7, 0.3]], [0, 1, 1])
    assert ensemble_accuracy([fwd]) == pytest.approx(2 / 3)
    assert ensemble_accuracy([bwd]) == pytest.approx(1 / 3)
    # means: [0.65, 0.35], [0.45, 0.55], [0.45, 0.55]: all three right
    assert ensemble_accuracy([fwd, bwd]) == pytest.approx(1.0)


def test_ensemble_refuses_members_that_scored_other_things(tmp_path):
    a = saved(tmp_path, "a", [[0.4, 0.6], [0.3, 0.7]], [0, 1])
    other_examples = saved(tmp_path, "b", [[0.4, 0.6], [0.3, 0.7]], [1, 1])
    other_labels = saved(tmp_path, "c", [[0.4, 0.6], [0.3, 0.7]], [0, 1], ("pos", "neg"))
    with pytest.raises(ValueError, match="scored different test examples"):
        ensemble_accuracy([a, other_examples])
    with pytest.raises(ValueError, match="cannot be averaged"):
        ensemble_accuracy([a, other_labels])
    with pytest.raises(FileNotFoundError, match="has no test_outputs.npz"):
        ensemble_accuracy([tmp_path / "missing"])
