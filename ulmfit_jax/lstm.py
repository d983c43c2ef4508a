"""A functional LSTM: one cell step and a layer that scans it over time with `lax.scan`.

Shared by the AWD-LSTM (ULMFiT) and the ELMo biLM. Everything is a pure function of plain pytrees.

Weight layout (one layer), chosen so that PyTorch / fastai tensors map by a transpose only:

    params = {
        "w_ih": float[input_size, 4 * hidden],   # = torch weight_ih_l0.T
        "w_hh": float[hidden, 4 * hidden],       # = torch weight_hh_l0.T
        "bias": float[4 * hidden],               # = torch bias_ih_l0 + bias_hh_l0
    }

Gate order along the `4 * hidden` axis is PyTorch's: input, forget, cell (g), output.

Carry order is PyTorch's too: `(h, c)`, each `float[batch, hidden]`.

Three facts shape the code:

* The input projection `x @ w_ih + bias` does not depend on the recurrence, so it is done for all
  time steps at once as one large matmul before the scan; only `h @ w_hh` stays inside the loop.
  The inputs are made time-major first (a copy of `[batch, time, in]`, the smallest tensor
  involved), so the projection and both of its gradients are plain row-major matmuls over
  `time * batch` rows that produce the `[time, batch, 4 * hidden]` gates without a transpose.
* Autodiff through `lax.scan` stores and replays more than it needs. The recurrence therefore has a
  hand-written VJP (`lstm_recurrence`): the forward loop saves only the carries `h`, `c` and the
  gate activations of each step; the backward loop does the per-step gate algebra and
  `dgates @ w_hh.T` (with `w_hh.T` made once, outside the loop); the weight gradient `dw_hh` is a
  single einsum over all steps after the loop. On a 2-core CPU that is ~1.4x faster than
  autodiff for the AWD-LSTM LM step (see STACK_NOTES and `scripts/profile_lstm.py`).
  On CPU its loops keep the state feature-major (`[hidden, batch]`), so each step's matmul is
  `w_hh.T @ h`, which XLA:CPU runs 8-20% faster at batch 32-64 (`feature_major_default`).
* Mixed precision is a `compute_dtype` argument (`lstm_layer`, `lstm_recurrence`,
  `run_recurrence`, `mp_einsum`): with `jnp.bfloat16` the matmul operands are rounded to bf16 and
  accumulated in float32; gate nonlinearities, the cell state, the carry and the outputs stay
  float32. None (or float32) is the plain float32 path. `lstm_impl="cudnn"` (NVIDIA GPUs) lives
  in `ulmfit_jax.cudnn_lstm`.

Per-row `lengths` mark padding at the end of each row: at a padded step the carry is left
unchanged and the output is zero, so a row's final carry is its state after its last real token.
`reverse=True` reads each row backwards *within its own length*, so padding never leaks in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ulmfit_jax import precision

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


def mp_einsum(subscripts: str, *operands: jax.Array, compute_dtype=None) -> jax.Array:
    """`jnp.einsum` with the mixed-precision convention of this module.

    `compute_dtype=None` is exactly `jnp.einsum(subscripts, *operands)`. Otherwise every operand
    is cast to `compute_dtype` (e.g. `jnp.bfloat16`) and the products are accumulated and
    returned in float32 (`preferred_element_type=jnp.float32`). Casting an operand that already
    has `compute_dtype` is free, so weights may be cast once outside a loop.
    """
    compute_dtype = precision.compute_dtype(compute_dtype)
    if compute_dtype is None:
        return jnp.einsum(subscripts, *operands)
    return precision.low_precision_dot(
        functools.partial(jnp.einsum, subscripts), operands, compute_dtype
    )


def _matmul(a: jax.Array, b: jax.Array, compute_dtype) -> jax.Array:
    """`a @ b`, or with `compute_dtype` operands and float32 accumulation (see `mp_einsum`)."""
    if compute_dtype is None:
        return a @ b
    return precision.low_precision_dot(jnp.matmul, (a, b), compute_dtype)


def lstm_cell(
    w_hh: jax.Array, carry: Carry, gates_x: jax.Array, compute_dtype=None
) -> tuple[Carry, jax.Array]:
    """One LSTM step, given the input projection already computed.

    Args:
      w_hh: float[hidden, 4 * hidden].
      carry: `(h, c)`, float[batch, hidden] each.
      gates_x: float[batch, 4 * hidden], `x_t @ w_ih + bias`.
      compute_dtype: None, or the dtype of the `h @ w_hh` operands (see `mp_einsum`); the gate
        math and `c` stay in the carry's dtype.

    Returns:
      `((h, c), h)`: the new carry and the output (the new `h`).
    """
    h, c = carry
    gates = gates_x + _matmul(h, w_hh, compute_dtype)
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
        with `mp_einsum(..., compute_dtype=compute_dtype)` (float32 accumulation) and keep its
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


# --------------------------------------------------------------------------------------------
# The LSTM recurrence with a hand-written VJP.
# --------------------------------------------------------------------------------------------


# `lax.scan` unroll of the recurrence loops (forward and backward).
UNROLL = 1


def feature_major_default() -> bool:
    """Whether the recurrence keeps its state feature-major (`[hidden, batch]`): on CPU only.

    XLA:CPU multiplies `w_hh.T[4H, H] @ h.T[H, batch]` 8-20% faster than `h[batch, H] @
    w_hh[H, 4H]` at batch 32-64 (its GEMM packs the small batch dimension better as the
    column count; `scripts/profile_lstm.py layout` measures it). On GPU and TPU the batch-major
    form is the natural one: TPU tiles want the minor dimension to be wide, which a batch of 32
    is not. The choice changes no result beyond float32 rounding.
    """
    return jax.default_backend() == "cpu"


class _Layout:
    """Where the gate axis lies in the loop's per-step tensors.

    Batch-major: `h, c: [batch, H]`, gates `[batch, 4H]`, the step matmul `h @ w_hh`.
    Feature-major: `h, c: [H, batch]`, gates `[4H, batch]`, the step matmul `w_hh.T @ h`.
    Scan inputs and outputs keep their callers' batch-major `[time, batch, ...]` layout; the
    per-step transposes fuse into the elementwise gate math.
    """

    def __init__(self, feature_major: bool):
        self.feature_major = feature_major
        self.gate_axis = 0 if feature_major else -1

    def step(self, x):
        """A per-step tensor `[batch, n]` in the loop's layout (and back: it is an involution)."""
        return x.T if self.feature_major else x

    def steps(self, xs):
        """Stacked per-step tensors `[time, ...]` from the loop's layout to `[time, batch, n]`."""
        return jnp.swapaxes(xs, 1, 2) if self.feature_major else xs

    def row_mask(self, m):
        """bool[batch] -> broadcastable against the loop's `[batch, n]` / `[n, batch]`."""
        return m[None, :] if self.feature_major else m[:, None]

    def split(self, z):
        return jnp.split(z, 4, axis=self.gate_axis)

    def concat(self, parts):
        return jnp.concatenate(parts, axis=self.gate_axis)

    def recurrent_weight(self, w_hh, compute_dtype, backward=False):
        """The loop's matmul operand, transposed and cast once outside the loop."""
        w = w_hh if self.feature_major == backward else w_hh.T
        return w if compute_dtype is None else w.astype(compute_dtype)

    def matmul(self, w, x, compute_dtype):
        """`x @ w` (batch-major) or `w @ x` (feature-major), w from `recurrent_weight`."""
        if self.feature_major:
            return _matmul(w, x, compute_dtype)
        return _matmul(x, w, compute_dtype)


def _gate_activations(z, layout):
    """Pre-activations (i, f, g, o along the layout's gate axis) -> the four activations."""
    zi, zf, zg, zo = layout.split(z)
    return jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)


def _forward_scan(gates_x, w_hh, h0, c0, mask, compute_dtype, layout):
    """The forward loop. Returns the carries after every step, `hs` and `cs` (time-major; equal
    to the previous step's at masked steps), and the gate activations `ifgo` per step, all in
    the loop's layout (`[time, batch, n]` or `[time, n, batch]`)."""
    w = layout.recurrent_weight(w_hh, compute_dtype)

    def body(carry, xs):
        h_prev, c_prev = carry
        gx, m = xs
        i, f, g, o = _gate_activations(
            layout.step(gx) + layout.matmul(w, h_prev, compute_dtype), layout
        )
        c = f * c_prev + i * g
        h = o * jnp.tanh(c)
        if m is not None:
            keep = layout.row_mask(m)
            h = jnp.where(keep, h, h_prev)
            c = jnp.where(keep, c, c_prev)
        return (h, c), (h, c, layout.concat([i, f, g, o]))

    carry = (layout.step(h0), layout.step(c0))
    _, (hs, cs, ifgo) = jax.lax.scan(body, carry, (gates_x, mask), unroll=UNROLL)
    return hs, cs, ifgo


def _outputs(hs, mask, layout):
    """The layer's outputs `[time, batch, H]`: the carried `h` at real steps, zero at masked."""
    hs = layout.steps(hs)
    return hs if mask is None else jnp.where(mask[..., None], hs, jnp.zeros_like(hs))


def _results(hs, cs, mask, layout):
    """`(outputs, h_final, c_final)` in the callers' batch-major layout."""
    return _outputs(hs, mask, layout), layout.step(hs[-1]), layout.step(cs[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _lstm_recurrence(compute_dtype, feature_major, gates_x, w_hh, h0, c0, mask):
    layout = _Layout(feature_major)
    hs, cs, _ = _forward_scan(gates_x, w_hh, h0, c0, mask, compute_dtype, layout)
    return _results(hs, cs, mask, layout)


def _recurrence_fwd(compute_dtype, feature_major, gates_x, w_hh, h0, c0, mask):
    layout = _Layout(feature_major)
    hs, cs, ifgo = _forward_scan(gates_x, w_hh, h0, c0, mask, compute_dtype, layout)
    return _results(hs, cs, mask, layout), (w_hh, mask, h0, c0, hs, cs, ifgo)


def _recurrence_bwd(compute_dtype, feature_major, residuals, cotangents):
    layout = _Layout(feature_major)
    w_hh, mask, h0, c0, hs, cs, ifgo = residuals
    d_ys, d_h_final, d_c_final = cotangents
    w_back = layout.recurrent_weight(w_hh, compute_dtype, backward=True)
    # The carry entering each step: what a step's gradient needs (c) and dw_hh needs (h).
    c_prevs = jnp.concatenate([layout.step(c0)[None], cs[:-1]], axis=0)

    def body(carry, xs):
        dh, dc = carry
        dy, c, c_prev, act, m = xs
        i, f, g, o = layout.split(act)
        tanh_c = jnp.tanh(c)
        dh_new = dh + layout.step(dy)
        dc_new = dc
        if m is not None:
            # At a masked step the carry passed straight through, and so does its gradient.
            keep = layout.row_mask(m)
            dh_new = jnp.where(keep, dh_new, 0.0)
            dc_new = jnp.where(keep, dc_new, 0.0)
        dc_total = dc_new + dh_new * o * (1.0 - tanh_c * tanh_c)
        dz = layout.concat(
            [
                dc_total * g * i * (1.0 - i),
                dc_total * c_prev * f * (1.0 - f),
                dc_total * i * (1.0 - g * g),
                dh_new * tanh_c * o * (1.0 - o),
            ]
        )
        dh_prev = layout.matmul(w_back, dz, compute_dtype)
        dc_prev = dc_total * f
        if m is not None:
            dh_prev = jnp.where(keep, dh_prev, dh)
            dc_prev = jnp.where(keep, dc_prev, dc)
        # The gate gradients leave the loop batch-major, as the input projection's VJP wants.
        return (dh_prev, dc_prev), layout.step(dz)

    xs = (d_ys, cs, c_prevs, ifgo, mask)
    carry = (layout.step(d_h_final), layout.step(d_c_final))
    (dh0, dc0), d_gates = jax.lax.scan(body, carry, xs, reverse=True, unroll=UNROLL)
    h_prevs = jnp.concatenate([h0[None], layout.steps(hs[:-1])], axis=0)
    d_w_hh = mp_einsum("tbh,tbg->hg", h_prevs, d_gates, compute_dtype=compute_dtype)
    return d_gates, d_w_hh.astype(w_hh.dtype), layout.step(dh0), layout.step(dc0), None


_lstm_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def lstm_recurrence(gates_x, w_hh, h0, c0, mask, *, compute_dtype=None, feature_major=None):
    """The LSTM recurrence over precomputed input projections (time-major), fast to differentiate.

    Args:
      gates_x: float[time, batch, 4 * hidden], `x @ w_ih + bias` for every step.
      w_hh: float[hidden, 4 * hidden].
      h0, c0: float[batch, hidden], the initial carry.
      mask: bool[time, batch] or None (see `run_recurrence`). Not differentiated.
      compute_dtype: None / float32, or e.g. `jnp.bfloat16` for the operands of `h @ w_hh` (and
        of the backward matmuls), accumulated in float32; the gate math, `c` and the carry stay
        in the dtype of `gates_x` / `h0` / `c0` (float32).
      feature_major: the loop's internal layout; None picks `feature_major_default()`. Inputs
        and outputs are batch-major either way.

    Returns:
      `(outputs, h_final, c_final)`; outputs float[time, batch, hidden] (zero at padded steps).
    """
    if feature_major is None:
        feature_major = feature_major_default()
    return _lstm_recurrence(
        precision.compute_dtype(compute_dtype), bool(feature_major), gates_x, w_hh, h0, c0, mask
    )


IMPLS = ("custom_vjp", "autodiff", "cudnn")


def lstm_layer(
    params: Params,
    inputs: jax.Array,
    carry: Carry | None = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    impl: str = "custom_vjp",
    compute_dtype=None,
) -> tuple[jax.Array, Carry]:
    """Run one LSTM layer over a batch of sequences.

    Args:
      params: `{"w_ih", "w_hh", "bias"}` (see the module docstring). Weight dropout, if any, is
        applied by the caller to `w_hh` before calling, so one mask serves every time step.
      inputs: float[batch, time, input_size].
      carry: `(h, c)` float[batch, hidden] each; None means zeros.
      lengths: int[batch] real lengths (padding at the end), or None when every row is full.
      reverse: read each row from its last real step back to its first. Outputs stay aligned
        with `inputs` (output t belongs to input t).
      impl: "custom_vjp" (fast gradients, the default), "autodiff" (plain `lax.scan` through
        `lstm_cell`; the reference the custom VJP is tested against) or "cudnn" (cuDNN's fused
        LSTM on NVIDIA GPUs, `ulmfit_jax.cudnn_lstm`; float32 only; a clear error elsewhere).
      compute_dtype: None or `jnp.float32` (the float32 path, unchanged), or e.g. `jnp.bfloat16`:
        mixed precision. The matmul operands (`x`, `w_ih`, `h`, `w_hh`) are cast to it and
        accumulated in float32; the gate nonlinearities, the cell state, the carry and the
        outputs are float32.

    Returns:
      `(outputs, (h, c))`: outputs float[batch, time, hidden], zero at padded steps; the final
      carry is each row's state after its last real step.
    """
    if impl == "cudnn":
        from ulmfit_jax import cudnn_lstm  # a leaf module that imports this one

        return cudnn_lstm.cudnn_lstm_layer(
            params, inputs, carry, lengths=lengths, reverse=reverse, compute_dtype=compute_dtype
        )
    compute_dtype = precision.compute_dtype(compute_dtype)
    batch, time = inputs.shape[:2]
    hidden = params["w_hh"].shape[0]
    state_dtype = inputs.dtype if compute_dtype is None else jnp.float32
    if carry is None:
        carry = zero_carry(batch, hidden, state_dtype)
    elif compute_dtype is not None:
        carry = (carry[0].astype(jnp.float32), carry[1].astype(jnp.float32))
    if reverse:
        inputs = reverse_padded(inputs, lengths)
    # One big matmul for every step's input projection, on time-major inputs (module docstring):
    # it and its gradients are plain row-major matmuls, and the gates come out in scan order.
    inputs_tm = jnp.swapaxes(inputs, 0, 1)
    gates_x = mp_einsum("tbi,ig->tbg", inputs_tm, params["w_ih"], compute_dtype=compute_dtype)
    gates_x = gates_x + params["bias"]
    mask = step_mask(lengths, time)
    if impl == "custom_vjp":
        outputs_tm, h, c = lstm_recurrence(
            gates_x, params["w_hh"], carry[0], carry[1], mask, compute_dtype=compute_dtype
        )
        carry = (h, c)
    elif impl == "autodiff":
        step = functools.partial(lstm_cell, compute_dtype=compute_dtype)
        outputs_tm, carry = run_recurrence(
            step, params["w_hh"], gates_x, carry, mask, compute_dtype=compute_dtype
        )
    else:
        raise ValueError(f"unknown LSTM impl {impl!r}; expected one of {IMPLS}")
    outputs = jnp.swapaxes(outputs_tm, 0, 1)
    if reverse:
        outputs = reverse_padded(outputs, lengths)
    return outputs, carry
