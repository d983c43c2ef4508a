"""Training, exporting, evaluating and running the ELMo tagger as a program stage.

    metrics = train_tagger(config, workdir)   # config: train/configs/elmo_tagger.py
    predict_tags(config, workdir)             # config.stage == "predict"

The frozen biLM embeds the train and validation sentences once (`LayerCache`); the tagger
(`elmo_jax.downstream.tagger`) trains on the cached layers with Adam (gradients clipped to
`train.grad_norm`, as AllenNLP's NER config) through `ulmfit_jax.core.runner.fit.fit`
(checkpoints, exact resume, metrics, callbacks), one epoch at a time. After each epoch the
validation split is decoded (constrained Viterbi) and scored by span F1 (`span_metrics`); the
loop keeps the best epoch (`train.monitor`, "f1" by default) and stops after `train.patience`
epochs without a gain. The best epoch is exported to `WORKDIR/export/`
(`elmo_jax.downstream.tagger_export`; `export.copy_bilm` copies the biLM into it), and that
export, reloaded as an `ElmoTagger` NNX module, tags the test split through the biLM
(character ids in); span precision / recall / F1, overall and per type, go to
`WORKDIR/test_metrics.json` and `metrics.jsonl` (`test/*`). The test split is read only then.

The predict stage reads `predict.input` (one whitespace-tokenized sentence per line) and writes
`token/TAG` lines to `predict.output` (default `WORKDIR/predictions.txt`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from elmo_jax.downstream.conll import (
    SCHEMES,
    TaggedSentences,
    read_conll,
    read_tfds_conll2003,
    to_scheme,
)
from elmo_jax.downstream.models import LayerCache
from elmo_jax.downstream.span_metrics import span_metrics
from elmo_jax.downstream.tagger import (
    TaggerConfig,
    init_tagger,
    tagger_decode,
    tagger_loss,
)
from elmo_jax.downstream.tagger_export import (
    check_tagger_export,
    export_tagger,
    load_tagger,
    tag_sentences,
)
from elmo_jax.downstream.train import (
    CachedEpochs,
    ClassBatches,
    count_tokens,
    fit_epochs,
    task_train_step,
)
from elmo_jax.weights.allennlp import load_allennlp
from ulmfit_jax.core.outputs import check_not_input
from ulmfit_jax.core.runner.run import Run
from ulmfit_jax.core.runner.step import TrainStep
from ulmfit_jax.core.runner.train_state import create_train_state

FORMATS = ("conll", "tfds")
PREFIX_ORDER = {"B": 0, "I": 1, "L": 2, "U": 3}


@dataclasses.dataclass(frozen=True)
class TaggingSpec:
    """Where the tagged splits are (parsed once from `config.data`).

    Attributes:
      format: "conll" (column files) or "tfds" (TFDS's prepared `conll2003`).
      path: the folder of the column files ("conll").
      train, valid, test: file names under `path` ("conll"), or TFDS splits ("tfds").
      token_col, tag_col: the columns of a token and its tag.
      scheme: the files' tag scheme ("BIO", "IOB1" or "BIOUL"; read as BIO).
      tfds_dir: TFDS's data_dir ("" for its default).
    """

    format: str
    path: str
    train: str
    valid: str
    test: str
    token_col: int = 0
    tag_col: int = -1
    scheme: str = "BIO"
    tfds_dir: str = ""

    @classmethod
    def from_config(cls, data) -> TaggingSpec:
        spec = cls(
            format=str(data.format),
            path=str(data.path),
            train=str(data.train),
            valid=str(data.valid),
            test=str(data.test),
            token_col=int(data.token_col),
            tag_col=int(data.tag_col),
            scheme=str(data.scheme),
            tfds_dir=str(data.tfds_dir),
        )
        if spec.format not in FORMATS:
            raise ValueError(f"data.format={spec.format!r}: expected one of {FORMATS}")
        if spec.scheme not in SCHEMES:
            raise ValueError(f"data.scheme={spec.scheme!r}: expected one of {SCHEMES}")
        if not (spec.train and spec.valid and spec.test):
            raise ValueError("data.train, data.valid and data.test must all be set")
        return spec

    def read(self, split: str) -> TaggedSentences:
        """The split named by `self.train` / `self.valid` / `self.test` (`split` is one of
        "train", "valid", "test"), with BIO tags."""
        name = getattr(self, split)
        if self.format == "tfds":
            return read_tfds_conll2003(name, os.path.expanduser(self.tfds_dir) or None)
        path = Path(self.path).expanduser() / name
        if not path.is_file():
            raise FileNotFoundError(f"data.{split}: no file {path}")
        return read_conll(path, token_col=self.token_col, tag_col=self.tag_col, scheme=self.scheme)


def tag_names(sentences: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """The tag vocabulary: "O" first, then by entity type and prefix (B, I, L, U)."""
    seen = {t for tags in sentences for t in tags} | {"O"}

    def key(tag: str):
        prefix, _, entity = tag.partition("-")
        return (tag != "O", entity, PREFIX_ORDER.get(prefix, 9), tag)

    return tuple(sorted(seen, key=key))


def encode_tags(
    data: TaggedSentences, names: Sequence[str], scheme: str, split: str
) -> list[np.ndarray]:
    """BIO tags -> ids of `names` in the model's scheme; a tag training never had is an
    error naming it."""
    index = {t: i for i, t in enumerate(names)}
    out = []
    for tags in data.tags:
        converted = to_scheme(tags, "BIO", scheme)
        unknown = sorted(set(converted) - set(index))
        if unknown:
            raise ValueError(
                f"{split} split ({data.where}) has tag(s) {unknown} that the training data "
                f"never has (tags: {list(names)})"
            )
        out.append(np.array([index[t] for t in converted], np.int32))
    return out


class TagBatch(NamedTuple):
    """layers float32[B, L, T, D], mask bool[B, T], tags int32[B, T] (0 at padding)."""

    layers: np.ndarray
    mask: np.ndarray
    tags: np.ndarray


class TagBatches(ClassBatches):
    """`ClassBatches`' shuffled, resumable order over cached sentences, with padded tags."""

    def __next__(self) -> TagBatch:
        rows = self.next_rows()
        layers, mask = self.cache.batch(rows, self.layers)
        tags = np.zeros(mask.shape, np.int32)
        for r, i in enumerate(rows):
            tags[r, : len(self.labels[i])] = self.labels[i]
        return TagBatch(layers, mask, tags)


@functools.lru_cache(maxsize=8)
def make_step(
    config: TaggerConfig, learning_rate: float, grad_norm: float
) -> tuple[TrainStep, optax.GradientTransformation]:
    """A `TrainStep` `(state, TagBatch) -> (state, metrics)`, jitted with the state donated, on
    one device, and its optimiser (Adam after global-norm clipping; `grad_norm` 0 turns
    clipping off)."""
    parts = [optax.clip_by_global_norm(grad_norm)] if grad_norm > 0 else []
    optimizer = optax.chain(*parts, optax.adam(learning_rate))

    def loss_and_metrics(params, batch: TagBatch, rng):
        loss = tagger_loss(
            params, config, batch.layers, batch.mask, batch.tags, train=True, rng=rng
        )
        return loss, {"loss": loss}

    return task_train_step(loss_and_metrics, optimizer, TagBatch, "tagger batch size"), optimizer


_decode = jax.jit(tagger_decode, static_argnums=1)


def decode_cache(
    params, config: TaggerConfig, cache: LayerCache, batch_size: int = 64
) -> list[list[str]]:
    """BIO tags of every cached sentence (batches padded to `batch_size` rows, so one shape
    per length bucket)."""
    lengths = np.diff(cache.offsets)
    out = []
    for start in range(0, len(cache), batch_size):
        rows = np.arange(start, min(start + batch_size, len(cache)))
        padded = np.concatenate([rows, np.full(batch_size - len(rows), rows[0])])
        layers, mask = cache.batch(padded, range(config.num_layers))
        ids = np.asarray(_decode(params, config, layers, mask))
        out += [config.to_bio(ids[r, : lengths[i]]) for r, i in enumerate(rows)]
    return out


def bilm_files(b) -> tuple[Path, Path]:
    """The biLM's `(options, weights)` from `config.bilm` (a folder, or the two files)."""
    directory = Path(b.dir).expanduser() if b.dir else None
    options = Path(b.options).expanduser() if b.options else None
    weights = Path(b.weights).expanduser() if b.weights else None
    if directory is not None:
        if (directory / "export").is_dir():
            directory = directory / "export"  # a `train.elmo` workdir
        options = options or directory / "options.json"
        weights = weights or directory / "lm_weights.hdf5"
    if options is None or weights is None:
        raise ValueError("set bilm.dir (an exported biLM) or bilm.options and bilm.weights")
    for path in (options, weights):
        if not path.is_file():
            raise FileNotFoundError(f"no biLM file {path}")
    return options.absolute(), weights.absolute()


def model_config(config, names: tuple[str, ...], bilm_config) -> TaggerConfig:
    m = config.model
    return TaggerConfig(
        tags=names,
        input_dim=bilm_config.output_dim,
        num_layers=bilm_config.num_output_layers,
        hidden=int(m.hidden),
        encoder_layers=int(m.encoder_layers),
        elmo_dropout=float(m.elmo_dropout),
        dropout=float(m.dropout),
        scheme=str(m.scheme),
        constrain_decoding=bool(m.constrain_decoding),
        constrain_loss=bool(m.constrain_loss),
        do_layer_norm=bool(m.do_layer_norm),
    )


def _summary(metrics: dict) -> str:
    return ", ".join(f"{k} {metrics[k]:.4f}" for k in ("precision", "recall", "f1"))


def train_tagger(
    config,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    resume_changed: bool = False,
    callbacks: Sequence[Any] = (),
) -> dict[str, float]:
    """Train, keep the best epoch, export it and evaluate the export on test; returns the test
    span metrics (also in `WORKDIR/test_metrics.json`). `callbacks` are the training loop's
    (`ulmfit_jax.core.runner.callbacks`).

    The test split is always scored, once, after training: not by the loop's `test` but on the
    export read back (`load_tagger`), so that the figure is the exported tagger's."""
    spec = TaggingSpec.from_config(config.data)
    bilm = bilm_files(config.bilm)
    overwrite = bool(config.get("overwrite", False))
    check_tagger_export(Path(workdir) / "export", inputs=bilm, overwrite=overwrite)
    bilm_params, bilm_config = load_allennlp(*bilm)
    t = config.train
    if int(t.epochs) < 1:
        raise ValueError(f"train.epochs must be >= 1, got {t.epochs}")
    identity = {"program": "elmo", "stage": "tag"}
    with Run.for_config(
        workdir, identity, config, resume=resume, resume_changed=resume_changed
    ) as run:
        train, valid = spec.read("train"), spec.read("valid")
        scheme = str(config.model.scheme)
        names = tag_names([to_scheme(tags, "BIO", scheme) for tags in train.tags])
        model = model_config(config, names, bilm_config)
        train_ids = encode_tags(train, names, scheme, "train")
        encode_tags(valid, names, scheme, "valid")  # unknown tags fail now, not at the end
        run.log(
            f"elmo tag: {len(train):,} train / {len(valid):,} valid sentences, "
            f"{len(names)} {scheme} tags; caching the biLM layers"
        )
        train_cache = LayerCache(bilm_params, bilm_config, train.tokens)
        valid_cache = LayerCache(bilm_params, bilm_config, valid.tokens)
        step, optimizer = make_step(model, float(t.learning_rate), float(t.grad_norm))
        params = init_tagger(jax.random.key(config.seed), model)
        state = create_train_state(params, optimizer, seed=config.seed, key_impl="rbg")
        layers = tuple(range(model.num_layers))
        labels = np.empty(len(train_ids), object)
        labels[:] = train_ids

        batches = CachedEpochs(
            lambda position: TagBatches(
                train_cache,
                labels,
                layers,
                batch_size=t.batch_size,
                seed=config.seed,
                position=position,
            )
        )

        def evaluate(params) -> dict[str, float]:
            predicted = decode_cache(params, model, valid_cache, t.eval_batch_size)
            return span_metrics(valid.tags, predicted)

        result = fit_epochs(
            run,
            state,
            step,
            batches,
            t,
            evaluate=evaluate,
            monitor=str(t.monitor),
            patience=int(t.patience),
            describe=_summary,
            callbacks=callbacks,
            meta={"stage": "tag", "tags": list(names)},
            count_tokens=count_tokens,
            name="tag",
        )
        best, best_params, valid_metrics = result.best, result.best_params, result.valid
        export = export_tagger(
            run.workdir / "export",
            best_params,
            model,
            bilm,
            copy_bilm=bool(config.export.copy_bilm),
            meta={"best": best, "valid": valid_metrics},
            overwrite=overwrite,
        )
        test = spec.read("test")
        encode_tags(test, names, scheme, "test")
        tagger = load_tagger(export)
        metrics = span_metrics(test.tags, tag_sentences(tagger, test.tokens, t.eval_batch_size))
        metrics["best_epoch"] = float(best["epoch"] + 1)
        (run.workdir / "test_metrics.json").write_text(json.dumps(metrics, indent=2))
        run.metrics.write(int(result.state.step), metrics, prefix="test/")
        run.log(f"elmo tag done: test {_summary(metrics)} ({len(test):,} sentences)")
    return metrics


def predict_tags(config, workdir: str | os.PathLike) -> Path:
    """Tag `config.predict.input` with the export `config.predict.export` (default
    `WORKDIR/export`); returns the output file."""
    p = config.predict
    if not p.input:
        raise ValueError("stage=predict needs predict.input (one sentence per line)")
    source = Path(p.input).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"predict.input: no file {source}")
    output = Path(p.output).expanduser() if p.output else Path(workdir) / "predictions.txt"
    check_not_input(output, [source])
    tagger = load_tagger(Path(p.export).expanduser() if p.export else Path(workdir))
    lines = source.read_text(encoding="utf-8").splitlines()
    sentences = [line.split() for line in lines]
    tags = tag_sentences(tagger, sentences, int(config.train.eval_batch_size))
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for words, labels in zip(sentences, tags, strict=True):
            f.write(" ".join(f"{w}/{t}" for w, t in zip(words, labels, strict=True)) + "\n")
    os.replace(tmp, output)
    print(f"tagged {len(sentences):,} sentences to {output}", flush=True)
    return output
