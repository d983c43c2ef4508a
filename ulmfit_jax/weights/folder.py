"""ULMFiT models as self-contained folders (`ulmfit_jax.core.model_folder`): language models and
classifiers, forward or backward, with a generated model card.

    export_to_folder("runs/clf", "models/imdb-clf")    # a finished stage's export, bit for bit
    predictor = Predictor.from_pretrained("models/imdb-clf")   # or "hf://user/imdb-clf"
    params, config, vocab, meta = load_language_model("models/lm")

`config.json` holds the same metadata a stage's orbax export keeps (`stage`, `model`,
`backward`, `label_names`, `labels`, `max_tokens`, `best`, `valid`, `test`, `source`), plus
`kind` ("language_model" or "classifier") and the tokenizer record; the vocabulary is
`vocab.json`. Exports made before tokenizers were recorded were all tokenized by fastai's
English rules, which is what their folders record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax

from ulmfit_jax.core import model_folder
from ulmfit_jax.models import awd_lstm, classifier
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.text.vocab import Vocab

LANGUAGE_MODEL, CLASSIFIER = "language_model", "classifier"
KIND_OF_STAGE = {
    "pretrain": LANGUAGE_MODEL,
    "finetune_lm": LANGUAGE_MODEL,
    "converted_lm": LANGUAGE_MODEL,
    "classify": CLASSIFIER,
}
# What every stage of this library has tokenized with so far (fastai's batch path, spaCy's
# English rules); a folder without a record of its own gets this one.
DEFAULT_TOKENIZER = {"name": "fastai", "lang": "en"}


def _kind(meta: dict, where: str) -> str:
    kind = meta.get("kind") or KIND_OF_STAGE.get(meta.get("stage", ""))
    if kind not in (LANGUAGE_MODEL, CLASSIFIER):
        raise ValueError(
            f"{where} holds a {meta.get('stage')!r} model, not an ULMFiT LM or classifier"
        )
    return kind


def template(meta: dict) -> dict[str, Any]:
    """Parameters of the structure and shapes `meta["model"]` describes (for checking files)."""
    if _kind(meta, "the metadata") == CLASSIFIER:
        return classifier.init_classifier_params(
            jax.random.key(0), ClassifierConfig(**meta["model"])
        )
    return awd_lstm.init_lm_params(jax.random.key(0), AWDLSTMConfig(**meta["model"]))


def save_pretrained(
    folder: str | Path, params: dict[str, Any], meta: dict[str, Any], *, overwrite: bool = False
) -> Path:
    """Write a model folder from parameters and export-style metadata (which holds `vocab`)."""
    if "vocab" not in meta or "model" not in meta:
        raise ValueError("meta must hold the model config ('model') and the vocabulary ('vocab')")
    config = {k: v for k, v in meta.items() if k != "vocab"}
    config["kind"] = _kind(meta, str(folder))
    config.setdefault("tokenizer", DEFAULT_TOKENIZER)
    vocab = list(meta["vocab"])
    if len(vocab) != int(meta["model"]["vocab_size"]):
        raise ValueError(
            f"the vocabulary has {len(vocab)} tokens but the model {meta['model']['vocab_size']}"
        )
    return model_folder.save_folder(
        folder,
        jax.device_get(params),
        config,
        vocab=vocab,
        card=model_card(config, Path(folder).name),
        overwrite=overwrite,
    )


def load_pretrained_folder(name_or_folder: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """`(params, meta)` of a folder or `hf://` address, meta as an export's (with `vocab`)."""
    params, config, vocab = model_folder.load_folder(name_or_folder, template)
    if vocab is None:
        raise FileNotFoundError(f"{name_or_folder} has no {model_folder.VOCAB}")
    return params, dict(config, vocab=vocab)


def load_language_model(name_or_folder: str | Path) -> tuple[dict, AWDLSTMConfig, Vocab, dict]:
    """What `ulmfit_jax.weights.export.load_lm` returns, from a model folder."""
    params, meta = load_pretrained_folder(name_or_folder)
    if meta["kind"] != LANGUAGE_MODEL:
        raise ValueError(f"{name_or_folder} holds a {meta['kind']}, not a language model")
    return params, AWDLSTMConfig(**meta["model"]), Vocab(meta["vocab"]), meta


def export_to_folder(workdir: str | Path, folder: str | Path, *, overwrite: bool = False) -> Path:
    """A finished stage's export (`WORKDIR/export`, a language model, a classifier or a model
    converted from fastai) as a model folder, its parameters bit for bit."""
    from ulmfit_jax.weights.export import load_export

    params, meta = load_export(workdir, template)
    return save_pretrained(folder, params, meta, overwrite=overwrite)


def _metrics_lines(config: dict) -> list[str]:
    lines = []
    for split in ("valid", "test"):
        values = config.get(split) or {}
        shown = [
            f"{k.split('/')[-1]} {float(v):.4f}"
            for k, v in values.items()
            if isinstance(v, int | float)
            and k.split("/")[-1] in ("accuracy", "loss", "perplexity", "f1_macro", "mse")
        ]
        if shown:
            name = "validation" if split == "valid" else "test (scored once, chose nothing)"
            lines.append(f"- {name}: " + ", ".join(shown))
    return lines or ["- no metrics were recorded with this model"]


def model_card(config: dict, name: str) -> str:
    """The folder's README.md: what the model is, how it was trained, its metrics, how to load."""
    model = config["model"]
    kind = config["kind"]
    direction = "backward (reads text right to left)" if config.get("backward") else "forward"
    what = "text classifier" if kind == CLASSIFIER else "language model"
    lines = [
        "---",
        "library_name: ulmfit-jax",
        "tags: [ulmfit, awd-lstm, jax, "
        + ("text-classification" if kind == CLASSIFIER else "language-model")
        + "]",
        "---",
        "",
        f"# {name}",
        "",
        f"An AWD-LSTM {what} ({direction}) in [ulmfit-jax](https://pypi.org/project/ulmfit-jax/)'s "
        "folder format: weights in `model.safetensors`, hyperparameters in `config.json`, the "
        "vocabulary in `vocab.json`.",
        "",
        "## Model",
        "",
        f"- {model.get('n_layers')} LSTM layers, embedding {model.get('emb_sz')}, hidden "
        f"{model.get('n_hid')}; vocabulary of {model.get('vocab_size'):,} tokens",
        f"- tokenizer: {config.get('tokenizer', DEFAULT_TOKENIZER)}",
    ]
    if kind == CLASSIFIER:
        lines.append(f"- labels: {', '.join(map(str, config.get('label_names') or []))}")
    lines += ["", "## Training", ""]
    source = config.get("source")
    if source:
        lines.append(f"- converted from {source}")
    else:
        lines.append(f"- stage `{config.get('stage')}` of ulmfit-jax")
    best = config.get("best")
    if best:
        lines.append(
            f"- the epoch kept: {int(best['epoch']) + 1}, by validation {best.get('monitor')} "
            f"= {float(best['value']):.4f}"
        )
    lines += ["", "## Metrics", "", *_metrics_lines(config), "", "## How to load", "", "```python"]
    if kind == CLASSIFIER:
        lines += [
            "import ulmfit_jax",
            "",
            f'predictor = ulmfit_jax.Predictor.from_pretrained("{name}")  # or "hf://user/{name}"',
            'print(predictor.predict(["A fine film."]).labels)',
        ]
    else:
        lines += [
            "from ulmfit_jax.weights.folder import load_language_model",
            "",
            f'params, config, vocab, meta = load_language_model("{name}")',
        ]
    lines += ["```", ""]
    return "\n".join(lines)
