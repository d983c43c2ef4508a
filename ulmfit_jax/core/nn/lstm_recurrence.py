"""The LSTM recurrence with a hand-written VJP (`lstm_recurrence`), the fast training path.

Autodiff through `lax.scan` stores and replays more than it needs. The forward loop here saves
only the carries `h`, `c` and the gate activations of each step; the backward loop does the
per-step gate algebra and `dgates @ w_hh.T` (with `w_hh.T` made once, outside the loop); the
weight gradient `dw_hh` is a single einsum over all steps after the loop. On a 2-core CPU that
is ~1.4x faster than autodiff for the AWD-LSTM LM step (see `benchmarks/profile_lstm.py`). On
CPU the loops keep the state feature-major (`[hidden, batch]`), so each step's matmul is
`w_hh.T @ h`, which XLA:CPU runs 8-20% faster at batch 32-64 (`feature_major_default`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ulmfit_jax.core.nn import precision

# `lax.scan` unroll of the recurrence loops (forward and backward).
UNROLL = 1


def feature_major_default() -> bool:
    """Whether the recurrence keeps its state feature-major (`[hidden, batch]`): on CPU only.

    XLA:CPU multiplies `w_hh.T[4H, H] @ h.T[H, batch]` 8-20% faster than `h[batch, H] @
    w_hh[H, 4H]` at batch 32-64 (its GEMM packs the small batch dimension better as the
    column count; `benchmarks/profile_lstm.py layout` measures it). On GPU and TPU the batch-major
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
            return precision.matmul(w, x, compute_dtype)
        return precision.matmul(x, w, compute_dtype)


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
    d_w_hh = precision.einsum("tbh,tbg->hg", h_prevs, d_gates, compute_dtype)
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
