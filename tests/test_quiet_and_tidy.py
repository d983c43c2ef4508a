"""Issue 39, cases 29 and 30: the programs are quiet by default (orbax's INFO logs only with
--verbose), and the Python API leaves no temporary folder behind nor names one in an error."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import ulmfit_jax as uj

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = """
import sys, tempfile
import numpy as np
from absl import flags
from ulmfit_jax.core.runner.cli import define_common_flags, run_program

define_common_flags()

def main(argv):
    from ulmfit_jax.core.runner.checkpointing import Checkpointer
    ckpt = Checkpointer(tempfile.mkdtemp(dir=sys.argv[1]))
    ckpt.save(1, {"a": np.ones(3)}, {})
    ckpt.restore({"a": np.ones(3)})
    ckpt.close()

run_program("tiny", main)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_orbax_info_logs_only_with_verbose(tmp_path, verbose):
    argv = [sys.executable, "-c", PROGRAM, str(tmp_path)] + (["--verbose"] if verbose else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    env.pop("ULMFIT_TRACEBACK", None)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    orbax_lines = [line for line in done.stderr.splitlines() if "checkpoint" in line]
    if verbose:
        assert len(orbax_lines) > 5
    else:
        assert orbax_lines == [], done.stderr[:2000]


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The API's temporary folders land here, so the test sees every one it leaves."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_evaluate_with_a_dataframe_leaves_no_temporary_folder(private_tmp, tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": ["good", "bad"], "label": ["pos", "neg"]})
    with pytest.raises(Exception) as caught:
        uj.evaluate([str(tmp_path / "no_such_run")], data=frame, text_fields=("review",))
    assert "ulmfit_eval_" not in str(caught.value) and str(private_tmp) not in str(caught.value)
    assert list(private_tmp.iterdir()) == []


def test_finetune_with_a_dataframe_leaves_no_temporary_folder(private_tmp, tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": ["a good film", "a bad film"] * 4})
    with pytest.raises(Exception) as caught:
        uj.finetune_language_model(
            tmp_path / "lm", data=frame, text_fields=("review",), tiny_model=True
        )
    assert "ulmfit_lm_" not in str(caught.value) and str(private_tmp) not in str(caught.value)
    assert "the DataFrame" in str(caught.value)
    assert list(private_tmp.iterdir()) == []
