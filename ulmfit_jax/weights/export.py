"""A finished stage's export, `WORKDIR/export`: its final parameters and metadata.

What later stages and `Predictor` load; independent of the optimiser that trained them, so
reading an export imports no training code. The metadata records the stage, the model config,
the vocabulary and what the stage measured.

An export is written beside its folder and renamed into place, with an ownership marker
(`ulmfit_jax.core.outputs`): a re-run or resumed stage replaces its own export (a new best
epoch is always what `export` holds); an export of another stage (a converted model, the
language model a classifier started from) or a user's folder is refused unless `overwrite`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from ulmfit_jax.core import outputs
from ulmfit_jax.core.runner.checkpointing import Checkpointer
from ulmfit_jax.models import awd_lstm
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.text.vocab import Vocab

LM_STAGES = ("pretrain", "finetune_lm")
# The stage name of a language model converted from fastai weights (`ulmfit_jax.weights.convert`):
# `load_lm` reads it like an LM stage's export, but no stage of the program has this name.
CONVERTED_LM = "converted_lm"
LM_EXPORTS = (*LM_STAGES, CONVERTED_LM)


PROGRAM = "ulmfit_jax"


def _legacy_owner(folder: Path) -> dict | None:
    """The owner of an export written before ownership markers: its meta's stage."""
    if not (folder / "0").is_dir():
        return None
    ckpt = Checkpointer(folder, max_to_keep=1)
    try:
        return {"program": PROGRAM, "stage": ckpt.read_meta().get("stage")}
    except (OSError, ValueError):
        return None
    finally:
        ckpt.close()


def _owner(workdir: Path, stage: str, epoch: int | None = None) -> dict:
    """The ownership record of a stage's export; the config hashed is run.json's, if any."""
    config = None
    with contextlib.suppress(OSError, ValueError):
        config = json.loads((workdir / "run.json").read_text()).get("config")
    return outputs.owner_record(PROGRAM, stage, epoch=epoch, config=config)


def check_export(workdir: str | Path, stage: str, *, inputs=(), overwrite: bool = False) -> None:
    """Refuse, before a stage starts, an `WORKDIR/export` that the stage may not replace: one
    of another stage (e.g. the converted language model a classifier would start from) or not
    written by this library, unless `overwrite`; or one that is or holds an input.

    Raises:
      outputs.OutputRefused: a one-line error naming the export and what it holds.
    """
    workdir = Path(workdir)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        identity = json.loads((workdir / "run.json").read_text()).get("identity") or {}
        if identity.get("stage") not in (None, stage):
            return  # the workdir is another stage's: `Run` refuses it, saying whose
    outputs.check_output_folder(
        workdir / "export",
        _owner(workdir, stage),
        inputs=[Path(i) / "export" if (Path(i) / "export").is_dir() else i for i in inputs],
        overwrite=overwrite,
        legacy_owner=_legacy_owner,
    )


def export_params(
    workdir: str | Path,
    params: Any,
    meta: dict,
    *,
    overwrite: bool = False,
    writer: str | None = None,
) -> None:
    """Write a stage's final parameters and metadata to `WORKDIR/export`, replacing the same
    stage's earlier export (module docstring).

    Args:
      workdir: the stage's folder.
      params: the parameters to export.
      meta: JSON metadata; `meta["stage"]` names the stage.
      overwrite: replace an export that is not this stage's.
      writer: the stage recorded as the owner, when not `meta["stage"]` (e.g. "convert").

    Raises:
      outputs.OutputRefused: `WORKDIR/export` holds something else (see `check_export`).
    """
    workdir = Path(workdir)
    best = meta.get("best")
    epoch = best.get("epoch") if isinstance(best, dict) else None

    def write(folder: Path) -> None:
        ckpt = Checkpointer(folder, max_to_keep=1)
        ckpt.save(0, {"params": params}, meta)
        ckpt.close()

    outputs.write_folder(
        workdir / "export",
        write,
        _owner(workdir, writer or str(meta.get("stage")), epoch),
        overwrite=overwrite,
        legacy_owner=_legacy_owner,
    )


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
