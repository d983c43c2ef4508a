"""ELMo in JAX: the character-CNN bidirectional LSTM language model of Peters et al. (2018).

Loads AllenNLP/bilm-tf weights (`options.json` + `.hdf5`) and matches AllenNLP's outputs; see
README.md for the API and the `python -m elmo_jax embed` command.
"""

# Exports load on first use (PEP 562), so that importing one piece, e.g. the shared core under
# `ulmfit_jax.core` or one model, does not import every module of the package.
from __future__ import annotations

from ulmfit_jax.core.lazy import lazy_exports

_EXPORTS = {
    "BiLMConfig": "elmo_jax.model.config",
    "BidirectionalBatches": "elmo_jax.training.data",
    "ELMoCharacterMapper": "elmo_jax.model.characters",
    "ElmoEmbedder": "elmo_jax.embedding.embedder",
    "LayerCache": "elmo_jax.downstream.models",
    "PRESETS": "elmo_jax.model.config",
    "TokenEmbeddingCache": "elmo_jax.embedding.token_cache",
    "TrainOptions": "elmo_jax.training.steps",
    "Vocabulary": "elmo_jax.training.data",
    "batch_to_ids": "elmo_jax.model.characters",
    "bilm_apply": "elmo_jax.model.bilm",
    "bilm_apply_embedded": "elmo_jax.model.bilm",
    "bilstm_directional": "elmo_jax.model.lstmp",
    "char_cnn_apply": "elmo_jax.model.char_cnn",
    "check_weight_file": "elmo_jax.weights.allennlp",
    "elmo_apply": "elmo_jax.model.elmo",
    "elmo_mix": "elmo_jax.model.elmo",
    "embed_characters": "elmo_jax.model.bilm",
    "embed_file": "elmo_jax.embedding.files",
    "embed_sentence": "elmo_jax.embedding.embedder",
    "embed_sentences": "elmo_jax.embedding.embedder",
    "encode_corpus": "elmo_jax.training.data",
    "export_bilm": "elmo_jax.training.steps",
    "from_allennlp": "elmo_jax.weights.folder",
    "from_pretrained": "elmo_jax.weights.folder",
    "full_softmax_loss": "elmo_jax.training.sampled_softmax",
    "hdf5_shapes": "elmo_jax.weights.allennlp",
    "init_bilm": "elmo_jax.model.init",
    "init_elmo": "elmo_jax.model.elmo",
    "init_scalar_mix": "elmo_jax.model.scalar_mix",
    "load_allennlp": "elmo_jax.weights.allennlp",
    "load_pretrained": "elmo_jax.weights.pretrained",
    "preset": "elmo_jax.model.config",
    "read_options": "elmo_jax.model.config",
    "read_sentence_files": "elmo_jax.training.data",
    "remove_sentence_boundaries": "elmo_jax.model.bilm",
    "sampled_softmax_loss": "elmo_jax.training.sampled_softmax",
    "save_allennlp": "elmo_jax.weights.allennlp",
    "save_pretrained": "elmo_jax.weights.folder",
    "scalar_mix": "elmo_jax.model.scalar_mix",
    "write_random_weights": "elmo_jax.weights.allennlp",
    "zero_state": "elmo_jax.model.bilm",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
