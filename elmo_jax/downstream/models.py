"""A sentence classifier on frozen ELMo features, AllenNLP's recipe.

    biLM (frozen) -> layers [L, B, T, 2P] -> ScalarMix (trainable weights and gamma)
      -> dropout 0.5 -> BiLSTM (optional) -> max- and mean-pooling -> dropout -> linear

The biLM never trains: its layers can be computed once per sentence (`LayerCache`) and the
classifier trained on the cache, which is what makes a CPU run fast. `elmo_task_loss` runs the
same model end to end from character ids (the biLM behind `stop_gradient`), for when the cache
does not fit or sentences arrive one by one; both give the same logits.

`layers` selects which biLM layers are mixed: `(0, 1, 2)` for ELMo, `(0,)` for the
context-independent character-CNN embedding alone (the mix then reduces to `gamma * layer_0`),
the baseline of the paper's ablations.

Parameters: `{"scalar_mix": ..., "encoder": {"forward", "backward"}, "output": {"w", "b"}}`
("encoder" only with `hidden > 0`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from elmo_jax.downstream.task_layers import bilstm, init_bilstm, init_output_layer, mix_layers
from elmo_jax.embedding.files import Embedder, bucket_length
from elmo_jax.model.bilm import bilm_apply, remove_sentence_boundaries
from elmo_jax.model.config import BiLMConfig
from elmo_jax.model.scalar_mix import init_scalar_mix
from ulmfit_jax.core.nn.dropout import dropout

Params = dict


@dataclasses.dataclass(frozen=True)
class SentenceClassifierConfig:
    """The task model's shapes and dropouts (hashable: a `jit` static argument).

    Attributes:
      num_classes: output classes.
      input_dim: width of an ELMo layer, `2 * projection_dim`.
      layers: which biLM layers the scalar mix combines.
      hidden: BiLSTM size per direction; 0 drops the BiLSTM and pools the mixed ELMo vectors
        directly (then only the biLM's layers carry context).
      elmo_dropout: dropout on the mixed ELMo vectors (AllenNLP's `Elmo(dropout=0.5)`).
      dropout: dropout on the pooled sentence vector.
      do_layer_norm: AllenNLP's `ScalarMix(do_layer_norm=...)`.
    """

    num_classes: int
    input_dim: int
    layers: tuple[int, ...] = (0, 1, 2)
    hidden: int = 64
    elmo_dropout: float = 0.5
    dropout: float = 0.2
    do_layer_norm: bool = False


def init_classifier(rng: jax.Array, config: SentenceClassifierConfig) -> Params:
    """Scalar mix at equal weights and gamma 1; PyTorch-style LSTM init; Glorot output."""
    k_f, k_b, k_o = jax.random.split(rng, 3)
    # Max- and mean-pooled: twice the width of what is pooled.
    fan_in = 4 * config.hidden if config.hidden else 2 * config.input_dim
    params = {"scalar_mix": init_scalar_mix(len(config.layers))}
    if config.hidden:
        params["encoder"] = init_bilstm(k_f, k_b, config.input_dim, config.hidden)
    return {**params, "output": init_output_layer(k_o, fan_in, config.num_classes)}


def classifier_logits(
    params: Params,
    config: SentenceClassifierConfig,
    layers: jax.Array,
    mask: jax.Array,
    *,
    train: bool = False,
    rng: jax.Array | None = None,
) -> jax.Array:
    """Class logits from biLM layers.

    Args:
      params: from `init_classifier`.
      config: the task model config.
      layers: float[B, len(config.layers), T, input_dim], the selected biLM layers without
        sentence boundaries, zero at padding.
      mask: bool[B, T].
      train: apply dropout.
      rng: dropout key (needed when `train`).

    Returns:
      float[B, num_classes].
    """
    mixed, pooled_key = mix_layers(
        params["scalar_mix"], layers, mask, config, len(config.layers), train=train, rng=rng
    )  # [B, T, D]
    if config.hidden:
        lengths = jnp.sum(mask, axis=1).astype(jnp.int32)
        h = bilstm(params["encoder"], mixed, lengths)  # [B, T, 2H], zero at padding
    else:
        h = jnp.where(mask[..., None], mixed, 0.0)
    keep = mask[..., None]
    count = jnp.maximum(jnp.sum(mask, axis=1, keepdims=True), 1)
    pooled = jnp.concatenate(
        [jnp.max(jnp.where(keep, h, -jnp.inf), axis=1), jnp.sum(h, axis=1) / count], axis=-1
    )
    pooled = jnp.where(jnp.isfinite(pooled), pooled, 0.0)  # empty sentences: max over nothing
    if train and config.dropout > 0.0:
        pooled = dropout(pooled_key, config.dropout, pooled)
    return pooled @ params["output"]["w"] + params["output"]["b"]


def task_loss(
    params: Params,
    config: SentenceClassifierConfig,
    layers: jax.Array,
    mask: jax.Array,
    labels: jax.Array,
    *,
    train: bool = False,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and the number of correct predictions of a batch (`labels`: int[B];
    the rest as `classifier_logits`)."""
    logits = classifier_logits(params, config, layers, mask, train=train, rng=rng)
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    return loss, jnp.sum(jnp.argmax(logits, -1) == labels)


def bilm_layers(
    bilm_params: Params, bilm_config: BiLMConfig, char_ids: jax.Array, layers: Sequence[int]
) -> tuple[jax.Array, jax.Array]:
    """The frozen biLM's selected layers: (float[B, len(layers), T, 2P], bool[B, T])."""
    outputs, mask, _ = bilm_apply(jax.lax.stop_gradient(bilm_params), bilm_config, char_ids)
    selected = [remove_sentence_boundaries(outputs[k], mask) for k in layers]
    return jnp.stack([x for x, _ in selected], axis=1), selected[0][1]


def elmo_task_loss(
    params: Params,
    config: SentenceClassifierConfig,
    bilm_params: Params,
    bilm_config: BiLMConfig,
    char_ids: jax.Array,
    labels: jax.Array,
    *,
    train: bool = False,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """`task_loss` from character ids, through the frozen biLM (no gradient reaches it)."""
    layers, mask = bilm_layers(bilm_params, bilm_config, char_ids, config.layers)
    return task_loss(params, config, layers, mask, labels, train=train, rng=rng)


class LayerCache:
    """The frozen biLM's layers for a fixed set of sentences, computed once.

    Stored flat, float32[n_tokens, L, 2P] with per-sentence offsets (no padding), and padded on
    demand per batch to a bucket length (`elmo_jax.embedding.files.bucket_length`), so batches come
    in a few shapes.

    Args:
      bilm_params, bilm_config: the biLM.
      sentences: tokenized sentences (stateless: each sentence starts from the zero state).
      batch_size: sentences per biLM call.
    """

    def __init__(
        self,
        bilm_params: Params,
        bilm_config: BiLMConfig,
        sentences: Sequence[Sequence[str]],
        *,
        batch_size: int = 64,
    ):
        if not sentences:
            raise ValueError("no sentences to embed")
        lengths = np.array([len(s) for s in sentences], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        shape = (int(self.offsets[-1]), bilm_config.num_output_layers, bilm_config.output_dim)
        self.values = np.zeros(shape, np.float32)
        embedder = Embedder(bilm_params, bilm_config, "all")
        order = np.argsort(lengths, kind="stable")  # similar lengths share a padded shape
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = [sentences[i] for i in rows]
            padded = bucket_length(max(1, max(len(s) for s in batch)))
            out, _ = embedder(batch + [[]] * (batch_size - len(batch)), padded)  # [B, L, T, D]
            for r, i in enumerate(rows):
                n = lengths[i]
                self.values[self.offsets[i] : self.offsets[i] + n] = np.swapaxes(
                    out[r, :, :n], 0, 1
                )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, indices: Sequence[int], layers: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(float32[B, len(layers), T, 2P], bool[B, T]) for the sentences `indices`."""
        lengths = self.offsets[np.asarray(indices) + 1] - self.offsets[np.asarray(indices)]
        time = bucket_length(max(1, int(lengths.max())))
        out = np.zeros((len(indices), len(layers), time, self.values.shape[-1]), np.float32)
        for r, i in enumerate(indices):
            rows = self.values[self.offsets[i] : self.offsets[i + 1]][:, list(layers)]
            out[r, :, : len(rows)] = np.swapaxes(rows, 0, 1)
        return out, np.arange(time)[None, :] < lengths[:, None]
