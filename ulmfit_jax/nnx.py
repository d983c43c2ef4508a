"""Flax NNX modules for ULMFiT: a thin skin over the functional models.

    model = LanguageModel.from_fastai("lstm_fwd.pth", "itos_wt103.pkl")
    logits, state = model(tokens)            # lm_apply(model.to_params(), model.config, tokens)
    model.train()                            # fastai's dropouts, keys from rngs.dropout()
    clf = TextClassifier.from_fastai("lstm_fwd.pth", n_class=2, rngs=nnx.Rngs(0))
    logits = clf(tokens, lengths)            # classifier_apply(...)

Each module holds the functional parameter dict as NNX variables with the same paths
(`ulmfit_jax.core.nn.nnx_params`): `nnx.state(model, nnx.Param)` mirrors the dict, BatchNorm's
running `mean`/`var` are `nnx.BatchStat`, and `to_params()` returns the functional dict (the
held arrays themselves), so `from_params(model.to_params(), model.config)` is the same model.
`__call__` calls the functional API (`encoder_apply`, `lm_apply`, `classifier_apply`) and nothing
else: there is one implementation of each model.

Modes: `deterministic` (True after `model.eval()`, the default; False after `model.train()`)
switches fastai's dropouts and, in the classifier, BatchNorm's batch statistics. In training
each call draws one key from the dropout stream of the `rngs` given to the constructor (or to
the call), the key the functional API takes as `rng`: `nnx.Rngs(dropout=s).dropout()` is the
key of the first training call of a module built with `rngs=nnx.Rngs(dropout=s, ...)`.

The recurrent state is an explicit argument and result, as in the functional API.

Optimisation: `param_labels(model)` labels `nnx.state(model, nnx.Param)` with fastai's layer
groups, so `ulmfit_jax.optim.optimizer.make_optimizer` runs inside `nnx.Optimizer` with
discriminative rates and gradual unfreezing (`update(model, grads, trainable=...)`).

Weights back: `to_params()` (lossless); fastai's `.pth` has no writer here (only the vocabulary,
`ulmfit_jax.weights.fastai.write_itos`); this project's exports are written by the stages
(`ulmfit_jax.weights.export.export_params(workdir, model.to_params(), meta)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
from flax import nnx

from ulmfit_jax.core.nn.nnx_params import (
    DropoutParamTree,
    Rngs,
    ShardingRules,
    init_key,
    labels_state,
)
from ulmfit_jax.models import awd_lstm, classifier
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig, State
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.optim import param_groups


class AWDLSTMEncoder(DropoutParamTree):
    """fastai's `AWD_LSTM`: embedding (with dropout) and the weight-dropped LSTM stack.

    Args:
      config: the model's hyperparameters.
      params: the functional "encoder" subtree; None initialises one from `rngs.params()`.
      rngs: the `params` stream (initialisation) and the `dropout` stream (training).
      deterministic: evaluation mode (no dropout).
      sharding_rules: `(regex, axis names)` per parameter path (`ulmfit_jax.core.nn.nnx_params`).
      prefix: this module's path in the model, for the rules.
    """

    def __init__(
        self,
        config: AWDLSTMConfig,
        *,
        params: dict[str, Any] | None = None,
        rngs: nnx.Rngs | None = None,
        deterministic: bool = True,
        sharding_rules: ShardingRules | None = None,
        prefix: tuple[str, ...] = (),
    ):
        if params is None:
            params = awd_lstm.init_encoder_params(init_key(rngs, "AWDLSTMEncoder"), config)
        self.keep_config_and_mode(config, deterministic, rngs)
        self.hold(params, nnx.Param, prefix=prefix, sharding_rules=sharding_rules)

    def __call__(
        self,
        tokens: jax.Array,
        state: State | None = None,
        *,
        lengths: jax.Array | None = None,
        deterministic: bool | None = None,
        rngs: Rngs = None,
    ) -> tuple[jax.Array, State]:
        """`awd_lstm.encoder_apply` on one window.

        Args:
          tokens: int32[batch, time].
          state: one `(h, c)` per layer, float[batch, layer_out] each; None for zeros.
          lengths: int32[batch] for right-padded rows (None: every step is real).

        Returns:
          `(output float[batch, time, emb_sz], new_state)`: the last layer's raw output.
        """
        tokens, state, lengths = awd_lstm.check_window(self.config, tokens, state, lengths)
        rng = self.dropout_key(deterministic, rngs)
        return awd_lstm.encoder_apply(
            self.to_params(), self.config, tokens, state, lengths=lengths, rng=rng
        )


class _ModelWithEncoder(DropoutParamTree):
    """A ULMFiT model around an `AWDLSTMEncoder` (`LanguageModel`, `TextClassifier`):
    `params["encoder"]` becomes that submodule, the other keys are held here. A subclass says
    how its parameters are initialised, which config its encoder takes and which variable type
    each of its own leaves gets.

    Args:
      config: the model's hyperparameters.
      params: the functional dict; None initialises one from `rngs.params()`.
      rngs: the `params` stream (initialisation) and the `dropout` stream (training).
      deterministic: evaluation mode (no dropout).
      sharding_rules: `(regex, axis names)` per parameter path (`ulmfit_jax.core.nn.nnx_params`).
    """

    def __init__(
        self,
        config: Any,
        *,
        params: dict[str, Any] | None = None,
        rngs: nnx.Rngs | None = None,
        deterministic: bool = True,
        sharding_rules: ShardingRules | None = None,
    ):
        if params is None:
            params = self.init_params(init_key(rngs, type(self).__name__), config)
        self.keep_config_and_mode(config, deterministic, rngs)
        # No dropout stream for the encoder: the call's key reaches it through the functional
        # apply.
        self.encoder = AWDLSTMEncoder(
            self.encoder_config(config),
            params=params["encoder"],
            deterministic=deterministic,
            sharding_rules=sharding_rules,
            prefix=("encoder",),
        )
        self.hold(params, self.variable_type, sharding_rules=sharding_rules, skip=("encoder",))

    @staticmethod
    def init_params(key: jax.Array, config: Any) -> dict[str, Any]:
        """The functional dict of a new model."""
        raise NotImplementedError

    @staticmethod
    def encoder_config(config: Any) -> AWDLSTMConfig:
        """The encoder's part of `config`."""
        raise NotImplementedError

    @staticmethod
    def variable_type(path: tuple[str, ...]) -> type[nnx.Variable]:
        """The variable type of the leaf at `path` (`nnx_params.to_variables`)."""
        return nnx.Param

    @classmethod
    def from_params(cls, params: dict[str, Any], config: Any, **kwargs):
        """The module holding functional `params` (as `awd_lstm.init_lm_params`,
        `classifier.init_classifier_params` or the loaders return them); `kwargs` as the
        constructor's."""
        return cls(config, params=params, **kwargs)


class LanguageModel(_ModelWithEncoder):
    """fastai's AWD-LSTM language model: `AWDLSTMEncoder` and the (tied) linear decoder.

    Parameters as `awd_lstm.init_lm_params`: `encoder` is an `AWDLSTMEncoder`, `decoder` holds
    the bias (and the weight when untied). Arguments as `AWDLSTMEncoder`'s.

    Only this module holds the dropout stream: a call draws one key and `lm_apply` splits it
    for the encoder (whose own stream is None, so the model has no aliased variables and also
    runs under `nnx.jit(..., graph=False)`); train `model.encoder` alone with `rngs=` per call.
    """

    @staticmethod
    def init_params(key: jax.Array, config: AWDLSTMConfig) -> dict[str, Any]:
        return awd_lstm.init_lm_params(key, config)

    @staticmethod
    def encoder_config(config: AWDLSTMConfig) -> AWDLSTMConfig:
        return config

    def forward(
        self,
        tokens: jax.Array,
        state: State | None = None,
        *,
        lengths: jax.Array | None = None,
        deterministic: bool | None = None,
        rngs: Rngs = None,
    ) -> awd_lstm.LMOutputs:
        """`awd_lstm.lm_forward`: logits, state and the raw and dropped outputs AR/TAR need."""
        rng = self.dropout_key(deterministic, rngs)
        return awd_lstm.lm_forward(
            self.to_params(), self.config, tokens, state, train=rng is not None, rng=rng,
            lengths=lengths,
        )  # fmt: skip

    def __call__(
        self,
        tokens: jax.Array,
        state: State | None = None,
        *,
        lengths: jax.Array | None = None,
        deterministic: bool | None = None,
        rngs: Rngs = None,
    ) -> tuple[jax.Array, State]:
        """`awd_lstm.lm_apply`: tokens int32[batch, time] -> `(logits float32[batch, time,
        vocab], new_state)`; `state` None for zeros, else the previous window's."""
        out = self.forward(tokens, state, lengths=lengths, deterministic=deterministic, rngs=rngs)
        return out.logits, out.state

    @classmethod
    def from_fastai(
        cls,
        pth: str | Path,
        itos: str | Path | None = None,
        *,
        rngs: nnx.Rngs | None = None,
        **config_overrides,
    ) -> LanguageModel:
        """fastai weights (`ulmfit_jax.weights.fastai.load_fastai_lm`; `itos` is checked against
        the embedding: read it with `read_itos`)."""
        from ulmfit_jax.weights.fastai import load_fastai_lm

        params, config, _ = load_fastai_lm(pth, itos, **config_overrides)
        return cls(config, params=params, rngs=rngs)

    @classmethod
    def from_workdir(cls, workdir: str | Path, *, rngs: nnx.Rngs | None = None) -> LanguageModel:
        """The export of a finished LM stage (`ulmfit_jax.weights.export.load_lm`)."""
        from ulmfit_jax.weights.export import load_lm

        params, config, _, _ = load_lm(workdir)
        return cls(config, params=params, rngs=rngs)

    @classmethod
    def from_pretrained(cls, name: str, *, rngs: nnx.Rngs | None = None) -> LanguageModel:
        """A named pretrained model, through `ulmfit_jax.weights.pretrained.load_pretrained`
        (which returns `(params, config, vocab)` as `load_fastai_lm` does)."""
        params, config = _load_pretrained(name)[:2]
        return cls(config, params=params, rngs=rngs)


class TextClassifier(_ModelWithEncoder):
    """fastai's ULMFiT classifier: BPT3C over `AWDLSTMEncoder`, masked concat pooling and the
    BatchNorm/Dropout/Linear head. BatchNorm's running statistics are `nnx.BatchStat`s, updated
    by training-mode calls. Arguments as `AWDLSTMEncoder`'s (`config` a `ClassifierConfig`);
    the dropout stream as `LanguageModel`'s.
    """

    @staticmethod
    def init_params(key: jax.Array, config: ClassifierConfig) -> dict[str, Any]:
        return classifier.init_classifier_params(key, config)

    @staticmethod
    def encoder_config(config: ClassifierConfig) -> AWDLSTMConfig:
        return config.encoder_config

    @staticmethod
    def variable_type(path: tuple[str, ...]) -> type[nnx.Variable]:
        """BatchNorm's running `mean`/`var` are `nnx.BatchStat`, the rest `nnx.Param`."""
        stat = len(path) >= 2 and path[-2] == "bn" and path[-1] in ("mean", "var")
        return nnx.BatchStat if stat else nnx.Param

    def __call__(
        self,
        tokens,
        lengths: jax.Array | None = None,
        *,
        deterministic: bool | None = None,
        rngs: Rngs = None,
    ) -> jax.Array:
        """`classifier.classifier_apply`: documents -> logits float32[batch, n_class].

        Args:
          tokens: a list of token-id lists, or right-padded int32[batch, time] with `lengths`
            int32[batch].

        In training mode the BatchNorm running statistics move (PyTorch's momentum 0.1).
        """
        rng = self.dropout_key(deterministic, rngs)
        train = rng is not None
        logits, stats = classifier.classifier_apply(
            self.to_params(), self.config, tokens, lengths, train=train, rng=rng,
            return_batch_stats=True,
        )  # fmt: skip
        if train:
            for name, block in stats.items():
                bn = self.head[name]["bn"]
                bn["mean"].set_value(block["mean"])
                bn["var"].set_value(block["var"])
        return logits

    @classmethod
    def from_fastai(
        cls,
        pth: str | Path,
        itos: str | Path | None = None,
        *,
        config: ClassifierConfig | None = None,
        n_class: int | None = None,
        rngs: nnx.Rngs | None = None,
        **config_overrides,
    ) -> TextClassifier:
        """fastai weights: a classifier's `.pth` (with its `config`, as `load_fastai_classifier`)
        or a language model's (ULMFiT's fine-tuning start: its encoder and a fresh head for
        `n_class` classes from `rngs.params()`; `config_overrides` are `ClassifierConfig`
        fields). `itos` is checked against the embedding."""
        from ulmfit_jax.weights import fastai

        state = fastai.read_state_dict(pth)
        if any(key.startswith("0.module.") for key in state):
            if config is None:
                raise ValueError(f"{pth} is a fastai classifier: pass its ClassifierConfig")
            params = fastai.classifier_params_from_state_dict(state, config)
        else:
            if n_class is None and config is None:
                raise ValueError(f"{pth} is a fastai language model: pass n_class (or config)")
            lm_params, lm_config = fastai.lm_params_from_state_dict(state)
            if config is None:
                config = ClassifierConfig(
                    vocab_size=lm_config.vocab_size,
                    n_class=n_class,
                    emb_sz=lm_config.emb_sz,
                    n_hid=lm_config.n_hid,
                    n_layers=lm_config.n_layers,
                    **config_overrides,
                )
            key = init_key(rngs, "TextClassifier.from_fastai(language model)")
            params = classifier.from_language_model(lm_params, key, config)
        if itos is not None and len(fastai.read_itos(itos)) != config.vocab_size:
            raise ValueError(f"{itos} does not have the {config.vocab_size} tokens of {pth}")
        return cls(config, params=params, rngs=rngs)

    @classmethod
    def from_workdir(cls, workdir: str | Path, *, rngs: nnx.Rngs | None = None) -> TextClassifier:
        """The export of a finished `classify` stage, as `Predictor.from_workdir` reads it."""
        from ulmfit_jax.inference.predictor import Predictor

        predictor = Predictor.from_workdir(workdir)
        return cls(predictor.config, params=predictor.params, rngs=rngs)

    @classmethod
    def from_language_model(
        cls, lm: LanguageModel, config: ClassifierConfig, *, rngs: nnx.Rngs
    ) -> TextClassifier:
        """A classifier on a (fine-tuned) `LanguageModel`'s encoder with a fresh head."""
        params = classifier.from_language_model(lm.to_params(), rngs.params(), config)
        return cls(config, params=params, rngs=rngs)


def _load_pretrained(name: str):
    try:
        from ulmfit_jax.weights.pretrained import load_pretrained
    except ImportError as error:
        raise ImportError(
            "from_pretrained needs ulmfit_jax.weights.pretrained.load_pretrained, which this "
            f"installation does not have ({error}); use from_fastai with downloaded weights"
        ) from error
    return load_pretrained(name)


# --------------------------------------------------------------------------------------------
# Optimisation with nnx.Optimizer
# --------------------------------------------------------------------------------------------


def param_labels(model: LanguageModel | TextClassifier) -> Any:
    """fastai's layer groups ("group_k") of `nnx.state(model, nnx.Param)`, in its tree: the
    `labels` for `make_optimizer` and `trainable_groups` under `nnx.Optimizer(..., wrt=
    nnx.Param)` (BatchNorm statistics are not Params, so they carry no label)."""
    return labels_state(model, param_groups.param_groups(model.to_params()))


def make_nnx_optimizer(model: LanguageModel | TextClassifier, **kwargs) -> nnx.Optimizer:
    """`nnx.Optimizer(model, make_optimizer(param_labels(model), **kwargs), wrt=nnx.Param)`.

    Step it with `optimizer.update(model, grads, trainable=trainable_groups(labels, n))`.
    """
    from ulmfit_jax.optim.optimizer import make_optimizer

    return nnx.Optimizer(model, make_optimizer(param_labels(model), **kwargs), wrt=nnx.Param)


def new_nnx_stage(
    optimizer: nnx.Optimizer, model: LanguageModel | TextClassifier, **kwargs
) -> None:
    """`ulmfit_jax.optim.optimizer.new_stage` on an `nnx.Optimizer` built by
    `make_nnx_optimizer`, in place: the schedule restarts with the stage's `lr` and
    `total_steps` and (by default, as fastai's `freeze_to`) the Adam moments are cleared.
    Only values change, so a jitted train step serves every stage."""
    from ulmfit_jax.optim.optimizer import new_stage

    params = nnx.as_pure(nnx.state(model, optimizer.wrt))
    state = new_stage(optimizer.tx, nnx.as_pure(optimizer.opt_state), params, **kwargs)
    nnx.update(optimizer.opt_state, nnx.state(state))


__all__: Sequence[str] = (
    "AWDLSTMEncoder",
    "LanguageModel",
    "TextClassifier",
    "make_nnx_optimizer",
    "new_nnx_stage",
    "param_labels",
)
