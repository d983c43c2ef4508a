"""Flax NNX modules for ELMo: a thin skin over `bilm_apply` and `elmo_apply`.

    elmo = Elmo.from_allennlp("options.json", "weights.hdf5", num_output_representations=1)
    reps, mask, state = elmo(batch_to_ids(sentences))   # elmo_apply(elmo.to_params(), ...)

Parameters are the functional dicts held as NNX variables with the same paths
(`ulmfit_jax.core.nn.nnx_params`), and `to_params()` returns the dict `elmo_apply` takes. The
biLM is frozen by default, as in the paper and AllenNLP: its weights are `BiLMWeight`
variables, not `nnx.Param`, so `nnx.grad` and `nnx.Optimizer(model, tx, wrt=nnx.Param)` never
touch them (and `Elmo` also stops their gradient, as `elmo_apply` does). `requires_grad=True`
(AllenNLP's name) holds them as `nnx.Param` and lets gradients through. The ScalarMix weights
and gamma are `nnx.Param`s.

`deterministic` (`model.train()` / `model.eval()`; eval by default) switches `Elmo`'s dropout;
a training call draws one key from the constructor's (or the call's) `rngs` dropout stream,
the key `elmo_apply` takes as `rng`. The biLM state is an explicit argument and result.

Weights back: `to_params()` (lossless) and `save_allennlp(weight_file, options_file)`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
from flax import nnx

from elmo_jax.model import bilm as bilm_lib
from elmo_jax.model import elmo as elmo_lib
from elmo_jax.model.config import BiLMConfig
from elmo_jax.model.lstmp import State
from ulmfit_jax.core.nn.nnx_params import (
    DropoutParamTree,
    ParamTree,
    Rngs,
    ShardingRules,
    init_key,
)


class BiLMWeight(nnx.Variable):
    """A frozen biLM weight: a variable that is not an `nnx.Param`, so `wrt=nnx.Param`
    filters (gradients, optimisers) leave it alone."""


def _load_pretrained(name: str):
    try:
        from elmo_jax.weights.pretrained import load_pretrained
    except ImportError as error:
        raise ImportError(
            "from_pretrained needs elmo_jax.weights.pretrained.load_pretrained, which this "
            f"installation does not have ({error}); use from_allennlp with downloaded weights"
        ) from error
    return load_pretrained(name)


class BiLM(ParamTree):
    """The character-CNN biLSTM language model (`bilm_apply`).

    Args:
      config: the biLM's hyperparameters.
      params: `{"char_cnn", "lstm"}` as `load_allennlp` returns; None initialises them
        (`init_bilm`) from `rngs.params()`.
      requires_grad: hold the weights as `nnx.Param` (trainable) instead of `BiLMWeight`.
      rngs: only for initialisation.
      sharding_rules, prefix: partitioning metadata (`ulmfit_jax.core.nn.nnx_params`).
    """

    def __init__(
        self,
        config: BiLMConfig,
        *,
        params: dict[str, Any] | None = None,
        requires_grad: bool = False,
        rngs: nnx.Rngs | None = None,
        sharding_rules: ShardingRules | None = None,
        prefix: tuple[str, ...] = (),
    ):
        if params is None:
            from elmo_jax.model.init import init_bilm

            params = init_bilm(init_key(rngs, "BiLM"), config)
        self.config = config
        self.requires_grad = requires_grad
        kind = nnx.Param if requires_grad else BiLMWeight
        self.hold(params, kind, prefix=prefix, sharding_rules=sharding_rules)

    def __call__(
        self, char_ids: jax.Array, state: State | None = None
    ) -> tuple[list[jax.Array], jax.Array, State]:
        """`bilm_apply`: char_ids int[B, T, max_characters_per_token] -> `(layers, mask,
        new_state)`, layers `num_output_layers` arrays float[B, T + 2, 2P] (with `<S>`/`</S>`),
        mask bool[B, T + 2]; `state` None (zeros) or the previous call's."""
        return bilm_lib.bilm_apply(self.to_params(), self.config, char_ids, state)

    @classmethod
    def from_params(cls, params: dict[str, Any], config: BiLMConfig, **kwargs) -> BiLM:
        return cls(config, params=params, **kwargs)

    @classmethod
    def from_allennlp(
        cls, options: str | os.PathLike, weights: str | os.PathLike, **kwargs
    ) -> BiLM:
        """AllenNLP / bilm-tf `options.json` + hdf5 (`load_allennlp`)."""
        from elmo_jax.weights.allennlp import load_allennlp

        params, config = load_allennlp(options, weights)
        return cls(config, params=params, **kwargs)

    @classmethod
    def from_workdir(cls, directory: str | os.PathLike, **kwargs) -> BiLM:
        """A biLM exported by `python -m train.elmo` (`WORKDIR/export` or that folder)."""
        directory = Path(directory)
        if (directory / "export").is_dir():
            directory = directory / "export"
        return cls.from_allennlp(
            directory / "options.json", directory / "lm_weights.hdf5", **kwargs
        )

    @classmethod
    def from_pretrained(cls, name: str, **kwargs) -> BiLM:
        """A named model, through `elmo_jax.weights.pretrained.load_pretrained` (which returns
        `(params, config)` as `load_allennlp` does)."""
        params, config = _load_pretrained(name)[:2]
        return cls(config, params=params, **kwargs)

    def save_allennlp(
        self, weight_file: str | os.PathLike, options_file: str | os.PathLike | None = None
    ) -> None:
        """Write the weights (and options) in the released layout (`save_allennlp`)."""
        from elmo_jax.weights.allennlp import save_allennlp

        save_allennlp(self.to_params(), self.config, weight_file, options_file)


class Elmo(DropoutParamTree):
    """ELMo representations (`elmo_apply`): the biLM's layers, one ScalarMix per output.

    Args:
      config: the biLM config.
      num_output_representations: how many mixes (AllenNLP's argument).
      params: `init_elmo`'s dict; None builds it from `bilm_params` (or a fresh biLM from
        `rngs.params()`) and `scalar_mix_parameters`.
      bilm_params: the biLM's weights when `params` is None.
      requires_grad: fine-tune the biLM (AllenNLP's name; frozen by default).
      do_layer_norm, dropout, keep_sentence_boundaries: as `elmo_apply`.
      scalar_mix_parameters: the mixes' initial pre-softmax weights (AllenNLP's).
      rngs: `params` (initialisation) and `dropout` streams.
      deterministic: evaluation mode (no dropout).
      sharding_rules: partitioning metadata (`ulmfit_jax.core.nn.nnx_params`).
    """

    def __init__(
        self,
        config: BiLMConfig,
        num_output_representations: int = 1,
        *,
        params: dict[str, Any] | None = None,
        bilm_params: dict[str, Any] | None = None,
        requires_grad: bool = False,
        do_layer_norm: bool = False,
        dropout: float = 0.5,
        keep_sentence_boundaries: bool = False,
        scalar_mix_parameters: list[float] | None = None,
        rngs: nnx.Rngs | None = None,
        deterministic: bool = True,
        sharding_rules: ShardingRules | None = None,
    ):
        if params is None:
            if bilm_params is None:
                from elmo_jax.model.init import init_bilm

                bilm_params = init_bilm(init_key(rngs, "Elmo"), config)
            params = elmo_lib.init_elmo(
                bilm_params, config, num_output_representations, scalar_mix_parameters
            )
        self.keep_config_and_mode(config, deterministic, rngs)
        self.requires_grad = requires_grad
        self.do_layer_norm = do_layer_norm
        self.dropout = float(dropout)
        self.keep_sentence_boundaries = keep_sentence_boundaries
        self.bilm = BiLM(
            config,
            params=params["bilm"],
            requires_grad=requires_grad,
            sharding_rules=sharding_rules,
            prefix=("bilm",),
        )
        self.hold(params, nnx.Param, sharding_rules=sharding_rules, skip=("bilm",))

    def __call__(
        self,
        char_ids: jax.Array,
        state: State | None = None,
        *,
        deterministic: bool | None = None,
        rngs: Rngs = None,
    ) -> tuple[list[jax.Array], jax.Array, State]:
        """`elmo_apply`: char_ids int[B, T, max_characters_per_token] -> `(representations,
        mask, new_state)`: num_output_representations arrays float[B, T, 2P] (T + 2 with
        boundaries), zero at padding; mask bool[B, T]; the biLM state."""
        deterministic = self.is_deterministic(deterministic)
        rng = self.dropout_key(deterministic, rngs) if self.dropout > 0.0 else None
        return elmo_lib.elmo_apply(
            self.to_params(),
            self.config,
            char_ids,
            state,
            do_layer_norm=self.do_layer_norm,
            dropout=self.dropout,
            keep_sentence_boundaries=self.keep_sentence_boundaries,
            finetune_bilm=self.requires_grad,
            train=not deterministic,
            rng=rng,
        )

    @classmethod
    def from_params(cls, params: dict[str, Any], config: BiLMConfig, **kwargs) -> Elmo:
        """The module holding `init_elmo`'s dict."""
        num = sum(1 for key in params if key.startswith("scalar_mix_"))
        return cls(config, num, params=params, **kwargs)

    @classmethod
    def from_allennlp(
        cls,
        options: str | os.PathLike,
        weights: str | os.PathLike,
        num_output_representations: int = 1,
        **kwargs,
    ) -> Elmo:
        """AllenNLP's `Elmo(options_file, weight_file, num_output_representations, ...)`."""
        from elmo_jax.weights.allennlp import load_allennlp

        bilm_params, config = load_allennlp(options, weights)
        return cls(config, num_output_representations, bilm_params=bilm_params, **kwargs)

    @classmethod
    def from_workdir(cls, directory: str | os.PathLike, num_output_representations: int = 1, **kw):
        """ELMo on a biLM exported by `python -m train.elmo` (see `BiLM.from_workdir`)."""
        bilm = BiLM.from_workdir(directory)
        return cls(bilm.config, num_output_representations, bilm_params=bilm.to_params(), **kw)

    @classmethod
    def from_pretrained(cls, name: str, num_output_representations: int = 1, **kwargs) -> Elmo:
        """ELMo on a named biLM (`elmo_jax.weights.pretrained.load_pretrained`)."""
        bilm_params, config = _load_pretrained(name)[:2]
        return cls(config, num_output_representations, bilm_params=bilm_params, **kwargs)

    def save_allennlp(
        self, weight_file: str | os.PathLike, options_file: str | os.PathLike | None = None
    ) -> None:
        """Write the biLM in the released layout (the mixes have no place in it)."""
        self.bilm.save_allennlp(weight_file, options_file)
