"""Inference with trained classifiers: `Predictor` and the forward+backward ensemble.

    predictor = Predictor.from_workdir("runs/classify_fwd")
    probs = predictor.predict(["A great film.", "Dull."])     # float32[2, n_class]
    probs.labels                                              # ["pos", "neg"]

Texts are tokenized with the training tokenizer, numericalized with the run's vocabulary,
reversed for a backward model, batched by length (padded to multiples of `bptt`, so one
compilation per length bucket) and returned in input order whatever the batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from ulmfit_jax.batching.classifier_batches import prediction_batches
from ulmfit_jax.core.data.labels import LabelEncoder
from ulmfit_jax.inference.batch_predict import predict_batches
from ulmfit_jax.models import classifier
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.text.vocab import Vocab
from ulmfit_jax.weights.export import load_export

ACTIVATION_OF_KIND = {"single": "softmax", "multi": "sigmoid", "regression": "identity"}


class Predictions(np.ndarray):
    """Model outputs float32[n, n_outputs] that also name their labels.

    An ndarray (probabilities of single-label classes, per-label sigmoid probabilities of a
    multi-label model, the value of a regression), so arithmetic such as an ensemble's mean
    works; `.labels` decodes each row: a class name, the list of labels over the threshold,
    or a number; `.label_names` are the classes in column order.
    """

    encoder: LabelEncoder | None = None

    def __array_finalize__(self, obj):
        self.encoder = getattr(obj, "encoder", None)

    @property
    def label_names(self) -> list[str]:
        return list(self.encoder.names) if self.encoder else []

    @property
    def labels(self) -> list:
        if self.encoder is None:
            return [int(i) for i in np.argmax(np.asarray(self), -1)]
        return self.encoder.decode(np.asarray(self))


class Predictor:
    """A trained classifier ready to classify raw texts."""

    def __init__(
        self,
        params: dict,
        config: ClassifierConfig,
        vocab: Vocab,
        *,
        backward: bool = False,
        label_names: Sequence[str] | None = None,
        max_tokens: int | None = None,
        encoder: LabelEncoder | None = None,
    ):
        if len(vocab) != config.vocab_size:
            raise ValueError(
                f"vocabulary of {len(vocab)} tokens does not match the model's {config.vocab_size}"
            )
        self.params, self.config, self.vocab = params, config, vocab
        self.backward = backward
        self.label_names = list(label_names) if label_names else None
        if encoder is None and self.label_names:
            encoder = LabelEncoder("single", tuple(self.label_names))
        self.encoder = encoder
        self.max_tokens = max_tokens or None  # the truncation the classifier was trained with

    @classmethod
    def from_workdir(cls, workdir: str | Path) -> Predictor:
        """Load the classifier exported by a finished `classify` stage."""

        def template(meta):
            if meta.get("stage") != "classify":
                raise ValueError(f"{workdir} holds a {meta.get('stage')!r} run, not a classifier")
            return classifier.init_classifier_params(
                jax.random.key(0), ClassifierConfig(**meta["model"])
            )

        params, meta = load_export(workdir, template)
        return cls.from_meta(params, meta)

    @classmethod
    def from_pretrained(cls, name_or_folder: str | Path) -> Predictor:
        """Load a classifier's model folder (`save_pretrained`) or `hf://owner/repo[@rev]`."""
        from ulmfit_jax.weights import folder

        params, meta = folder.load_pretrained_folder(name_or_folder)
        if meta["kind"] != folder.CLASSIFIER:
            raise ValueError(f"{name_or_folder} holds a {meta['kind']}, not a classifier")
        return cls.from_meta(params, meta)

    @classmethod
    def from_meta(cls, params: dict, meta: dict) -> Predictor:
        """A predictor from parameters and an export's metadata (model, vocab, labels)."""
        return cls(
            params,
            ClassifierConfig(**meta["model"]),
            Vocab(meta["vocab"]),
            backward=meta.get("backward", False),
            label_names=meta.get("label_names"),
            max_tokens=meta.get("max_tokens"),
            encoder=LabelEncoder.from_meta(meta["labels"]) if "labels" in meta else None,
        )

    def save_pretrained(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write this classifier as a self-contained model folder (safetensors, config.json,
        vocab.json, a model card); `Predictor.from_pretrained(folder)` reads it back."""
        import dataclasses

        from ulmfit_jax.weights.folder import save_pretrained

        meta = {
            "stage": "classify",
            "model": dataclasses.asdict(self.config),
            "vocab": list(self.vocab.itos),
            "backward": bool(self.backward),
            "label_names": list(self.label_names or []),
            "max_tokens": int(self.max_tokens or 0),
        }
        if self.encoder is not None:
            meta["labels"] = self.encoder.to_meta()
        return save_pretrained(folder, self.params, meta, overwrite=overwrite)

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        # Imported here: the data layer pulls in TFDS, which `import ulmfit_jax` should not.
        from ulmfit_jax.batching import corpus as text_data

        docs = text_data.tokenize_texts(list(texts), cache_dir=None, n_workers=1)
        return text_data.numericalize(docs, self.vocab)

    def predict_ids(self, docs: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Probabilities float32[n, n_class] for numericalized documents, in input order."""
        if len(docs) == 0:
            return np.zeros((0, self.config.n_class), np.float32)
        batches = prediction_batches(
            docs,
            batch_size=batch_size,
            pad_multiple=self.config.bptt,
            backward=self.backward,
            max_len=self.max_tokens,
        )
        kind = self.encoder.kind if self.encoder else "single"
        probs, _ = predict_batches(
            self.params,
            self.config,
            batches.epoch_batches(0),
            activation=ACTIVATION_OF_KIND[kind],
        )
        return probs

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> Predictions:
        """Outputs float32[len(texts), n_outputs], row i for texts[i] (probabilities for
        classes); `.labels` of the result names each row's prediction."""
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; wrap a single text in a list")
        result = np.asarray(self.predict_ids(self.encode(texts), batch_size)).view(Predictions)
        result.encoder = self.encoder
        return result


def ensemble_predict(predictors: Sequence[Predictor], texts: Sequence[str]) -> np.ndarray:
    """The average of several classifiers' probabilities (ULMFiT's forward+backward ensemble)."""
    if not predictors:
        raise ValueError("no predictors to ensemble")
    n_class = {p.config.n_class for p in predictors}
    if len(n_class) != 1:
        raise ValueError(f"the classifiers disagree on the number of classes: {sorted(n_class)}")
    return np.mean([p.predict(texts) for p in predictors], axis=0)
