"""ULMFiT's classifier stage: gradual unfreezing from a fine-tuned LM (or from scratch)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from ulmfit_jax.core.data.spec import DataSpec, open_split
from ulmfit_jax.core.training import sharding
from ulmfit_jax.core.training.run import Run
from ulmfit_jax.data import corpus
from ulmfit_jax.data.classifier_batches import ClassifierBatches
from ulmfit_jax.inference.batch_predict import predict_batches
from ulmfit_jax.inference.metrics import accuracy
from ulmfit_jax.models import classifier
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.training import param_groups
from ulmfit_jax.training.classifier_steps import classifier_step_fn, make_classifier_train_step
from ulmfit_jax.training.lm_stage import cache_dir
from ulmfit_jax.training.phases import run_phases
from ulmfit_jax.weights.export import export_params, load_lm

# More unknown tokens than this in the classifier's data means the LM's vocabulary belongs to
# other data (a wrong init.workdir), not merely a new domain.
MAX_UNKNOWN_FRACTION = 0.5


def labels_or_error(labels, split: str, spec: DataSpec) -> np.ndarray:
    """`labels`, or a clear error when a split has unlabelled documents."""
    if labels is None:
        raise ValueError(
            f"split {split!r} of {spec.description} has documents without labels: a "
            "classifier needs a label for every document"
        )
    return labels


def classify_stage(
    config, workdir: str | Path, *, resume: bool = False, resume_changed: bool = False
) -> dict:
    """Train a classifier (from the fine-tuned LM in `init.workdir`, or from scratch)."""
    spec = DataSpec.from_config(config.data)
    label_names = list(open_split(spec, spec.train_split).label_names or [])
    options = dict(
        seed=config.seed, cache_dir=cache_dir(config), n_workers=config.tokenizer_workers
    )
    train_docs, train_labels = corpus.load_tokenized(
        spec, spec.train_split, spec.train_limit, **options
    )
    train_labels = labels_or_error(train_labels, spec.train_split, spec)
    test_docs, test_labels = corpus.load_tokenized(
        spec, spec.test_split, spec.test_limit, **options
    )
    test_labels = labels_or_error(test_labels, spec.test_split, spec)
    n_class = len(label_names) or int(max(train_labels.max(), test_labels.max()) + 1)

    lm_params = None
    m = config.model
    if config.init.workdir:
        lm_params, lm_model, vocab, lm_meta = load_lm(config.init.workdir)
        if bool(lm_meta.get("backward")) != bool(config.backward):
            raise ValueError(
                f"{config.init.workdir} is a {'backward' if lm_meta.get('backward') else 'forward'}"
                f" language model but this classifier has backward={config.backward}"
            )
        emb_sz, n_hid, n_layers = lm_model.emb_sz, lm_model.n_hid, lm_model.n_layers
    else:
        vocab = corpus.build_vocab(
            train_docs, max_vocab=config.vocab.max_vocab, min_freq=config.vocab.min_freq
        )
        emb_sz, n_hid, n_layers = m.emb_sz, m.n_hid, m.n_layers
    train_ids = corpus.numericalize(train_docs, vocab)
    test_ids = corpus.numericalize(test_docs, vocab)
    unknown = np.mean(np.concatenate(train_ids) == 0)
    if lm_params is not None and unknown > MAX_UNKNOWN_FRACTION:
        raise ValueError(
            f"{unknown:.0%} of the training tokens are unknown to the vocabulary of "
            f"{config.init.workdir}: that language model was trained on other data"
        )
    model = ClassifierConfig(
        vocab_size=len(vocab),
        n_class=n_class,
        emb_sz=emb_sz,
        n_hid=n_hid,
        n_layers=n_layers,
        lin_ftrs=tuple(m.lin_ftrs),
        bptt=m.bptt,
        max_len=m.max_len,
        drop_mult=m.drop_mult,
        compute_dtype=m.compute_dtype,
    )
    key = jax.random.key(config.seed)
    if lm_params is not None:
        params = classifier.from_language_model(lm_params, key, model)
    else:
        params = classifier.init_classifier_params(key, model)
    t = config.train
    mesh = sharding.mesh_for_batch(t.batch_size, t.num_devices)
    shard_index, shard_count = sharding.process_shard()
    loader = ClassifierBatches(  # this host's rows of every batch; the last partial one dropped
        train_ids,
        train_labels,
        batch_size=t.batch_size,
        seed=config.seed,
        shuffle=True,
        pad_multiple=m.bptt,
        backward=config.backward,
        max_len=t.max_tokens or None,
        shard_index=shard_index,
        shard_count=shard_count,
    )
    test_batches = ClassifierBatches(
        test_ids,
        test_labels,
        batch_size=t.batch_size,
        shuffle=False,
        drop_last=False,
        pad_multiple=m.bptt,
        backward=config.backward,
        max_len=t.max_tokens or None,
    )
    labels = param_groups.classifier_param_groups(params)
    meta = {
        "stage": "classify",
        "vocab": vocab.itos,
        "model": dataclasses.asdict(model),
        "backward": bool(config.backward),
        "label_names": label_names,
        "pretrained": bool(lm_params is not None),
        "max_tokens": int(t.max_tokens),
    }

    def make_step(optimizer):
        step = make_classifier_train_step(model, optimizer, alpha=t.alpha, beta=t.beta, mesh=mesh)
        return lambda trainable: classifier_step_fn(step, trainable)

    results = {}
    identity = {"program": "ulmfit", "stage": "classify", "backward": bool(config.backward)}
    with Run(
        workdir,
        identity,
        config,
        resume=resume,
        resume_changed=resume_changed,
        checkpoint_dir=t.checkpoint_dir or None,
    ) as run:
        run.log(
            f"classify: {len(train_ids):,} train / {len(test_ids):,} test docs, {n_class} classes,"
            f" vocab {len(vocab):,}, {'fine-tuned LM' if lm_params is not None else 'from scratch'}"
            f", {loader.num_batches()} batches per epoch, {mesh.size} device(s) on "
            f"{shard_count} host(s)"
        )

        def after_phase(index, state):
            # Every host evaluates the whole test set, its rows split over the mesh.
            probs, gold = predict_batches(
                state["params"], model, test_batches.epoch_batches(0), mesh
            )
            results["accuracy"] = accuracy(probs, gold)
            run.metrics.write(int(state["step"]), results, prefix="test/")
            run.log(f"after phase {index + 1}: test accuracy {results['accuracy']:.4f}")

        state = run_phases(
            run,
            config,
            params=params,
            labels=labels,
            make_step=make_step,
            loader=loader,
            meta=meta,
            mesh=mesh,
            after_phase=after_phase,
        )
        if "accuracy" not in results:
            after_phase(len(config.phases) - 1, state)
        export_params(workdir, state["params"], dict(meta, test=results))
    return results
