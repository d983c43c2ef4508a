"""The context-independent token encoder: character CNN, highway layers, projection.

Parameters (plain dict, TensorFlow orientation so every matmul is `x @ w`):

    {
        "char_embed": float[n_characters, char_embed_dim],   # row 0 = padding id, all zero
        "conv_{i}": {"w": float[width_i, char_embed_dim, num_i], "b": float[num_i]},
        "highway_{k}": {"w_carry": float[F, F], "b_carry": float[F],
                        "w_transform": float[F, F], "b_transform": float[F]},
        "proj": {"w": float[F, projection_dim], "b": float[projection_dim]},  # if F != proj dim
    }

with F = `config.n_filters`. Each convolution is a cross-correlation over the characters (as TF's
`conv2d` and torch's `Conv1d`), max-pooled over all positions, then activated.

Highway, bilm-tf's convention: `g = sigmoid(x @ w_carry + b_carry)` multiplies the *transform*,
`y = g * relu(x @ w_transform + b_transform) + (1 - g) * x`. (So the tensor named "carry" is really
the transform gate; AllenNLP's loader negates it to fit its `g * x + (1 - g) * f(x)` layer.)

With `config.compute_dtype="bfloat16"` the convolutions and the highway and projection matmuls
take bfloat16 operands and accumulate in float32; biases, activations, gates and the output are
float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from elmo_jax.model.config import BiLMConfig
from ulmfit_jax.core.nn import precision

Params = dict


def char_cnn_apply(params: Params, config: BiLMConfig, char_ids: jax.Array) -> jax.Array:
    """Token embeddings from character ids.

    Args:
      params: the char-CNN parameters (module docstring).
      config: the model config.
      char_ids: int[..., max_characters_per_token], ids shifted by +1 (0 = padding).

    Returns:
      float[..., projection_dim]. Fully padded tokens get a (meaningless) non-zero vector; the
      caller masks them.
    """
    dtype = precision.compute_dtype(config.compute_dtype)
    accumulate = None if dtype is None else jnp.float32
    lead = char_ids.shape[:-1]
    ids = char_ids.reshape(-1, char_ids.shape[-1])
    x = precision.cast(jnp.take(params["char_embed"], ids, axis=0), dtype)  # [N, chars, E]
    act = jax.nn.relu if config.activation == "relu" else jnp.tanh
    pooled = []
    for i, _ in enumerate(config.filters):
        conv = params[f"conv_{i}"]
        y = jax.lax.conv_general_dilated(
            x,
            precision.cast(conv["w"], dtype),
            (1,),
            "VALID",
            dimension_numbers=("NWC", "WIO", "NWC"),
            preferred_element_type=accumulate,
        )
        # Adding the bias after the max is exact (rounding is monotonic) and cheaper.
        pooled.append(act(jnp.max(y, axis=1) + conv["b"]))
    h = jnp.concatenate(pooled, axis=-1)  # [N, F]
    for k in range(config.n_highway):
        hw = params[f"highway_{k}"]
        gate = jax.nn.sigmoid(precision.matmul(h, hw["w_carry"], dtype) + hw["b_carry"])
        transform = jax.nn.relu(precision.matmul(h, hw["w_transform"], dtype) + hw["b_transform"])
        h = gate * transform + (1.0 - gate) * h
    if config.has_cnn_projection:
        h = precision.matmul(h, params["proj"]["w"], dtype) + params["proj"]["b"]
    return h.reshape(*lead, h.shape[-1])
