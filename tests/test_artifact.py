"""The inference artifact: `jax.export`ed classifier predicting like `Predictor`, loaded in a
process where flax, optax, orbax, TFDS and ml_collections cannot be imported."""

import json
import subprocess
import sys

import numpy as np
import pytest
from model_fixtures import write_classifier_export

from ulmfit_jax.inference.artifact_export import export_artifact
from ulmfit_jax.inference.predictor import Predictor

WORDS = "the a film movie was is great dull fine good bad plot acting , . ! and not very".split()
VOCAB = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"] + WORDS
TEXTS = [
    "A fine film.",
    "Dull, very dull! The plot was not good and the acting was bad.",
    "Great movie",
    "the " * 30 + "end",
]

CHILD = """
import importlib.abc, json, sys
BLOCKED = {"flax", "optax", "orbax", "tensorflow_datasets", "ml_collections"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked in this test: {name}")
sys.meta_path.insert(0, Block())
from ulmfit_jax.inference.artifact import ArtifactPredictor
predictor = ArtifactPredictor.load(sys.argv[1])
probs = predictor.predict(json.loads(sys.argv[2]))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"probs": probs.tolist(), "labels": predictor.labels(probs), "loaded": loaded}))
"""


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    workdir = write_classifier_export(tmp_path_factory.mktemp("clf"), VOCAB, ["neg", "pos"])
    return Predictor.from_workdir(workdir)


def test_the_artifact_predicts_as_predictor_without_the_training_stack(predictor, tmp_path):
    folder = export_artifact(predictor, tmp_path / "artifact")
    assert (folder / "forward.jax").is_file()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    want = predictor.predict(TEXTS)
    np.testing.assert_allclose(np.asarray(out["probs"], np.float32), want, atol=1e-6, rtol=0)
    assert out["labels"] == want.labels


def test_an_artifact_for_another_platform_is_a_one_line_error(predictor, tmp_path):
    from ulmfit_jax.inference.artifact import ArtifactPredictor

    folder = export_artifact(predictor, tmp_path / "gpu_only", platforms=("cuda",))
    with pytest.raises(ValueError, match=r"exported for \['cuda'\], not for this machine's 'cpu'"):
        ArtifactPredictor.load(folder)


def test_a_model_folder_is_not_an_artifact(predictor, tmp_path):
    from ulmfit_jax.inference.artifact import ArtifactPredictor

    predictor.save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="is not an inference artifact"):
        ArtifactPredictor.load(tmp_path / "plain")
