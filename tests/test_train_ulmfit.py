"""The ULMFiT training program end to end on tiny configs and small generated corpora.

pretrain -> finetune_lm -> classify -> evaluate -> predict in process; then exact resume of a
run killed mid-way (SIGKILL) and of a preempted one (SIGTERM), in subprocesses; then the bad
inputs the program must refuse without overwriting anything.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from train import ulmfit
from train.configs import classify_imdb, finetune_lm_imdb, pretrain_wikitext2
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.weights.export import load_export

REPO = Path(__file__).resolve().parents[1]
WORDS = {
    "pos": "good great fine superb lovely wonderful moving brilliant".split(),
    "neg": "bad awful poor dull boring terrible weak clumsy".split(),
}
FILLER = "the film was and a story with acting plot it is this movie".split()


def review(rng, label: str) -> str:
    words = [
        rng.choice(FILLER) if rng.random() < 0.6 else rng.choice(WORDS[label])
        for _ in range(int(rng.integers(8, 40)))
    ]
    return " ".join(words).capitalize() + "."


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    rng = np.random.default_rng(0)
    imdb = root / "aclImdb"
    for split, n in (("train", 30), ("test", 12)):
        for label in ("pos", "neg"):
            folder = imdb / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                (folder / f"{i}_1.txt").write_text(review(rng, label))
    (imdb / "train" / "unsup").mkdir()
    for i in range(20):
        (imdb / "train" / "unsup" / f"{i}_0.txt").write_text(
            review(rng, rng.choice(["pos", "neg"]))
        )
    wiki = root / "wikitext"
    wiki.mkdir()
    for split, n in (("train", 30), ("valid", 6), ("test", 6)):
        articles = []
        for i in range(n):
            body = " ".join(rng.choice(FILLER + WORDS["pos"], 30))
            articles.append(f" = Article {i} = \n \n {body} \n \n")
        (wiki / f"wiki.{split}.tokens").write_text("".join(articles))
    return {"imdb": imdb, "wiki": wiki, "root": root}


def tiny_config(module, corpora, **overrides):
    c = module.get_config("tiny")
    c.cache_dir = str(corpora["root"] / "cache")
    c.data.tfds_dir = str(corpora["root"] / "tfds")
    if c.data.source == "imdb":
        c.data.path = str(corpora["imdb"])
    elif c.data.format == "wikitext":
        c.data.path = str(corpora["wiki"])
    c.update_from_flattened_dict(overrides)
    return c


@pytest.fixture(scope="module")
def pipeline_runs(corpora, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    results = {}
    results["pretrain"] = ulmfit.run(tiny_config(pretrain_wikitext2, corpora), runs / "pretrain")
    results["finetune"] = ulmfit.run(
        tiny_config(finetune_lm_imdb, corpora, **{"init.workdir": str(runs / "pretrain")}),
        runs / "lm",
    )
    results["classify"] = ulmfit.run(
        tiny_config(
            classify_imdb,
            corpora,
            **{"init.workdir": str(runs / "lm"), "eval.test_at_end": True},
        ),
        runs / "clas",
    )
    return runs, results


def test_three_stages_train_and_export(pipeline_runs):
    runs, results = pipeline_runs
    assert np.isfinite(results["pretrain"]["perplexity"])
    assert np.isfinite(results["finetune"]["perplexity"])
    assert 0.0 <= results["classify"]["valid/accuracy"] <= 1.0
    for stage in ("pretrain", "lm", "clas"):
        lines = (runs / stage / "metrics.jsonl").read_text().splitlines()
        assert any("train/loss" in json.loads(line) for line in lines)
        assert list((runs / stage / "tensorboard").glob("events.out.tfevents.*"))


def test_evaluate_and_predict_in_input_order(pipeline_runs, corpora, tmp_path):
    runs, _ = pipeline_runs
    from train.configs import evaluate_imdb, predict

    scores = ulmfit.run(
        tiny_config(evaluate_imdb, corpora, **{"eval.workdirs": (str(runs / "clas"),)}), None
    )
    assert 0.0 <= scores[str(runs / "clas")]["accuracy"] <= 1.0
    lines = ["A good film.", "Awful, dull and boring. " * 30, "great"]
    (tmp_path / "in.txt").write_text("\n".join(lines))
    config = predict.get_config()
    config.eval.workdirs = (str(runs / "clas"),)
    config.predict.input = str(tmp_path / "in.txt")
    config.predict.output = str(tmp_path / "out.jsonl")
    ulmfit.run(config, None)
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == lines
    from ulmfit_jax.inference.predictor import Predictor

    predictor = Predictor.from_workdir(runs / "clas")
    together = predictor.predict(lines)
    alone = np.concatenate([predictor.predict([line]) for line in lines])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(together.sum(1), 1.0, atol=1e-5)


def _final_params(workdir):
    from ulmfit_jax.models import awd_lstm

    def template(meta):
        return awd_lstm.init_lm_params(jax.random.key(0), awd_lstm.AWDLSTMConfig(**meta["model"]))

    return load_export(workdir, template)[0]


def _interrupt(cmd, sig, workdir, env):
    process = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        steps = [p for p in (workdir / "checkpoints").glob("[0-9]*") if p.name.isdigit()]
        if steps:
            break
        time.sleep(0.05)
    process.send_signal(sig)
    output = process.communicate(timeout=300)[0].decode()
    return process.returncode, output


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "preempted"])
def test_resume_is_bit_exact(corpora, tmp_path, sig, tiny_pretrain_command):
    def cli(workdir, *extra):
        three_epochs = ("--config.phases=((0, 3, 0.005),)", "--config.train.checkpoint_every=4")
        return tiny_pretrain_command(
            workdir, corpora["wiki"], corpora["root"], *three_epochs, *extra
        )

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("XLA_FLAGS", None)
    reference = tmp_path / "reference"
    subprocess.run(cli(reference), cwd=REPO, env=env, check=True, capture_output=True)
    interrupted = tmp_path / "interrupted"
    code, output = _interrupt(cli(interrupted), sig, interrupted, env)
    if sig == signal.SIGTERM:
        assert "SIGTERM: saved step" in output, output
    assert code != 0
    done = subprocess.run(
        cli(interrupted, "--resume"), cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resumed from step" in done.stdout
    want, got = _final_params(reference), _final_params(interrupted)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_workdir_of_another_run_is_refused(pipeline_runs, corpora):
    runs, _ = pipeline_runs
    before = sorted(p.name for p in (runs / "lm" / "checkpoints").iterdir())
    with pytest.raises(ValueError, match="belongs to another run"):
        ulmfit.run(tiny_config(pretrain_wikitext2, corpora), runs / "lm")
    config = tiny_config(finetune_lm_imdb, corpora, **{"init.workdir": str(runs / "pretrain")})
    with pytest.raises(ValueError, match="pass --resume"):
        ulmfit.run(config, runs / "lm")
    assert sorted(p.name for p in (runs / "lm" / "checkpoints").iterdir()) == before


def test_language_model_of_other_data_is_refused(pipeline_runs, corpora, tmp_path):
    runs, _ = pipeline_runs
    other = corpora["root"] / "other"
    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = other / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(6):
                (folder / f"{i}.txt").write_text("zyx qwv plk mno rst uvw " * 5)
    config = tiny_config(classify_imdb, corpora, **{"init.workdir": str(runs / "lm")})
    config.data.path = str(other)
    with pytest.raises(ValueError, match="trained on other data"):
        ulmfit.run(config, tmp_path / "clas")


def test_unknown_config_key_is_an_error(corpora, tmp_path, tiny_pretrain_command):
    misspelt = "--config.train.batchsize=3"
    result = subprocess.run(
        tiny_pretrain_command(tmp_path / "w", corpora["wiki"], corpora["root"], misspelt),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "batchsize" in result.stderr


def test_finetune_from_fastai_weights(corpora, tmp_path, fixtures_dir):
    """fastai's `.pth` + `itos.pkl` (here the small fixture model) as the starting point."""
    fastai = fixtures_dir / "fastai"
    config = tiny_config(finetune_lm_imdb, corpora)
    config.init.fastai_pth = str(fastai / "lm.pth")
    config.init.fastai_itos = str(fastai / "lm_itos.pkl")
    metrics = ulmfit.run(config, tmp_path / "lm")
    assert np.isfinite(metrics["perplexity"])
    meta = json.loads((tmp_path / "lm" / "run.json").read_text())
    assert meta["identity"]["stage"] == "finetune_lm"


def test_backward_classifier_and_ensemble(pipeline_runs, corpora, tmp_path):
    runs, _ = pipeline_runs
    config = tiny_config(
        classify_imdb, corpora, **{"backward": True, "init.workdir": "", "eval.test_at_end": True}
    )
    ulmfit.run(config, tmp_path / "clas_bwd")
    from train.configs import evaluate_imdb
    from ulmfit_jax.inference.predictor import Predictor, ensemble_predict

    backward = Predictor.from_workdir(tmp_path / "clas_bwd")
    assert backward.backward
    forward = Predictor.from_workdir(runs / "clas")
    texts = ["good great film", "awful boring plot"]
    np.testing.assert_allclose(
        ensemble_predict([forward, backward], texts),
        (forward.predict(texts) + backward.predict(texts)) / 2,
        atol=1e-6,
    )
    workdirs = (str(runs / "clas"), str(tmp_path / "clas_bwd"))
    scores = ulmfit.run(tiny_config(evaluate_imdb, corpora, **{"eval.workdirs": workdirs}), None)
    assert set(scores) == {*workdirs, "ensemble"}
    # The outputs each stage kept of its test pass give the evaluate stage's scores again.
    from ulmfit_jax.inference.saved_outputs import ensemble_accuracy, load_test_outputs

    for w in workdirs:
        saved = load_test_outputs(w)
        assert (
            list(saved["label_names"]) == ["neg", "pos"] and len(saved["targets"]) == 20
        )  # tiny test_limit
        assert ensemble_accuracy([w]) == pytest.approx(scores[w]["accuracy"], abs=1e-9)
    assert ensemble_accuracy(workdirs) == pytest.approx(scores["ensemble"]["accuracy"], abs=1e-9)
    # A backward classifier cannot start from a forward language model.
    config = tiny_config(classify_imdb, corpora, **{"backward": True})
    config.init.workdir = str(runs / "lm")
    with pytest.raises(ValueError, match="forward language model"):
        ulmfit.run(config, tmp_path / "mixed")


def test_splits_without_labels_are_refused(corpora, tmp_path):
    config = tiny_config(classify_imdb, corpora, **{"data.train_split": "unsupervised"})
    with pytest.raises(ValueError, match="without labels"):
        ulmfit.run(config, tmp_path / "clas")
    from ulmfit_jax.core.data.classification import load_test

    config = tiny_config(classify_imdb, corpora, **{"data.test_split": "unsupervised"})
    with pytest.raises(ValueError, match="without labels"):
        load_test(DataSpec.from_config(config.data))


def test_imdb_probe_is_fast_and_false_offline(monkeypatch, tmp_path):
    """Offline, the demo must not wait for TFDS's ~200 s of download retries."""
    import socket

    from ulmfit_jax.core.data import imdb

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    start = time.perf_counter()
    assert imdb.imdb_downloadable() is False
    assert time.perf_counter() - start < 5
