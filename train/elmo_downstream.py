"""Sentence classification on frozen ELMo features (AllenNLP's recipe): train, or predict.

    python -m train.elmo_downstream --config train/configs/elmo_trec.py \
        --workdir runs/trec_elmo --config.bilm.dir=runs/elmo_sample/export
    python -m train.elmo_downstream --config train/configs/elmo_classify_local.py \
        --workdir runs/clf --config.stage=predict --config.predict.input=texts.csv

Same flags, checkpoints, resume and metrics as `train.elmo`. Training records `valid/*` per
epoch and `test/*` once at the end, and exports the best epoch to `WORKDIR/export`; predict
writes the input's columns plus `label` and `prob_<class>` to `predict.output` (CSV).
"""

from __future__ import annotations

from pathlib import Path

from train.elmo import run_task_program, task_stage


def predict(config, workdir: str) -> dict:
    """Predict `config.predict.input` with the export; returns the output path and count."""
    from elmo_jax.downstream.predict import predict_file

    p = config.predict
    if not p.input:
        raise ValueError("stage=predict needs predict.input (a CSV/TSV/JSONL table or .txt file)")
    export = p.export or config.export_dir or str(Path(workdir) / "export")
    output = p.output or str(Path(workdir) / "predictions.csv")
    count = predict_file(export, p.input, output, text_fields=tuple(p.text_fields) or None)
    print(f"wrote {count} predictions to {output}", flush=True)
    return {"output": output, "count": count}


def run(config, workdir: str, resume: bool = False, resume_changed: bool = False) -> dict:
    """Train the classifier and evaluate it (`valid/*`, `test/*`), or predict (`stage`)."""
    from elmo_jax.downstream.train import classify
    from ulmfit_jax.core.runner.workdir import WorkdirLock

    if task_stage(config) == "predict":
        return predict(config, workdir)
    with WorkdirLock(workdir):  # before the data is read: a second run stops at once
        return classify(config, workdir, resume=resume, resume_changed=resume_changed)


if __name__ == "__main__":
    run_task_program("train.elmo_downstream", run)
