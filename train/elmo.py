"""ELMo biLM pretraining program (bilm-tf's recipe).

    python -m train.elmo --config train/configs/elmo_lm1b.py:sample --workdir runs/elmo
    python -m train.elmo --config train/configs/elmo_lm1b.py:sample --workdir runs/elmo --resume

Checkpoints, metrics (`metrics.jsonl`, TensorBoard), progress and SIGTERM handling are
`ulmfit_jax.core.training.run`'s, as for the ULMFiT program. At the end the model is evaluated with
the full softmax and exported to `WORKDIR/export/` (`options.json` + `lm_weights.hdf5` in the
released layout, readable by `elmo_jax.load_allennlp`, AllenNLP and bilm-tf). Config keys are
locked: a misspelt `--config.key` is an error. Training uses every device; on several hosts run the
same command on each with `--distributed=on` (see `ulmfit_jax.core.training.sharding`). Mistakes
in the input end with one line, `train.elmo: error: ...`, and exit status 2 (`--verbose` adds the
traceback); `--resume_changed` accepts a resume with a changed config
(`ulmfit_jax.core.training.cli`).
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from ulmfit_jax.core.training import cli


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
    from ulmfit_jax.core.training.workdir import WorkdirLock

    with WorkdirLock(workdir):  # before the data is read: a second run stops at once
        return pretrain(config, workdir, resume=resume, resume_changed=resume_changed)


def main(argv, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    # Returns nothing: `app.run` passes a return value to `sys.exit`.
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from ulmfit_jax.core.training import sharding

    sharding.maybe_initialize_distributed(flag_values.distributed)
    run(flag_values.config, flag_values.workdir, flag_values.resume, flag_values.resume_changed)


if __name__ == "__main__":
    define_flags()
    cli.run_program("train.elmo", main)
