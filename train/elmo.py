"""ELMo biLM pretraining program (bilm-tf's recipe).

    python -m train.elmo --config train/configs/elmo_lm1b.py:sample --workdir runs/elmo
    python -m train.elmo --config train/configs/elmo_lm1b.py:sample --workdir runs/elmo --resume

Checkpoints, metrics (`metrics.jsonl`, TensorBoard), progress and SIGTERM handling are
`ulmfit_jax.core.runner.run`'s, as for the ULMFiT program. At the end the model is evaluated with
the full softmax and exported to `WORKDIR/export/` (`options.json` + `lm_weights.hdf5` in the
released layout, readable by `elmo_jax.load_allennlp`, AllenNLP and bilm-tf). Config keys are
locked: a misspelt `--config.key` is an error. Training uses every device; on several hosts run the
same command on each with `--distributed=on` (see `ulmfit_jax.core.runner.sharding`). Mistakes
in the input end with one line, `train.elmo: error: ...`, and exit status 2 (`--verbose` adds the
traceback); `--resume_changed` accepts a resume with a changed config
(`ulmfit_jax.core.runner.cli`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app, flags
from ml_collections import config_flags

from ulmfit_jax.core.commands import usage_error
from ulmfit_jax.core.runner import cli


def define_flags(
    flag_values: flags.FlagValues = flags.FLAGS, sys_argv: list[str] | None = None
) -> None:
    """--config, --workdir, --resume, --distributed and `cli.define_common_flags`'s. Defined on
    demand, not at import: absl flags are global to the process, and train.ulmfit defines flags
    of the same names. `sys_argv` is where the `--config.key=value` overrides are read
    (sys.argv by default, as ml_collections does)."""
    config_flags.DEFINE_config_file(
        "config",
        None,
        "Config file.",
        flag_values=flag_values,
        lock_config=True,
        sys_argv=sys_argv,
    )
    flags.DEFINE_string(
        "workdir", None, "Folder of this run (checkpoints, metrics).", flag_values=flag_values
    )
    flags.DEFINE_bool("resume", False, "Continue the run in --workdir.", flag_values=flag_values)
    flags.DEFINE_enum(
        "distributed",
        "auto",
        ["auto", "on", "off"],
        "Connect the hosts of a multi-host run: 'auto' when the environment names several "
        "processes, 'on' always (Cloud TPU pod slices), 'off' never.",
        flag_values=flag_values,
    )
    cli.define_common_flags(flag_values)
    flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)


def run(config, workdir: str, resume: bool = False, resume_changed: bool = False) -> dict:
    """Train, evaluate and export; returns the validation metrics."""
    from elmo_jax.training.pretrain import pretrain
    from ulmfit_jax.core.runner.workdir import WorkdirLock

    with WorkdirLock(workdir):  # before the data is read: a second run stops at once
        return pretrain(config, workdir, resume=resume, resume_changed=resume_changed)


def main(argv, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    # Returns nothing: `app.run` passes a return value to `sys.exit`.
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from ulmfit_jax.core.runner import sharding

    sharding.maybe_initialize_distributed(flag_values.distributed)
    run(flag_values.config, flag_values.workdir, flag_values.resume, flag_values.resume_changed)


# The ELMo task programs (train.elmo_downstream, train.elmo_tagger) pick what to do by
# `config.stage`, as train.ulmfit does; `mode` was its old name.
TASK_STAGES = ("train", "predict")
_RENAMED_MODE = (
    "config.mode is now config.stage: give --config.stage=train or --config.stage=predict"
)


def task_stage(config) -> str:
    """`config.stage` of an ELMo task program: "train" or "predict"."""
    if "mode" in config:
        raise ValueError(_RENAMED_MODE)
    if config.stage not in TASK_STAGES:
        raise ValueError(f"stage={config.stage!r}: expected 'train' or 'predict'")
    return config.stage


def run_task_program(program: str, run: Callable) -> None:
    """The `__main__` of an ELMo task program: `train.elmo`'s flags, then
    `run(config, workdir, resume, resume_changed)`, with `cli.run_program`'s one-line errors."""
    argv = sys.argv[1:]
    if any(a.split("=", 1)[0] == "--config.mode" for a in argv):
        # Caught before parsing: the locked config has no `mode`, and ml_collections' error
        # would not name `stage`.
        usage_error(program, _RENAMED_MODE)

    def task_main(args: list[str]) -> None:
        if len(args) > 1:
            raise app.UsageError(f"unexpected arguments: {args[1:]}")
        values = flags.FLAGS
        run(values.config, values.workdir, values.resume, values.resume_changed)

    define_flags()
    cli.run_program(program, task_main)


if __name__ == "__main__":
    define_flags()
    cli.run_program("train.elmo", main)
