"""Learning-rate and momentum schedules of ULMFiT (the paper's STLR) and fastai (1cycle), and
fastai's spreading of a learning rate over parameter groups.

Schedules are pure `jax.numpy` functions of the step, so the step, the length of the run and the
peak learning rate may all be traced (one compilation serves every stage of a fine-tuning run).
Every schedule is evaluated at the step *about to be taken*, counted from 0 — fastai's
`ParamScheduler.before_batch` sets the hyperparameters at `pct_train = train_iter / total`, so
the first step runs at position 0 and the last at `(total - 1) / total`.

Discriminative learning rates (`group_lrs`), bottom group first:

* `lr` a float and `lr_mult` (the paper's 2.6): group k of n gets `lr / lr_mult ** (n - 1 - k)`;
* `lr` a float and `lr_mult=None`: every group gets `lr` (what fastai does with a float);
* `lr=slice(lo, hi)`: fastai's `Optimizer.set_hyper`: `even_mults(lo, hi, n)`, a geometric
  series from `lo` to `hi`; with `lo` falsy, `hi / 10` for every group but the top one.

The two coincide when `lo = hi / lr_mult ** (n - 1)`: fastai's ULMFiT classifier recipe,
`slice(lr / 2.6**4, lr)` over the classifier's 5 groups, is exactly `lr_mult=2.6`. Over the
language model's 4 groups the same slice is a ratio of `2.6 ** (4/3)` per group instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

LR_MULT = 2.6  # the paper's ratio between the learning rates of adjacent groups


def even_mults(start: float, stop: float, n: int) -> list[float]:
    """fastcore's `even_mults`: n values from `start` to `stop` in a geometric series."""
    if n == 1:
        return [stop]
    step = (stop / start) ** (1 / (n - 1))
    return [start * step**i for i in range(n)]


def group_lrs(
    lr: float | slice | Sequence[float], n_groups: int, *, lr_mult: float | None = LR_MULT
) -> np.ndarray:
    """The learning rate of each of `n_groups` parameter groups, bottom group first.

    Args:
      lr: the top group's rate (a float), fastai's `slice(lo, hi)`, or one rate per group.
      n_groups: the number of groups.
      lr_mult: the ratio between adjacent groups for a float `lr` (None: all equal).

    Returns:
      float64[n_groups] (see the module docstring for the rules).
    """
    if n_groups < 1:
        raise ValueError(f"n_groups must be at least 1, got {n_groups}")
    if isinstance(lr, slice):
        if lr.step is not None or lr.stop is None:
            raise ValueError(f"an lr slice is slice(lo, hi), got {lr}")
        if lr.start:
            values = even_mults(lr.start, lr.stop, n_groups)
        else:
            values = [lr.stop / 10] * (n_groups - 1) + [lr.stop]
    elif isinstance(lr, Sequence) or isinstance(lr, np.ndarray):
        values = [float(v) for v in lr]
        if len(values) != n_groups:
            raise ValueError(f"{len(values)} learning rates for {n_groups} groups")
    else:
        top = float(lr)
        mult = 1.0 if lr_mult is None else float(lr_mult)
        values = [top / mult ** (n_groups - 1 - k) for k in range(n_groups)]
    return np.asarray(values, np.float64)


# ---------------------------------------------------------------------------------------------
# Slanted triangular learning rates (Howard & Ruder 2018, eq. 3)
# ---------------------------------------------------------------------------------------------


def stlr_cut(total_steps: int, cut_frac: float = 0.1) -> int:
    """The step at which STLR peaks: `floor(T * cut_frac)` (the paper's `cut`)."""
    return math.floor(total_steps * cut_frac)


def stlr(step, total_steps, lr_max, *, cut_frac: float = 0.1, ratio: float = 32.0):
    """Slanted triangular learning rate at `step` of `total_steps` (the paper's eq. 3).

        cut = floor(T * cut_frac)
        p   = t / cut                                   if t < cut
              1 - (t - cut) / (cut * (1 / cut_frac - 1))  otherwise
        lr  = lr_max * (1 + p * (ratio - 1)) / ratio

    So `lr_max / ratio` at t = 0, `lr_max` at t = cut, and back to `lr_max / ratio` at t = T
    when `T * cut_frac` is a whole number. Two guards the paper does not need: `p` is clamped
    to [0, 1] (with a fractional `T * cut_frac` the formula undershoots `lr_max / ratio` near
    the end, and goes negative for small T), and `cut` is at least 1. Both change nothing when
    `T * cut_frac` is a whole number >= 1.

    Args:
      step: int, the step about to be taken, from 0 (may be traced).
      total_steps: int, T (may be traced).
      lr_max: the peak learning rate: a float or a float32 array (any shape).
      cut_frac: the fraction of steps spent increasing the learning rate.
      ratio: how much smaller the lowest learning rate is than `lr_max`.

    Returns:
      float32, the shape of `lr_max`.
    """
    t = jnp.asarray(step, jnp.float32)
    # T * cut_frac in float32 floors like the paper's float64 for every T < 2**24 with
    # cut_frac = 0.1 (tested); the constant 1 / cut_frac - 1 is computed in float64.
    cut = jnp.maximum(jnp.floor(jnp.asarray(total_steps, jnp.float32) * cut_frac), 1.0)
    p = jnp.where(t < cut, t / cut, 1.0 - (t - cut) / (cut * (1.0 / cut_frac - 1.0)))
    p = jnp.clip(p, 0.0, 1.0)
    return jnp.asarray(lr_max, jnp.float32) * (1.0 + p * (ratio - 1.0)) / ratio


# ---------------------------------------------------------------------------------------------
# fastai's 1cycle (`Learner.fit_one_cycle`)
# ---------------------------------------------------------------------------------------------


def fastai_pct(step, total_steps):
    """fastai's `pct_train` of the step about to be taken: `step / total`, in [0, 1]."""
    pct = jnp.asarray(step, jnp.float32) / jnp.asarray(total_steps, jnp.float32)
    return jnp.clip(pct, 0.0, 1.0)


def sched_cos(start, end, pos):
    """fastai's `SchedCos`: cosine from `start` (pos 0) to `end` (pos 1).

    fastai's `start + (1 + cos(pi * (1 - pos))) * (end - start) / 2`, written as the smaller
    end point plus a non-negative term (`(1 + cos 2x) / 2 = cos(x)**2`) so that float32 keeps
    full relative precision where fastai's float64 form would cancel (1cycle's lr ends 1e5
    times below its peak).
    """
    half = jnp.pi * (1.0 - pos) / 2.0
    rising = start + (end - start) * jnp.square(jnp.cos(half))
    falling = end + (start - end) * jnp.square(jnp.sin(half))
    return jnp.where(start <= end, rising, falling)


def combined_cos(pct, start, middle, end, *, pct_start: float = 0.25):
    """fastai's `combined_cos(pct_start, start, middle, end)` at position `pct` in [0, 1].

    Cosine from `start` to `middle` over the first `pct_start` of the run, then from `middle` to
    `end`. Like fastai's `combine_scheds`, the phase boundaries and the position within a phase
    are float32 (fastai keeps them in a float32 torch tensor); `start`, `middle` and `end` may
    be arrays (one value per group).
    """
    b1 = np.float32(pct_start)
    b2 = np.float32(b1 + np.float32(1.0 - pct_start))  # torch.cumsum in float32
    pos = jnp.asarray(pct, jnp.float32)
    second = pos >= b1
    # Guard the unused branch's division when a phase has zero width (pct_start 0 or 1).
    width1 = b1 if b1 > 0 else np.float32(1.0)
    width2 = (b2 - b1) if b2 > b1 else np.float32(1.0)
    pos1 = pos / width1
    pos2 = (pos - b1) / width2
    return jnp.where(second, sched_cos(middle, end, pos2), sched_cos(start, middle, pos1))


def one_cycle(
    step,
    total_steps,
    lr_max,
    *,
    pct_start: float = 0.25,
    div: float = 25.0,
    div_final: float = 1e5,
):
    """fastai's `fit_one_cycle` learning rate: `combined_cos(pct_start, lr_max / div, lr_max,
    lr_max / div_final)` at `pct = step / total_steps`.

    Args:
      step: int, the step about to be taken, from 0 (may be traced).
      total_steps: int, the steps of the whole `fit_one_cycle` call (n_epoch * batches).
      lr_max: float or float32 array (e.g. one value per group).

    Returns:
      float32, the shape of `lr_max`.
    """
    lr_max = jnp.asarray(lr_max, jnp.float32)
    pct = fastai_pct(step, total_steps)
    return combined_cos(pct, lr_max / div, lr_max, lr_max / div_final, pct_start=pct_start)


def one_cycle_momentum(
    step, total_steps, moms: tuple[float, float, float] = (0.8, 0.7, 0.8), *, pct_start=0.25
):
    """fastai's `fit_one_cycle` momentum (Adam's beta1): `combined_cos(pct_start, *moms)`.

    fastai's `Learner` default is (0.95, 0.85, 0.95); its `TextLearner` (ULMFiT) uses
    (0.8, 0.7, 0.8), our default.
    """
    pct = fastai_pct(step, total_steps)
    return combined_cos(pct, *(np.float32(m) for m in moms), pct_start=pct_start)
