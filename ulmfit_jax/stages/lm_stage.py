"""ULMFiT's language-model stages, as functions of a config and a workdir.

    pretrain     language model on a general corpus (WikiText), from scratch
    finetune_lm  language model on the target corpus, from one of `init.workdir` (a pretrain
                 run or a `python -m ulmfit_jax convert` export), fastai weights
                 (`init.fastai_pth` + `init.fastai_itos`: paths or addresses) or a registered
                 model (`init.pretrained`, e.g. "wt103_fwd"; `ulmfit_jax.weights.pretrained`),
                 moved onto the target vocabulary like fastai's `match_embeds`

Both train in phases (`ulmfit_jax.stages.phases`) and export their final parameters
(`ulmfit_jax.weights.export`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from ulmfit_jax.batching import corpus
from ulmfit_jax.batching.lm_stream import LMStream
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.core.paths import DEFAULT_CACHE
from ulmfit_jax.core.runner import sharding
from ulmfit_jax.core.runner.run import Run
from ulmfit_jax.models import awd_lstm
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.optim import param_groups
from ulmfit_jax.stages.lm_steps import evaluate_lm, make_lm_train_step
from ulmfit_jax.stages.phases import StageModel, find_lr, fit_phases
from ulmfit_jax.text.vocab import Vocab
from ulmfit_jax.weights import fastai, pretrained
from ulmfit_jax.weights.export import LM_STAGES, check_export, export_params, load_lm

__all__ = ["LM_STAGES", "cache_dir", "lm_config", "lm_stage"]


def cache_dir(config) -> Path | None:
    """The stage's token cache: `config.cache_dir`, else the default cache."""
    return Path(config.cache_dir).expanduser() if config.cache_dir else DEFAULT_CACHE


def lm_config(config, vocab_size: int) -> AWDLSTMConfig:
    m = config.model
    return AWDLSTMConfig(
        vocab_size=vocab_size,
        emb_sz=m.emb_sz,
        n_hid=m.n_hid,
        n_layers=m.n_layers,
        drop_mult=m.drop_mult,
        compute_dtype=m.compute_dtype,
    )


INIT_KEYS = ("workdir", "fastai_pth", "pretrained")


def check_init(config) -> None:
    """A `finetune_lm` config names exactly one starting point, and a registered model reads
    text in the stage's direction (checked before any tokenizing or downloading)."""
    if config.stage != "finetune_lm":
        return
    chosen = [f"init.{key}" for key in INIT_KEYS if config.init[key]]
    if len(chosen) != 1:
        raise ValueError(
            "finetune_lm starts from exactly one of init.workdir (a pretrain run), "
            f"init.fastai_pth (fastai weights) or init.pretrained (a registered model); got "
            f"{', '.join(chosen) or 'none'}"
        )
    if config.init.pretrained:
        pretrained.check_direction(config.init.pretrained, config.backward)


def lm_stage(
    config,
    workdir: str | Path,
    *,
    resume: bool = False,
    resume_changed: bool = False,
    callbacks: Sequence[Any] = (),
) -> dict:
    """`pretrain` or `finetune_lm`; returns the best epoch's validation metrics. `callbacks`:
    the training loop's (`ulmfit_jax.core.runner.callbacks`)."""
    stage = config.stage
    check_init(config)
    overwrite = bool(config.get("overwrite", False))
    if not config.lr_find:
        check_export(workdir, stage, inputs=[config.init.workdir], overwrite=overwrite)
    spec = DataSpec.from_config(config.data)
    train_docs, valid_docs = corpus.lm_corpus(
        spec, seed=config.seed, cache_dir=cache_dir(config), n_workers=config.tokenizer_workers
    )
    init_params, init_vocab = None, None
    if stage == "finetune_lm":
        if config.init.workdir:
            init_params, init_model, init_vocab, _ = load_lm(config.init.workdir)
        elif config.init.fastai_pth:
            init_params, init_model, itos = fastai.load_fastai_lm(
                config.init.fastai_pth, config.init.fastai_itos or None
            )
            init_vocab = Vocab(itos) if itos else None
        else:
            init_params, init_model, itos = pretrained.load_pretrained(config.init.pretrained)
            init_vocab = Vocab(itos)
    vocab = corpus.build_vocab(
        train_docs, max_vocab=config.vocab.max_vocab, min_freq=config.vocab.min_freq
    )
    model = lm_config(config, len(vocab))
    if init_params is not None:
        if (init_model.emb_sz, init_model.n_hid, init_model.n_layers) != (
            model.emb_sz,
            model.n_hid,
            model.n_layers,
        ):
            model = dataclasses.replace(
                model,
                emb_sz=init_model.emb_sz,
                n_hid=init_model.n_hid,
                n_layers=init_model.n_layers,
            )
        if init_vocab is None:
            raise ValueError("fastai weights need their itos.pkl (init.fastai_itos)")
        params = fastai.match_embeddings(init_params, init_vocab.itos, vocab.itos)
    else:
        params = awd_lstm.init_lm_params(jax.random.key(config.seed), model)

    train_ids = corpus.numericalize(train_docs, vocab)
    valid_ids = corpus.numericalize(valid_docs, vocab)
    t = config.train
    mesh = sharding.mesh_for_batch(t.batch_size, t.num_devices)
    shard_index, shard_count = sharding.process_shard()
    loader = LMStream(  # this host's rows of every batch
        train_ids,
        batch_size=t.batch_size,
        bptt=t.bptt,
        seed=config.seed,
        shuffle=True,
        backward=config.backward,
        variable_bptt=t.variable_bptt,
        shard_index=shard_index,
        shard_count=shard_count,
    )
    labels = param_groups.lm_param_groups(params)
    meta = {
        "stage": stage,
        "vocab": vocab.itos,
        "model": dataclasses.asdict(model),
        "backward": bool(config.backward),
    }

    def make_step(optimizer):
        return make_lm_train_step(model, optimizer, alpha=t.alpha, beta=t.beta, mesh=mesh)

    lstm_state = awd_lstm.zero_state(model, t.batch_size)
    trained = StageModel(params, labels, make_step, loader, mesh, lstm_state)
    if config.lr_find:
        return find_lr(config, workdir, trained)
    identity = {"program": "ulmfit", "stage": stage, "backward": bool(config.backward)}
    with Run.for_config(
        workdir, identity, config, resume=resume, resume_changed=resume_changed
    ) as run:
        run.log(
            f"{stage}: {len(train_ids):,} train docs ({sum(map(len, train_ids)):,} tokens), "
            f"{len(valid_ids):,} valid docs, vocab {len(vocab):,}, {loader.num_batches()} "
            f"batches per epoch, {mesh.size} device(s) on {shard_count} host(s)"
        )
        valid = LMStream(
            valid_ids,
            batch_size=min(t.batch_size, max(1, sum(map(len, valid_ids)) // (t.bptt + 1))),
            bptt=t.bptt,
            shuffle=False,
            backward=config.backward,
        )

        def evaluate(params) -> dict[str, float]:
            return evaluate_lm(params, model, valid.epoch_batches(0), mesh)

        def describe(m: dict[str, float]) -> str:
            return (
                f"loss {m['loss']:.4f}, perplexity {m['perplexity']:.1f}, "
                f"accuracy {m['accuracy']:.3f}"
            )

        result = fit_phases(
            run,
            config,
            trained,
            meta=meta,
            evaluate=evaluate,
            monitor=t.monitor or "loss",
            patience=t.patience,
            describe=describe,
            callbacks=callbacks,
        )
        best, metrics = result.best, result.valid
        export_params(
            workdir,
            result.best_params,
            dict(meta, valid=metrics, best=best),
            overwrite=overwrite,
        )
        run.log(
            f"{stage} done: best epoch {best['epoch'] + 1} by valid {best['monitor']}: "
            f"perplexity {metrics['perplexity']:.1f}, accuracy {metrics['accuracy']:.3f}"
        )
    return metrics
