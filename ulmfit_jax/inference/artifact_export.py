"""Export a trained classifier as an inference artifact (read by `ulmfit_jax.inference.artifact`).

The classifier's forward function (BPT3C, concat pooling, the head; the logits) is serialized
with `jax.export` for symbolic batch and length dimensions, so one artifact serves every batch
size and document length: tokens are `int32[batch, bptt * chunks]` and lengths `int32[batch]`,
`batch` and `chunks` symbolic. The parameters are the function's first argument, stored beside
it in safetensors, not baked into the program. The artifact is a model folder
(`ulmfit_jax.core.model_folder`) with one more file:

    FOLDER/forward.jax         the serialized `jax.export.Exported`
    FOLDER/config.json         kind "classifier_artifact", the platforms it was exported for,
                               bptt, direction, truncation, labels, tokenizer record, ...
    FOLDER/model.safetensors, vocab.json, README.md

    export_artifact(Predictor.from_workdir("runs/clf"), "serving/clf")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
from jax import export

from ulmfit_jax.core import model_folder
from ulmfit_jax.core.nn import id_checks
from ulmfit_jax.inference.predictor import ACTIVATION_OF_KIND, Predictor
from ulmfit_jax.models import classifier

FORWARD = "forward.jax"
ARTIFACT_KIND = "classifier_artifact"
DEFAULT_PLATFORMS = ("cpu", "cuda")


def export_artifact(
    predictor: Predictor,
    folder: str | Path,
    *,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    overwrite: bool = False,
) -> Path:
    """Write `predictor`'s classifier as an inference artifact folder; returns its path."""
    config = predictor.config

    def forward(params, tokens, lengths):
        return classifier.classifier_forward(params, config, tokens, lengths)[0]

    params = jax.device_get(predictor.params)
    batch, chunks = export.symbolic_shape("batch, chunks")
    # A serialized program cannot call back into Python: the in-program id check
    # (`core.nn.id_checks`) stays out, and the loader's ids come from the artifact's own
    # vocabulary, so they are in range by construction.
    previous = id_checks.set_id_checks(False)
    try:
        exported = export.export(jax.jit(forward), platforms=tuple(platforms))(
            jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params),
            jax.ShapeDtypeStruct((batch, config.bptt * chunks), jnp.int32),
            jax.ShapeDtypeStruct((batch,), jnp.int32),
        )
    finally:
        id_checks.set_id_checks(previous)
    kind = predictor.encoder.kind if predictor.encoder else "single"
    record = {
        "kind": ARTIFACT_KIND,
        "model": dataclasses.asdict(config),
        "platforms": list(exported.platforms),
        "bptt": config.bptt,
        "pad_token": config.pad_token,
        "n_outputs": config.n_class,
        "backward": bool(predictor.backward),
        "max_tokens": int(predictor.max_tokens or 0),
        "activation": ACTIVATION_OF_KIND[kind],
        "label_names": list(predictor.label_names or []),
        "tokenizer": {"name": "fastai", "lang": "en"},
    }
    if predictor.encoder is not None:
        record["labels"] = predictor.encoder.to_meta()
    card = (
        f"# {Path(folder).name}\n\nAn ulmfit-jax text classifier exported with `jax.export` for "
        f"{', '.join(exported.platforms)}: load it with "
        "`ulmfit_jax.inference.artifact.ArtifactPredictor.load(folder)`, which needs only jax, "
        "numpy, safetensors and the tokenizer's package (spaCy).\n"
    )
    return model_folder.save_folder(
        folder,
        params,
        record,
        vocab=list(predictor.vocab.itos),
        card=card,
        extra_files={FORWARD: bytes(exported.serialize())},
        overwrite=overwrite,
    )
