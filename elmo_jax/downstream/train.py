"""Training and evaluating the ELMo sentence classifier (`downstream`) as a program stage.

    results = classify(config, workdir)    # config: train/configs/elmo_classify_local.py

Data: `elmo_jax.downstream.data` (CSV/TSV/JSONL tables with named text and label columns, or a
labelled local format such as TREC `.label` files or SST trees; a validation split; labels by
name; spaCy or whitespace tokens). The frozen biLM (an exported `options.json` +
`lm_weights.hdf5`, or a released model's files) embeds the training and validation sentences
once (`LayerCache`); the classifier then trains on the cached layers with Adam through
`ulmfit_jax.core.runner.fit.fit` (checkpoints, exact resume, metrics, SIGTERM, callbacks),
one epoch at a time. After each epoch it is evaluated on the validation split (`valid/*`
metrics); the loop keeps the best epoch by `train.monitor` and stops after `train.patience`
epochs without improvement. The test split is read and evaluated only once, at the end, with the
best epoch's parameters (`test/*`, reported apart; it chooses nothing), when the data has one
and `eval.test_at_end` holds (its default here). The best parameters are
exported with the biLM's location, the label names and the layers (`elmo_jax.downstream.export`);
`elmo_jax.downstream.predict` turns texts into labels and probabilities with it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from elmo_jax.downstream.data import tokenize_all
from elmo_jax.downstream.export import check_export_dir, save_classifier
from elmo_jax.downstream.models import (
    LayerCache,
    SentenceClassifierConfig,
    init_classifier,
    task_loss,
)
from elmo_jax.weights.allennlp import load_allennlp
from ulmfit_jax.core.data.classification import has_split, load_classification, load_test
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.core.data.tables import Table
from ulmfit_jax.core.runner import sharding
from ulmfit_jax.core.runner.fit import Phase, fit
from ulmfit_jax.core.runner.run import Run
from ulmfit_jax.core.runner.step import TrainStep
from ulmfit_jax.core.runner.train_state import TrainState, create_train_state


class ClassBatch(NamedTuple):
    """layers float32[B, L, T, D], mask bool[B, T], labels int32[B]."""

    layers: np.ndarray
    mask: np.ndarray
    labels: np.ndarray


class ClassBatches:
    """Shuffled batches of cached sentences, a new seeded order each epoch, the last partial
    batch dropped; resumable from `position()`."""

    def __init__(
        self,
        cache: LayerCache,
        labels: np.ndarray,
        layers: Sequence[int],
        *,
        batch_size: int,
        seed: int,
        position: dict | None = None,
    ):
        if len(cache) < batch_size:
            raise ValueError(f"{len(cache)} training sentences are fewer than one batch")
        self.cache, self.labels, self.layers = cache, labels, tuple(layers)
        self.batch_size, self.seed = batch_size, seed
        position = position or {"epoch": 0, "index": 0}
        self.epoch, self.index = int(position["epoch"]), int(position["index"])

    def batches_per_epoch(self) -> int:
        return len(self.cache) // self.batch_size

    def position(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def __iter__(self) -> ClassBatches:
        return self

    def next_rows(self) -> np.ndarray:
        """The sentence indices of the next batch (and advance the position)."""
        if self.index == self.batches_per_epoch():
            self.epoch, self.index = self.epoch + 1, 0
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.cache))
        rows = order[self.index * self.batch_size : (self.index + 1) * self.batch_size]
        self.index += 1
        return rows

    def __next__(self) -> ClassBatch:
        rows = self.next_rows()
        layers, mask = self.cache.batch(rows, self.layers)
        return ClassBatch(layers, mask, self.labels[rows])


def task_train_step(loss_and_metrics, optimizer, batch_type, what: str) -> TrainStep:
    """A `TrainStep` `(state, batch) -> (state, metrics)` for a task model on cached biLM
    layers (the sentence classifier's and the tagger's), jitted with the state donated, on one
    device (the cached layers are small).

    Args:
      loss_and_metrics: `(params, batch, rng) -> (loss, metrics)`, in training mode.
      optimizer: the optax optimiser the state was made with.
      batch_type: the batch NamedTuple (all its fields are rows).
      what: the batch, for the message when its rows do not split over the mesh.
    """

    @functools.partial(jax.jit, donate_argnums=0)
    def jitted(state: TrainState, batch):
        next_key, step_key = state.split_key("rbg")

        def loss_fn(params):
            return loss_and_metrics(params, batch, step_key)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads, optimizer, next_key), metrics

    mesh = sharding.make_mesh(jax.devices()[:1])
    return TrainStep(jitted, mesh, row_fields=batch_type._fields, what=what)


@functools.lru_cache(maxsize=8)
def make_step(
    config: SentenceClassifierConfig, learning_rate: float
) -> tuple[TrainStep, optax.GradientTransformation]:
    """A `TrainStep` `(state, ClassBatch) -> (state, metrics)` of Adam (`task_train_step`), and
    its optimiser."""
    optimizer = optax.adam(learning_rate)

    def loss_and_metrics(params, batch: ClassBatch, rng):
        loss, correct = task_loss(
            params, config, batch.layers, batch.mask, batch.labels, train=True, rng=rng
        )
        return loss, {"loss": loss, "accuracy": correct / batch.labels.shape[0]}

    step = task_train_step(loss_and_metrics, optimizer, ClassBatch, "classifier batch size")
    return step, optimizer


def count_tokens(batch: ClassBatch) -> int:
    """The real tokens of a batch (the `tokens_per_s` metric)."""
    return int(np.sum(batch.mask))


@functools.partial(jax.jit, static_argnums=1)
def _eval_batch(params, config: SentenceClassifierConfig, layers, mask, labels):
    loss, correct = task_loss(params, config, layers, mask, labels)
    return loss * labels.shape[0], correct


def evaluate(
    params,
    config: SentenceClassifierConfig,
    cache: LayerCache,
    labels: np.ndarray,
    batch_size: int = 64,
) -> dict[str, float]:
    """Accuracy and mean cross-entropy over `cache`'s sentences."""
    correct, loss = 0, 0.0
    for start in range(0, len(cache), batch_size):
        rows = np.arange(start, min(start + batch_size, len(cache)))
        layers, mask = cache.batch(rows, config.layers)
        batch_loss, batch_correct = _eval_batch(params, config, layers, mask, labels[rows])
        loss += float(batch_loss)
        correct += int(batch_correct)
    return {"accuracy": correct / len(cache), "loss": loss / len(cache)}


def accuracy(
    params,
    config: SentenceClassifierConfig,
    cache: LayerCache,
    labels: np.ndarray,
    batch_size: int = 64,
) -> float:
    """Fraction of `cache`'s sentences classified correctly."""
    return evaluate(params, config, cache, labels, batch_size)["accuracy"]


def bilm_files(bilm) -> tuple[str, str]:
    """`(options, weights)` of `config.bilm`: an export folder (`dir`) or the two files."""
    directory = Path(bilm.dir).expanduser() if bilm.dir else None
    options = bilm.options or (str(directory / "options.json") if directory else "")
    weights = bilm.weights or (str(directory / "lm_weights.hdf5") if directory else "")
    if not options or not weights:
        raise ValueError("set bilm.dir (an exported biLM) or bilm.options and bilm.weights")

    def absolute(x: str) -> str:
        return x if "://" in x else str(Path(x).expanduser().absolute())

    return absolute(options), absolute(weights)


class CachedEpochs:
    """`ClassBatches` (or `TagBatches`) as the training loop's `EpochData`: `make(position)`
    builds the iterator at a saved position (None: the first epoch's start)."""

    def __init__(self, make: Callable[[dict | None], ClassBatches]):
        self.make = make
        self.steps_per_epoch = make(None).batches_per_epoch()

    def iterator(self, epoch: int, position: dict | None) -> ClassBatches:
        return self.make(position or {"epoch": epoch, "index": 0})

    def position(self, iterator: ClassBatches) -> dict:
        return iterator.position()


def test_at_end(config) -> bool:
    """`eval.test_at_end` (default True: the programs score the test split, when the data has
    one, once at the end with the best epoch's parameters)."""
    evaluation = config.get("eval")
    return True if evaluation is None else bool(evaluation.get("test_at_end", True))


def _has_test(spec: DataSpec, tables: Mapping[str, Table] | None) -> bool:
    return has_split(spec, spec.test_split, tables)


def fit_epochs(run, state, step, batches, train_config, **fit_options):
    """`fit` for a task program on cached biLM layers: `train_config.epochs` epochs in one
    phase, checkpoints and logs at `train_config`'s cadence (the sentence classifier's and the
    tagger's loop)."""
    return fit(
        run,
        state=state,
        train_step=step,
        data=batches,
        phases=[Phase(int(train_config.epochs))],
        checkpoint_every=train_config.checkpoint_every,
        log_every=train_config.log_every,
        **fit_options,
    )


def classify(
    config,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    resume_changed: bool = False,
    tables: Mapping[str, Table] | None = None,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train the task model on frozen ELMo features (module docstring); `callbacks` are the
    training loop's (`ulmfit_jax.core.runner.callbacks`).

    Returns:
      `valid/*` metrics of the best epoch, `test/*` ones (`test_at_end`),
      `best_epoch` (1-based), `gamma` and `mix_layer_K` (the scalar mix's softmaxed weights).
    """
    spec = DataSpec.from_config(config.data)
    if spec.tfds_dir:
        spec = dataclasses.replace(spec, tfds_dir=os.path.expanduser(spec.tfds_dir))
    tokenizer = config.data.get("tokenizer", "spacy")
    options, weights = bilm_files(config.bilm)
    export_dir = Path(config.get("export_dir", "") or Path(workdir).absolute() / "export")
    overwrite = bool(config.get("overwrite", False))
    export_inputs = [spec.path, options, weights]
    check_export_dir(export_dir, inputs=export_inputs, overwrite=overwrite)
    bilm_params, bilm_config = load_allennlp(options, weights)
    c = config.classifier
    layers = tuple(int(k) for k in c.layers)
    if not layers or max(layers) >= bilm_config.num_output_layers or min(layers) < 0:
        raise ValueError(
            f"classifier.layers={layers}: the biLM has layers "
            f"0..{bilm_config.num_output_layers - 1}"
        )
    t = config.train
    data = load_classification(spec, seed=config.seed, tables=tables)
    if data.encoder.kind != "single":
        raise ValueError(
            f"the ELMo sentence classifier takes single labels, not {data.encoder.kind}"
        )
    names = data.encoder.names
    train_labels, valid_labels = data.targets(data.train), data.targets(data.valid)
    scores_test = test_at_end(config) and _has_test(spec, tables)
    if scores_test:
        # Read now: a label training never had fails before training, not after it.
        split = load_test(spec, seed=config.seed, tables=tables)
        test_labels = data.encoder.encode(split.raw_labels, split.where)
    identity = {"program": "elmo", "stage": "classify", "layers": list(layers)}
    with Run.for_config(
        workdir, identity, config, resume=resume, resume_changed=resume_changed
    ) as run:
        model = SentenceClassifierConfig(
            num_classes=len(names),
            input_dim=bilm_config.output_dim,
            layers=layers,
            hidden=c.hidden,
            elmo_dropout=c.elmo_dropout,
            dropout=c.dropout,
            do_layer_norm=c.do_layer_norm,
        )
        run.log(
            f"elmo classify: {len(data.train):,} train / {len(data.valid):,} valid sentences "
            f"(validation from {data.valid_from}), {len(names)} classes, {tokenizer} tokens, "
            f"biLM layers {layers}; caching the biLM layers"
        )
        train_cache = LayerCache(
            bilm_params, bilm_config, tokenize_all(data.train.texts, tokenizer)
        )
        valid_cache = LayerCache(
            bilm_params, bilm_config, tokenize_all(data.valid.texts, tokenizer)
        )
        step, optimizer = make_step(model, float(t.learning_rate))
        params = init_classifier(jax.random.key(config.seed), model)
        state = create_train_state(params, optimizer, seed=config.seed, key_impl="rbg")
        batches = CachedEpochs(
            lambda position: ClassBatches(
                train_cache,
                train_labels,
                layers,
                batch_size=t.batch_size,
                seed=config.seed,
                position=position,
            )
        )
        monitor = t.get("monitor", "accuracy")

        def test(best_params) -> dict[str, float]:
            test_cache = LayerCache(bilm_params, bilm_config, tokenize_all(split.texts, tokenizer))
            run.log(f"test: {len(split):,} sentences")
            return evaluate(best_params, model, test_cache, test_labels)

        result = fit_epochs(
            run,
            state,
            step,
            batches,
            t,
            evaluate=lambda params: evaluate(params, model, valid_cache, valid_labels),
            monitor=monitor,
            patience=int(t.get("patience", 0)),
            test=test if scores_test else None,
            callbacks=callbacks,
            meta={"stage": "classify", "classes": list(names), "layers": list(layers)},
            count_tokens=count_tokens,
            name="classify",
        )
        best, best_params = result.best, result.best_params
        results: dict[str, Any] = {f"valid/{k}": v for k, v in result.valid.items()}
        results["best_epoch"] = best["epoch"] + 1
        mix = best_params["scalar_mix"]
        mix_weights = np.asarray(jax.nn.softmax(mix["scalar_parameters"]))
        results["gamma"] = float(mix["gamma"])
        for k, w in zip(layers, mix_weights, strict=True):
            results[f"mix_layer_{k}"] = float(w)
        test_metrics = result.test
        results.update({f"test/{k}": v for k, v in test_metrics.items()})
        save_classifier(
            export_dir,
            jax.device_get(best_params),
            {
                "model": dataclasses.asdict(model),
                "labels": data.encoder.to_meta(),
                "label_names": list(names),
                "layers": list(layers),
                "tokenizer": tokenizer,
                "text_fields": list(spec.text_fields),
                "bilm": {"options": options, "weights": weights},
                "best": best,
                "valid": {k[6:]: v for k, v in results.items() if k.startswith("valid/")},
                "test": test_metrics,
            },
            overwrite=overwrite,
            inputs=export_inputs,
            config=config,
        )
        run.log(f"exported the classifier to {export_dir}; mix {np.round(mix_weights, 3).tolist()}")
    return results
