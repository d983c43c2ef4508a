"""Out-of-range ids are an error, also inside `jax.jit`.

An embedding lookup (`jnp.take`) with an id past the table does not fail under JAX: it reads
NaN (`mode="fill"`) or clamps to the last row, and one optimiser step then spreads the NaN
through the whole table; a negative id silently wraps to a row from the end. Outside `jit` the
models check the concrete ids and raise a `ValueError`; inside, the values are not known when
the program is traced, so `check_ids` compiles the check into the program:

* a reduction over the ids (`any(ids < 0 | ids >= limit)`, with their min and max) handed to a
  `jax.debug.callback` that raises when it is true. The callback runs on every call (a
  `lax.cond` calling back only for a bad batch measured no cheaper on CPU);
* the callback raises `ValueError("tokens has ids outside [0, 100): min -1, max 7 (found
  inside jit)")`. JAX reports an exception in a callback when the result is read, as a
  `JaxRuntimeError` whose message ends with that line.

The checks are on by default. `set_id_checks(False)` (or `ULMFIT_ID_CHECKS=0` in the
environment) leaves them out of programs traced afterwards; `benchmarks/bench_id_checks.py`
measures what they cost a training step.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

_enabled = os.environ.get("ULMFIT_ID_CHECKS", "1") not in ("0", "false", "False")


def id_checks_enabled() -> bool:
    """Whether programs traced now include the in-program id checks."""
    return _enabled


def set_id_checks(enabled: bool) -> bool:
    """Turn the in-program id checks on or off for programs traced from now on (an already
    compiled function keeps what it was traced with). Returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


def _raise_out_of_range(bad, low, high, *, name: str, limit: int) -> None:
    # Under vmap the callback sees a batch of flags: any bad one is an error.
    if np.any(bad):
        raise ValueError(
            f"{name} has ids outside [0, {limit}): min {int(np.min(low))}, max "
            f"{int(np.max(high))} (found inside jit)"
        )


def check_ids(ids: jax.Array, limit: int, name: str) -> None:
    """Raise, when the program runs, if any of the traced integer `ids` is outside
    `[0, limit)` (module docstring). Call it only on traced values; concrete ones are checked
    directly by the callers, with a better message.

    Args:
      ids: int[...], the ids about to index a table of `limit` rows.
      limit: the number of rows.
      name: what the ids are, for the message ("tokens", "char_ids").
    """
    if not _enabled:
        return
    bad = jnp.any((ids < 0) | (ids >= limit))
    report = functools.partial(_raise_out_of_range, name=name, limit=limit)
    jax.debug.callback(report, bad, jnp.min(ids), jnp.max(ids))
