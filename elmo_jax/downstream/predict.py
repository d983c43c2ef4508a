"""Labels and probabilities from an exported ELMo sentence classifier.

    predictor = Predictor.load("runs/sst5/export")
    labels, probs = predictor.predict(["A lovely film .", "Dull ."])   # names, float32[n, C]
    predict_file("runs/sst5/export", "texts.csv", "predictions.csv")

`predict_file` reads a CSV/TSV/JSONL table (`read_table`; the export's text fields, or
`text_fields`) or a plain `.txt` file of one text per line, and writes a CSV of the input
columns, `label` (the predicted class name) and `prob_<class>` per class, atomically. Imports no
training code.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from elmo_jax.downstream.data import tokenize_all
from elmo_jax.downstream.export import load_classifier
from elmo_jax.downstream.models import LayerCache, SentenceClassifierConfig, classifier_logits
from elmo_jax.weights.allennlp import load_allennlp
from ulmfit_jax.core import outputs
from ulmfit_jax.core.data.labels import LabelEncoder
from ulmfit_jax.core.data.tables import document_text, read_table


@functools.partial(jax.jit, static_argnums=1)
def _probabilities(params, config: SentenceClassifierConfig, layers, mask):
    return jax.nn.softmax(classifier_logits(params, config, layers, mask), axis=-1)


def probabilities(
    params, config: SentenceClassifierConfig, cache: LayerCache, batch_size: int = 64
) -> np.ndarray:
    """float32[n, num_classes]: class probabilities of every cached sentence."""
    out = []
    for start in range(0, len(cache), batch_size):
        rows = np.arange(start, min(start + batch_size, len(cache)))
        layers, mask = cache.batch(rows, config.layers)
        out.append(np.asarray(_probabilities(params, config, layers, mask)))
    return np.concatenate(out)


class Predictor:
    """An exported classifier with its biLM loaded (`Predictor.load(export_dir)`)."""

    def __init__(
        self, params, config: SentenceClassifierConfig, meta: dict, bilm_params, bilm_config
    ):
        self.params, self.config, self.meta = params, config, meta
        self.bilm_params, self.bilm_config = bilm_params, bilm_config
        self.encoder = LabelEncoder.from_meta(meta["labels"])
        self.tokenizer = meta.get("tokenizer", "spacy")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Predictor:
        params, config, meta = load_classifier(directory)
        bilm_params, bilm_config = load_allennlp(meta["bilm"]["options"], meta["bilm"]["weights"])
        return cls(params, config, meta, bilm_params, bilm_config)

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> tuple[list[str], np.ndarray]:
        """Predicted class names and float32[n, num_classes] probabilities of raw texts."""
        if not texts:
            return [], np.zeros((0, len(self.encoder.names)), np.float32)
        tokens = tokenize_all(texts, self.tokenizer)
        cache = LayerCache(self.bilm_params, self.bilm_config, tokens, batch_size=batch_size)
        probs = probabilities(self.params, self.config, cache, batch_size)
        return self.encoder.decode(probs), probs


def read_texts(
    path: str | os.PathLike, text_fields: Sequence[str]
) -> tuple[list[str], list[dict], list[str]]:
    """`(texts, rows, columns)` of a table, or of a `.txt` file (one text per line)."""
    path = Path(path).expanduser()
    if path.suffix.lower() == ".txt":
        lines = [line.rstrip("\r\n") for line in path.open(encoding="utf-8")]
        lines = [line for line in lines if line.strip()]
        if not lines:
            raise ValueError(f"{path} has no text")
        return lines, [{"text": line} for line in lines], ["text"]
    table = read_table(path)
    table.require(text_fields, "text column")
    return [document_text(r, text_fields) for r in table.rows], table.rows, list(table.columns)


def predict_file(
    export_dir: str | os.PathLike,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    text_fields: Sequence[str] | None = None,
    batch_size: int = 64,
    predictor: Predictor | None = None,
) -> int:
    """Write predictions for every text of `input_path` (module docstring); returns the count.

    Raises:
      outputs.OutputRefused: `output_path` is the input file.
    """
    outputs.check_not_input(output_path, [input_path])
    predictor = predictor or Predictor.load(export_dir)
    fields = tuple(text_fields or predictor.meta.get("text_fields") or ("text",))
    texts, rows, columns = read_texts(input_path, fields)
    labels, probs = predictor.predict(texts, batch_size)
    names = list(predictor.encoder.names)
    header = columns + ["label"] + [f"prob_{n}" for n in names]
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f"{output_path.name}.{os.getpid()}.partial")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for row, label, p in zip(rows, labels, probs, strict=True):
                cells = ["" if row.get(c) is None else row.get(c) for c in columns]
                writer.writerow(cells + [label] + [f"{x:.6f}" for x in p])
        os.replace(tmp, output_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(texts)
