"""ULMFiT training program: one stage per call.

    python -m train.ulmfit --config train/configs/pretrain_wikitext2.py --workdir runs/pretrain
    python -m train.ulmfit --config train/configs/finetune_lm_imdb.py --workdir runs/lm \
        --config.init.workdir=runs/pretrain
    python -m train.ulmfit --config train/configs/classify_imdb.py --workdir runs/clas \
        --config.init.workdir=runs/lm
    python -m train.ulmfit --config train/configs/evaluate_imdb.py \
        --config.eval.workdirs="('runs/clas','runs/clas_bwd')"

Append `:tiny` to a config path for its tiny variant (tests, CI). `--resume` continues a
killed or preempted run from its last checkpoint. Training uses every device (see
`--config.train.num_devices`); on several hosts (a TPU pod slice) run the same command on each
with `--distributed=on` (or `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`).
Config keys are locked: a misspelt `--config.key` is an error, not a silently ignored setting.
Mistakes in the input end with one line, `train.ulmfit: error: ...`, and exit status 2
(`--verbose` adds the traceback). A workdir is held by one live run at a time (`WORKDIR/.lock`);
`--resume` refuses a config that differs from the recorded one in keys that change the result
unless `--resume_changed` is given.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from ulmfit_jax.core.runner import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Stage config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of this run (checkpoints, metrics).")
_RESUME = flags.DEFINE_bool("resume", False, "Continue the run in --workdir.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed",
    "auto",
    ["auto", "on", "off"],
    "Connect the hosts of a multi-host run (jax.distributed.initialize): 'auto' when the "
    "environment names several processes, 'on' always (Cloud TPU pod slices), 'off' never.",
)
cli.define_common_flags()
flags.mark_flags_as_required(["config"])

TRAINING_STAGES = ("pretrain", "finetune_lm", "classify")


def run(config, workdir: str | None, resume: bool = False, resume_changed: bool = False):
    """Run the stage `config.stage`; returns its metrics."""
    from ulmfit_jax.core.runner.workdir import WorkdirLock
    from ulmfit_jax.inference import stages as inference_stages
    from ulmfit_jax.stages import classifier_stage, lm_stage

    if config.stage in TRAINING_STAGES and not workdir:
        raise ValueError(f"stage {config.stage!r} needs --workdir")
    options = dict(resume=resume, resume_changed=resume_changed)
    if config.stage in lm_stage.LM_STAGES:
        # The workdir's lock is taken before the data is read: a second run stops at once.
        with WorkdirLock(workdir):
            return lm_stage.lm_stage(config, workdir, **options)
    if config.stage == "classify":
        with WorkdirLock(workdir):
            return classifier_stage.classify_stage(config, workdir, **options)
    if config.stage == "evaluate":
        return inference_stages.evaluate_stage(config, workdir)
    if config.stage == "predict":
        return inference_stages.predict_stage(config)
    raise ValueError(
        f"unknown stage {config.stage!r}: expected one of "
        f"{(*TRAINING_STAGES, 'evaluate', 'predict')}"
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from ulmfit_jax.core.runner import sharding

    sharding.maybe_initialize_distributed(_DISTRIBUTED.value)
    run(_CONFIG.value, _WORKDIR.value, _RESUME.value, flags.FLAGS.resume_changed)


if __name__ == "__main__":
    cli.run_program("train.ulmfit", main)
