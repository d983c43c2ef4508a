"""`lstm_impl="cudnn"`: one LSTM layer through cuDNN (`jax.experimental.rnn`), on NVIDIA GPUs.

`jax.experimental.rnn.lstm` binds cuDNN's fused RNN kernels (forward and backward) and takes
all weights as one flat vector in cuDNN's layout, per (pseudo-)layer

    W_ih [4H, in], W_hh [4H, H], then b_ih [4H], b_hh [4H]

with PyTorch's gate order (i, f, g, o) and row-major flattening. Our parameters are PyTorch's
transposed with the two biases summed (`ulmfit_jax.core.nn.lstm`), so `pack_weights` transposes back
and passes the summed bias as `b_ih` with a zero `b_hh`. It runs inside the traced function, on the
weights as given: the weight-dropped `W_hh` of a training step is packed fresh each call, and
gradients flow back through the packing to `w_ih`, `w_hh` and `bias`.

What it handles: per-row `lengths` (cuDNN's padded layout with sequence lengths: outputs are
zero past a row's length and the final carry is the state after its last real step, as in
`lstm_layer`), `reverse=True` (rows are reversed within their lengths around the call, as in
`lstm_layer`), any initial carry. What it refuses, with a `ValueError`/`RuntimeError` naming
the alternative: a backend other than CUDA (the primitive has no CPU or TPU lowering; ROCm's
MIOpen lowering exists in JAX but is untested here), a `compute_dtype` other than float32
(`jax.experimental.rnn` has no bfloat16 path), non-float32 inputs, and rows of length 0 (cuDNN
requires lengths >= 1).

On CPU, `cudnn_lstm_layer(..., reference=True)` runs the same packed weights through
`jax.experimental.rnn.lstm_ref` (JAX's pure-JAX model of the cuDNN kernel, unpacked with its own
`unpack_lstm_weights`): that is how the tests check the packing without a GPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ulmfit_jax.core.nn import lstm_cell, precision

try:
    from jax.experimental import rnn as _rnn
except ImportError:  # pragma: no cover (present in every jax this project supports)
    _rnn = None


def pack_weights(params: lstm_cell.Params) -> jax.Array:
    """Our `{"w_ih", "w_hh", "bias"}` as cuDNN's flat weight vector (one unidirectional layer).

    Returns float32[4H * (in + H) + 8H]: `W_ih` (= w_ih.T), `W_hh` (= w_hh.T), `b_ih` (= bias)
    and `b_hh` (= zeros), each flattened row-major.
    """
    w_ih, w_hh, bias = params["w_ih"], params["w_hh"], params["bias"]
    return jnp.concatenate(
        [w_ih.T.reshape(-1), w_hh.T.reshape(-1), bias, jnp.zeros_like(bias)], axis=0
    )


def check_available() -> None:
    """Raise a `RuntimeError` unless cuDNN's LSTM can run on the default backend."""
    backend = jax.default_backend()
    if _rnn is None or backend != "gpu":
        raise RuntimeError(
            f"lstm_impl='cudnn' needs an NVIDIA GPU (cuDNN through jax.experimental.rnn); the "
            f"default JAX backend here is {backend!r}. Use lstm_impl='custom_vjp' (the fast "
            "default on CPU and TPU) instead."
        )


def cudnn_lstm_layer(
    params: lstm_cell.Params,
    inputs: jax.Array,
    carry: lstm_cell.Carry | None = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    compute_dtype=None,
    reference: bool = False,
) -> tuple[jax.Array, lstm_cell.Carry]:
    """`ulmfit_jax.core.nn.lstm.lstm_layer` (same arguments, same results) computed by cuDNN.

    Args:
      params, inputs, carry, lengths, reverse: as `ulmfit_jax.core.nn.lstm.lstm_layer`.
      compute_dtype: must be None or float32 (cuDNN's binding has no bfloat16 path).
      reference: run `jax.experimental.rnn.lstm_ref` on the packed weights instead of cuDNN
        (any backend; slow; for tests).

    Returns:
      `(outputs, (h, c))`: outputs float32[batch, time, hidden], zero at padded steps.
    """
    if precision.compute_dtype(compute_dtype) is not None:
        raise ValueError(
            f"lstm_impl='cudnn' computes in float32 only, got compute_dtype={compute_dtype!r}; "
            "use lstm_impl='custom_vjp' for mixed precision."
        )
    if inputs.dtype != jnp.float32:
        raise ValueError(f"lstm_impl='cudnn' needs float32 inputs, got {inputs.dtype}")
    if not reference:
        check_available()
    batch, time, n_in = inputs.shape
    hidden = params["w_hh"].shape[0]
    if carry is None:
        carry = lstm_cell.zero_carry(batch, hidden, inputs.dtype)
    if lengths is None:
        seq_lengths = jnp.full((batch,), time, jnp.int32)
    else:
        seq_lengths = jnp.asarray(lengths).astype(jnp.int32)
        try:
            too_short = bool(np.any(np.asarray(lengths) < 1))
        except jax.errors.TracerArrayConversionError:  # traced: cannot be checked here
            too_short = False
        if too_short:
            raise ValueError("lstm_impl='cudnn' needs every row's length >= 1 (cuDNN's rule)")
    if reverse:
        inputs = lstm_cell.reverse_padded(inputs, lengths)
    weights = pack_weights(params)
    h0, c0 = carry[0][None], carry[1][None]  # [num_layers * directions = 1, batch, hidden]
    sizes = dict(input_size=n_in, hidden_size=hidden, num_layers=1, dropout=0.0)
    if reference:
        w_ih, w_hh, b_ih, b_hh = _rnn.unpack_lstm_weights(weights, n_in, hidden, 1, False)
        outputs, h, c = _rnn.lstm_ref(
            inputs, h0, c0, w_ih, w_hh, b_ih, b_hh, seq_lengths, n_in, hidden, 1, 0.0, False
        )
    else:
        outputs, h, c = _rnn.lstm(
            inputs, h0, c0, weights, seq_lengths, bidirectional=False, **sizes
        )
    if reverse:
        outputs = lstm_cell.reverse_padded(outputs, lengths)
    return outputs, (h[0], c[0])
