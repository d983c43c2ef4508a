"""A sequence tagger on ELMo (Peters et al. 2018's NER model): a BiLSTM-CRF over mixed biLM
layers.

    biLM (frozen) -> ScalarMix (trained) -> dropout -> BiLSTM x encoder_layers -> dropout
      -> linear (tag scores) -> linear-chain CRF (constrained Viterbi decoding)

    tagger = ElmoTagger.from_allennlp("options.json", "lm_weights.hdf5",
                                      TaggerConfig(tags=("O", "B-PER", "I-PER"), input_dim=32),
                                      rngs=nnx.Rngs(0))
    loss = tagger.loss(batch_to_ids(sentences), tag_ids, mask)   # mean negative log-likelihood
    tag_ids, mask = tagger.decode(batch_to_ids(sentences))
    tagger.tag([["John", "lives", "in", "Paris"]])    # [["B-PER", "O", "O", "B-LOC"]]

The functional core (`init_tagger`, `tagger_emissions`, `tagger_loss`, `tagger_decode`) works
on the selected biLM layers with sentence boundaries removed, float[B, L, T, 2P] (a
`LayerCache.batch`, or `bilm_layers`), so a program can run the frozen biLM once per sentence
and train on the cache (`elmo_jax.downstream.tagger_stage`). `ElmoTagger` is the Flax NNX module:
an `elmo_jax.nnx.Elmo` (frozen biLM, its `scalar_mix_0` the trained mix, its dropout the ELMo
dropout) and the task parameters as `nnx.Param`s, the CRF's in an `elmo_jax.downstream.crf.CRF`
submodule; `to_params()` is the functional dict. Both paths give the same emissions (without
`do_layer_norm`: with it, the Elmo path's layer statistics include the boundary tokens).

Parameters: `{"scalar_mix", "encoder": {"layer_k": {"forward", "backward"}}, "output":
{"w", "b"}, "crf": {"transitions", "start", "end"}}`. The tag names are the model's scheme
(BIO or BIOUL, `scheme`); `tag` returns BIO.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from elmo_jax.downstream import crf as crf_lib
from elmo_jax.downstream.conll import to_scheme
from elmo_jax.downstream.task_layers import (
    TaskModule,
    bilstm,
    init_bilstm,
    init_output_layer,
    mix_layers,
)
from elmo_jax.model.config import BiLMConfig
from elmo_jax.model.scalar_mix import init_scalar_mix
from elmo_jax.nnx import Elmo
from ulmfit_jax.core.nn.dropout import dropout
from ulmfit_jax.core.nn.nnx_params import Rngs, init_key, to_arrays

Params = dict


@dataclasses.dataclass(frozen=True)
class TaggerConfig:
    """The tagger's tags, shapes and dropouts (hashable: a `jit` static argument).

    Attributes:
      tags: tag names by id, in `scheme` (e.g. "O", "B-PER", "I-PER", ...).
      input_dim: width of an ELMo layer, `2 * projection_dim`.
      num_layers: how many biLM layers the scalar mix combines (the biLM's
        `num_output_layers`).
      hidden: BiLSTM size per direction.
      encoder_layers: stacked BiLSTM layers (Peters et al.: 2).
      elmo_dropout: dropout on the mixed ELMo vectors.
      dropout: dropout between BiLSTM layers and before the output layer.
      scheme: "BIO" or "BIOUL", the scheme of `tags`.
      constrain_decoding: Viterbi over the scheme's valid sequences only (AllenNLP's
        `constrain_crf_decoding`).
      constrain_loss: normalise the CRF likelihood over valid sequences too.
      do_layer_norm: AllenNLP's `ScalarMix(do_layer_norm=...)`.
    """

    tags: tuple[str, ...]
    input_dim: int
    num_layers: int = 3
    hidden: int = 64
    encoder_layers: int = 1
    elmo_dropout: float = 0.5
    dropout: float = 0.5
    scheme: str = "BIO"
    constrain_decoding: bool = True
    constrain_loss: bool = False
    do_layer_norm: bool = False

    def __post_init__(self):
        if self.scheme not in ("BIO", "BIOUL"):
            raise ValueError(f"tagger scheme must be 'BIO' or 'BIOUL', got {self.scheme!r}")
        if len(self.tags) < 2 or len(set(self.tags)) != len(self.tags):
            raise ValueError(f"tags must be at least two distinct names, got {self.tags}")
        crf_lib.transition_constraints(self.scheme, self.tags)  # every tag parses

    @property
    def num_tags(self) -> int:
        return len(self.tags)

    def constraints(self, for_loss: bool = False) -> crf_lib.Constraints | None:
        wanted = self.constrain_loss if for_loss else self.constrain_decoding
        return crf_lib.transition_constraints(self.scheme, self.tags) if wanted else None

    def to_bio(self, tag_ids: Sequence[int]) -> list[str]:
        """Tag ids of one sentence -> BIO tag names."""
        return to_scheme([self.tags[int(i)] for i in tag_ids], self.scheme, "BIO")


def init_tagger(rng: jax.Array, config: TaggerConfig) -> Params:
    """Scalar mix at equal weights and gamma 1; PyTorch-style LSTM init; Glorot output;
    `init_crf`'s transitions."""
    k_enc, k_out, k_crf = jax.random.split(rng, 3)
    encoder = {}
    width = config.input_dim
    for k, key in enumerate(jax.random.split(k_enc, config.encoder_layers)):
        encoder[f"layer_{k}"] = init_bilstm(*jax.random.split(key), width, config.hidden)
        width = 2 * config.hidden
    return {
        "scalar_mix": init_scalar_mix(config.num_layers),
        "encoder": encoder,
        "output": init_output_layer(k_out, width, config.num_tags),
        "crf": crf_lib.init_crf(k_crf, config.num_tags),
    }


def emissions_from_mixed(
    params: Params,
    config: TaggerConfig,
    mixed: jax.Array,
    mask: jax.Array,
    *,
    train: bool = False,
    rng: jax.Array | None = None,
) -> jax.Array:
    """Tag scores from mixed ELMo vectors (after the ELMo dropout).

    Args:
      params: `init_tagger`'s dict.
      config: the tagger config.
      mixed: float[B, T, input_dim], zero at padding.
      mask: bool[B, T], a prefix per row.
      train: apply dropout.
      rng: dropout key (needed when `train`).

    Returns:
      float[B, T, num_tags].
    """
    if train and rng is None:
        raise ValueError("train=True needs an rng for dropout")
    keys = (
        jax.random.split(rng, config.encoder_layers) if train else [None] * len(params["encoder"])
    )
    lengths = jnp.sum(mask, axis=1).astype(jnp.int32)
    h = mixed
    for k in range(config.encoder_layers):
        h = bilstm(params["encoder"][f"layer_{k}"], h, lengths)  # [B, T, 2H], zero at padding
        if train and config.dropout > 0.0:
            h = dropout(keys[k], config.dropout, h)
    return h @ params["output"]["w"] + params["output"]["b"]


def tagger_emissions(
    params: Params,
    config: TaggerConfig,
    layers: jax.Array,
    mask: jax.Array,
    *,
    train: bool = False,
    rng: jax.Array | None = None,
) -> jax.Array:
    """Tag scores float[B, T, num_tags] from biLM layers float[B, num_layers, T, input_dim]
    (no sentence boundaries, zero at padding) and mask bool[B, T]."""
    mixed, rest = mix_layers(
        params["scalar_mix"], layers, mask, config, config.num_layers, train=train, rng=rng
    )
    return emissions_from_mixed(params, config, mixed, mask, train=train, rng=rest)


def crf_loss(params: Params, config: TaggerConfig, emissions, tags, mask) -> jax.Array:
    """Mean negative CRF log-likelihood per sentence (tags int[B, T])."""
    ll = crf_lib.crf_log_likelihood(
        params["crf"], emissions, tags, mask, config.constraints(for_loss=True)
    )
    return -jnp.mean(ll)


def tagger_loss(
    params: Params,
    config: TaggerConfig,
    layers: jax.Array,
    mask: jax.Array,
    tags: jax.Array,
    *,
    train: bool = False,
    rng: jax.Array | None = None,
) -> jax.Array:
    """`crf_loss` of `tagger_emissions` (arguments as there; tags int[B, T])."""
    emissions = tagger_emissions(params, config, layers, mask, train=train, rng=rng)
    return crf_loss(params, config, emissions, tags, mask)


def tagger_decode(
    params: Params, config: TaggerConfig, layers: jax.Array, mask: jax.Array
) -> jax.Array:
    """The Viterbi tags int32[B, T] (0 at padding), constrained unless
    `config.constrain_decoding` is off."""
    emissions = tagger_emissions(params, config, layers, mask)
    return crf_lib.viterbi_decode(params["crf"], emissions, mask, config.constraints())[0]


class ElmoTagger(TaskModule):
    """The ELMo BiLSTM-CRF tagger as a Flax NNX module (module docstring).

    Args:
      config: the tagger's tags, shapes and dropouts.
      bilm_config: the biLM's hyperparameters.
      bilm_params: its weights (`load_allennlp`'s); held frozen inside an `Elmo`.
      params: `init_tagger`'s dict; None initialises it from `rngs.params()`.
      rngs: `params` and `dropout` streams.
      deterministic: evaluation mode (`model.train()` / `model.eval()` switch it).
    """

    def __init__(
        self,
        config: TaggerConfig,
        bilm_config: BiLMConfig,
        bilm_params: Params,
        *,
        params: Params | None = None,
        rngs: nnx.Rngs | None = None,
        deterministic: bool = True,
    ):
        if config.input_dim != bilm_config.output_dim:
            raise ValueError(
                f"TaggerConfig.input_dim={config.input_dim}, but the biLM's layers have "
                f"{bilm_config.output_dim} features"
            )
        if config.num_layers != bilm_config.num_output_layers:
            raise ValueError(
                f"TaggerConfig.num_layers={config.num_layers}, but the biLM has "
                f"{bilm_config.num_output_layers} layers"
            )
        if params is None:
            params = init_tagger(init_key(rngs, "ElmoTagger"), config)
        self.keep_config_and_mode(config, deterministic, rngs)
        self.elmo = Elmo(
            bilm_config,
            1,
            params={"bilm": bilm_params, "scalar_mix_0": params["scalar_mix"]},
            dropout=config.elmo_dropout,
            do_layer_norm=config.do_layer_norm,
            rngs=rngs,
            deterministic=deterministic,
        )
        self.crf = crf_lib.CRF(
            config.num_tags,
            constraint_type=config.scheme if config.constrain_decoding else None,
            labels=config.tags,
            params=params["crf"],
        )
        self.hold(params, nnx.Param, skip=("scalar_mix", "crf"))
        self.param_keys = ("scalar_mix", "encoder", "output", "crf")

    # from_layers(layers float[B, num_layers, T, input_dim], mask bool[B, T]) -> emissions
    # float[B, T, num_tags] (`TaskModule.from_layers`).
    forward_from_layers = staticmethod(tagger_emissions)

    def to_params(self) -> Params:
        """The functional dict (`init_tagger`'s keys; the biLM is not in it)."""
        return {
            "scalar_mix": to_arrays(self.elmo.scalar_mix_0),
            "encoder": to_arrays(self.encoder),
            "output": to_arrays(self.output),
            "crf": self.crf.to_params(),
        }

    @classmethod
    def from_allennlp(
        cls,
        options: str | os.PathLike,
        weights: str | os.PathLike,
        config: TaggerConfig,
        **kwargs: Any,
    ) -> ElmoTagger:
        """A tagger on an AllenNLP / bilm-tf biLM (`options.json` + hdf5)."""
        from elmo_jax.weights.allennlp import load_allennlp

        bilm_params, bilm_config = load_allennlp(options, weights)
        return cls(config, bilm_config, bilm_params, **kwargs)

    def __call__(
        self,
        char_ids: jax.Array,
        *,
        deterministic: bool | None = None,
        rngs: Rngs = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Tag scores from char_ids int[B, T, max_characters_per_token]: `(emissions
        float[B, T, num_tags], mask bool[B, T])`, through the frozen biLM."""
        deterministic = self.is_deterministic(deterministic)
        reps, mask, _ = self.elmo(char_ids, deterministic=deterministic, rngs=rngs)
        rng = self.dropout_key(deterministic, rngs)  # after the ELMo dropout's key
        emissions = emissions_from_mixed(
            self.to_params(), self.config, reps[0], mask, train=rng is not None, rng=rng
        )
        return emissions, mask

    def loss(
        self,
        char_ids: jax.Array,
        tags: jax.Array,
        *,
        deterministic: bool | None = None,
        rngs: Rngs = None,
    ) -> jax.Array:
        """Mean negative CRF log-likelihood of tags int[B, T] (the tagger's training loss)."""
        emissions, mask = self(char_ids, deterministic=deterministic, rngs=rngs)
        return crf_loss(self.to_params(), self.config, emissions, tags, mask)

    def decode(self, char_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Constrained Viterbi tags int32[B, T] (0 at padding) and the mask bool[B, T]
        (no dropout)."""
        emissions, mask = self(char_ids, deterministic=True)
        return self.crf.decode(emissions, mask)[0], mask

    def tag(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """BIO tags of tokenized sentences (one batch; empty sentences give [])."""
        from elmo_jax.model.characters import batch_to_ids

        if not sentences:
            return []
        ids, _ = jit_decode(self, jnp.asarray(batch_to_ids(sentences)))
        ids = np.asarray(ids)
        return [self.config.to_bio(ids[i, : len(s)]) for i, s in enumerate(sentences)]


@nnx.jit
def jit_decode(model: ElmoTagger, char_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`model.decode(char_ids)`, compiled (once per model structure and input shape)."""
    return model.decode(char_ids)
