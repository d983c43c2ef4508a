"""The ULMFiT classifier stage (gradual unfreezing), evaluation and batch prediction."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import jax
import numpy as np

from ulmfit_jax import classifier, param_groups, sharding, text_data
from ulmfit_jax.classifier import ClassifierConfig
from ulmfit_jax.classifier_batches import ClassifierBatches
from ulmfit_jax.classifier_training import (
    accuracy,
    classifier_step_fn,
    init_classifier_train_state,
    make_classifier_train_step,
    predict_batches,
)
from ulmfit_jax.pipeline import (
    export_params,
    load_lm,
    load_tokenized,
    run_phases,
)
from ulmfit_jax.predictor import Predictor, ensemble_predict
from ulmfit_jax.run import Run

# More unknown tokens than this in the classifier's data means the LM's vocabulary belongs to
# other data (a wrong init.workdir), not merely a new domain.
MAX_UNKNOWN_FRACTION = 0.5


def _labels_or_error(labels, split: str, config) -> np.ndarray:
    if labels is None:
        raise ValueError(
            f"split {split!r} of {config.data.get('name') or config.data.get('path')} has "
            "documents without labels: a classifier needs a label for every document"
        )
    return labels


def classify_stage(config, workdir: str | Path, *, resume: bool = False) -> dict:
    """Train a classifier (from the fine-tuned LM in `init.workdir`, or from scratch)."""
    source = text_data.open_split(config.data, config.data.train_split)
    label_names = list(source.label_names or [])
    train_docs, train_labels = load_tokenized(
        config, config.data.train_split, config.data.train_limit
    )
    train_labels = _labels_or_error(train_labels, config.data.train_split, config)
    test_docs, test_labels = load_tokenized(config, config.data.test_split, config.data.test_limit)
    test_labels = _labels_or_error(test_labels, config.data.test_split, config)
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
        vocab = text_data.build_vocab(
            train_docs, max_vocab=config.vocab.max_vocab, min_freq=config.vocab.min_freq
        )
        emb_sz, n_hid, n_layers = m.emb_sz, m.n_hid, m.n_layers
    train_ids = text_data.numericalize(train_docs, vocab)
    test_ids = text_data.numericalize(test_docs, vocab)
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

    def make_state(p, optimizer):
        return place(init_classifier_train_state(p, optimizer, seed=config.seed))

    def place(state):
        return sharding.put_replicated(state, mesh)

    def make_step(optimizer):
        step = make_classifier_train_step(model, optimizer, alpha=t.alpha, beta=t.beta, mesh=mesh)
        return lambda trainable: classifier_step_fn(step, trainable)

    results = {}
    identity = {"program": "ulmfit", "stage": "classify", "backward": bool(config.backward)}
    with Run(
        workdir, identity, config, resume=resume, checkpoint_dir=t.checkpoint_dir or None
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
            make_state=make_state,
            make_step=make_step,
            loader=loader,
            meta=meta,
            after_phase=after_phase,
            place_state=place,
        )
        if "accuracy" not in results:
            after_phase(len(config.phases) - 1, state)
        export_params(workdir, state["params"], dict(meta, test=results))
    return results


def evaluate_stage(config) -> dict:
    """Accuracy of `eval.workdirs` (one classifier, or several averaged) on the test split."""
    workdirs = list(config.eval.workdirs)
    if not workdirs:
        raise ValueError("evaluate needs eval.workdirs: one or more classify workdirs")
    predictors = [Predictor.from_workdir(w) for w in workdirs]
    source = text_data.open_split(config.data, config.data.test_split)
    texts, labels = text_data.take(source, config.data.test_limit or None, seed=config.seed)
    labels = _labels_or_error(labels, config.data.test_split, config)
    results = {}
    for workdir, predictor in zip(workdirs, predictors, strict=True):
        results[str(workdir)] = accuracy(predictor.predict(texts), labels)
    if len(predictors) > 1:
        results["ensemble"] = accuracy(ensemble_predict(predictors, texts), labels)
    for name, value in results.items():
        if jax.process_index() == 0:
            print(f"test accuracy {value:.4f} (error {1 - value:.4f}): {name}")
    return results


def read_texts(path: Path, text_field: str) -> list[str]:
    """Lines of a .txt file, or a column of a .csv file (by header name)."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or text_field not in reader.fieldnames:
                raise ValueError(f"{path} has no column {text_field!r} (has {reader.fieldnames})")
            return [row[text_field] for row in reader]
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def predict_stage(config) -> Path:
    """Classify every line (or CSV row) of `predict.input`; write CSV or JSONL `predict.output`."""
    predictors = [Predictor.from_workdir(w) for w in config.eval.workdirs]
    if not predictors:
        raise ValueError("predict needs eval.workdirs: one or more classify workdirs")
    source, target = Path(config.predict.input), Path(config.predict.output)
    texts = read_texts(source, config.predict.text_field)
    probs = ensemble_predict(predictors, texts)
    names = predictors[0].label_names or [str(i) for i in range(probs.shape[1])]
    if jax.process_index() != 0:  # every host computes; the first writes
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() == ".jsonl":
        with open(target, "w", encoding="utf-8") as f:
            for text, p in zip(texts, probs, strict=True):
                record = {"text": text, "label": names[int(np.argmax(p))]}
                record["probs"] = {n: float(v) for n, v in zip(names, p, strict=True)}
                f.write(json.dumps(record) + "\n")
    else:
        with open(target, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label", *names])
            for text, p in zip(texts, probs, strict=True):
                writer.writerow([text, names[int(np.argmax(p))], *(f"{v:.6f}" for v in p)])
    print(f"wrote {len(texts)} predictions to {target}")
    return target
