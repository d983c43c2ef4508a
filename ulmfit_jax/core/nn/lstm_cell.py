"""One LSTM cell step and the generic masked scan: the pieces every LSTM path builds on.

Weight layout (one layer), chosen so that PyTorch / fastai tensors map by a transpose only:

    params = {
        "w_ih": float[input_size, 4 * hidden],   # = torch weight_ih_l0.T
        "w_hh": float[hidden, 4 * hidden],       # = torch weight_hh_l0.T
        "bias": float[4 * hidden],               # = torch bias_ih_l0 + bias_hh_l0
    }

Gate order along the `4 * hidden` axis is PyTorch's: input, forget, cell (g), output. Carry
order is PyTorch's too: `(h, c)`, each `float[batch, hidden]`.

Example:

    params = init_lstm_params(jax.random.key(0), input_size=8, hidden_size=16)
    carry = zero_carry(batch=4, hidden_size=16)
    gates_x = x_t @ params["w_ih"] + params["bias"]            # float[4, 64]
    carry, h = lstm_cell(params["w_hh"], carry, gates_x)        # h: float[4, 16]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ulmfit_jax.core.nn import precision

Carry = tuple[jax.Array, jax.Array]
Params = dict[str, jax.Array]


def init_lstm_params(rng: jax.Array, input_size: int, hidden_size: int) -> Params:
    """PyTorch's `nn.LSTM` initialisation: every tensor uniform in +-1/sqrt(hidden_size).

    PyTorch has two bias vectors; their sum (what we store) is a sum of two such uniforms.
    """
    bound = 1.0 / np.sqrt(hidden_size)
    k_ih, k_hh, k_b1, k_b2 = jax.random.split(rng, 4)
    gates = 4 * hidden_size

    def uniform(key, shape):
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound)

    return {
        "w_ih": uniform(k_ih, (input_size, gates)),
        "w_hh": uniform(k_hh, (hidden_size, gates)),
        "bias": uniform(k_b1, (gates,)) + uniform(k_b2, (gates,)),
    }


def zero_carry(batch: int, hidden_size: int, dtype=jnp.float32) -> Carry:
    """The all-zero `(h, c)` carry: `float[batch, hidden]` each."""
    # Two buffers, not one shared: a shared buffer cannot be donated twice to a jitted step.
    return jnp.zeros((batch, hidden_size), dtype), jnp.zeros((batch, hidden_size), dtype)


def lstm_cell(
    w_hh: jax.Array, carry: Carry, gates_x: jax.Array, compute_dtype=None
) -> tuple[Carry, jax.Array]:
    """One LSTM step, given the input projection already computed.

    Args:
      w_hh: float[hidden, 4 * hidden].
      carry: `(h, c)`, float[batch, hidden] each.
      gates_x: float[batch, 4 * hidden], `x_t @ w_ih + bias`.
      compute_dtype: None, or the dtype of the `h @ w_hh` operands (see `precision.einsum`);
        the gate math and `c` stay in the carry's dtype.

    Returns:
      `((h, c), h)`: the new carry and the output (the new `h`).
    """
    h, c = carry
    gates = gates_x + precision.matmul(h, w_hh, compute_dtype)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h


def step_mask(lengths: jax.Array | None, time: int) -> jax.Array | None:
    """bool[time, batch]: True where step t is a real token of row b (t < lengths[b])."""
    if lengths is None:
        return None
    return jnp.arange(time)[:, None] < lengths[None, :]


def reverse_padded(x: jax.Array, lengths: jax.Array | None) -> jax.Array:
    """Reverse each row of `x: [batch, time, ...]` within its first `lengths[b]` steps.

    Padding stays where it is (at the end), so reading the result left to right visits a row's
    real tokens last to first and never touches its padding before them. The map is its own
    inverse. With `lengths=None` every row is reversed whole.
    """
    if lengths is None:
        return jnp.flip(x, axis=1)
    time = x.shape[1]
    t = jnp.arange(time)[None, :]
    lengths = lengths[:, None]
    index = jnp.where(t < lengths, lengths - 1 - t, t)
    index = index.reshape(index.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, index, axis=1)


def run_recurrence(
    step: Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]],
    step_params: Any,
    inputs_tm: jax.Array,
    carry: Any,
    mask: jax.Array | None,
    *,
    compute_dtype=None,
) -> tuple[jax.Array, Any]:
    """Scan any cell `step(step_params, carry, x_t) -> (carry, y_t)` over time, honouring a mask.

    This is the generic (autodiff) path; ELMo's LSTM-with-projection uses it directly.

    Args:
      step: the cell.
      step_params: anything the cell needs (closed over, not scanned).
      inputs_tm: float[time, batch, features], time-major per-step inputs.
      carry: a pytree of float[batch, ...].
      mask: bool[time, batch] or None. Where False, the carry passes through unchanged and the
        output is zero.
      compute_dtype: None (or float32): nothing changes. Otherwise (e.g. `jnp.bfloat16`) the
        floating-point leaves of `step_params` are cast to it once, before the loop, so the
        cell's weights are not re-cast at every step. The cell itself must then do its matmuls
        with `precision.einsum` / `precision.matmul` (float32 accumulation) and keep its
        nonlinearities and carry in float32; `run_recurrence` does not touch the carry.

    Returns:
      `(outputs_tm, final_carry)` with outputs_tm float[time, batch, out].
    """
    compute_dtype = precision.compute_dtype(compute_dtype)
    if compute_dtype is not None:
        step_params = jax.tree.map(
            lambda w: w.astype(compute_dtype) if jnp.issubdtype(w.dtype, jnp.floating) else w,
            step_params,
        )

    def body(carry, xs):
        x_t, m_t = xs
        new_carry, y_t = step(step_params, carry, x_t)
        if m_t is None:
            return new_carry, y_t
        keep = m_t[:, None]
        new_carry = jax.tree.map(lambda new, old: jnp.where(keep, new, old), new_carry, carry)
        return new_carry, jnp.where(keep, y_t, jnp.zeros_like(y_t))

    final_carry, outputs = jax.lax.scan(body, carry, (inputs_tm, mask))
    return outputs, final_carry
