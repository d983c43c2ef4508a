"""ELMo biLMs as self-contained model folders (`ulmfit_jax.core.model_folder`).

    save_pretrained("models/elmo-small", params, config)      # or from AllenNLP's files:
    from_allennlp("options.json", "weights.hdf5", "models/elmo-small")
    params, config = from_pretrained("models/elmo-small")     # or "hf://user/elmo-small"

`config.json` holds the biLM's bilm-tf options (`"options"`, what `options.json` holds, so
`save_allennlp` writes the released layout back from a folder) and `kind` "elmo_bilm";
`model.safetensors` the parameter tree `load_allennlp` returns. Characters need no vocabulary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax

from elmo_jax.model.config import BiLMConfig
from elmo_jax.weights.allennlp import abstract_params, load_allennlp
from ulmfit_jax.core import model_folder

KIND = "elmo_bilm"


def model_card(config: BiLMConfig, name: str, source: str | None) -> str:
    layers = f"{config.n_layers} x {config.dim} LSTM projected to {config.projection_dim}"
    return "\n".join(
        [
            "---",
            "library_name: ulmfit-jax",
            "tags: [elmo, bilm, jax, feature-extraction]",
            "---",
            "",
            f"# {name}",
            "",
            f"An ELMo character-CNN biLM ({layers}, {len(config.filters)} convolution widths, "
            f"{config.n_highway} highway layers) in ulmfit-jax's folder format.",
            "",
            f"- source: {source or 'trained or converted with ulmfit-jax'}",
            "- outputs: the token layer and one layer per LSTM layer, each "
            f"{2 * config.projection_dim} wide (forward and backward)",
            "",
            "## How to load",
            "",
            "```python",
            "import elmo_jax",
            "from elmo_jax.weights.folder import from_pretrained",
            "",
            f'params, config = from_pretrained("{name}")',
            'ids = elmo_jax.batch_to_ids([["Hello", "world"]])',
            "layers, mask, _ = elmo_jax.bilm_apply(params, config, ids)",
            "```",
            "",
        ]
    )


def save_pretrained(
    folder: str | Path,
    params: dict[str, Any],
    config: BiLMConfig,
    *,
    source: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a biLM as a model folder; returns its path."""
    record = {"kind": KIND, "options": config.to_options()}
    if source:
        record["source"] = source
    return model_folder.save_folder(
        folder,
        jax.device_get(params),
        record,
        card=model_card(config, Path(folder).name, source),
        overwrite=overwrite,
    )


def from_pretrained(name_or_folder: str | Path) -> tuple[dict[str, Any], BiLMConfig]:
    """`(params, config)` of a biLM folder or `hf://` address, as `load_allennlp` returns them."""

    def template(record: dict) -> dict[str, Any]:
        if record.get("kind") != KIND:
            raise ValueError(f"{name_or_folder} holds a {record.get('kind')!r}, not an ELMo biLM")
        return abstract_params(BiLMConfig.from_options(record["options"]))

    params, record, _ = model_folder.load_folder(name_or_folder, template)
    return params, BiLMConfig.from_options(record["options"])


def from_allennlp(
    options_file: str | Path, weight_file: str | Path, folder: str | Path, *, overwrite=False
) -> Path:
    """AllenNLP's / bilm-tf's `options.json` + `.hdf5` (paths or addresses) as a model folder,
    the parameters bit for bit."""
    params, config = load_allennlp(options_file, weight_file)
    return save_pretrained(
        folder, params, config, source=f"{options_file} + {weight_file}", overwrite=overwrite
    )
