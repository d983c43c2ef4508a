"""ULMFiT in JAX: fastai's AWD-LSTM language model and text classifier as pure functions.

The public, documented API is re-exported here; see README.md.
"""

# Exports load on first use (PEP 562), so that importing one piece, e.g. the shared core under
# `ulmfit_jax.core` or one model, does not import every module of the package.
from __future__ import annotations

from ulmfit_jax.core.lazy import lazy_exports

_EXPORTS = {
    "finetune_language_model": "ulmfit_jax.api",
    "train_classifier": "ulmfit_jax.api",
    "evaluate": "ulmfit_jax.api",
    "push_to_hub": "ulmfit_jax.core.model_folder",
    "export_to_folder": "ulmfit_jax.weights.folder",
    "load_language_model": "ulmfit_jax.weights.folder",
    "save_fastai_lm": "ulmfit_jax.weights.fastai_export",
    "save_fastai_encoder": "ulmfit_jax.weights.fastai_export",
    "save_fastai_classifier": "ulmfit_jax.weights.fastai_export",
    "read_table": "ulmfit_jax.core.data.tables",
    "LabelEncoder": "ulmfit_jax.core.data.labels",
    "AWDLSTMConfig": "ulmfit_jax.models.awd_lstm",
    "ClassifierConfig": "ulmfit_jax.models.classifier",
    "Predictor": "ulmfit_jax.inference.predictor",
    "SPECIAL_TOKENS": "ulmfit_jax.text.tokenizer",
    "SentencePieceTokenizer": "ulmfit_jax.text.sentencepiece_tokenizer",
    "TokenizedCorpus": "ulmfit_jax.text.token_cache",
    "Vocab": "ulmfit_jax.text.vocab",
    "WordTokenizer": "ulmfit_jax.text.tokenizer",
    "ar_tar_penalty": "ulmfit_jax.models.awd_lstm",
    "classifier_apply": "ulmfit_jax.models.classifier",
    "classifier_param_groups": "ulmfit_jax.optim.param_groups",
    "ensemble_predict": "ulmfit_jax.inference.predictor",
    "from_language_model": "ulmfit_jax.models.classifier",
    "hyperparams": "ulmfit_jax.optim.optimizer",
    "init_classifier_params": "ulmfit_jax.models.classifier",
    "init_lm_params": "ulmfit_jax.models.awd_lstm",
    "lm_apply": "ulmfit_jax.models.awd_lstm",
    "lm_forward": "ulmfit_jax.models.awd_lstm",
    "lm_param_groups": "ulmfit_jax.optim.param_groups",
    "load_fastai_classifier": "ulmfit_jax.weights.fastai",
    "load_fastai_lm": "ulmfit_jax.weights.fastai",
    "load_pretrained": "ulmfit_jax.weights.pretrained",
    "make_optimizer": "ulmfit_jax.optim.optimizer",
    "make_vocab": "ulmfit_jax.text.vocab",
    "match_embeddings": "ulmfit_jax.weights.fastai",
    "merge_batch_stats": "ulmfit_jax.models.classifier",
    "new_stage": "ulmfit_jax.optim.optimizer",
    "pad_documents": "ulmfit_jax.models.classifier",
    "preprocess": "ulmfit_jax.text.tokenizer",
    "read_itos": "ulmfit_jax.weights.fastai",
    "tokenize": "ulmfit_jax.text.tokenizer",
    "tokenize_corpus": "ulmfit_jax.text.token_cache",
    "trainable_groups": "ulmfit_jax.optim.optimizer",
    "write_itos": "ulmfit_jax.weights.fastai",
    "zero_state": "ulmfit_jax.models.awd_lstm",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
