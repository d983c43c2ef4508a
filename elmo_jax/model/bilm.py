"""The biLM forward pass: character ids in, the 3 (in general L + 1) ELMo layers out.

    params, config = load_allennlp(options_file, weight_file)
    layers, mask, state = bilm_apply(params, config, batch_to_ids(sentences))          # stateless
    layers, mask, state = bilm_apply(params, config, batch_to_ids(more), state=state)  # stateful

`<S>` and `</S>` are added here (as AllenNLP's `_ElmoCharacterEncoder` does), so every output has
two more time steps than the input; `remove_sentence_boundaries` takes them off again.

Statefulness follows AllenNLP's `_EncoderBase` and bilm-tf's state variables: the state has one
row per batch row; a call continues row r from row r of the state. If the batch is smaller than
the state, only its rows are read and updated and the other rows are kept; if it is larger, the
new rows start from zero. Every row, even an empty sentence, holds at least `<S> </S>`, so every
row of the batch is "used" and updated (AllenNLP's zero-row test never fires for ELMo).

Jit with the config static: `jax.jit(bilm_apply, static_argnums=1)`. Padding the time axis does
not change any result (padded steps neither read nor change the state), so callers may pad to a
few bucket lengths to bound the number of compiled shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from elmo_jax.model.char_cnn import char_cnn_apply
from elmo_jax.model.characters import (
    BEGINNING_OF_SENTENCE_CHARACTER,
    END_OF_SENTENCE_CHARACTER,
    _special_word,
)
from elmo_jax.model.config import BiLMConfig
from elmo_jax.model.lstmp import State, bilstm_apply, zero_state
from ulmfit_jax.core.nn.id_checks import check_ids

Params = dict


def _boundary_ids(config: BiLMConfig) -> tuple[np.ndarray, np.ndarray]:
    width = config.max_characters_per_token
    return (
        _special_word(BEGINNING_OF_SENTENCE_CHARACTER, width),
        _special_word(END_OF_SENTENCE_CHARACTER, width),
    )


def add_sentence_boundaries(
    x: jax.Array, lengths: jax.Array, bos: jax.Array, eos: jax.Array
) -> jax.Array:
    """Put `bos` before and `eos` after each row's real entries (AllenNLP's helper).

    Args:
      x: [B, T, ...] with each row's entries first and padding after.
      lengths: int[B], real entries per row.
      bos, eos: [...], the boundary entries.

    Returns:
      [B, T + 2, ...]: bos at 0, the row at 1..len, eos at len + 1, zeros after.
    """
    pad = [(0, 0), (1, 1)] + [(0, 0)] * (x.ndim - 2)
    out = jnp.pad(x, pad)
    t = jnp.arange(x.shape[1] + 2)[None, :]
    t = t.reshape(t.shape + (1,) * (x.ndim - 2))
    lengths = lengths.reshape((-1, 1) + (1,) * (x.ndim - 2))
    out = jnp.where(t == 0, bos.astype(out.dtype), out)
    return jnp.where(t == lengths + 1, eos.astype(out.dtype), out)


def remove_sentence_boundaries(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Drop the `<S>`/`</S>` steps (AllenNLP's helper).

    Args:
      x: float[B, T + 2, ...], as returned by `bilm_apply`.
      mask: bool[B, T + 2], with boundaries.

    Returns:
      `(x, mask)`: float[B, T, ...] (zero past each row's length) and bool[B, T].
    """
    lengths = jnp.sum(mask, axis=1) - 2
    new_mask = jnp.arange(x.shape[1] - 2)[None, :] < lengths[:, None]
    keep = new_mask.reshape(new_mask.shape + (1,) * (x.ndim - 2))
    return jnp.where(keep, x[:, 1:-1], 0.0), new_mask


def _check_char_range(char_ids, n_characters: int) -> None:
    """Integer ids in `[0, n_characters)`: checked now when concrete, compiled into the
    program under jit (`ulmfit_jax.core.nn.id_checks`). JAX would read NaN past the table."""
    if not jnp.issubdtype(char_ids.dtype, jnp.integer):
        raise ValueError(
            f"char_ids must hold integer character ids (from batch_to_ids), got dtype "
            f"{char_ids.dtype}"
        )
    if isinstance(char_ids, jax.core.Tracer):
        check_ids(char_ids, n_characters, "char_ids")
        return
    values = np.asarray(char_ids)
    if values.size and (values.min() < 0 or values.max() >= n_characters):
        bad = values[(values < 0) | (values >= n_characters)]
        raise ValueError(
            f"char_ids has ids outside [0, {n_characters}) (the character vocabulary): "
            f"e.g. {bad[:5].tolist()}"
        )


def embed_characters(
    params: Params, config: BiLMConfig, char_ids: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Token embeddings with the sentence boundaries added.

    Args:
      char_ids: int[B, T, max_characters_per_token]; all-zero rows are padding (at the end).

    Returns:
      `(embedding, mask)`: float[B, T + 2, projection_dim], bool[B, T + 2].
    """
    if char_ids.ndim != 3 or char_ids.shape[-1] != config.max_characters_per_token:
        raise ValueError(
            f"char_ids must be int[batch, time, {config.max_characters_per_token}], "
            f"got shape {tuple(char_ids.shape)}"
        )
    _check_char_range(char_ids, config.n_characters)
    lengths = jnp.sum(jnp.any(char_ids > 0, axis=-1), axis=1)
    bos, eos = _boundary_ids(config)
    ids = add_sentence_boundaries(char_ids, lengths, jnp.asarray(bos), jnp.asarray(eos))
    mask = jnp.arange(ids.shape[1])[None, :] < (lengths + 2)[:, None]
    return char_cnn_apply(params["char_cnn"], config, ids), mask


def bilm_apply_embedded(
    params: Params,
    config: BiLMConfig,
    token_embedding: jax.Array,
    mask: jax.Array,
    state: State | None = None,
) -> tuple[list[jax.Array], jax.Array, State]:
    """The contextual part of the biLM, from token embeddings that already have boundaries.

    This is what `bilm_apply` runs after the character CNN; the token-embedding cache calls it
    directly.

    Args:
      params: the biLM parameters (`params["lstm"]` is used).
      config: the model config.
      token_embedding: float[B, T + 2, projection_dim], boundaries included.
      mask: bool[B, T + 2], True at real steps (boundaries included), padding at the end.
      state: None (every row starts from zeros) or a state from a previous call (see the module
        docstring for batch-size changes).

    Returns:
      `(layers, mask, new_state)`: layers is a list of `config.num_output_layers` arrays
      float[B, T + 2, 2 * projection_dim], zero at padded steps: the token embedding concatenated
      with itself, then each LSTM layer's forward and backward outputs.
    """
    batch = token_embedding.shape[0]
    mask = jnp.asarray(mask, bool)
    lengths = jnp.sum(mask, axis=1).astype(jnp.int32)
    full_state = zero_state(config, batch) if state is None else _check_state(state, config)
    state_rows = full_state["h"].shape[2]
    if state_rows < batch:  # new rows start from zero
        extra = zero_state(config, batch - state_rows)
        full_state = jax.tree.map(lambda s, z: jnp.concatenate([s, z], axis=2), full_state, extra)
    rows = jax.tree.map(lambda s: s[:, :, :batch], full_state)
    outputs, new_rows = bilstm_apply(params["lstm"], config, token_embedding, lengths, rows)
    # Rows beyond this batch keep their state (AllenNLP `_update_states`, bilm-tf state update).
    new_state = jax.tree.map(lambda s, n: s.at[:, :, :batch].set(n), full_state, new_rows)
    keep = mask[..., None]
    tokens = jnp.where(keep, jnp.concatenate([token_embedding, token_embedding], -1), 0.0)
    return [tokens, *outputs], mask, new_state


def bilm_apply(
    params: Params,
    config: BiLMConfig,
    char_ids: jax.Array,
    state: State | None = None,
) -> tuple[list[jax.Array], jax.Array, State]:
    """Run the biLM on character ids.

    Args:
      params: `{"char_cnn": ..., "lstm": ...}` (from `load_allennlp` or `init_bilm`).
      config: the model config.
      char_ids: int[B, T, max_characters_per_token] from `batch_to_ids`, without `<S>`/`</S>`.
      state: None for stateless use (zero initial state; each sentence's result is independent
        of its batch), or the `new_state` of a previous call to continue each row.

    Returns:
      `(layers, mask, new_state)`: `config.num_output_layers` arrays float[B, T + 2, 2P]
      (P = projection_dim) including `<S>` at step 0 and `</S>` after each row's last token;
      mask bool[B, T + 2]; new_state `{"h": float[L, 2, B', P], "c": float[L, 2, B', C]}`
      with B' = max(B, rows of the given state).
    """
    if state is not None:
        _check_state(state, config)  # before any work
    token_embedding, mask = embed_characters(params, config, char_ids)
    return bilm_apply_embedded(params, config, token_embedding, mask, state)


def _check_state(state: State, config: BiLMConfig) -> State:
    if not isinstance(state, dict) or set(state) != {"h", "c"}:
        raise ValueError("state must be the dict {'h', 'c'} returned by a previous call")
    want_h = (config.n_layers, 2, config.projection_dim)
    want_c = (config.n_layers, 2, config.dim)
    h, c = state["h"], state["c"]
    if (
        h.ndim != 4
        or c.ndim != 4
        or h.shape[2] != c.shape[2]
        or (h.shape[:2] + h.shape[3:], c.shape[:2] + c.shape[3:]) != (want_h, want_c)
    ):
        raise ValueError(
            f"state shapes h{tuple(h.shape)} c{tuple(c.shape)} do not fit this model "
            f"(expected h[{want_h[0]}, 2, batch, {want_h[2]}], "
            f"c[{want_c[0]}, 2, batch, {want_c[2]}])"
        )
    return state
