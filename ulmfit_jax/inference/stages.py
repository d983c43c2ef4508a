"""The `evaluate` and `predict` stages of the command line: exported classifiers on data.

    evaluate     accuracy of one classifier, or of the average of several classifiers'
                 probabilities (`ensemble`: the forward and backward models)
    predict      probabilities for the lines of a text or CSV file, written as CSV or JSONL

Both read only exports (`Predictor`): no optimiser or training code.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jax
import numpy as np

from ulmfit_jax.core.data.spec import DataSpec, open_split
from ulmfit_jax.data import corpus
from ulmfit_jax.inference.metrics import accuracy
from ulmfit_jax.inference.predictor import Predictor, ensemble_predict


def evaluate_stage(config) -> dict:
    """Accuracy of `eval.workdirs` (one classifier, or several averaged) on the test split."""
    workdirs = list(config.eval.workdirs)
    if not workdirs:
        raise ValueError("evaluate needs eval.workdirs: one or more classify workdirs")
    predictors = [Predictor.from_workdir(w) for w in workdirs]
    spec = DataSpec.from_config(config.data)
    source = open_split(spec, spec.test_split)
    texts, labels = corpus.take(source, spec.test_limit or None, seed=config.seed)
    if labels is None:
        raise ValueError(
            f"split {spec.test_split!r} of {spec.description} has documents without labels"
        )
    results = {}
    for workdir, predictor in zip(workdirs, predictors, strict=True):
        results[str(workdir)] = accuracy(predictor.predict(texts), labels)
    if len(predictors) > 1:
        results["ensemble"] = accuracy(ensemble_predict(predictors, texts), labels)
    for name, value in results.items():
        if jax.process_index() == 0:
            print(f"test accuracy {value:.4f} (error {1 - value:.4f}): {name}")
    return results


def read_texts(path: Path, text_field: str) -> list[str]:
    """Lines of a .txt file, or a column of a .csv file (by header name)."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or text_field not in reader.fieldnames:
                raise ValueError(f"{path} has no column {text_field!r} (has {reader.fieldnames})")
            return [row[text_field] for row in reader]
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def predict_stage(config) -> Path:
    """Classify every line (or CSV row) of `predict.input`; write CSV or JSONL `predict.output`."""
    predictors = [Predictor.from_workdir(w) for w in config.eval.workdirs]
    if not predictors:
        raise ValueError("predict needs eval.workdirs: one or more classify workdirs")
    source, target = Path(config.predict.input), Path(config.predict.output)
    texts = read_texts(source, config.predict.text_field)
    probs = ensemble_predict(predictors, texts)
    names = predictors[0].label_names or [str(i) for i in range(probs.shape[1])]
    if jax.process_index() != 0:  # every host computes; the first writes
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() == ".jsonl":
        with open(target, "w", encoding="utf-8") as f:
            for text, p in zip(texts, probs, strict=True):
                record = {"text": text, "label": names[int(np.argmax(p))]}
                record["probs"] = {n: float(v) for n, v in zip(names, p, strict=True)}
                f.write(json.dumps(record) + "\n")
    else:
        with open(target, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label", *names])
            for text, p in zip(texts, probs, strict=True):
                writer.writerow([text, names[int(np.argmax(p))], *(f"{v:.6f}" for v in p)])
    print(f"wrote {len(texts)} predictions to {target}")
    return target
