"""The three ULMFiT stages and their evaluation, as functions of a config and a workdir.

    pretrain     language model on a general corpus (WikiText), from scratch
    finetune_lm  language model on the target corpus, from `init.workdir` (a pretrain run) or
                 fastai weights (`init.fastai_pth` + `init.fastai_itos`, e.g. WT103), moved onto
                 the target vocabulary like fastai's `match_embeds`
    classify     classifier whose encoder is the fine-tuned LM's (or random: `init.workdir=''`
                 trains from scratch), trained in phases of gradual unfreezing
    evaluate     accuracy of one classifier, or of the average of several classifiers'
                 probabilities (`ensemble`: the forward and backward models)
    predict      probabilities for the lines of a text or CSV file, written as CSV or JSONL

Every stage trains in *phases*: `(trainable_groups, epochs, lr)` triples, `trainable_groups`
counting layer groups from the top (0 = all). Each phase starts a fresh optimiser state, as
fastai's `freeze_to` does, with discriminative learning rates (`lr / lr_mult**k` for the k-th
group below the top) and the configured schedule (STLR or 1cycle) over the phase's steps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ulmfit_jax import awd_lstm, fastai_weights, optim, param_groups, sharding, text_data
from ulmfit_jax.awd_lstm import AWDLSTMConfig
from ulmfit_jax.checkpointing import Checkpointer
from ulmfit_jax.lm_stream import LMStream, LoaderState
from ulmfit_jax.lm_training import (
    evaluate_lm,
    init_lm_train_state,
    lm_step_fn,
    make_lm_train_step,
    reset_lstm_state,
    shard_lm_train_state,
)
from ulmfit_jax.run import Run, train_loop
from ulmfit_jax.vocab import Vocab

LM_STAGES = ("pretrain", "finetune_lm")


def cache_dir(config) -> Path | None:
    return Path(config.cache_dir).expanduser() if config.cache_dir else text_data.DEFAULT_CACHE


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_tokenized(config, split: str, limit: int = 0) -> tuple[list[list[str]], np.ndarray | None]:
    source = text_data.open_split(config.data, split)
    texts, labels = text_data.take(source, limit or None, seed=config.seed)
    docs = text_data.tokenize_texts(
        texts, cache_dir=cache_dir(config), n_workers=config.tokenizer_workers
    )
    return docs, labels


def lm_corpus(config) -> tuple[list[list[str]], list[list[str]]]:
    """(train documents, validation documents) of a language-model stage.

    With `data.valid_split` set, validation is that split; otherwise a seeded `valid_pct` of
    the documents is held out, as fastai's `TextDataLoaders(..., is_lm=True, valid_pct=0.1)`.
    """
    docs = []
    for split in config.data.lm_splits:
        docs += load_tokenized(config, split, config.data.train_limit)[0]
    if config.data.valid_split:
        valid = load_tokenized(config, config.data.valid_split, config.data.valid_limit)[0]
        return docs, valid
    order = np.random.default_rng(config.seed).permutation(len(docs))
    n_valid = max(1, int(len(docs) * config.data.valid_pct))
    return [docs[i] for i in order[n_valid:]], [docs[i] for i in order[:n_valid]]


# --------------------------------------------------------------------------------------------
# Phases and optimisers
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Phase:
    trainable_groups: int  # from the top; 0 means all
    epochs: int
    lr: float


def phases(config) -> list[Phase]:
    result = [Phase(int(t), int(e), float(lr)) for t, e, lr in config.phases]
    if not result or any(p.epochs < 1 or p.lr <= 0 for p in result):
        raise ValueError("config.phases must be (trainable_groups, epochs>=1, lr>0) triples")
    return result


def make_phase_optimizer(config, labels, first: Phase, steps: int):
    """One optimiser for every phase: later phases only change its state (`optim.new_stage`),
    so the jitted training step compiles once for a whole gradual-unfreezing schedule."""
    return optim.make_optimizer(
        labels,
        lr=first.lr,
        total_steps=steps,
        schedule=config.optim.schedule,
        lr_mult=config.optim.lr_mult,
        betas=tuple(config.optim.betas),
        moms=tuple(config.optim.moms),
        eps=config.optim.eps,
        weight_decay=config.optim.weight_decay,
        clip=config.optim.clip or None,
    )


def run_phases(
    run: Run,
    config,
    *,
    params,
    labels,
    make_state,
    make_step,
    loader,
    meta,
    after_phase=None,
    place_state=None,
):
    """Train through every phase of `config.phases`, resuming where a checkpoint left off.

    Steps are counted globally across phases; phase k starts with a fresh optimiser state
    (fastai's `freeze_to` clears it) and its own schedule over its steps.

    Args:
      make_state: `(params, optimizer) -> state` for a fresh training state.
      make_step: `(optimizer, trainable) -> step_fn` for `train_loop`.
      loader: an `LMStream` or `ClassifierBatches` (epochs continue across phases).
      after_phase: `(phase_index, state) -> None`, e.g. an evaluation.
      place_state: `state -> state` putting a state on the devices (e.g. on the step's mesh),
        so that a checkpoint is restored straight into place.
    """
    place_state = place_state or (lambda s: s)
    all_phases = phases(config)
    steps_per_epoch = loader.num_batches()
    ends = np.cumsum([p.epochs * steps_per_epoch for p in all_phases]).tolist()
    starts = [0, *ends[:-1]]
    optimizer = make_phase_optimizer(config, labels, all_phases[0], ends[0])
    state = make_state(params, optimizer)
    resume_step = run.checkpointer.latest_step() if run.resume else None
    step_fn_cache = {}
    for index, phase in enumerate(all_phases):
        start, end = starts[index], ends[index]
        if resume_step is not None and resume_step >= end:
            continue  # finished before the interruption
        state["opt_state"] = optim.new_stage(
            optimizer,
            state["opt_state"],
            state["params"],
            lr=phase.lr,
            total_steps=end - start,
            lr_mult=config.optim.lr_mult,
            schedule=config.optim.schedule,
        )
        state["step"] = jnp.asarray(start, jnp.int32)
        state = place_state(state)
        trainable = optim.trainable_groups(labels, phase.trainable_groups or None)
        if "step" not in step_fn_cache:
            step_fn_cache["step"] = make_step(optimizer)
        run.log(
            f"phase {index + 1}/{len(all_phases)}: top {phase.trainable_groups or 'all'} groups, "
            f"{phase.epochs} epoch(s), lr {phase.lr:g}, steps {start}..{end}"
        )
        first_epoch = start // steps_per_epoch

        def make_iterator(position, first_epoch=first_epoch, epochs=phase.epochs):
            position = position or LoaderState(first_epoch, 0, loader.seed).to_dict()
            return loader.iterator(LoaderState.from_dict(position), num_epochs=first_epoch + epochs)

        state = train_loop(
            run,
            state=state,
            step_fn=step_fn_cache["step"](trainable),
            make_iterator=make_iterator,
            iterator_position=lambda it: it.state.to_dict(),
            num_steps=end,
            checkpoint_every=config.train.checkpoint_every,
            log_every=config.train.log_every,
            meta=dict(meta, phase=index),
            on_epoch_start=reset_lstm_state if "lstm_state" in state else None,
            desc=f"phase {index + 1}/{len(all_phases)}",
        )
        run.resume = False  # the interrupted phase is done; later ones start fresh
        if after_phase is not None:
            after_phase(index, state)
    if resume_step is not None and resume_step >= ends[-1]:
        # Everything was done: load the result.
        state, _ = run.checkpointer.restore(place_state(state))
    return state


# --------------------------------------------------------------------------------------------
# Language-model stages
# --------------------------------------------------------------------------------------------


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


def export_params(workdir: str | Path, params, meta: dict) -> None:
    """Write a stage's final parameters and metadata to `WORKDIR/export` (what later stages
    and `Predictor` load; independent of the optimiser that trained them)."""
    ckpt = Checkpointer(Path(workdir) / "export", max_to_keep=1)
    ckpt.save(0, {"params": params}, meta)
    ckpt.close()


def load_export(workdir: str | Path, make_template) -> tuple[dict, dict]:
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
    """The final parameters, model config, vocabulary and meta of an LM stage's workdir."""

    def template(meta):
        if meta.get("stage") not in LM_STAGES:
            raise ValueError(f"{workdir} holds a {meta.get('stage')!r} run, not a language model")
        return awd_lstm.init_lm_params(jax.random.key(0), AWDLSTMConfig(**meta["model"]))

    params, meta = load_export(workdir, template)
    return params, AWDLSTMConfig(**meta["model"]), Vocab(meta["vocab"]), meta


def lm_stage(config, workdir: str | Path, *, resume: bool = False) -> dict:
    """`pretrain` or `finetune_lm`; returns the final validation metrics."""
    stage = config.stage
    train_docs, valid_docs = lm_corpus(config)
    init_params, init_vocab = None, None
    if stage == "finetune_lm":
        if config.init.workdir:
            init_params, init_model, init_vocab, _ = load_lm(config.init.workdir)
        elif config.init.fastai_pth:
            init_params, init_model, itos = fastai_weights.load_fastai_lm(
                config.init.fastai_pth, config.init.fastai_itos or None
            )
            init_vocab = Vocab(itos) if itos else None
        else:
            raise ValueError("finetune_lm needs init.workdir (a pretrain run) or init.fastai_pth")
    vocab = text_data.build_vocab(
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
        params = fastai_weights.match_embeddings(init_params, init_vocab.itos, vocab.itos)
    else:
        params = awd_lstm.init_lm_params(jax.random.key(config.seed), model)

    train_ids = text_data.numericalize(train_docs, vocab)
    valid_ids = text_data.numericalize(valid_docs, vocab)
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

    def make_state(p, optimizer):
        state = init_lm_train_state(p, model, optimizer, batch_size=t.batch_size, seed=config.seed)
        return shard_lm_train_state(state, mesh)

    def make_step(optimizer):
        step = make_lm_train_step(model, optimizer, alpha=t.alpha, beta=t.beta, mesh=mesh)
        return lambda trainable: lm_step_fn(step, trainable)

    identity = {"program": "ulmfit", "stage": stage, "backward": bool(config.backward)}
    with Run(
        workdir, identity, config, resume=resume, checkpoint_dir=t.checkpoint_dir or None
    ) as run:
        run.log(
            f"{stage}: {len(train_ids):,} train docs ({sum(map(len, train_ids)):,} tokens), "
            f"{len(valid_ids):,} valid docs, vocab {len(vocab):,}, {loader.num_batches()} "
            f"batches per epoch, {mesh.size} device(s) on {shard_count} host(s)"
        )
        state = run_phases(
            run,
            config,
            params=params,
            labels=labels,
            make_state=make_state,
            make_step=make_step,
            loader=loader,
            meta=meta,
            place_state=lambda state: shard_lm_train_state(state, mesh),
        )
        valid = LMStream(
            valid_ids,
            batch_size=min(t.batch_size, max(1, sum(map(len, valid_ids)) // (t.bptt + 1))),
            bptt=t.bptt,
            shuffle=False,
            backward=config.backward,
        )
        metrics = evaluate_lm(state["params"], model, valid.epoch_batches(0), mesh)
        run.metrics.write(int(state["step"]), metrics, prefix="valid/")
        export_params(workdir, state["params"], dict(meta, valid=metrics))
        run.log(
            f"{stage} done: validation perplexity {metrics['perplexity']:.1f}, "
            f"accuracy {metrics['accuracy']:.3f}"
        )
    return metrics
