"""Mixed precision: bfloat16 matmuls, float32 parameters, accumulation, statistics and losses.

A model config names its compute dtype as a string, "float32" (the default) or "bfloat16", so it
stays hashable (a `jit` static argument) and JSON-serialisable (export metadata). Parameters and
optimiser state are always float32; a bfloat16 model casts weights and activations to bfloat16
at each matmul (or convolution), accumulates in float32 (`preferred_element_type`) and keeps
everything else in float32: biases, gate nonlinearities, recurrent state, BatchNorm statistics,
logits, softmax and losses. The gradient of a cast is the cast back, so parameter gradients
arrive in float32.

`compute_dtype(name)` is None for float32, and every helper here then runs the exact float32
expression it replaces (no cast, no `preferred_element_type`): the float32 path is bit-identical
to the code before mixed precision existed.

    >>> dtype = compute_dtype("bfloat16")
    >>> y = matmul(x, w, dtype)          # bf16 x bf16 -> float32
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

FLOAT32 = "float32"
BFLOAT16 = "bfloat16"
COMPUTE_DTYPES = (FLOAT32, BFLOAT16)


def canonical_dtype(value: Any) -> str:
    """The config spelling of a compute dtype: "float32" or "bfloat16".

    Accepts those strings (any case) and dtype objects (`jnp.bfloat16`, `np.float32`, ...).
    """
    if value is None:
        return FLOAT32
    try:
        name = str(value).lower() if isinstance(value, str) else jnp.dtype(value).name
    except TypeError:
        name = str(value)
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {value!r}")
    return name


def compute_dtype(name: Any) -> Any:
    """The dtype matmul inputs are cast to: None for float32 (no casts at all), else bfloat16."""
    return None if canonical_dtype(name) == FLOAT32 else jnp.bfloat16


def cast(x: jax.Array, dtype: Any) -> jax.Array:
    """`x` in the compute dtype (unchanged when dtype is None)."""
    return x if dtype is None else x.astype(dtype)


def low_precision_dot(dot: Callable, operands: Sequence[jax.Array], dtype: Any) -> jax.Array:
    """`dot(*operands)` on operands rounded to `dtype`, accumulated and returned in float32.

    XLA's CPU backend lacks some bfloat16 x bfloat16 -> float32 dots (batched ones inside a
    loop fail with "Unsupported element type for DotThunk") and converts bfloat16 dots to
    float32 anyway, so on CPU the rounded operands go back to float32 and multiply there. The
    numbers are the same: a product of two bfloat16 values is exact in float32. The choice is
    made per platform when the function is lowered (`lax.platform_dependent`), so a function
    traced on a CPU host still uses real bfloat16 dots when compiled for a GPU or TPU.
    """
    rounded = [jnp.asarray(x).astype(dtype) for x in operands]
    return jax.lax.platform_dependent(
        *rounded,
        cpu=lambda *xs: dot(*(x.astype(jnp.float32) for x in xs)),
        default=lambda *xs: dot(*xs, preferred_element_type=jnp.float32),
    )


def matmul(x: jax.Array, w: jax.Array, dtype: Any) -> jax.Array:
    """`x @ w`; with a compute dtype, both operands in it and the result float32."""
    if dtype is None:
        return x @ w
    return low_precision_dot(jnp.matmul, (x, w), dtype)


def einsum(subscripts: str, x: jax.Array, w: jax.Array, dtype: Any) -> jax.Array:
    """`jnp.einsum(subscripts, x, w)`; with a compute dtype, operands cast, result float32."""
    if dtype is None:
        return jnp.einsum(subscripts, x, w)
    return low_precision_dot(functools.partial(jnp.einsum, subscripts), (x, w), dtype)
