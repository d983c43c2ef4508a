"""A finished stage's export, `WORKDIR/export`: its final parameters and metadata.

What later stages and `Predictor` load; independent of the optimiser that trained them, so
reading an export imports no training code. The metadata records the stage, the model config,
the vocabulary and what the stage measured.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from ulmfit_jax.core.runner.checkpointing import Checkpointer
from ulmfit_jax.models import awd_lstm
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.text.vocab import Vocab

LM_STAGES = ("pretrain", "finetune_lm")
# The stage name of a language model converted from fastai weights (`ulmfit_jax.weights.convert`):
# `load_lm` reads it like an LM stage's export, but no stage of the program has this name.
CONVERTED_LM = "converted_lm"
LM_EXPORTS = (*LM_STAGES, CONVERTED_LM)


def export_params(workdir: str | Path, params: Any, meta: dict) -> None:
    """Write a stage's final parameters and metadata to `WORKDIR/export`."""
    ckpt = Checkpointer(Path(workdir) / "export", max_to_keep=1)
    ckpt.save(0, {"params": params}, meta)
    ckpt.close()


def load_export(workdir: str | Path, make_template: Callable[[dict], Any]) -> tuple[Any, dict]:
    """`(params, meta)` of a finished stage; `make_template(meta)` builds params of the right
    structure (e.g. from the model config stored in meta)."""
    path = Path(workdir) / "export"
    if not path.is_dir():
        raise FileNotFoundError(f"{workdir} has no finished stage to load (no {path})")
    ckpt = Checkpointer(path, max_to_keep=1)
    meta = ckpt.read_meta()
    restored, _ = ckpt.restore({"params": make_template(meta)})
    ckpt.close()
    return restored["params"], meta


def load_lm(workdir: str | Path) -> tuple[dict, AWDLSTMConfig, Vocab, dict]:
    """The final parameters, model config, vocabulary and meta of an LM stage's workdir (or of
    a converted language model's: stage "converted_lm")."""

    def template(meta):
        if meta.get("stage") not in LM_EXPORTS:
            raise ValueError(f"{workdir} holds a {meta.get('stage')!r} run, not a language model")
        return awd_lstm.init_lm_params(jax.random.key(0), AWDLSTMConfig(**meta["model"]))

    params, meta = load_export(workdir, template)
    return params, AWDLSTMConfig(**meta["model"]), Vocab(meta["vocab"]), meta
