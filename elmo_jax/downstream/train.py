"""Training and evaluating the ELMo sentence classifier (`downstream`) as a program stage.

    metrics = classify(config, workdir)     # config: train/configs/elmo_trec.py

The frozen biLM (an exported `options.json` + `lm_weights.hdf5`) embeds the training and test
sentences once (`LayerCache`); the classifier then trains on the cached layers with Adam through
`ulmfit_jax.core.training.run.train_loop` (checkpoints, exact resume, metrics, SIGTERM), and reports
test accuracy. The data is TREC-style `.label` files read by `ulmfit_jax.core.data.local_datasets`
(any labelled format it supports works, given `data.format`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from elmo_jax.downstream.models import ClassifierConfig, LayerCache, init_classifier, task_loss
from elmo_jax.weights.allennlp import load_allennlp
from ulmfit_jax.core.data.spec import DataSpec, open_split
from ulmfit_jax.core.training.run import Run, train_loop


class ClassBatch(NamedTuple):
    """layers float32[B, L, T, D], mask bool[B, T], labels int32[B]."""

    layers: np.ndarray
    mask: np.ndarray
    labels: np.ndarray

    @property
    def tokens(self) -> np.ndarray:
        return self.mask  # train_loop's tokens/s counts padded steps too; near enough


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


@functools.lru_cache(maxsize=8)
def make_step(config: ClassifierConfig, learning_rate: float):
    """Jitted, state-donating Adam step `(state, ClassBatch fields) -> (state, metrics)`."""
    optimizer = optax.adam(learning_rate)

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state, layers, mask, labels):
        key, step_key = jax.random.split(jax.random.wrap_key_data(state["key"], impl="rbg"))

        def loss_fn(params):
            return task_loss(params, config, layers, mask, labels, train=True, rng=step_key)

        (loss, correct), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        new_state = {
            "step": state["step"] + 1,
            "params": optax.apply_updates(state["params"], updates),
            "opt_state": opt_state,
            "key": jax.random.key_data(key),
        }
        return new_state, {"loss": loss, "accuracy": correct / labels.shape[0]}

    return step, optimizer


@functools.partial(jax.jit, static_argnums=1)
def _eval_batch(params, config: ClassifierConfig, layers, mask, labels):
    return task_loss(params, config, layers, mask, labels)[1]


def accuracy(
    params, config: ClassifierConfig, cache: LayerCache, labels: np.ndarray, batch_size: int = 64
) -> float:
    """Fraction of `cache`'s sentences classified correctly."""
    correct = 0
    for start in range(0, len(cache), batch_size):
        rows = np.arange(start, min(start + batch_size, len(cache)))
        layers, mask = cache.batch(rows, config.layers)
        correct += int(_eval_batch(params, config, layers, mask, labels[rows]))
    return correct / len(cache)


def read_labelled(
    spec: DataSpec, split: str
) -> tuple[list[list[str]], np.ndarray, tuple[str, ...]]:
    """Whitespace-tokenized texts, int labels and class names of a local labelled split."""
    source = open_split(spec, split)
    records = list(source)
    texts = [r.text.split() for r in records]
    labels = np.array([r.label for r in records], np.int32)
    return texts, labels, source.label_names


def classify(
    config, workdir: str | os.PathLike, *, resume: bool = False, resume_changed: bool = False
) -> dict[str, float]:
    """Train the task model on frozen ELMo features; returns test accuracy and loss."""
    spec = DataSpec.from_config(config.data)
    tfds_dir = os.path.expanduser(spec.tfds_dir) if spec.tfds_dir else ""
    spec = dataclasses.replace(spec, source="local", tfds_dir=tfds_dir)
    b = config.bilm
    directory = Path(b.dir).expanduser() if b.dir else None
    options = b.options or (directory / "options.json" if directory else None)
    weights = b.weights or (directory / "lm_weights.hdf5" if directory else None)
    if not options or not weights:
        raise ValueError("set bilm.dir (an exported biLM) or bilm.options and bilm.weights")
    bilm_params, bilm_config = load_allennlp(options, weights)
    c = config.classifier
    layers = tuple(int(k) for k in c.layers)
    if not layers or max(layers) >= bilm_config.num_output_layers or min(layers) < 0:
        raise ValueError(
            f"classifier.layers={layers}: the biLM has layers "
            f"0..{bilm_config.num_output_layers - 1}"
        )
    t = config.train
    identity = {"program": "elmo", "stage": "classify", "layers": list(layers)}
    with Run(workdir, identity, config, resume=resume, resume_changed=resume_changed) as run:
        train_texts, train_labels, names = read_labelled(spec, spec.train_split)
        test_texts, test_labels, _ = read_labelled(spec, spec.test_split)
        model = ClassifierConfig(
            num_classes=len(names),
            input_dim=bilm_config.output_dim,
            layers=layers,
            hidden=c.hidden,
            elmo_dropout=c.elmo_dropout,
            dropout=c.dropout,
            do_layer_norm=c.do_layer_norm,
        )
        run.log(
            f"elmo classify: {len(train_texts):,} train / {len(test_texts):,} test sentences, "
            f"{len(names)} classes, biLM layers {layers}; caching the biLM layers"
        )
        train_cache = LayerCache(bilm_params, bilm_config, train_texts)
        test_cache = LayerCache(bilm_params, bilm_config, test_texts)
        step, optimizer = make_step(model, float(t.learning_rate))
        params = init_classifier(jax.random.key(config.seed), model)
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "opt_state": optimizer.init(params),
            "key": jax.random.key_data(jax.random.key(config.seed, impl="rbg")),
        }

        def make_iterator(position):
            return ClassBatches(
                train_cache,
                train_labels,
                layers,
                batch_size=t.batch_size,
                seed=config.seed,
                position=position,
            )

        steps = int(math.ceil(t.epochs * make_iterator(None).batches_per_epoch()))
        state = train_loop(
            run,
            state=state,
            step_fn=lambda s, batch: step(s, batch.layers, batch.mask, batch.labels),
            make_iterator=make_iterator,
            iterator_position=lambda it: it.position(),
            num_steps=steps,
            checkpoint_every=t.checkpoint_every,
            log_every=t.log_every,
            meta={"stage": "classify", "classes": list(names), "layers": list(layers)},
            desc="classify",
        )
        mix = state["params"]["scalar_mix"]
        mix_weights = np.asarray(jax.nn.softmax(mix["scalar_parameters"]))
        metrics = {
            "accuracy": accuracy(state["params"], model, test_cache, test_labels),
            "train_accuracy": accuracy(state["params"], model, train_cache, train_labels),
            "gamma": float(mix["gamma"]),
        }
        for k, w in zip(layers, mix_weights, strict=True):
            metrics[f"mix_layer_{k}"] = float(w)
        run.metrics.write(int(state["step"]), metrics, prefix="test/")
        run.log(
            f"elmo classify done: test accuracy {metrics['accuracy']:.4f} (train "
            f"{metrics['train_accuracy']:.4f}), mix {np.round(mix_weights, 3).tolist()}"
        )
    return metrics
