"""Test-wide setup.

Eight simulated CPU devices must be requested before jax is imported anywhere, so that the
sharding tests run on a machine with one CPU.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json  # noqa: E402
import pathlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"


def run_python(code: str, *args: str, **env: str) -> dict:
    """Run `python -c code args...` in the checkout on one CPU device, with `env` added to the
    environment; checks that it succeeds and returns the JSON object of its last stdout line."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", **env)
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    """`../shared` beside the checkout; tests needing it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_pretrain_command():
    """Builds the `python -m train.ulmfit` command line of the tiny WikiText pretraining config.

    `build(workdir, wiki, scratch, *overrides)`: `wiki` is a WikiText-shaped folder, `scratch`
    holds the token cache and the TFDS folder, and `overrides` are the test's own flags
    (phases, checkpoint cadence, `--resume`, ...).
    """

    def build(workdir: pathlib.Path, wiki: pathlib.Path, scratch: pathlib.Path, *overrides):
        return [
            sys.executable,
            "-m",
            "train.ulmfit",
            f"--config={REPO_ROOT / 'train/configs/pretrain_wikitext2.py'}:tiny",
            f"--workdir={workdir}",
            f"--config.data.path={wiki}",
            f"--config.cache_dir={scratch / 'cache'}",
            f"--config.data.tfds_dir={scratch / 'tfds'}",
            *overrides,
        ]

    return build


@pytest.fixture(scope="session")
def fastai_batching(fixtures_dir):
    """fastai's reference batch layouts: LMDataLoader windows and SortedDL orders (npz arrays)."""
    import numpy as np

    return np.load(fixtures_dir / "data" / "fastai_batching.npz")


@pytest.fixture(scope="session")
def fastai_fixture(fixtures_dir):
    """`(folder, expected arrays)` of fastai's reference models (scripts/fixtures)."""
    import numpy as np

    root = fixtures_dir / "fastai"
    return root, dict(np.load(root / "expected.npz"))


@pytest.fixture(scope="session")
def fastai_classifier_config(fastai_fixture):
    """The `ClassifierConfig` of the fastai fixture's classifier."""
    import json

    import ulmfit_jax

    root, _ = fastai_fixture
    return ulmfit_jax.ClassifierConfig(**json.loads((root / "classifier_config.json").read_text()))
