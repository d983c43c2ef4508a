"""An ELMo tagger's export (`WORKDIR/export/`) and tagging with it; no training code.

    tagger = load_tagger("runs/ner")            # an ElmoTagger NNX module, eval mode
    tags = tag_sentences(tagger, [["John", "lives", "in", "Paris"]])   # BIO

An export folder holds:

    tagger.json     the TaggerConfig (tag names and scheme), where the biLM is, the best epoch
    params/         the task parameters (an orbax checkpoint; the biLM is not in it)
    bilm/           options.json + lm_weights.hdf5 when copied (else tagger.json records the
                    biLM's absolute paths)
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

from elmo_jax.downstream.tagger import ElmoTagger, TaggerConfig, init_tagger, jit_decode
from elmo_jax.embedding.files import bucket_length
from elmo_jax.model.characters import batch_to_ids
from elmo_jax.weights.allennlp import load_allennlp
from ulmfit_jax.core.runner.checkpointing import Checkpointer


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


def export_tagger(
    directory: str | os.PathLike,
    params,
    config: TaggerConfig,
    bilm: tuple[Path, Path],
    *,
    copy_bilm: bool,
    meta: dict,
) -> Path:
    """Write an export (module docstring) to `directory`, replacing any earlier one there (a
    resumed run exports again): it is built beside it and renamed into place. Returns it."""
    directory = Path(directory)
    building = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    options, weights = bilm
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
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
        os.replace(building, directory)
        shutil.rmtree(old)
    else:
        os.replace(building, directory)
    return directory


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
