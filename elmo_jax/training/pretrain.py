"""The biLM pretraining program as a function of a config and a workdir (`train/elmo.py`).

    metrics = pretrain(config, workdir)         # config: train/configs/elmo_lm1b.py

Steps: read the training and validation sentences (text files, one tokenized sentence per
line, or a TFDS text dataset such as `lm1b`), build or read the vocabulary, train with
`ulmfit_jax.core.runner.fit.fit` (checkpoints, exact resume, metrics, SIGTERM), evaluate
with the full softmax, and export `WORKDIR/export/{options.json, lm_weights.hdf5, vocab.txt,
softmax_weights.hdf5}` (see `training.export_bilm`).

The workdir also keeps `vocab.txt`, written before the first step; a resumed run reads it back
instead of rebuilding it, so a changed corpus cannot silently renumber the softmax.

Restart (bilm-tf's `restart.py`: adapting a released or exported biLM to a new corpus): set
`init.dir` (an export folder: options.json, lm_weights.hdf5 and, when present,
softmax_weights.hdf5 + vocab.txt) or `init.options` + `init.weights` (+ `init.softmax` and
`init.vocab`). The model shape then comes from the options file (`config.model` is ignored
except `compute_dtype`), the biLM weights from the hdf5 file. With a softmax and its
vocabulary the softmax is restored and that vocabulary is kept (new words of the user's text
become `<UNK>` targets, as in bilm-tf, whose restart requires the original vocabulary); without
them a fresh softmax is trained over the new text's vocabulary (`config.vocab`). Before the
first step the restored model is evaluated on the validation split (`init_valid/*` metrics:
the perplexity before adapting); the final evaluation is `valid/*` as always, and the export is
in the released layout.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax

from elmo_jax.model.config import BiLMConfig, read_options
from elmo_jax.model.lstmp import zero_state
from elmo_jax.training import steps as training
from elmo_jax.training.data import (
    BidirectionalBatches,
    Vocabulary,
    encode_corpus,
    read_sentence_files,
)
from ulmfit_jax.core.runner import sharding
from ulmfit_jax.core.runner.fit import Phase, fit
from ulmfit_jax.core.runner.run import Run
from ulmfit_jax.core.runner.train_state import create_train_state


def model_config(config) -> BiLMConfig:
    """The `BiLMConfig` of `config.model` (262 character rows, as every released model)."""
    m = config.model
    return BiLMConfig(
        char_embed_dim=m.char_embed_dim,
        filters=tuple((int(w), int(n)) for w, n in m.filters),
        n_highway=m.n_highway,
        max_characters_per_token=m.max_characters_per_token,
        activation=m.activation,
        dim=m.dim,
        projection_dim=m.projection_dim,
        n_layers=m.n_layers,
        cell_clip=m.cell_clip or None,
        proj_clip=m.proj_clip or None,
        use_skip_connections=m.use_skip_connections,
        compute_dtype=m.compute_dtype,
    )


def train_options(config) -> training.TrainOptions:
    t, o = config.train, config.optim
    return training.TrainOptions(
        dropout=t.dropout,
        unroll_steps=t.unroll_steps,
        learning_rate=o.learning_rate,
        initial_accumulator_value=o.initial_accumulator_value,
        clip_norm=o.clip_norm,
        n_negative_samples=t.n_negative_samples,
        sample_softmax=t.sample_softmax,
        shared_negatives=t.shared_negatives,
        remove_accidental_hits=t.remove_accidental_hits,
    )


def _expand(patterns: Sequence[str], what: str) -> list[str]:
    paths: list[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(os.path.expanduser(pattern)))
        if not found:
            raise ValueError(f"{what}: no file matches {pattern!r}")
        paths += found
    if not paths:
        raise ValueError(f"{what}: no files given")
    return paths


def read_sentence_split(config, which: str) -> list[list[str]]:
    """Tokenized sentences of the `"train"` or `"valid"` data."""
    d = config.data
    limit = d.train_limit if which == "train" else d.valid_limit
    if d.source == "files":
        files = d.train_files if which == "train" else d.valid_files
        return read_sentence_files(_expand(files, f"data.{which}_files"), limit)
    if d.source == "tfds":
        from ulmfit_jax.core.data.readers import open_split
        from ulmfit_jax.core.data.spec import DataSpec

        split = d.train_split if which == "train" else d.valid_split
        spec = DataSpec(source="tfds", name=d.tfds_name, tfds_dir=d.tfds_dir)
        texts = open_split(spec, split).texts
        sentences = [text.split() for text in (texts[:limit] if limit else texts)]
        sentences = [s for s in sentences if s]
        if not sentences:
            raise ValueError(f"{d.tfds_name}[{split}] has no sentences")
        return sentences
    raise ValueError(f"data.source must be 'files' or 'tfds', got {d.source!r}")


@dataclasses.dataclass(frozen=True)
class InitFiles:
    """The files of a biLM to continue training from (`config.init`); empty when none."""

    options: str = ""
    weights: str = ""
    softmax: str = ""
    vocab: str = ""

    @classmethod
    def from_config(cls, config) -> InitFiles:
        i = config.get("init")
        if i is None:
            return cls()
        folder = Path(i.dir).expanduser() if i.get("dir") else None

        def pick(value: str, name: str, required: bool) -> str:
            if value:
                return str(Path(value).expanduser())
            if folder is not None and (required or (folder / name).exists()):
                return str(folder / name)
            return ""

        files = cls(
            pick(i.get("options", ""), training.OPTIONS_FILE, True),
            pick(i.get("weights", ""), training.WEIGHTS_FILE, True),
            pick(i.get("softmax", ""), training.SOFTMAX_FILE, False),
            pick(i.get("vocab", ""), training.VOCAB_FILE, False),
        )
        if bool(files.options) != bool(files.weights):
            raise ValueError("a restart needs init.dir, or both init.options and init.weights")
        if files.softmax and not files.vocab:
            raise ValueError(
                "init.softmax needs init.vocab, the vocabulary its rows belong to (the export's "
                "vocab.txt)"
            )
        if files.vocab and not files.softmax and not files.options:
            raise ValueError("init.vocab is given without a biLM to restart from")
        return files

    @property
    def restart(self) -> bool:
        return bool(self.weights)


def restart_params(config, model: BiLMConfig, vocab: Vocabulary, init: InitFiles) -> dict:
    """`{"bilm", "softmax"}` restored from `init` (a fresh softmax when it has none)."""
    from elmo_jax.weights.allennlp import load_allennlp

    bilm, _ = load_allennlp(init.options, init.weights)
    if init.softmax:
        softmax = training.load_softmax(init.softmax)
        want = (len(vocab), model.projection_dim)
        if tuple(softmax["w"].shape) != want:
            raise ValueError(
                f"{init.softmax}: softmax/W is {tuple(softmax['w'].shape)}, but the vocabulary "
                f"{init.vocab} and the options give {want}"
            )
    else:
        params = training.init_pretraining_params(jax.random.key(config.seed), model, len(vocab))
        softmax = params["softmax"]
    return {"bilm": bilm, "softmax": softmax}


def vocabulary(
    config, workdir: Path, train_sentences, resume: bool, init: InitFiles | None = None
) -> Vocabulary:
    saved = workdir / training.VOCAB_FILE
    if resume and saved.exists():
        return Vocabulary.from_file(saved)
    if init is not None and init.softmax:
        vocab = Vocabulary.from_file(init.vocab)  # the restored softmax's rows
    elif config.vocab.file:
        vocab = Vocabulary.from_file(config.vocab.file)
    else:
        vocab = Vocabulary.build(
            train_sentences, min_count=config.vocab.min_count, max_size=config.vocab.max_size
        )
    vocab.save(saved)
    return vocab


def num_steps(config, batches: BidirectionalBatches) -> int:
    """`train.num_steps`, or bilm-tf's `n_epochs * int(n_train_tokens / (B * T))`."""
    if config.train.num_steps:
        return int(config.train.num_steps)
    per_epoch = batches.batches_per_epoch()
    if per_epoch == 0:
        raise ValueError("the training corpus is smaller than one batch: lower train.batch_size")
    return int(math.ceil(config.train.epochs * per_epoch))


class StepsOfStream:
    """The endless (repeating) training stream as the loop's `EpochData`: one epoch of `steps`
    steps, resumable from `position()`."""

    def __init__(self, make_iterator: Callable[[dict | None], Iterator], steps: int):
        self.make_iterator, self.steps_per_epoch = make_iterator, steps

    def iterator(self, epoch: int, position: dict | None) -> Iterator:
        return self.make_iterator(position)

    def position(self, iterator) -> dict:
        return iterator.position()


def pretrain(
    config,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    resume_changed: bool = False,
    callbacks: Sequence[Any] = (),
) -> dict[str, float]:
    """Train a biLM from scratch, or continue one (`config.init`, module docstring); returns the
    validation metrics (full softmax; `init_perplexity` too for a restart). `callbacks` are the
    training loop's (`ulmfit_jax.core.runner.callbacks`)."""
    workdir = Path(workdir)
    init = InitFiles.from_config(config)
    model = model_config(config)
    if init.restart:
        model = dataclasses.replace(
            read_options(init.options), compute_dtype=config.model.compute_dtype
        )
    options = train_options(config)
    t = config.train
    identity = {"program": "elmo", "stage": "pretrain"}
    mesh = sharding.mesh_for_batch(t.batch_size, t.get("num_devices", 0))
    shard_index, shard_count = sharding.process_shard()
    with Run.for_config(
        workdir, identity, config, resume=resume, resume_changed=resume_changed
    ) as run:
        train_sentences = read_sentence_split(config, "train")
        valid_sentences = read_sentence_split(config, "valid")
        vocab = vocabulary(config, run.workdir, train_sentences, resume, init)
        train_corpus = encode_corpus(train_sentences, vocab, model.max_characters_per_token)
        valid_corpus = encode_corpus(valid_sentences, vocab, model.max_characters_per_token)

        def make_iterator(position):
            batches = BidirectionalBatches(
                train_corpus,
                batch_size=t.batch_size,
                unroll_steps=t.unroll_steps,
                shuffle=t.shuffle,
                seed=config.seed,
                position=position,
                shard_index=shard_index,  # this host's rows of every batch
                shard_count=shard_count,
            )
            return training.NegativeSampling(batches, options, len(vocab), config.seed)

        steps = num_steps(config, make_iterator(None).batches)
        run.log(
            f"elmo pretrain: {train_corpus.num_sentences:,} train sentences "
            f"({train_corpus.num_tokens:,} tokens), {valid_corpus.num_sentences:,} valid, "
            f"vocab {len(vocab):,}, {steps} steps of {t.batch_size}x{t.unroll_steps}, "
            f"{mesh.size} device(s) on {shard_count} host(s)"
        )
        e = config.eval

        def valid_batches() -> BidirectionalBatches:
            return BidirectionalBatches(
                valid_corpus,
                batch_size=e.batch_size,
                unroll_steps=e.unroll_steps,
                shuffle=False,
                repeat=False,
            )

        optimizer = training.make_bilm_optimizer(options)
        before = {}
        if init.restart:
            params = restart_params(config, model, vocab, init)
            run.log(
                f"restart from {init.weights} ("
                + ("softmax and vocabulary restored" if init.softmax else "a fresh softmax")
                + ")"
            )
            if run.checkpointer.latest_step() is None:  # not yet evaluated: before any step
                before = training.evaluate(params, model, valid_batches(), mesh)
                run.metrics.write(0, before, prefix="init_valid/")
                run.log(
                    f"restored model, before adapting: validation perplexity "
                    f"{before['perplexity']:.1f}"
                )
        else:
            params = training.init_pretraining_params(
                jax.random.key(config.seed), model, len(vocab)
            )
        state = create_train_state(
            params,
            optimizer,
            seed=config.seed,
            lstm_state=zero_state(model, t.batch_size),
            key_impl=training.KEY_IMPL,
            mesh=mesh,
            state_batch_axis=training.STATE_BATCH_AXIS,
        )
        step = training.make_train_step(model, options, mesh)
        meta = {"stage": "pretrain", "model": model.to_options(), "vocab_size": len(vocab)}
        if init.restart:
            meta["init"] = dataclasses.asdict(init)
        # bilm-tf counts steps, not epochs, and evaluates once at the end: one "epoch" of
        # `steps` steps over the endless stream, without per-epoch validation.
        state = fit(
            run,
            state=state,
            train_step=step,
            data=StepsOfStream(make_iterator, steps),
            phases=[Phase(1)],
            checkpoint_every=t.checkpoint_every,
            log_every=t.log_every,
            callbacks=callbacks,
            meta=meta,
            count_tokens=lambda batch: batch.targets[0].size,
            name="elmo",
        ).state
        metrics = training.evaluate(state.params, model, valid_batches(), mesh)
        if before:
            metrics["init_perplexity"] = before["perplexity"]
        metrics["total_tokens"] = valid_corpus.num_tokens
        run.metrics.write(int(state.step), metrics, prefix="valid/")
        if run.is_main:
            recorded = {
                "dropout": options.dropout,
                "unroll_steps": options.unroll_steps,
                "batch_size": t.batch_size,
                "n_negative_samples_batch": options.n_negative_samples,
                "all_clip_norm_val": options.clip_norm,
                "learning_rate": options.learning_rate,
                "n_train_tokens": train_corpus.num_tokens,
                "n_steps": int(state.step),
            }
            if init.restart:
                recorded["restarted_from"] = init.weights
            training.export_bilm(run.workdir / "export", state.params, model, vocab, recorded)
        run.log(
            f"elmo pretrain done: validation perplexity {metrics['perplexity']:.1f} (forward "
            f"{metrics['forward_perplexity']:.1f}, backward {metrics['backward_perplexity']:.1f}"
            f", {metrics['tokens']:,} tokens); exported to {run.workdir / 'export'}"
        )
    return metrics
