"""The biLM pretraining program as a function of a config and a workdir (`train/elmo.py`).

    metrics = pretrain(config, workdir)         # config: train/configs/elmo_lm1b.py

Steps: read the training and validation sentences (text files, one tokenized sentence per
line, or a TFDS text dataset such as `lm1b`), build or read the vocabulary, train with
`ulmfit_jax.core.training.run.train_loop` (checkpoints, exact resume, metrics, SIGTERM), evaluate
with the full softmax, and export `WORKDIR/export/{options.json, lm_weights.hdf5, vocab.txt,
softmax_weights.hdf5}` (see `training.export_bilm`).

The workdir also keeps `vocab.txt`, written before the first step; a resumed run reads it back
instead of rebuilding it, so a changed corpus cannot silently renumber the softmax.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Sequence
from pathlib import Path

import jax

from elmo_jax.model.config import BiLMConfig
from elmo_jax.model.lstmp import zero_state
from elmo_jax.training import steps as training
from elmo_jax.training.data import (
    BidirectionalBatches,
    Vocabulary,
    encode_corpus,
    read_sentence_files,
)
from ulmfit_jax.core.training import sharding
from ulmfit_jax.core.training.run import Run, train_loop
from ulmfit_jax.core.training.train_state import create_train_state


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


def read_split(config, which: str) -> list[list[str]]:
    """Tokenized sentences of the `"train"` or `"valid"` data."""
    d = config.data
    limit = d.train_limit if which == "train" else d.valid_limit
    if d.source == "files":
        files = d.train_files if which == "train" else d.valid_files
        return read_sentence_files(_expand(files, f"data.{which}_files"), limit)
    if d.source == "tfds":
        from ulmfit_jax.core.data.sources import load_text_dataset

        split = d.train_split if which == "train" else d.valid_split
        source = load_text_dataset(d.tfds_name, split, data_dir=d.tfds_dir or None)
        n = min(len(source), limit) if limit else len(source)
        sentences = [r.text.split() for r in source.get_many(range(n))]
        sentences = [s for s in sentences if s]
        if not sentences:
            raise ValueError(f"{d.tfds_name}[{split}] has no sentences")
        return sentences
    raise ValueError(f"data.source must be 'files' or 'tfds', got {d.source!r}")


def vocabulary(config, workdir: Path, train_sentences, resume: bool) -> Vocabulary:
    saved = workdir / training.VOCAB_FILE
    if resume and saved.exists():
        return Vocabulary.from_file(saved)
    if config.vocab.file:
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


def pretrain(
    config, workdir: str | os.PathLike, *, resume: bool = False, resume_changed: bool = False
) -> dict[str, float]:
    """Train a biLM from scratch; returns the validation metrics (full softmax)."""
    workdir = Path(workdir)
    model = model_config(config)
    options = train_options(config)
    t = config.train
    identity = {"program": "elmo", "stage": "pretrain"}
    mesh = sharding.mesh_for_batch(t.batch_size, t.get("num_devices", 0))
    shard_index, shard_count = sharding.process_shard()
    checkpoint_dir = t.get("checkpoint_dir", "") or None
    with Run(
        workdir,
        identity,
        config,
        resume=resume,
        resume_changed=resume_changed,
        checkpoint_dir=checkpoint_dir,
    ) as run:
        train_sentences = read_split(config, "train")
        valid_sentences = read_split(config, "valid")
        vocab = vocabulary(config, run.workdir, train_sentences, resume)
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
        optimizer = training.make_optimizer(options)
        params = training.init_lm_params(jax.random.key(config.seed), model, len(vocab))
        state = create_train_state(
            params,
            optimizer,
            seed=config.seed,
            lstm_state=zero_state(model, t.batch_size),
            key_impl=training.KEY_IMPL,
            mesh=mesh,
            state_batch_axis=training.STATE_BATCH_AXIS,
        )
        step = training.step_fn(training.make_train_step(model, options, mesh))
        meta = {"stage": "pretrain", "model": model.to_options(), "vocab_size": len(vocab)}
        state = train_loop(
            run,
            state=state,
            step_fn=step,
            make_iterator=make_iterator,
            iterator_position=lambda it: it.position(),
            num_steps=steps,
            checkpoint_every=t.checkpoint_every,
            log_every=t.log_every,
            meta=meta,
            desc="elmo",
        )
        e = config.eval
        valid = BidirectionalBatches(
            valid_corpus,
            batch_size=e.batch_size,
            unroll_steps=e.unroll_steps,
            shuffle=False,
            repeat=False,
        )
        metrics = training.evaluate(state["params"], model, valid, mesh)
        metrics["total_tokens"] = valid_corpus.num_tokens
        run.metrics.write(int(state["step"]), metrics, prefix="valid/")
        if run.is_main:
            recorded = {
                "dropout": options.dropout,
                "unroll_steps": options.unroll_steps,
                "batch_size": t.batch_size,
                "n_negative_samples_batch": options.n_negative_samples,
                "all_clip_norm_val": options.clip_norm,
                "learning_rate": options.learning_rate,
                "n_train_tokens": train_corpus.num_tokens,
                "n_steps": int(state["step"]),
            }
            training.export_bilm(run.workdir / "export", state["params"], model, vocab, recorded)
        run.log(
            f"elmo pretrain done: validation perplexity {metrics['perplexity']:.1f} (forward "
            f"{metrics['forward_perplexity']:.1f}, backward {metrics['backward_perplexity']:.1f}"
            f", {metrics['tokens']:,} tokens); exported to {run.workdir / 'export'}"
        )
    return metrics
