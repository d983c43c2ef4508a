"""Serve a classifier without the training stack: load an artifact of `artifact_export` and
predict.

    predictor = ArtifactPredictor.load("serving/clf")
    probs = predictor.predict(["A fine film.", "Dull."])     # float32[2, n_outputs]
    predictor.labels(probs)                                   # ["pos", "neg"]

This module needs jax, numpy, safetensors and the tokenizer's package only: no flax, optax,
orbax, TFDS or ml_collections (a test blocks their import). The texts are tokenized and
batched exactly as `Predictor` does (the same fastai tokenizer, the same length-sorted batches
padded to multiples of `bptt`), so the outputs are `Predictor`'s.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from ulmfit_jax.core import model_folder

FORWARD = "forward.jax"
ARTIFACT_KIND = "classifier_artifact"
ACTIVATIONS = {"softmax": jax.nn.softmax, "sigmoid": jax.nn.sigmoid, "identity": lambda x: x}


class ArtifactPredictor:
    """An exported classifier: its serialized forward function, parameters and vocabulary."""

    def __init__(self, exported, params: dict, config: dict, vocab: Sequence[str]):
        self.exported, self.params, self.config = exported, params, config
        self.stoi = {}
        for i, token in enumerate(vocab):
            self.stoi.setdefault(token, i)

    @classmethod
    def load(cls, name_or_folder: str | Path) -> ArtifactPredictor:
        """Read an artifact folder (or `hf://` address).

        Raises:
          ValueError: the folder is not an artifact, or was exported for other platforms than
            this machine's default backend.
        """
        from jax import export

        params, config, vocab = model_folder.load_folder(name_or_folder)
        folder = model_folder.resolve(name_or_folder)
        if config.get("kind") != ARTIFACT_KIND or not (folder / FORWARD).is_file():
            raise ValueError(
                f"{folder} is not an inference artifact (no {FORWARD}; kind "
                f"{config.get('kind')!r}): make one with artifact_export.export_artifact"
            )
        backend = jax.default_backend()
        if backend not in config["platforms"]:
            raise ValueError(
                f"{folder} was exported for {config['platforms']}, not for this machine's "
                f"{backend!r} ({platform.machine()}): export it again with platforms="
                f"{(*config['platforms'], backend)}"
            )
        exported = export.deserialize(bytearray((folder / FORWARD).read_bytes()))
        return cls(exported, params, config, vocab)

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text: fastai's tokenizer (its batch path), the artifact's vocab."""
        from ulmfit_jax.text.token_cache import tokenize_corpus

        docs = tokenize_corpus(list(texts), n_workers=1, cache_dir=None).to_lists()
        return [np.array([self.stoi.get(t, 0) for t in doc], np.int32) for doc in docs]

    def predict_ids(self, docs: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Outputs float32[n, n_outputs] for numericalized documents, in input order."""
        from ulmfit_jax.batching.classifier_batches import prediction_batches

        config = self.config
        if len(docs) == 0:
            return np.zeros((0, config["n_outputs"]), np.float32)
        batches = prediction_batches(
            docs,
            batch_size=batch_size,
            pad_multiple=config["bptt"],
            backward=config["backward"],
            max_len=config["max_tokens"] or None,
        )
        activation = ACTIVATIONS[config["activation"]]
        outputs, order = [], []
        for batch in batches.epoch_batches(0):
            logits = self.exported.call(self.params, batch.tokens, batch.lengths)
            real = np.asarray(batch.indices) >= 0
            outputs.append(np.asarray(activation(logits))[real])
            order.append(np.asarray(batch.indices)[real])
        return np.concatenate(outputs)[np.argsort(np.concatenate(order), kind="stable")]

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Outputs float32[len(texts), n_outputs] (probabilities for classes), row i for text i."""
        if isinstance(texts, str) or texts is None:
            raise TypeError("predict takes a list of texts; wrap a single text in a list")
        return self.predict_ids(self.encode(texts), batch_size)

    def labels(self, outputs: np.ndarray) -> list:
        """Each row's predicted class name (single-label classifiers)."""
        names = self.config.get("label_names") or []
        return [names[i] if names else int(i) for i in np.argmax(outputs, -1)]
