"""The ELMo task classifier (`elmo_jax.downstream.models`) as a Flax NNX module.

    bilm = BiLM.from_allennlp("options.json", "weights.hdf5")          # frozen
    config = SentenceClassifierConfig(num_classes=6, input_dim=bilm.config.output_dim)
    model = TaskClassifier(config, bilm=bilm, rngs=nnx.Rngs(0))
    logits = model(batch_to_ids(sentences))              # through the frozen biLM
    logits = model.from_layers(*cache.batch(rows, model.config.layers))   # from a LayerCache

ScalarMix -> dropout -> BiLSTM -> max/mean pooling -> dropout -> linear, computed by the
functional `classifier_logits` on the parameters this module holds (`init_classifier`'s dict,
as `nnx.Param`s; `to_params()` returns it). The biLM is an `elmo_jax.nnx.BiLM` submodule whose
weights are not Params (frozen) and whose output is gradient-stopped (`bilm_layers`).
Training mode (`model.train()`) draws one dropout key per call from `rngs`' dropout stream.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from elmo_jax.downstream.models import SentenceClassifierConfig, bilm_layers, classifier_logits
from elmo_jax.downstream.models import init_classifier as init_task_params
from elmo_jax.downstream.task_layers import TaskModule
from elmo_jax.nnx import BiLM
from ulmfit_jax.core.nn.nnx_params import Rngs, init_key


class TaskClassifier(TaskModule):
    """AllenNLP's sentence classifier on ELMo features.

    Args:
      config: the task model's shapes and dropouts.
      bilm: the biLM, for calls on character ids (None: only `from_layers`).
      params: `init_classifier`'s dict; None initialises it from `rngs.params()`.
      rngs: `params` and `dropout` streams.
      deterministic: evaluation mode.
    """

    def __init__(
        self,
        config: SentenceClassifierConfig,
        *,
        bilm: BiLM | None = None,
        params: dict[str, Any] | None = None,
        rngs: nnx.Rngs | None = None,
        deterministic: bool = True,
    ):
        if params is None:
            params = init_task_params(init_key(rngs, "TaskClassifier"), config)
        self.keep_config_and_mode(config, deterministic, rngs)
        self.bilm = bilm if bilm is not None else nnx.data(None)
        self.hold(params, nnx.Param)

    # from_layers(layers float[B, len(config.layers), T, input_dim], mask bool[B, T]) ->
    # logits float[B, num_classes] (`TaskModule.from_layers`).
    forward_from_layers = staticmethod(classifier_logits)

    def __call__(
        self,
        char_ids: jax.Array,
        *,
        deterministic: bool | None = None,
        rngs: Rngs = None,
    ) -> jax.Array:
        """Logits float[B, num_classes] from char_ids int[B, T, max_characters_per_token],
        through the frozen biLM (`elmo_task_loss`'s forward)."""
        if self.bilm is None:
            raise ValueError("this TaskClassifier has no biLM: call from_layers(layers, mask)")
        layers, mask = bilm_layers(
            self.bilm.to_params(), self.bilm.config, char_ids, self.config.layers
        )
        return self.from_layers(layers, mask, deterministic=deterministic, rngs=rngs)
