"""Checkpoints: exact round trip, atomicity against a killed write, clear errors."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ulmfit_jax.core.runner.checkpointing import Checkpointer


def make_state(scale=1.0):
    params = {"w": jnp.arange(6.0).reshape(2, 3) * scale, "b": jnp.ones(3)}
    opt_state = optax.adam(1e-3).init(params)
    return {
        "params": params,
        "opt": opt_state,
        "step": np.int64(7),
        "key": jax.random.key_data(jax.random.key(3)),
    }


def test_round_trip_is_bit_exact(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    state = make_state()
    ckpt.save(7, state, {"stage": "finetune_lm", "data": {"epoch": 1, "step": 3}})
    restored, meta = ckpt.restore(make_state(0.0))
    assert meta["stage"] == "finetune_lm" and meta["data"] == {"epoch": 1, "step": 3}
    assert isinstance(restored["opt"][0], optax.ScaleByAdamState)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_keeps_the_last_good_step_when_a_write_is_killed(tmp_path):
    directory = tmp_path / "ckpt"
    ckpt = Checkpointer(directory)
    ckpt.save(1, make_state(), {})
    # What a write killed half-way leaves: orbax's temporary folder for step 2.
    partial = directory / "2.orbax-checkpoint-tmp-123"
    shutil.copytree(directory / "1", partial)
    (partial / "commit_success.txt").unlink(missing_ok=True)
    reopened = Checkpointer(directory)
    assert reopened.latest_step() == 1
    restored, _ = reopened.restore(make_state(0.0))
    assert np.array_equal(restored["params"]["w"], make_state()["params"]["w"])


def test_mismatched_checkpoint_names_the_array(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(1, make_state(), {})
    other = make_state()
    other["params"]["w"] = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match=r"\['params'\]\['w'\] is float32\[2, 3\]"):
        ckpt.restore(other)


def test_corrupt_checkpoint_is_reported(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(1, make_state(), {})
    for path in (tmp_path / "ckpt" / "1" / "state").rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "manifest" in path.name:
            path.write_bytes(b"garbage")
    (tmp_path / "ckpt" / "1" / "meta" / "metadata").write_text("{not json")
    with pytest.raises(ValueError, match="is damaged and cannot be read .* only checkpoint"):
        ckpt.restore(make_state())


def test_empty_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Checkpointer(tmp_path / "none").restore(make_state())


def test_saving_a_step_twice_keeps_the_first(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(3, make_state(), {"n": 1})
    ckpt.save(3, make_state(), {"n": 2})
    assert ckpt.all_steps() == [3] and ckpt.read_meta()["n"] == 1
