"""Sentence classification on frozen ELMo features (AllenNLP's recipe), e.g. TREC-6.

    python -m train.elmo_downstream --config train/configs/elmo_trec.py \
        --workdir runs/trec_elmo --config.bilm.dir=runs/elmo_sample/export

Same flags, checkpoints, resume and metrics as `train.elmo`; prints and records test accuracy.
"""

from __future__ import annotations

from absl import app, flags

from train.elmo import define_flags
from ulmfit_jax.core.training import cli


def run(config, workdir: str, resume: bool = False, resume_changed: bool = False) -> dict:
    """Train the classifier and evaluate it; returns the test metrics."""
    from elmo_jax.downstream.train import classify
    from ulmfit_jax.core.training.workdir import WorkdirLock

    with WorkdirLock(workdir):  # before the data is read: a second run stops at once
        return classify(config, workdir, resume=resume, resume_changed=resume_changed)


def main(argv, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    run(flag_values.config, flag_values.workdir, flag_values.resume, flag_values.resume_changed)


if __name__ == "__main__":
    define_flags()
    cli.run_program("train.elmo_downstream", main)
