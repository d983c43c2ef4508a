"""An ELMo tagger's export (`WORKDIR/export/`) and tagging with it; no training code.

    tagger = load_tagger("runs/ner")            # an ElmoTagger NNX module, eval mode
    tags = tag_sentences(tagger, [["John", "lives", "in", "Paris"]])   # BIO

An export folder holds:

    tagger.json     the TaggerConfig (tag names and scheme), where the biLM is, the best epoch
    params/         the task parameters (an orbax checkpoint; the biLM is not in it)
    bilm/           options.json + lm_weights.hdf5 when copied (else tagger.json records the
                    biLM's absolute paths)

It is built beside its place and renamed there, with an ownership marker
(`ulmfit_jax.core.outputs`): a re-run or resumed tagger replaces its own export; a folder it
did not write is refused unless `overwrite`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from elmo_jax.downstream.export import check_owned_export
from elmo_jax.downstream.tagger import ElmoTagger, TaggerConfig, init_tagger, jit_decode
from elmo_jax.embedding.files import bucket_length
from elmo_jax.model.characters import batch_to_ids
from elmo_jax.weights.allennlp import load_allennlp
from ulmfit_jax.core import outputs
from ulmfit_jax.core.runner.checkpointing import Checkpointer

PROGRAM, STAGE = "elmo_jax", "tag"


def tag_sentences(
    tagger: ElmoTagger, sentences: Sequence[Sequence[str]], batch_size: int = 64
) -> list[list[str]]:
    """BIO tags of tokenized sentences through the tagger's biLM (character ids in): sorted by
    length, padded to `batch_size` rows and a length bucket, so few shapes compile."""
    order = np.argsort([len(s) for s in sentences], kind="stable")
    out: list[list[str]] = [[] for _ in sentences]
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = [list(sentences[i]) for i in rows]
        width = bucket_length(max(1, max(len(s) for s in batch)))
        ids = batch_to_ids(batch + [[]] * (batch_size - len(batch)), pad_to=width)
        tags = np.asarray(jit_decode(tagger, jnp.asarray(ids))[0])
        for r, i in enumerate(rows):
            out[i] = tagger.config.to_bio(tags[r, : len(sentences[i])])
    return out


def _legacy_owner(directory: Path) -> dict | None:
    """An export written before ownership markers: a tagger.json with a tagger config."""
    try:
        record = json.loads((directory / "tagger.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(record, dict) and "config" in record and "bilm" in record:
        return {"program": PROGRAM, "stage": STAGE}
    return None


def check_tagger_export(
    directory: str | os.PathLike, *, inputs=(), overwrite: bool = False
) -> None:
    """Refuse, before training, an export folder the tagger may not write (one it did not
    write, unless `overwrite`; one that is or holds an input).

    Raises:
      outputs.OutputRefused: a one-line error naming the folder.
    """
    check_owned_export(directory, STAGE, _legacy_owner, inputs=inputs, overwrite=overwrite)


def export_tagger(
    directory: str | os.PathLike,
    params,
    config: TaggerConfig,
    bilm: tuple[Path, Path],
    *,
    copy_bilm: bool,
    meta: dict,
    overwrite: bool = False,
) -> Path:
    """Write an export (module docstring) to `directory`, replacing an earlier tagger export
    there (a resumed run exports again): it is built beside it and renamed into place.
    Returns it.

    Raises:
      outputs.OutputRefused: the folder holds something else (`check_tagger_export`).
    """
    options, weights = bilm
    best = meta.get("best")
    epoch = best.get("epoch") if isinstance(best, dict) else None

    def write(building: Path) -> None:
        if copy_bilm:
            (building / "bilm").mkdir()
            shutil.copyfile(options, building / "bilm" / "options.json")
            shutil.copyfile(weights, building / "bilm" / "lm_weights.hdf5")
            where = {"options": "bilm/options.json", "weights": "bilm/lm_weights.hdf5"}
        else:
            where = {"options": str(options), "weights": str(weights)}
        record = {"config": dataclasses.asdict(config), "bilm": where, **meta}
        ckpt = Checkpointer(building / "params", max_to_keep=1)
        ckpt.save(0, {"params": params}, {"tagger": record["config"]})
        ckpt.close()
        (building / "tagger.json").write_text(json.dumps(record, indent=2, default=str))

    return outputs.write_folder(
        directory,
        write,
        outputs.owner_record(PROGRAM, STAGE, epoch=epoch, config=dataclasses.asdict(config)),
        inputs=bilm,
        overwrite=overwrite,
        legacy_owner=_legacy_owner,
    )


def load_tagger(directory: str | os.PathLike) -> ElmoTagger:
    """An `ElmoTagger` (eval mode) from an export folder or a workdir holding `export/`."""
    directory = Path(directory)
    if (directory / "export" / "tagger.json").is_file():
        directory = directory / "export"
    record_path = directory / "tagger.json"
    if not record_path.is_file():
        raise FileNotFoundError(f"{directory} is not a tagger export (no tagger.json)")
    record = json.loads(record_path.read_text())
    fields = dict(record["config"])
    fields["tags"] = tuple(fields["tags"])
    config = TaggerConfig(**fields)
    paths = [directory / record["bilm"][k] for k in ("options", "weights")]
    bilm_params, bilm_config = load_allennlp(*paths)
    template = jax.eval_shape(functools.partial(init_tagger, config=config), jax.random.key(0))
    template = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), template)
    ckpt = Checkpointer(directory / "params", max_to_keep=1)
    restored, _ = ckpt.restore({"params": template})
    ckpt.close()
    return ElmoTagger(config, bilm_config, bilm_params, params=restored["params"])
