"""ELMo's stacked bidirectional LSTM with projection (TensorFlow `LSTMCell(num_proj=...)`).

One cell step, for memory size C = `config.dim` and output size P = `config.projection_dim`:

    z = x @ w_x + h @ w_h + b                 # gate order i, j, f, o (TensorFlow's)
    c = sigmoid(f + forget_bias) * c + sigmoid(i) * tanh(j)
    c = clip(c, +-cell_clip)
    h = clip((sigmoid(o) * tanh(c)) @ w_p, +-proj_clip)

No peepholes. The forward and backward directions have separate weights (bilm-tf `RNN_0` and
`RNN_1`) and never mix inside the stack; they are run *together* here: every tensor carries a
leading direction axis of size 2, so one `lax.scan` advances both (half the sequential steps, and
batched matmuls instead of two small ones). The backward direction reads each row reversed within
its own length (`reverse_padded`), so padding is never read before real tokens.

Parameters, per layer `l` (`"layer_{l}"`), direction axis first (0 = forward, 1 = backward):

    {"w_x": float[2, in, 4C], "w_h": float[2, P, 4C], "b": float[2, 4C], "w_p": float[2, C, P]}

(`w_x`/`w_h` are the input and recurrent halves of bilm-tf's `W_0`; `w_p` is `W_P_0`, absent
when projection_dim == dim.) The stored bias excludes the forget bias, as in the hdf5 files.

State, the carry between calls in stateful mode: `{"h": float[L, 2, B, P], "c": float[L, 2, B, C]}`.

Mixed precision (`config.compute_dtype="bfloat16"`): the input, recurrent and projection matmuls
take bfloat16 operands (the weights cast once per call, outside the scan) and accumulate in
float32; gates, clipping, the state and the outputs stay float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from elmo_jax.model.config import BiLMConfig
from ulmfit_jax.core.nn import precision
from ulmfit_jax.core.nn.lstm import reverse_padded, run_recurrence, step_mask

Params = dict
State = dict


def zero_state(config: BiLMConfig, batch: int, dtype=jnp.float32) -> State:
    """The all-zero state for `batch` rows."""
    shape = (config.n_layers, 2, batch)
    return {
        "h": jnp.zeros((*shape, config.projection_dim), dtype),
        "c": jnp.zeros((*shape, config.dim), dtype),
    }


def _make_step(config: BiLMConfig):
    """The cell step for `run_recurrence`, clip values and projection baked in (static)."""
    cell_clip, proj_clip = config.cell_clip, config.proj_clip
    project = config.has_lstm_projection
    dtype = precision.compute_dtype(config.compute_dtype)

    def step(weights, carry, gates_x):
        # weights: (w_h [2, P, 4C], w_p [2, C, P] or None); carry: (h [2, B, P], c [2, B, C]);
        # gates_x: [2, B, 4C], the hoisted `x @ w_x + b` with the forget bias already added.
        w_h, w_p = weights
        h, c = carry
        z = gates_x + precision.einsum("dbp,dpg->dbg", h, w_h, dtype)
        i, j, f, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(j)
        if cell_clip:  # None or 0 means no clipping (AllenNLP's reading of the option)
            c = jnp.clip(c, -cell_clip, cell_clip)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        if project:
            h = precision.einsum("dbc,dcp->dbp", h, w_p, dtype)
            if proj_clip:
                h = jnp.clip(h, -proj_clip, proj_clip)
        return (h, c), h

    return step


def bilstm_apply(
    params: Params,
    config: BiLMConfig,
    inputs: jax.Array,
    lengths: jax.Array,
    state: State,
) -> tuple[list[jax.Array], State]:
    """Run the stacked biLSTM over a batch.

    Args:
      params: `{"layer_0": ..., "layer_{L-1}": ...}` (module docstring).
      config: the model config.
      inputs: float[B, T, P], the token embeddings (boundary tokens included).
      lengths: int[B], real lengths; steps at or past a row's length are padding.
      state: `{"h": float[L, 2, B, P], "c": float[L, 2, B, C]}`, each row's initial state.

    Returns:
      `(outputs, new_state)`: outputs is a list of L arrays float[B, T, 2P] (forward half, then
      backward half; zero at padded steps); new_state holds each row's state after its last real
      token (forward) and after its first token (backward, which reads right to left).
    """
    time = inputs.shape[1]
    mask = step_mask(lengths, time)  # [T, B]; broadcasts over the direction axis in the scan
    # Direction-local time order: row b of direction 1 holds its tokens last to first.
    x = jnp.stack([inputs, reverse_padded(inputs, lengths)])  # [2, B, T, in]
    ys, new_state = bilstm_directional(params, config, x, state, mask=mask)
    outputs = [jnp.concatenate([y[0], reverse_padded(y[1], lengths)], axis=-1) for y in ys]
    return outputs, new_state


def bilstm_directional(
    params: Params,
    config: BiLMConfig,
    x: jax.Array,
    state: State,
    *,
    mask: jax.Array | None = None,
    dropout: float = 0.0,
    rng: jax.Array | None = None,
) -> tuple[list[jax.Array], State]:
    """The stacked biLSTM on inputs already in each direction's reading order.

    `bilstm_apply` builds the backward input by reversing each row; biLM *training* instead
    feeds the backward direction its own stream (bilm-tf's reversed sentences), so both
    directions arrive here ready to read left to right.

    Args:
      params: `{"layer_0": ..., "layer_{L-1}": ...}` (module docstring).
      config: the model config.
      x: float[2, B, T, P]: direction 0 the forward inputs, direction 1 the backward ones, each
        in its own reading order.
      state: `{"h": float[L, 2, B, P], "c": float[L, 2, B, C]}`.
      mask: bool[T, B] (True at real steps) or None when every step is real.
      dropout: bilm-tf's training dropout on each layer's *input* (TensorFlow's
        `DropoutWrapper(input_keep_prob=1 - dropout)`, a fresh mask per element and step). The
        residual connection adds the dropped input, as `DropoutWrapper(ResidualWrapper(cell))`
        does. 0 (inference) draws nothing.
      rng: the dropout key; needed when `dropout > 0`.

    Returns:
      `(outputs, new_state)`: a list of L arrays float[2, B, T, P] in each direction's reading
      order (zero at masked steps), and the state after each row's last real step.
    """
    if dropout > 0.0 and rng is None:
        raise ValueError("dropout > 0 needs an rng")
    keys = jax.random.split(rng, config.n_layers) if dropout > 0.0 else [None] * config.n_layers
    step = _make_step(config)
    dtype = precision.compute_dtype(config.compute_dtype)
    forget = np.zeros(4 * config.dim, np.float32)
    forget[2 * config.dim : 3 * config.dim] = config.forget_bias
    outputs, hs, cs = [], [], []
    for layer in range(config.n_layers):
        p = params[f"layer_{layer}"]
        if keys[layer] is not None:
            keep = jax.random.bernoulli(keys[layer], 1.0 - dropout, x.shape)
            x = jnp.where(keep, x / (1.0 - dropout), 0.0)
        bias = p["b"] + forget  # [2, 4C]
        # The input half of W_0 for every step at once, produced time-major for the scan.
        gates_x = precision.einsum("dbti,dig->tdbg", x, p["w_x"], dtype) + bias[None, :, None, :]
        carry = (state["h"][layer], state["c"][layer])
        weights = (p["w_h"], p.get("w_p"))  # cast to the compute dtype once, before the scan
        ys, (h, c) = run_recurrence(step, weights, gates_x, carry, mask, compute_dtype=dtype)
        y = jnp.transpose(ys, (1, 2, 0, 3))  # [2, B, T, P]
        if config.use_skip_connections and layer > 0:
            # Residual from the layer input (zero at padding, as the outputs are) to its output;
            # the sum is also what the next layer reads. The carried h stays the raw cell output.
            y = y + x
        x = y
        outputs.append(y)
        hs.append(h)
        cs.append(c)
    return outputs, {"h": jnp.stack(hs), "c": jnp.stack(cs)}
