"""Sentence classification on frozen ELMo features (AllenNLP's recipe): train, or predict.

    python -m train.elmo_downstream --config train/configs/elmo_trec.py \
        --workdir runs/trec_elmo --config.bilm.dir=runs/elmo_sample/export
    python -m train.elmo_downstream --config train/configs/elmo_classify_local.py \
        --workdir runs/clf --config.mode=predict --config.predict.input=texts.csv

Same flags, checkpoints, resume and metrics as `train.elmo`. Training records `valid/*` per
epoch and `test/*` once at the end, and exports the best epoch to `WORKDIR/export`; predict
writes the input's columns plus `label` and `prob_<class>` to `predict.output` (CSV).
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from train.elmo import define_flags
from ulmfit_jax.core.training import cli


def predict(config, workdir: str) -> dict:
    """Predict `config.predict.input` with the export; returns the output path and count."""
    from elmo_jax.downstream.predict import predict_file

    p = config.predict
    if not p.input:
        raise ValueError("mode=predict needs predict.input (a CSV/TSV/JSONL table or .txt file)")
    export = p.export or config.export_dir or str(Path(workdir) / "export")
    output = p.output or str(Path(workdir) / "predictions.csv")
    count = predict_file(export, p.input, output, text_fields=tuple(p.text_fields) or None)
    print(f"wrote {count} predictions to {output}", flush=True)
    return {"output": output, "count": count}


def run(config, workdir: str, resume: bool = False, resume_changed: bool = False) -> dict:
    """Train the classifier and evaluate it (`valid/*`, `test/*`), or predict (`mode`)."""
    from elmo_jax.downstream.train import classify
    from ulmfit_jax.core.training.workdir import WorkdirLock

    mode = config.get("mode", "train")
    if mode not in ("train", "predict"):
        raise ValueError(f"mode must be 'train' or 'predict', got {mode!r}")
    if mode == "predict":
        return predict(config, workdir)
    with WorkdirLock(workdir):  # before the data is read: a second run stops at once
        return classify(config, workdir, resume=resume, resume_changed=resume_changed)


def main(argv, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    run(flag_values.config, flag_values.workdir, flag_values.resume, flag_values.resume_changed)


if __name__ == "__main__":
    define_flags()
    cli.run_program("train.elmo_downstream", main)
