"""fastai's learning-rate finder (`Learner.lr_find`) as functions.

    tx = make_optimizer(labels, lr=1e-7, total_steps=1, schedule="constant", lr_mult=None)
    step = make_lm_train_step(config, tx)         # a TrainStep: (state, LMBatch) -> ...
    flags = trainable_groups(labels)
    batches = lambda epoch: (b._replace(trainable=flags) for b in stream.epoch_batches(epoch))
    result = lr_find(step, state, batches)   # this library's optimisers: lr set and checked
    result.suggestions["valley"]                   # fastai's default suggestion
    write_lr_find(result, workdir)                 # lr_find.json + lr_find.png

What fastai 2.8 does, and so this module (`fastai/callback/schedule.py`, `fastai/learner.py`):

* **Sweep** (`LRFinder`): before batch i (0-based `train_iter`) the lr is set to
  `start_lr * (end_lr / start_lr) ** (i / num_it)`, so the last of the `num_it` batches runs at
  `(num_it - 1) / num_it` of the way and `end_lr` itself is never used; `num_it < 6` becomes 6.
  Every group gets the same lr (fastai's `set_hyper` with a float).
* **Smoothing** (`Recorder` / `AvgSmoothLoss`): `val <- torch.lerp(loss, val, beta)` from 0,
  reported debiased, `val / (1 - beta ** count)`; the recorded losses are these smoothed values.
* **Stopping** (`LRFinder.after_batch`, after the batch is recorded): the best smoothed loss is
  updated first, then the sweep stops when `smooth > 4 * best` (`stop_div`) or after `num_it`
  batches. (fastai carries on through NaN losses, whose comparisons are false; here a NaN or
  infinite loss also stops the sweep, which changes no suggestion: fastai cuts at the first NaN.)
* **Suggestions** (`Learner.lr_find`, `valley`, `slide`, `minimum`, `steep`): computed on the
  recorded curve less its first `num_it // 10` and last 5 points, cut before the first NaN, in
  float32 (fastai's tensors). `minimum` is a tenth of the lr at the minimum loss.

The sweep trains a copy of the state: the caller's parameters and optimiser state (and its
buffers: the steps donate their state) are left untouched, as fastai reloads its `_tmp` save.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from ulmfit_jax.core.runner.train_state import TrainState
from ulmfit_jax.optim import schedules
from ulmfit_jax.optim.optimizer import OptimizerState, hyperparams

SUGGESTIONS = ("valley", "slide", "minimum", "steep")
_MIN_IT = 6  # fastai's LRFinder raises a smaller num_it to 6
_SKIP_END = 5  # points Learner.lr_find (and plot_lr_find) drop at the end of the curve
_DIV = 4.0  # stop_div's factor over the best smoothed loss


class LRFindResult(NamedTuple):
    """What `lr_find` recorded, one entry per batch trained.

    lrs: float64[n], the lr of each batch (fastai's `recorder.lrs`).
    losses: float64[n], the smoothed, debiased losses (fastai's `recorder.losses`).
    raw_losses: float64[n], the batches' own losses.
    suggestions: {"valley", "slide", "minimum", "steep": float or None} (`suggestions`).
    points: {name: (lr, loss)}, where `plot_lr_find` marks each suggestion (fastai's second
      return value of each suggestion function).
    stopped_early: whether the sweep stopped before `num_it` batches (divergence, a non-finite
      loss, or the batches ran out).
    num_it: the `num_it` the sweep was asked for (the suggestions' start trimming uses it).
    """

    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    suggestions: dict[str, float | None]
    points: dict[str, tuple[float, float] | None]
    stopped_early: bool
    num_it: int


# ---------------------------------------------------------------------------------------------
# The curve: learning rates and smoothed losses
# ---------------------------------------------------------------------------------------------


def sweep_lrs(start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100) -> np.ndarray:
    """float64[max(num_it, 6)]: the lr of each batch of fastai's sweep (`SchedExp` at
    `train_iter / num_it`)."""
    num_it = max(int(num_it), _MIN_IT)
    return np.array([start_lr * (end_lr / start_lr) ** (i / num_it) for i in range(num_it)])


class SmoothLoss:
    """fastai's `AvgSmoothLoss(beta)` in float32, as torch computes it.

    `torch.lerp(loss, val, beta)` is `val - (val - loss) * (1 - beta)` for `beta >= 0.5` and
    `loss + beta * (val - loss)` below; `value` is `val / (1 - beta ** count)`.
    """

    def __init__(self, beta: float = 0.98):
        self.beta, self.count, self.val = float(beta), 0, np.float32(0.0)

    def add(self, loss: float) -> float:
        """Accumulate one batch's loss; returns the new smoothed value."""
        loss, beta = np.float32(loss), np.float32(self.beta)
        self.count += 1
        if abs(self.beta) < 0.5:
            self.val = np.float32(loss + beta * (self.val - loss))
        else:
            self.val = np.float32(self.val - (self.val - loss) * np.float32(1.0 - beta))
        return self.value

    @property
    def value(self) -> float:
        return float(np.float32(self.val / np.float32(1.0 - self.beta**self.count)))


def smooth_losses(raw_losses: Iterable[float], beta: float = 0.98) -> np.ndarray:
    """float64[n]: fastai's smoothed, debiased losses of a sequence of batch losses."""
    smoother = SmoothLoss(beta)
    return np.array([smoother.add(x) for x in raw_losses], np.float64)


# ---------------------------------------------------------------------------------------------
# Suggestions (fastai's valley, slide, minimum, steep on float32 tensors)
# ---------------------------------------------------------------------------------------------


def valley(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, tuple[float, float]]:
    """fastai's `valley`: the lr a bit past the start of the longest decreasing run.

    The longest strictly decreasing subsequence is found with fastai's quadratic scan (whose
    running maximum is updated inside the inner loop; its start is `end - length`); the
    suggestion is `start + int(l / 3) + int(l / 6)` with `l = end - start`.
    """
    n = len(losses)
    max_start = max_end = 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx]), (float(lrs[idx]), float(losses[idx]))


def slide(
    lrs: np.ndarray,
    losses: np.ndarray,
    lr_diff: int = 15,
    thresh: float = 0.005,
    adjust_value: float = 1.0,
) -> tuple[float, tuple[float, float]]:
    """fastai's `slide`: walk an interval of `lr_diff` points left from the end until the loss
    gradients at its two ends differ by at most `thresh`."""
    loss_grad = np.gradient(losses)
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while l_idx >= -len(losses) and abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh:
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    suggestion = float(local_min_lr) * adjust_value
    loss = np.interp(np.log10(np.float32(suggestion)), np.log10(lrs), losses)
    return suggestion, (suggestion, float(loss))


def _loss_near(lrs: np.ndarray, losses: np.ndarray, lr: float) -> float:
    return float(losses[min(range(len(lrs)), key=lambda i: abs(float(lrs[i]) - lr))])


def minimum(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, tuple[float, float]]:
    """fastai's `minimum`: a tenth of the lr of the lowest loss (marked at that lr)."""
    lr_min = float(lrs[np.argmin(losses)])
    return lr_min / 10, (lr_min, _loss_near(lrs, losses, lr_min))


def steep(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, tuple[float, float]]:
    """fastai's `steep`: the lr where the loss falls fastest against log(lr)."""
    grads = (losses[1:] - losses[:-1]) / (np.log(lrs[1:]) - np.log(lrs[:-1]))
    lr_steep = float(lrs[np.argmin(grads)])
    return lr_steep, (lr_steep, _loss_near(lrs, losses, lr_steep))


_FUNCS = {"valley": valley, "slide": slide, "minimum": minimum, "steep": steep}
_MIN_POINTS = {"valley": 1, "slide": 16, "minimum": 1, "steep": 2}  # fastai raises below these


def suggestion_points(
    lrs: Iterable[float], losses: Iterable[float], num_it: int | None = None
) -> tuple[dict[str, float | None], dict[str, tuple[float, float] | None]]:
    """`(suggestions, points)`: see `suggestions`; `points[name]` is where fastai's plot marks
    the suggestion, `(lr, loss)`."""
    lrs = np.asarray(list(lrs), np.float64)
    losses = np.asarray(list(losses), np.float64)
    if lrs.shape != losses.shape or lrs.ndim != 1:
        raise ValueError(f"lrs {lrs.shape} and losses {losses.shape} must be equal 1-D curves")
    num_it = len(lrs) if num_it is None else int(num_it)
    # fastai: tensor(recorder.lrs[num_it//10:-5]), float32; then cut at the first NaN.
    lrs32 = lrs[num_it // 10 : -_SKIP_END].astype(np.float32)
    losses32 = losses[num_it // 10 : -_SKIP_END].astype(np.float32)
    nan = np.flatnonzero(np.isnan(losses32))
    if nan.size:
        lrs32, losses32 = lrs32[: nan[0]], losses32[: nan[0]]
    found, points = {}, {}
    for name, func in _FUNCS.items():
        if len(losses32) < _MIN_POINTS[name]:
            found[name] = points[name] = None
            continue
        found[name], points[name] = func(lrs32, losses32)
    return found, points


def suggestions(
    lrs: Iterable[float], losses: Iterable[float], num_it: int | None = None
) -> dict[str, float | None]:
    """fastai's suggested learning rates for a recorded lr_find curve.

    Args:
      lrs: float[n], the lr of each batch, as recorded (`LRFindResult.lrs`).
      losses: float[n], the smoothed losses (`LRFindResult.losses`, fastai's
        `recorder.losses`).
      num_it: the sweep's `num_it` (the first `num_it // 10` points are skipped); None: `n`.

    Returns:
      {"valley", "slide", "minimum", "steep": float}, each None when the trimmed curve is too
      short for it (fastai raises an IndexError there): valley needs 1 point, minimum 1,
      steep 2, slide 16.
    """
    return suggestion_points(lrs, losses, num_it)[0]


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------


def _copy_tree(tree: Any) -> Any:
    """Fresh buffers for every array leaf (the steps donate their state), same placement."""

    def copy(x):
        if isinstance(x, jax.Array):
            return x.copy()
        if isinstance(x, np.ndarray):
            return x.copy()
        return x

    return jax.tree.map(copy, tree)


def _batch_stream(batches: Iterable | Callable[[int], Iterable]) -> Iterator[tuple[Any, bool]]:
    """Yields `(batch, first of a new epoch after the first)`; a callable is called with 0,
    1, ... for each epoch until one is empty."""
    if not callable(batches):
        for batch in batches:
            yield batch, False
        return
    epoch = 0
    while True:
        empty = True
        for batch in batches(epoch):
            yield batch, (epoch > 0 and empty)
            empty = False
        if empty:
            return
        epoch += 1


def lr_find(
    step_fn: Callable[[Any, Any], tuple[Any, Mapping[str, Any]]],
    state: Any,
    batches: Iterable | Callable[[int], Iterable],
    *,
    set_lr: Callable[[Any, float], Any] | None = None,
    get_lr: Callable[[Any], float] | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    stop_div: bool = True,
    beta: float = 0.98,
    reset_state: Callable[[Any], Any] | None = None,
    loss_key: str = "loss",
) -> LRFindResult:
    """fastai's `learn.lr_find()`: an exponential lr sweep on a copy of the training state.

    Args:
      step_fn: `(state, batch) -> (state, metrics)`, e.g. a `TrainStep` of
        `make_lm_train_step` or `make_classifier_train_step` over a constant-schedule
        optimiser (the batches carrying the phase's `trainable` flags); `metrics[loss_key]` is
        the batch's loss (the steps' "loss" is the cross-entropy without AR/TAR, fastai's
        `learn.loss`).
      state: the training state; it is copied, never modified (nor donated).
      batches: an iterable of batches, or `epoch -> iterable` called again whenever an epoch
        runs out (fastai runs `num_it // len(dl) + 1` epochs). The sweep also stops when the
        batches run out.
      set_lr: `(state, lr) -> state` setting the lr of the next step; None: this library's
        optimisers' (`set_optimizer_lr`, and then `get_lr` defaults to `optimizer_lr`).
      get_lr: optional `state -> lr` of the step just taken; when given it is checked against
        the lr that was set (a schedule other than "constant" fails here).
      start_lr, end_lr, num_it, stop_div: fastai's (`num_it < 6` becomes 6).
      beta: the loss smoothing (fastai's `Recorder(beta=0.98)`).
      reset_state: applied to the state at each new epoch of a callable `batches` (e.g.
        `lm_steps.reset_lstm_state`, fastai's `ModelResetter`).
      loss_key: the metric holding the loss.

    Returns:
      An `LRFindResult`; its `suggestions` are `suggestions(lrs, losses, num_it)`.
    """
    if set_lr is None:
        set_lr, get_lr = set_optimizer_lr, get_lr or optimizer_lr
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    lr_grid = sweep_lrs(start_lr, end_lr, num_it)
    state = _copy_tree(state)
    smoother = SmoothLoss(beta)
    best = math.inf
    lrs, raw, smooth = [], [], []
    stopped = True
    stream = _batch_stream(batches)
    for i, lr in enumerate(lr_grid):
        try:
            batch, new_epoch = next(stream)
        except StopIteration:
            break
        if new_epoch and reset_state is not None:
            state = reset_state(state)
        state, metrics = step_fn(set_lr(state, float(lr)), batch)
        loss = float(metrics[loss_key])
        if get_lr is not None:
            used = float(get_lr(state))
            if not math.isclose(used, lr, rel_tol=1e-5):
                raise ValueError(
                    f"step {i} ran at lr {used:.6g} instead of the sweep's {lr:.6g}: lr_find "
                    'needs an optimiser with schedule="constant" (make_optimizer)'
                )
        value = smoother.add(loss)
        lrs.append(float(lr))
        raw.append(loss)
        smooth.append(value)
        best = min(best, value)
        if not math.isfinite(value) or (stop_div and value > _DIV * best):
            break
        if i == len(lr_grid) - 1:
            stopped = False
    found, points = suggestion_points(lrs, smooth, num_it)
    return LRFindResult(
        lrs=np.asarray(lrs, np.float64),
        losses=np.asarray(smooth, np.float64),
        raw_losses=np.asarray(raw, np.float64),
        suggestions=found,
        points=points,
        stopped_early=stopped,
        num_it=int(num_it),
    )


# ---------------------------------------------------------------------------------------------
# Setting the lr of `make_optimizer`'s optimiser
# ---------------------------------------------------------------------------------------------


def _optimizer_state(opt_state: Any) -> OptimizerState:
    if isinstance(opt_state, optax.MultiStepsState):
        opt_state = opt_state.inner_opt_state
    if not isinstance(opt_state, OptimizerState):
        raise TypeError(f"expected make_optimizer's state, got {type(opt_state).__name__}")
    return opt_state


def set_optimizer_lr(state: TrainState, lr: float, *, lr_mult: float | None = None) -> TrainState:
    """`state` with every group's lr of `make_optimizer`'s optimiser set from `lr`.

    The peak lrs (`OptimizerState.lr_max`) are traced values, so this recompiles nothing; with
    `schedule="constant"` they are the lrs of the next step. Every group gets `lr`, as fastai's
    lr_find does; `lr_mult` spreads it instead (`lr / lr_mult ** k` for the k-th group below
    the top: `functools.partial(set_optimizer_lr, lr_mult=2.6)`). Accepts an accumulating
    optimiser's state (`optax.MultiStepsState`).

    Args:
      state: a `TrainState`.
      lr: the top group's lr.
    """
    opt_state = state.opt_state
    inner = _optimizer_state(opt_state)
    groups = sorted(inner.lr_max, key=lambda name: int(name.split("_")[1]))
    values = schedules.group_lrs(float(lr), len(groups), lr_mult=lr_mult)
    inner = inner._replace(
        lr_max={g: np.float32(v) for g, v in zip(groups, values.tolist(), strict=True)}
    )
    if isinstance(opt_state, optax.MultiStepsState):
        inner = opt_state._replace(inner_opt_state=inner)
    return state.replace(opt_state=inner)


def optimizer_lr(state: TrainState) -> float:
    """The top group's lr of the latest step of `make_optimizer`'s optimiser (what fastai's
    Recorder logs: `opt.hypers[-1]['lr']`)."""
    hypers = hyperparams(_optimizer_state(state.opt_state))
    top = max(hypers, key=lambda p: (int(p.split("_")[1].split(":")[0]), ":" not in p))
    return float(hypers[top]["learning_rate"])


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def plot_lr_find(result: LRFindResult, path: str | Path, skip_end: int = _SKIP_END) -> Path:
    """Write fastai's lr_find plot as a PNG: smoothed loss against lr (log scale) without the
    last `skip_end` points, each suggestion marked. Needs matplotlib (`pip install
    ulmfit-jax[plots]`)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plot_lr_find needs matplotlib: pip install 'ulmfit-jax[plots]'") from e
    end = len(result.lrs) - skip_end if skip_end else len(result.lrs)
    fig, ax = plt.subplots(1, 1, figsize=(6, 4))
    ax.plot(result.lrs[:end], result.losses[:end])
    ax.set_xscale("log")
    ax.set_xlabel("Learning Rate")
    ax.set_ylabel("Loss")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"][1:]
    marked = [(n, p) for n, p in result.points.items() if p is not None]
    for (name, (lr, loss)), color in zip(marked, colors, strict=False):
        label = f"{name}: {result.suggestions[name]:.2e}"
        ax.plot(lr, loss, "o", color=color, label=label)
    if marked:
        ax.legend(loc="best")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _json_float(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def write_lr_find(result: LRFindResult, workdir: str | Path, *, plot: bool = True) -> Path:
    """Write `WORKDIR/lr_find.json` (`lrs`, `losses`, `raw_losses`, `suggestions`,
    `stopped_early`, `num_it`; non-finite numbers as null) and, with `plot`,
    `WORKDIR/lr_find.png`. Returns the JSON's path."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    record = {
        "lrs": [_json_float(x) for x in result.lrs],
        "losses": [_json_float(x) for x in result.losses],
        "raw_losses": [_json_float(x) for x in result.raw_losses],
        "suggestions": {k: _json_float(v) for k, v in result.suggestions.items()},
        "stopped_early": bool(result.stopped_early),
        "num_it": int(result.num_it),
    }
    path = workdir / "lr_find.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    if plot:
        plot_lr_find(result, workdir / "lr_find.png")
    return path
