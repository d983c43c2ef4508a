"""A functional LSTM layer: the input projection hoisted out of the loop, then a recurrence.

Shared by the AWD-LSTM (ULMFiT) and the ELMo biLM. Everything is a pure function of plain pytrees.
The pieces live one idea per file: the cell and the generic masked scan (`lstm_cell`), the
custom-VJP recurrence (`lstm_recurrence`), cuDNN's fused LSTM (`cudnn_lstm`); this module picks
one (`lstm_layer(..., impl=...)`) and re-exports the public names.

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
  autodiff for the AWD-LSTM LM step (see STACK_NOTES and `benchmarks/profile_lstm.py`).
  On CPU its loops keep the state feature-major (`[hidden, batch]`), so each step's matmul is
  `w_hh.T @ h`, which XLA:CPU runs 8-20% faster at batch 32-64 (`feature_major_default`).
* Mixed precision is a `compute_dtype` argument (`lstm_layer`, `lstm_recurrence`,
  `run_recurrence`, `precision.einsum`): with `jnp.bfloat16` the matmul operands are rounded to bf16
  and accumulated in float32; gate nonlinearities, the cell state, the carry and the outputs stay
  float32. None (or float32) is the plain float32 path. `lstm_impl="cudnn"` (NVIDIA GPUs) lives
  in `ulmfit_jax.core.nn.cudnn_lstm`.

Per-row `lengths` mark padding at the end of each row: at a padded step the carry is left
unchanged and the output is zero, so a row's final carry is its state after its last real token.
`reverse=True` reads each row backwards *within its own length*, so padding never leaks in.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ulmfit_jax.core.nn import cudnn_lstm, precision
from ulmfit_jax.core.nn.lstm_cell import (
    Carry,
    Params,
    init_lstm_params,
    lstm_cell,
    reverse_padded,
    run_recurrence,
    step_mask,
    zero_carry,
)
from ulmfit_jax.core.nn.lstm_recurrence import feature_major_default, lstm_recurrence

__all__ = [
    "IMPLS",
    "Carry",
    "Params",
    "feature_major_default",
    "init_lstm_params",
    "lstm_cell",
    "lstm_layer",
    "lstm_recurrence",
    "reverse_padded",
    "run_recurrence",
    "step_mask",
    "zero_carry",
]

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
        LSTM on NVIDIA GPUs, `ulmfit_jax.core.nn.cudnn_lstm`; float32 only; a clear error
        elsewhere).
      compute_dtype: None or `jnp.float32` (the float32 path, unchanged), or e.g. `jnp.bfloat16`:
        mixed precision. The matmul operands (`x`, `w_ih`, `h`, `w_hh`) are cast to it and
        accumulated in float32; the gate nonlinearities, the cell state, the carry and the
        outputs are float32.

    Returns:
      `(outputs, (h, c))`: outputs float[batch, time, hidden], zero at padded steps; the final
      carry is each row's state after its last real step.
    """
    if impl == "cudnn":
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
    gates_x = precision.einsum("tbi,ig->tbg", inputs_tm, params["w_ih"], compute_dtype)
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
