"""The classifier workflow end to end on tiny data: a validation set, the best epoch exported,
early stopping, the test split left alone, every kind of label, evaluate and predict."""

import csv
import json
import random

import jax
import numpy as np
import pytest

import ulmfit_jax as uj
from train.configs import classify_local, evaluate_local, predict
from ulmfit_jax.core.data import classification
from ulmfit_jax.inference import stages
from ulmfit_jax.stages import classifier_stage
from ulmfit_jax.weights.export import load_export

POS, NEG = "good great fine lovely superb".split(), "bad awful poor dull boring".split()


def reviews(n, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(POS if label == "pos" else NEG, k=6) + rng.choices(POS + NEG, k=3)
        rows.append({"id": str(i), "review": " ".join(words), "label": label})
    return rows


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("reviews")
    write_csv(root / "train.csv", reviews(80, 0))
    write_csv(root / "test.csv", reviews(12, 1))
    return root


def local_config(folder, tmp_path):
    c = classify_local.get_config("tiny")
    c.data.path, c.data.text_fields = str(folder), ("review",)
    c.data.train_limit = c.data.valid_limit = 0
    c.cache_dir = str(tmp_path / "cache")
    c.init.workdir = ""
    return c


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    """A classifier whose scripted validation accuracy peaks at the first of four epochs."""
    tmp = tmp_path_factory.mktemp("clf")
    c = local_config(folder, tmp)
    c.phases = ((0, 4, 1e-3),)
    c.train.patience = 1
    scripted = iter([0.8, 0.6, 0.9, 0.9])
    seen_params, read = [], []
    real_metrics = classifier_stage.classification_metrics
    real_predict, real_read = classifier_stage.predict_batches, classification.open_split

    def metrics(outputs, gold, encoder):
        return dict(real_metrics(outputs, gold, encoder), accuracy=next(scripted))

    def predict_batches(params, *args, **kwargs):
        seen_params.append(jax.device_get(params))
        return real_predict(params, *args, **kwargs)

    def open_split(spec, split, tables=None):
        read.append(split)
        return real_read(spec, split, tables=tables)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(classifier_stage, "classification_metrics", metrics)
        mp.setattr(classifier_stage, "predict_batches", predict_batches)
        mp.setattr(classification, "open_split", open_split)
        results = classifier_stage.classify_stage(c, tmp / "run")
    return {"workdir": tmp / "run", "results": results, "params": seen_params, "read": read}


def test_best_epoch_is_exported_and_patience_stops(trained):
    params, meta = load_export(trained["workdir"], lambda meta: trained["params"][0])
    assert meta["best"] == {
        "epoch": 0,
        "step": meta["best"]["step"],
        "value": 0.8,
        "monitor": "accuracy",
    }
    history = json.loads((trained["workdir"] / "valid_history.json").read_text())
    assert [h["epoch"] for h in history["epochs"]] == [0, 1]  # patience 1: stopped after 2
    assert trained["results"]["valid/accuracy"] == 0.8
    leaves = jax.tree.leaves(params)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(leaves, jax.tree.leaves(trained["params"][0]), strict=True)
    )
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(leaves, jax.tree.leaves(trained["params"][1]), strict=True)
    )
    assert meta["labels"]["names"] == ["neg", "pos"]


def test_classify_never_reads_the_test_split(trained):
    assert trained["read"] == ["train"]


def test_evaluate_writes_interpretation_and_maps_labels_by_name(trained, folder, tmp_path):
    c = evaluate_local.get_config("tiny")
    c.data.path, c.data.text_fields = str(folder), ("review",)
    c.data.test_limit = 0
    c.eval.workdirs = (str(trained["workdir"]), str(trained["workdir"]))
    results = stages.evaluate_stage(c, tmp_path / "eval")
    assert set(results) == {str(trained["workdir"]), "ensemble"}
    assert 0 <= results["ensemble"]["accuracy"] <= 1 and "f1_macro" in results["ensemble"]
    for name in ("confusion_matrix.csv", "confusion_matrix.png", "top_losses.csv", "metrics.json"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
    matrix = list(csv.reader(open(tmp_path / "eval" / "confusion_matrix.csv")))
    assert matrix[0] == ["true \\ predicted", "neg", "pos"]
    assert sum(int(v) for row in matrix[1:] for v in row[1:]) == 12
    # A test label the model never had is refused by name, not scored by position.
    other = tmp_path / "other"
    other.mkdir()
    write_csv(other / "test.csv", [{"review": "good", "label": "neutral"}])
    c.data.path = str(other)
    with pytest.raises(ValueError, match=r"\['neutral'\] never occur in the training data"):
        stages.evaluate_stage(c, tmp_path / "eval2")


def test_predict_keeps_columns_and_skips_blank_lines(trained, tmp_path):
    write_csv(
        tmp_path / "in.csv", [{"id": "7", "review": "good great"}, {"id": "8", "review": " "}]
    )
    c = predict.get_config()
    c.eval.workdirs = (str(trained["workdir"]),)
    c.predict.input, c.predict.output = str(tmp_path / "in.csv"), str(tmp_path / "out.csv")
    c.predict.text_field = "review"
    stages.predict_stage(c)
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert list(rows[0]) == ["id", "review", "prediction", "prob_neg", "prob_pos"]
    assert rows[0]["id"] == "7" and rows[0]["prediction"] in ("neg", "pos")
    assert rows[1]["prediction"] == "" and rows[1]["prob_pos"] == ""
    c.predict.input = ""
    with pytest.raises(ValueError, match="predict needs predict.input"):
        stages.predict_stage(c)


def test_multi_label_from_a_dataframe_through_the_python_api(tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")
    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "cache"))
    rows = reviews(60, 2)
    for r in rows:
        r["tags"] = r["label"] + (";long" if len(r["review"]) > 40 else "")
    frame = pd.DataFrame(rows)
    result = uj.train_classifier(
        tmp_path / "multi",
        data=frame,
        text_fields=["review"],
        label_field="tags",
        label_delim=";",
        tiny_model=True,
        overrides={"data.train_limit": 0},
    )
    assert 0 <= result.metrics["valid/f1"] <= 1
    out = result.predictor.predict(["good great fine", "awful"])
    assert out.label_names == ["long", "neg", "pos"] and out.shape == (2, 3)
    assert all(isinstance(labels, list) for labels in out.labels)
    assert np.all((out >= 0) & (out <= 1))


def test_regression_with_y_range(folder, tmp_path):
    rows = [dict(r, score=str(4.0 if r["label"] == "pos" else 1.0)) for r in reviews(50, 3)]
    root = tmp_path / "scores"
    root.mkdir()
    write_csv(root / "train.csv", rows)
    c = local_config(root, tmp_path)
    c.data.label_field, c.data.label_kind = "score", "regression"
    c.model.y_range = (0.0, 5.0)
    results = classifier_stage.classify_stage(c, tmp_path / "reg")
    assert "valid/mse" in results and "valid/mae" in results
    out = uj.Predictor.from_workdir(tmp_path / "reg").predict(["good", "bad"])
    assert out.shape == (2, 1) and np.all((out > 0) & (out < 5))
    assert all(isinstance(v, float) for v in out.labels)


def test_bad_input_touches_nothing_on_disk(folder, tmp_path):
    c = local_config(folder, tmp_path)
    c.data.label_field = "lable"
    with pytest.raises(ValueError, match="no label column 'lable'"):
        classifier_stage.classify_stage(c, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_lr_find_flag_sweeps_instead_of_training(folder, tmp_path):
    c = local_config(folder, tmp_path)
    c.lr_find = True
    c.lr_finder.num_it = 12
    suggestions = classifier_stage.classify_stage(c, tmp_path / "lrf")
    record = json.loads((tmp_path / "lrf" / "lr_find.json").read_text())
    assert {"valley", "steep", "minimum"} <= set(record["suggestions"])
    assert len(record["lrs"]) == len(record["losses"]) <= 12 and record["lrs"][0] == 1e-7
    assert (tmp_path / "lrf" / "lr_find.png").stat().st_size > 0
    assert set(suggestions) <= set(record["suggestions"])
    assert not (tmp_path / "lrf" / "export").exists()  # nothing was trained
