"""Input checks that turn bad input into a `ValueError` naming the problem.

Without them a wrong rank or an out-of-range id surfaces as an XLA shape error, or worse: JAX
clamps out-of-range gathers, so an id past the vocabulary would silently read the last row.
Checks on values run directly when the values are concrete; under `jax.jit` tracing the id
range check is compiled into the program (`ulmfit_jax.core.nn.id_checks`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ulmfit_jax.core.nn.id_checks import check_ids


def is_concrete(x) -> bool:
    """True when `x` holds actual values (numpy, a Python list, or a committed jax.Array)."""
    return not isinstance(x, jax.core.Tracer)


def check_tokens(tokens, vocab_size: int, name: str = "tokens") -> jax.Array:
    """Check a batch of token ids: int[batch, time], every id in `[0, vocab_size)`.

    Returns:
      the ids as an int32 jax array.
    """
    if not hasattr(tokens, "dtype"):
        tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"{name} must have rank 2 [batch, time], got shape {tuple(tokens.shape)}")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"{name} must hold integer ids, got dtype {tokens.dtype}")
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(tokens.shape)}")
    check_token_range(tokens, vocab_size, name)
    return jnp.asarray(tokens, jnp.int32)


def check_token_range(tokens, vocab_size: int, name: str = "tokens") -> None:
    """Every id in `[0, vocab_size)`: checked now for concrete ids, when the program runs for
    traced ones (under `jax.jit` / `nnx.jit`).

    Raises:
      ValueError: naming the ids outside the vocabulary (from inside jit: wrapped by JAX in a
        `JaxRuntimeError` when the result is read).
    """
    if not is_concrete(tokens):
        check_ids(tokens, vocab_size, name)
        return
    values = np.asarray(tokens)
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= vocab_size:
        bad = values[(values < 0) | (values >= vocab_size)]
        raise ValueError(
            f"{name} has ids outside the vocabulary [0, {vocab_size}): e.g. {bad[:5].tolist()}"
        )


def check_state(state, shapes: Sequence[tuple[int, int]], name: str = "state"):
    """Check a recurrent state: one `(h, c)` pair per layer, with the given `[batch, hidden]`."""
    if not isinstance(state, (tuple, list)) or len(state) != len(shapes):
        raise ValueError(
            f"{name} must be a sequence of {len(shapes)} (h, c) pairs, one per layer; "
            f"got {type(state).__name__}"
        )
    checked = []
    for layer, (pair, shape) in enumerate(zip(state, shapes, strict=True)):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{name}[{layer}] must be an (h, c) pair")
        for part, array in zip("hc", pair, strict=True):
            if tuple(array.shape) != tuple(shape):
                raise ValueError(
                    f"{name}[{layer}].{part} has shape {tuple(array.shape)}, expected "
                    f"{tuple(shape)} [batch, hidden]; a stream's state must match its batch size"
                )
        checked.append(tuple(pair))
    return tuple(checked)


def check_lengths(lengths, tokens_shape: tuple[int, ...], name: str = "lengths") -> jax.Array:
    """Check per-row lengths for right-padded `tokens_shape = (batch, time)`: int[batch] in
    `[0, time]`."""
    if not hasattr(lengths, "dtype"):
        lengths = np.asarray(lengths)
    batch, time = tokens_shape
    if lengths.ndim != 1 or lengths.shape[0] != batch:
        raise ValueError(f"{name} must be int[{batch}] (one per row), got shape {lengths.shape}")
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(f"{name} must be integers, got dtype {lengths.dtype}")
    if is_concrete(lengths):
        values = np.asarray(lengths)
        if values.min() < 0 or values.max() > time:
            raise ValueError(f"{name} must lie in [0, {time}], got {values.min()}..{values.max()}")
    return jnp.asarray(lengths, jnp.int32)
