"""The `evaluate` and `predict` stages of the command line: exported classifiers on data.

    evaluate     the test split's metrics for one classifier, or for the average of several
                 classifiers' outputs (`ensemble`: the forward and backward models); writes
                 `metrics.json`, `confusion_matrix.csv` / `.png` and `top_losses.csv`
    predict      predictions for the lines of a text file or the rows of a CSV/TSV/JSONL file,
                 which keep their other columns; written as CSV or JSONL

Both read only exports (`Predictor`): no optimiser or training code. Labels are matched by
name: gold labels through the model's label names (a name the model never had is an error),
ensemble members' columns through theirs.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from ulmfit_jax.core.data.classification import load_test
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.core.data.tables import TABLE_FORMATS, document_text, format_of, read_table
from ulmfit_jax.core.outputs import atomic_file, check_output_file
from ulmfit_jax.inference.metrics import (
    classification_metrics,
    confusion_matrix,
    write_confusion_matrix,
    write_top_losses,
)
from ulmfit_jax.inference.predictor import Predictions, Predictor


def load_predictors(workdirs: Sequence[str]) -> list[Predictor]:
    """The exported classifiers of `workdirs`; an ensemble's members must share their labels."""
    if not workdirs:
        raise ValueError("needs eval.workdirs: one or more classify workdirs")
    predictors = [Predictor.from_workdir(w) for w in workdirs]
    kinds = {p.encoder.kind if p.encoder else "single" for p in predictors}
    names = [sorted(p.encoder.names) if p.encoder else None for p in predictors]
    if len(kinds) > 1 or any(n != names[0] for n in names):
        raise ValueError(f"the classifiers of {list(workdirs)} do not share their labels")
    return predictors


def ensemble_outputs(predictors: Sequence[Predictor], texts: Sequence[str]) -> Predictions:
    """The members' mean output, each member's columns put in the first member's label order."""
    first = predictors[0]
    outputs = []
    for p in predictors:
        out = np.asarray(p.predict(texts))
        if p.encoder and first.encoder and p.encoder.names != first.encoder.names:
            out = out[:, [p.encoder.names.index(n) for n in first.encoder.names]]
        outputs.append(out)
    result = np.mean(outputs, axis=0).astype(np.float32).view(Predictions)
    result.encoder = first.encoder
    return result


def evaluate_stage(config, workdir: str | Path | None = None) -> dict:
    """Metrics of `eval.workdirs` (each, and their ensemble) on the test split; the files of the
    interpretation (confusion matrix, top losses) for the last one go to `workdir` (default
    `EVAL_WORKDIRS[0]/evaluate`)."""
    workdirs = [str(w) for w in config.eval.workdirs]
    predictors = load_predictors(workdirs)
    encoder = predictors[0].encoder
    if encoder is None:
        raise ValueError(f"{workdirs[0]} records no label names; re-export it with this version")
    spec = DataSpec.from_config(config.data)
    test = load_test(spec, seed=config.seed)
    targets = encoder.encode(test.raw_labels, test.where)  # by name; unknown names refused
    out_dir = Path(workdir) if workdir else Path(workdirs[0]) / "evaluate"
    results, outputs = {}, None
    members = [(w, [p]) for w, p in zip(workdirs, predictors, strict=True)]
    if len(predictors) > 1:
        members.append(("ensemble", predictors))
    for name, group in members:
        outputs = ensemble_outputs(group, test.texts)
        results[name] = classification_metrics(outputs, targets, encoder)
    if jax.process_index() != 0:
        return results
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=2))
    if encoder.kind == "single":
        matrix = confusion_matrix(np.argmax(outputs, -1), targets, len(encoder.names))
        write_confusion_matrix(matrix, encoder.names, out_dir)
    write_top_losses(
        test.texts,
        test.raw_labels,
        outputs,
        targets,
        encoder,
        out_dir / "top_losses.csv",
        n=int(config.eval.top_losses),
    )
    for name, metrics in results.items():
        shown = {k: v for k, v in metrics.items() if "/" not in k}
        line = ", ".join(f"{k} {v:.4f}" for k, v in shown.items())
        print(f"test {line}: {name}")
    print(f"wrote metrics.json, confusion matrix and top losses to {out_dir}")
    return results


def read_inputs(path: Path, text_fields: Sequence[str]) -> tuple[list[str], list[dict] | None]:
    """Texts to classify and, for tables, their rows (the columns the output keeps)."""
    if path.suffix.lower().lstrip(".") in (*TABLE_FORMATS, "json", "ndjson"):
        table = read_table(path, format_of(path))
        fields = tuple(text_fields) or ("text",)
        table.require(fields, "text column")
        return [document_text(row, fields) for row in table.rows], table.rows
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    return text.replace("\r\n", "\n").split("\n")[: -1 if text.endswith("\n") else None], None


def _is_predictions_file(path: Path) -> bool:
    """A file `predict_stage` wrote (replaced without `overwrite`): its first line is a CSV
    header or a JSON record with a "prediction" column."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix.lower() == ".jsonl":
        try:
            return "prediction" in json.loads(first)
        except (ValueError, TypeError):
            return False
    return "prediction" in next(csv.reader([first]), [])


def predict_stage(config) -> Path:
    """Classify every line (or table row) of `predict.input`; write CSV or JSONL `predict.output`.

    Blank lines or texts get an empty prediction rather than a label.
    """
    if not config.predict.input:
        raise ValueError(
            "predict needs predict.input: a text file (one document per line) or a "
            "CSV/TSV/JSONL file"
        )
    if not config.predict.output:
        raise ValueError("predict needs predict.output: where to write the predictions")
    source, target = Path(config.predict.input), Path(config.predict.output)
    if not source.is_file():
        raise FileNotFoundError(f"predict.input {source} is not a file")
    check_output_file(
        target,
        inputs=[source, *config.eval.workdirs],
        overwrite=bool(config.get("overwrite", False)),
        is_ours=_is_predictions_file,
    )
    predictors = load_predictors([str(w) for w in config.eval.workdirs])
    fields = tuple(config.predict.text_fields) or (config.predict.text_field,)
    texts, rows = read_inputs(source, fields)
    real = [i for i, t in enumerate(texts) if t.strip()]
    outputs = ensemble_outputs(predictors, [texts[i] for i in real])
    labels = outputs.labels
    names = outputs.label_names or [str(i) for i in range(outputs.shape[1])]
    if jax.process_index() != 0:  # every host computes; the first writes
        return target
    records = []
    by_row = dict(zip(real, range(len(real)), strict=True))
    for i, text in enumerate(texts):
        record = dict(rows[i]) if rows is not None else {"text": text}
        k = by_row.get(i)
        label = "" if k is None else labels[k]
        if isinstance(label, list):
            label = ";".join(label)
        record["prediction"] = label
        for j, name in enumerate(names):
            record[f"prob_{name}"] = "" if k is None else f"{float(outputs[k, j]):.6f}"
        records.append(record)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as tmp:
        if target.suffix.lower() == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as f:
                for record in records:
                    f.write(json.dumps(record, default=str) + "\n")
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["text"])
                writer.writeheader()
                writer.writerows(records)
    skipped = len(texts) - len(real)
    print(
        f"wrote {len(real)} predictions to {target}"
        + (f" ({skipped} blank input(s) left without one)" if skipped else "")
    )
    return target
