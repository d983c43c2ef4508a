"""ULMFiT's classifier stage: gradual unfreezing from a fine-tuned LM (or from scratch), with a
validation set, the best epoch kept, and every kind of label.

The stage reads train and validation documents only (`ulmfit_jax.core.data.classification`); the
test split is for the evaluate stage, or once at the end with `eval.test_at_end=True`
(reported apart, as `test/*`, never used to choose anything). After every epoch it evaluates
on the validation set (`valid/*` metrics) and keeps the best epoch by `train.monitor`
(fastai's `SaveModelCallback`), stopping after `train.patience` epochs without improvement
when set; the export holds the best epoch's parameters and says which epoch and value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ulmfit_jax.batching import corpus
from ulmfit_jax.batching.classifier_batches import ClassifierBatches
from ulmfit_jax.core.data.classification import ClassificationData, load_classification
from ulmfit_jax.core.data.labels import LabelEncoder
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.core.data.tables import Table
from ulmfit_jax.core.runner import sharding
from ulmfit_jax.core.runner.run import Run
from ulmfit_jax.inference.batch_predict import predict_batches
from ulmfit_jax.inference.metrics import classification_metrics
from ulmfit_jax.inference.saved_outputs import save_test_outputs
from ulmfit_jax.models import classifier
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.optim import param_groups
from ulmfit_jax.stages.classifier_steps import make_classifier_train_step
from ulmfit_jax.stages.lm_stage import cache_dir
from ulmfit_jax.stages.phases import StageModel, find_lr, fit_phases
from ulmfit_jax.weights.export import check_export, export_params, load_lm

# More unknown tokens than this in the classifier's data means the LM's vocabulary belongs to
# other data (a wrong init.workdir), not merely a new domain.
MAX_UNKNOWN_FRACTION = 0.5

LOSS_OF_KIND = {"single": "cross_entropy", "multi": "bce", "regression": "mse"}
ACTIVATION_OF_KIND = {"single": "softmax", "multi": "sigmoid", "regression": "identity"}


def default_monitor(kind: str) -> str:
    """fastai's `SaveModelCallback` monitors valid_loss; for classes we keep accuracy, which is
    what a reader compares (set `train.monitor` to override)."""
    return "loss" if kind == "regression" else "accuracy"


def class_weights(setting: str, targets: np.ndarray, encoder: LabelEncoder) -> tuple | None:
    """`train.class_weights`: "" (none), "balanced" (n / (k * count), scikit-learn's), or one
    comma-separated weight per class."""
    if not setting:
        return None
    if encoder.kind != "single":
        raise ValueError("train.class_weights applies to single-label classifiers only")
    k = len(encoder.names)
    if setting == "balanced":
        counts = np.bincount(targets, minlength=k).astype(np.float64)
        return tuple(float(len(targets) / (k * max(c, 1.0))) for c in counts)
    weights = tuple(float(w) for w in setting.split(","))
    if len(weights) != k or min(weights) <= 0:
        raise ValueError(
            f"train.class_weights={setting!r}: need {k} positive weights, one per class "
            f"{list(encoder.names)}"
        )
    return weights


def model_config(config, vocab_size: int, n_outputs: int, lm_model=None) -> ClassifierConfig:
    """The classifier's config: the LM's encoder sizes when there is one, else `config.model`'s."""
    m = config.model
    source = lm_model or m
    y_range = tuple(m.y_range) or None
    return ClassifierConfig(
        vocab_size=vocab_size,
        n_class=n_outputs,
        emb_sz=source.emb_sz,
        n_hid=source.n_hid,
        n_layers=source.n_layers,
        lin_ftrs=tuple(m.lin_ftrs),
        bptt=m.bptt,
        max_len=m.max_len,
        drop_mult=m.drop_mult,
        compute_dtype=m.compute_dtype,
        y_range=y_range,
    )


def _tokens(texts, config) -> list[list[str]]:
    return corpus.tokenize_texts(
        texts, cache_dir=cache_dir(config), n_workers=config.tokenizer_workers
    )


def classify_stage(
    config,
    workdir: str | Path,
    *,
    resume: bool = False,
    resume_changed: bool = False,
    tables: Mapping[str, Table] | None = None,
    callbacks: Sequence[Any] = (),
) -> dict:
    """Train a classifier; returns the best epoch's validation metrics (and `test/*` ones with
    `eval.test_at_end`). `tables` passes in-memory tables (DataFrames) instead of files;
    `callbacks` are the training loop's (`ulmfit_jax.core.runner.callbacks`)."""
    overwrite = bool(config.get("overwrite", False))
    if not config.lr_find:
        check_export(workdir, "classify", inputs=[config.init.workdir], overwrite=overwrite)
    spec = DataSpec.from_config(config.data)
    data = load_classification(spec, seed=config.seed, tables=tables)
    encoder = data.encoder
    train_docs, valid_docs = _tokens(data.train.texts, config), _tokens(data.valid.texts, config)
    lm_params, lm_model = None, None
    if config.init.workdir:
        lm_params, lm_model, vocab, lm_meta = load_lm(config.init.workdir)
        if bool(lm_meta.get("backward")) != bool(config.backward):
            raise ValueError(
                f"{config.init.workdir} is a {'backward' if lm_meta.get('backward') else 'forward'}"
                f" language model but this classifier has backward={config.backward}"
            )
    else:
        vocab = corpus.build_vocab(
            train_docs, max_vocab=config.vocab.max_vocab, min_freq=config.vocab.min_freq
        )
    train_ids, valid_ids = (
        corpus.numericalize(train_docs, vocab),
        corpus.numericalize(valid_docs, vocab),
    )
    unknown = np.mean(np.concatenate(train_ids) == 0)
    if lm_params is not None and unknown > MAX_UNKNOWN_FRACTION:
        raise ValueError(
            f"{unknown:.0%} of the training tokens are unknown to the vocabulary of "
            f"{config.init.workdir}: that language model was trained on other data"
        )
    train_targets, valid_targets = data.targets(data.train), data.targets(data.valid)
    model = model_config(config, len(vocab), encoder.n_outputs, lm_model)
    key = jax.random.key(config.seed)
    if lm_params is not None:
        params = classifier.from_language_model(lm_params, key, model)
    else:
        params = classifier.init_classifier_params(key, model)
    t = config.train
    mesh = sharding.mesh_for_batch(t.batch_size, t.num_devices)
    shard_index, shard_count = sharding.process_shard()
    batches = dict(pad_multiple=model.bptt, backward=config.backward, max_len=t.max_tokens or None)
    loader = ClassifierBatches(  # this host's rows of every batch; the last partial one dropped
        train_ids,
        train_targets,
        batch_size=t.batch_size,
        seed=config.seed,
        shuffle=True,
        shard_index=shard_index,
        shard_count=shard_count,
        **batches,
    )
    valid_batches = ClassifierBatches(
        valid_ids,
        valid_targets,
        batch_size=t.batch_size,
        shuffle=False,
        drop_last=False,
        **batches,
    )
    labels = param_groups.classifier_param_groups(params)
    monitor = t.monitor or default_monitor(encoder.kind)
    weights = class_weights(t.class_weights, train_targets, encoder)
    meta = {
        "stage": "classify",
        "vocab": vocab.itos,
        "model": dataclasses.asdict(model),
        "backward": bool(config.backward),
        "label_names": list(encoder.names),
        "labels": encoder.to_meta(),
        "pretrained": bool(lm_params is not None),
        "max_tokens": int(t.max_tokens),
    }

    def make_step(optimizer):
        return make_classifier_train_step(
            model,
            optimizer,
            alpha=t.alpha,
            beta=t.beta,
            mesh=mesh,
            loss=LOSS_OF_KIND[encoder.kind],
            class_weights=weights,
        )

    def evaluate(state_params) -> dict[str, float]:
        outputs, gold = predict_batches(
            state_params,
            model,
            valid_batches.epoch_batches(0),
            mesh,
            activation=ACTIVATION_OF_KIND[encoder.kind],
        )
        return classification_metrics(outputs, gold, encoder)

    trained = StageModel(params, labels, make_step, loader, mesh)
    if config.lr_find:
        return find_lr(config, workdir, trained)
    identity = {"program": "ulmfit", "stage": "classify", "backward": bool(config.backward)}
    with Run.for_config(
        workdir, identity, config, resume=resume, resume_changed=resume_changed
    ) as run:
        _log_data(run, data, len(vocab), lm_params is not None, loader, mesh, shard_count)

        def test(best_params) -> dict[str, float]:
            return _test_once(run, config, spec, best_params, model, vocab, encoder, mesh)

        result = fit_phases(
            run,
            config,
            trained,
            meta=meta,
            evaluate=evaluate,
            monitor=monitor,
            patience=t.patience,
            test=test if config.eval.test_at_end else None,
            describe=_summary,
            callbacks=callbacks,
        )
        results = {f"valid/{k}": v for k, v in result.valid.items()}
        results.update({f"test/{k}": v for k, v in result.test.items()})
        export_params(
            workdir,
            result.best_params,
            dict(meta, best=result.best, valid=_plain(results)),
            overwrite=overwrite,
        )
    return results


def _summary(metrics: Mapping[str, float]) -> str:
    keys = [k for k in ("loss", "accuracy", "f1_macro", "f1", "mse", "mae") if k in metrics]
    return ", ".join(f"{k} {metrics[k]:.4f}" for k in keys)


def _plain(results: Mapping[str, Any]) -> dict:
    return {k: float(v) for k, v in results.items()}


def _log_data(run, data: ClassificationData, vocab_size, pretrained, loader, mesh, hosts) -> None:
    e = data.encoder
    what = {
        "single": f"{len(e.names)} classes",
        "multi": f"{len(e.names)} labels (multi-label)",
        "regression": "regression",
    }[e.kind]
    run.log(
        f"classify: {len(data.train):,} train / {len(data.valid):,} valid docs "
        f"(validation from {data.valid_from}), {what}, vocab {vocab_size:,}, "
        f"{'fine-tuned LM' if pretrained else 'from scratch'}, {loader.num_batches()} batches "
        f"per epoch, {mesh.size} device(s) on {hosts} host(s)"
    )
    if e.mixed_names:
        run.log(f"warning: {e.mixed_names}")
    for split in (data.train, data.valid):
        if split.dropped_empty:
            run.log(f"{split.where}: {split.dropped_empty} empty document(s) skipped")
        if split.replaced_rows:
            run.log(
                f"{split.where}: invalid UTF-8 replaced by U+FFFD in {split.replaced_rows} "
                "document(s) (data.errors='strict' refuses such files)"
            )


def _test_once(run, config, spec, params, model, vocab, encoder, mesh) -> dict[str, float]:
    """The best model's metrics on the test split (the loop scores it once and reports it
    apart as `test/*`); its outputs are kept in `WORKDIR/test_outputs.npz` (see
    `ulmfit_jax.inference.saved_outputs`)."""
    from ulmfit_jax.core.data.classification import load_test

    test = load_test(spec, seed=config.seed)
    ids = corpus.numericalize(_tokens(test.texts, config), vocab)
    batches = ClassifierBatches(
        ids,
        encoder.encode(test.raw_labels, test.where),
        batch_size=config.train.batch_size,
        shuffle=False,
        drop_last=False,
        pad_multiple=model.bptt,
        backward=config.backward,
        max_len=config.train.max_tokens or None,
    )
    outputs, gold = predict_batches(
        params, model, batches.epoch_batches(0), mesh, activation=ACTIVATION_OF_KIND[encoder.kind]
    )
    metrics = classification_metrics(outputs, gold, encoder)
    if run.is_main:
        save_test_outputs(run.workdir, outputs, gold, encoder.names)
    return metrics
