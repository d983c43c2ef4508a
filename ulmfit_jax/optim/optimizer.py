"""ULMFiT's optimiser: fastai's Adam, discriminative learning rates, STLR or 1cycle, gradual
unfreezing.

    tx = make_optimizer(labels, lr=slice(1e-2 / 2.6**4, 1e-2), total_steps=n, schedule="one_cycle")
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params, trainable=trainable_groups(labels, 1))
    params = optax.apply_updates(params, updates)

`labels` is `param_groups(params)` (`ulmfit_jax.optim.param_groups`): "group_0" (bottom) ..
"group_{top}", and "batch_stats" for BatchNorm running statistics, which the optimiser never
changes. The pieces, each matching fastai 2.8 (tests/test_optim.py replays fastai runs):

* **Adam** (`fastai_adam`): fastai's `Adam(mom, sqr_mom, eps=1e-5, wd=0.01)`, true weight decay
  with the group's current lr, `p <- p * (1 - lr * wd)` before the step, and eps added to the
  debiased root: `p <- p - lr * m_hat / (sqrt(v_hat) + eps)`. Built from `optax.scale_by_adam`
  and a decoupled-decay step, wrapped in `optax.inject_hyperparams`.
* **Discriminative fine-tuning**: `optax.partition` over the groups, one lr per group
  (`schedules.group_lrs`: `lr / 2.6 ** k` for the k-th group below the top, or fastai's slices).
* **Schedules** (`schedule=`): "stlr" (the paper's slanted triangular rates, beta1 =
  `betas[0]`), "one_cycle" (fastai's `fit_one_cycle`: cosine lr warm-up/annealing and beta1
  following `moms`), "constant". The schedule position, the stage length and the peak lr per
  group live in the state (`OptimizerState`), so a new stage (`new_stage`) changes values, not
  the compiled step. The lr and beta1 of the latest step are in each partition's
  `inject_hyperparams` state; `hyperparams(opt_state)` reads them.
* **Gradual unfreezing**: `update(..., trainable={group: bool})`. A frozen group's parameters
  and optimiser state come out bit-identical (its updates are -0.0, so `apply_updates` returns
  the very same bits); its gradients are left out of the clipping norm, as fastai's frozen
  parameters have no gradient. The flags may be traced: a whole unfreezing schedule compiles
  once (or close over them and XLA prunes the frozen part of the backward pass, one compile per
  stage). fastai's `Learner.freeze_to` ends with `opt.clear_state()`, dropping every
  parameter's Adam moments and step count: `new_stage(..., clear_state=True)` does the same.
* **fastai's per-parameter details** (`fastai_leaf_roles`, from parameter paths):
  `wd_bn_bias=False` (no weight decay on BatchNorm weights and on biases of modules with a bias
  tensor, here the decoder's; the LSTM's biases are decayed, as in fastai); `train_bn=True`
  (BatchNorm weights train even in a frozen group); our LSTM bias is the sum of PyTorch's
  `bias_ih` and `bias_hh`, two fastai tensors with the same gradient, each moved by the Adam
  step, so the summed bias moves by twice the step and counts twice in the clipping norm.
* **Clipping** (`clip=`): fastai's `GradientClip` (`torch.nn.utils.clip_grad_norm_`): scale
  by `min(1, clip / (norm + 1e-6))` with the global norm of the trainable gradients.
* **Gradient accumulation** (`accumulate=k`): the whole transformation wrapped in
  `optax.MultiSteps(every_k_schedule=k)`: `update` is called once per micro-batch, and every
  k-th call applies one update from the mean of the k gradients (clipped as one gradient); the
  other calls return -0.0 updates (parameters keep their bits). The schedule, `total_steps`
  and Adam's step count count *updates*; the state is an `optax.MultiStepsState` around
  `OptimizerState`, which `new_stage` and `hyperparams` accept. What is done per micro-batch
  outside the optimiser still is: the classifier step writes BatchNorm running statistics back
  after every micro-batch (as PyTorch does under fastai's `GradientAccumulation`), and its
  batch statistics are the micro-batch's, so with BatchNorm k micro-batches of b rows are not
  one batch of k*b rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ulmfit_jax.optim import schedules
from ulmfit_jax.optim.param_groups import BATCH_STATS, group_names

SCHEDULES = ("stlr", "one_cycle", "constant")
_TRAIN_BN = ":train_bn"  # suffix of the partition holding a group's BatchNorm weights
_CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_


# ---------------------------------------------------------------------------------------------
# fastai's Adam step
# ---------------------------------------------------------------------------------------------


def _decoupled_step(learning_rate, weight_decay, decay_mask, copies):
    """`-lr * (copies * u + wd * p)` per leaf; masks may hold `optax.MaskedNode`s where the
    updates do (inside `optax.partition`)."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("fastai_adam needs params for its weight decay")
        decay = decay_mask if decay_mask is not None else jax.tree.map(lambda _: True, updates)
        count = copies if copies is not None else jax.tree.map(lambda _: 1, updates)

        def step(u, d, c, p):
            wd = weight_decay if d else 0.0
            return -learning_rate * (c * u + wd * p) if c != 1 else -learning_rate * (u + wd * p)

        return jax.tree.map(step, updates, decay, count, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def fastai_adam(
    learning_rate: float = 1e-3,
    b1: float = 0.9,
    b2: float = 0.99,
    eps: float = 1e-5,
    weight_decay: float = 0.01,
    decay_mask: Any = None,
    copies: Any = None,
) -> optax.GradientTransformation:
    """fastai's `Adam(lr, mom=b1, sqr_mom=b2, eps, wd, decouple_wd=True)` for one group.

        p <- p * (1 - lr * wd)                                  (where decay_mask)
        m <- b1 * m + (1 - b1) * g;   v <- b2 * v + (1 - b2) * g**2
        p <- p - lr * copies * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)

    with b1 and lr the values of the current step (fastai debiases with the current mom).
    Wrap in `optax.inject_hyperparams` to change lr and b1 between steps.

    Args:
      decay_mask: pytree[bool] like params: where weight decay applies (None: everywhere).
      copies: pytree[int] like params: how many fastai tensors each leaf is the sum of
        (None: 1 everywhere).
    """
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=0.0),
        _decoupled_step(learning_rate, weight_decay, decay_mask, copies),
    )


# ---------------------------------------------------------------------------------------------
# Per-leaf roles, from parameter paths
# ---------------------------------------------------------------------------------------------


class LeafRoles(NamedTuple):
    """Per-leaf facts fastai derives from module types, as pytrees shaped like params.

    decay: bool, fastai (`wd_bn_bias=False`) applies weight decay to the leaf.
    copies: int, the number of fastai tensors the leaf is the sum of (2 for LSTM biases).
    norm: bool, a BatchNorm weight or bias (trained in frozen groups when `train_bn`).
    """

    decay: Any
    copies: Any
    norm: Any


def fastai_leaf_roles(labels: Any) -> LeafRoles:
    """`LeafRoles` of our AWD-LSTM / classifier trees, read off `labels`' paths.

    Rules: leaves labelled "batch_stats" get nothing; a leaf under a "bn" key is a BatchNorm
    weight (`norm`, no decay); a leaf named "bias" under an "lstm_*" key is an LSTM bias (2
    copies, decayed); any other "bias" is a Linear bias (no decay); everything else is decayed.
    """

    def roles(path, label):
        keys = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        name, parent = keys[-1], (keys[-2] if len(keys) > 1 else "")
        if label == BATCH_STATS:
            return False, 1, False
        if "bn" in keys[:-1]:
            return False, 1, True
        if name == "bias":
            lstm = parent.startswith("lstm_")
            return lstm, 2 if lstm else 1, False
        return True, 1, False

    flat = jax.tree_util.tree_flatten_with_path(labels)[0]
    treedef = jax.tree.structure(labels)
    triples = [roles(path, label) for path, label in flat]
    return LeafRoles(*(jax.tree.unflatten(treedef, [t[i] for t in triples]) for i in range(3)))


def clip_grad_norm(grads: Any, max_norm: float, copies: Any = None) -> Any:
    """fastai's `GradientClip` (`torch.nn.utils.clip_grad_norm_`): scale every gradient by
    `min(1, max_norm / (norm + 1e-6))`, norm the global L2 norm, a leaf counting `copies` times.
    """
    copies = jax.tree.map(lambda _: 1, grads) if copies is None else copies
    squares = jax.tree.map(lambda c, g: c * jnp.sum(jnp.square(g)), copies, grads)
    norm = jnp.sqrt(sum(jax.tree.leaves(squares)))
    scale = jnp.minimum(max_norm / (norm + _CLIP_EPS), 1.0)
    return jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)


# ---------------------------------------------------------------------------------------------
# The optimiser
# ---------------------------------------------------------------------------------------------


class OptimizerState(NamedTuple):
    """State of `make_optimizer`'s transformation.

    step: int32[], steps taken in the current stage (fastai's `train_iter`).
    total_steps: int32[], the stage's length (fastai's `n_epoch * len(dl)`).
    lr_max: {group: float32[]}, each group's peak learning rate in this stage.
    inner: the `optax.partition` state; partition "group_k" (and "group_k:train_bn" for a
      group's BatchNorm weights) holds an `inject_hyperparams(fastai_adam)` state whose
      `hyperparams` are the lr, b1, b2, eps and weight decay of its latest step.
    """

    step: jax.Array
    total_steps: jax.Array
    lr_max: dict[str, jax.Array]
    inner: Any


def _partition_labels(labels: Any, norm: Any, train_bn: bool) -> Any:
    def label(group, is_norm):
        return group + _TRAIN_BN if (train_bn and is_norm and group != BATCH_STATS) else group

    return jax.tree.map(label, labels, norm)


def _group_of(partition: str) -> str:
    return partition.removesuffix(_TRAIN_BN)


def trainable_groups(labels: Any, n_trainable: int | None = None) -> dict[str, np.ndarray]:
    """Which groups train: the top `n_trainable` (None or >= the number of groups: all).

    fastai's `freeze_to(-k)` is `n_trainable=k`, `freeze()` is 1, `unfreeze()` is None. ULMFiT's
    classifier recipe trains 1, 2, 3 then all groups, one stage each.

    Returns:
      {group: bool[]} (numpy), to pass as `update(..., trainable=...)`.
    """
    names = group_names(labels)
    n = len(names) if n_trainable is None else n_trainable
    if n < 1:
        raise ValueError(f"n_trainable must be at least 1 (or None for all), got {n_trainable}")
    return {name: np.asarray(k >= len(names) - n) for k, name in enumerate(names)}


def _scheduled(kind, state, *, moms, b1, pct_start, div, div_final, cut_frac, ratio):
    """(lr per group, beta1) of the step about to be taken."""
    groups = sorted(state.lr_max)
    lr_max = jnp.stack([state.lr_max[g] for g in groups])
    if kind == "one_cycle":
        lrs = schedules.one_cycle(
            state.step,
            state.total_steps,
            lr_max,
            pct_start=pct_start,
            div=div,
            div_final=div_final,
        )
        mom = schedules.one_cycle_momentum(state.step, state.total_steps, moms, pct_start=pct_start)
    elif kind == "stlr":
        lrs = schedules.stlr(state.step, state.total_steps, lr_max, cut_frac=cut_frac, ratio=ratio)
        mom = jnp.float32(b1)
    else:
        lrs, mom = lr_max, jnp.float32(b1)
    return dict(zip(groups, lrs, strict=True)), mom


def _select(on, new, old):
    return jax.tree.map(lambda n, o: jnp.where(on, n, o), new, old)


def _set_hypers(partition_state, **values):
    """Write hyperparameters into a partition's `MaskedState(InjectHyperparamsState)`."""
    inject = partition_state.inner_state
    hypers = {**inject.hyperparams, **values}
    return partition_state._replace(inner_state=inject._replace(hyperparams=hypers))


def make_optimizer(
    labels: Any,
    *,
    lr: float | slice | Sequence[float],
    total_steps: int,
    schedule: str = "one_cycle",
    lr_mult: float | None = schedules.LR_MULT,
    betas: tuple[float, float] = (0.7, 0.99),
    moms: tuple[float, float, float] = (0.8, 0.7, 0.8),
    eps: float = 1e-5,
    weight_decay: float = 0.01,
    clip: float | None = None,
    pct_start: float = 0.25,
    div: float = 25.0,
    div_final: float = 1e5,
    cut_frac: float = 0.1,
    ratio: float = 32.0,
    roles: LeafRoles | None = None,
    train_bn: bool = True,
    accumulate: int = 1,
) -> optax.GradientTransformationExtraArgs:
    """ULMFiT's optimiser over fastai's layer groups (see the module docstring).

    Args:
      labels: `param_groups(params)`: "group_k" or "batch_stats" per leaf.
      lr: the first stage's peak learning rate: a float for the top group (lower groups get
        `lr / lr_mult ** k`), fastai's `slice(lo, hi)`, or one per group, bottom first
        (`schedules.group_lrs`).
      total_steps: the first stage's number of optimiser updates (the schedule's T; with
        `accumulate=k`, the number of micro-batches // k).
      schedule: "one_cycle" (fastai's `fit_one_cycle`), "stlr" (the paper) or "constant".
      lr_mult: ratio between adjacent groups' rates for a float `lr`; None: all equal (fastai).
      betas: Adam's (beta1, beta2); beta1 is used by "stlr" and "constant" (the paper's 0.7).
      moms: "one_cycle"'s beta1 schedule (start, middle, end); fastai's `TextLearner` default.
      eps: added to Adam's debiased root (fastai's 1e-5).
      weight_decay: decoupled weight decay (fastai's `wd`, default 0.01).
      clip: max global gradient norm (fastai's `GradientClip(max_norm)`), or None.
      pct_start, div, div_final: `fit_one_cycle`'s.
      cut_frac, ratio: STLR's.
      roles: per-leaf decay / copies / BatchNorm flags; default `fastai_leaf_roles(labels)`.
      train_bn: fastai's `Learner(train_bn=True)`: BatchNorm weights train in frozen groups.
      accumulate: micro-batches per update (`optax.MultiSteps`); 1 (the default) returns the
        plain transformation.

    Returns:
      An optax transformation: `init(params) -> OptimizerState`;
      `update(grads, state, params, trainable=None) -> (updates, state)` where `trainable` is
      `trainable_groups(labels, n)` (None: every group trains). With `accumulate > 1` the state
      is an `optax.MultiStepsState` whose `inner_opt_state` is the `OptimizerState`.
    """
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise ValueError(f"accumulate must be a positive int, got {accumulate!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be positive, got {clip}")
    groups = group_names(labels)
    roles = fastai_leaf_roles(labels) if roles is None else roles
    plabels = _partition_labels(labels, roles.norm, train_bn)
    partitions = sorted({p for p in jax.tree.leaves(plabels) if p != BATCH_STATS})
    first_lrs = _stage_lrs(groups, lr, lr_mult)
    first_total = _check_total(total_steps, schedule, cut_frac)
    adam = optax.inject_hyperparams(fastai_adam, static_args=("decay_mask", "copies"))

    def masked(tree, partition):
        return jax.tree.map(lambda p, x: x if p == partition else optax.MaskedNode(), plabels, tree)

    transforms = {
        p: adam(
            learning_rate=float(first_lrs[_group_of(p)]),
            b1=float(betas[0]),
            b2=float(betas[1]),
            eps=float(eps),
            weight_decay=float(weight_decay),
            decay_mask=masked(roles.decay, p),
            copies=masked(roles.copies, p),
        )
        for p in partitions
    }
    if BATCH_STATS in jax.tree.leaves(plabels):
        transforms[BATCH_STATS] = optax.set_to_zero()
    inner = optax.partition(transforms, plabels)
    sched_kw = dict(
        moms=moms,
        b1=betas[0],
        pct_start=pct_start,
        div=div,
        div_final=div_final,
        cut_frac=cut_frac,
        ratio=ratio,
    )

    def init_fn(params):
        return OptimizerState(
            step=jnp.zeros([], jnp.int32),
            total_steps=jnp.asarray(first_total, jnp.int32),
            lr_max={g: jnp.asarray(v, jnp.float32) for g, v in first_lrs.items()},
            inner=inner.init(params),
        )

    def update_fn(grads, state, params=None, trainable=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("make_optimizer's update needs params (weight decay)")
        if trainable is not None and set(trainable) != set(groups):
            raise ValueError(f"trainable has groups {sorted(trainable)}, expected {groups}")

        def partition_on(p):
            if p == BATCH_STATS:
                return False
            if trainable is None or p.endswith(_TRAIN_BN):
                return True
            return jnp.asarray(trainable[_group_of(p)])

        leaf_on = jax.tree.map(partition_on, plabels)
        grads = jax.tree.map(lambda on, g: jnp.where(on, g, jnp.zeros_like(g)), leaf_on, grads)
        if clip is not None:
            grads = clip_grad_norm(grads, clip, roles.copies)
        lrs, mom = _scheduled(schedule, state, **sched_kw)
        old = state.inner.inner_states
        with_hypers = {
            p: (s if p == BATCH_STATS else _set_hypers(s, learning_rate=lrs[_group_of(p)], b1=mom))
            for p, s in old.items()
        }
        updates, new_inner = inner.update(
            grads, state.inner._replace(inner_states=with_hypers), params
        )
        # A frozen partition keeps its whole state (moments, count, hyperparameters).
        kept = {p: _select(partition_on(p), s, old[p]) for p, s in new_inner.inner_states.items()}
        # x + (-0.0) is x bit for bit (also for x = -0.0, unlike x + 0.0).
        updates = jax.tree.map(
            lambda on, u: jnp.where(on, u, -0.0).astype(u.dtype), leaf_on, updates
        )
        new_state = OptimizerState(
            step=optax.safe_increment(state.step),
            total_steps=state.total_steps,
            lr_max=state.lr_max,
            inner=new_inner._replace(inner_states=kept),
        )
        return updates, new_state

    tx = optax.GradientTransformationExtraArgs(init_fn, update_fn)
    return tx if accumulate == 1 else _accumulating(tx, accumulate)


def _accumulating(tx, k: int) -> optax.GradientTransformationExtraArgs:
    """`optax.MultiSteps(tx, k)`, with -0.0 (not +0.0) updates between updates, so that every
    parameter keeps its bits there (+0.0 would turn a -0.0 parameter into +0.0)."""
    multi = optax.MultiSteps(tx, every_k_schedule=k)

    def update_fn(grads, state, params=None, **extra_args):
        updates, new_state = multi.update(grads, state, params, **extra_args)
        emitted = new_state.mini_step == 0
        updates = jax.tree.map(lambda u: jnp.where(emitted, u, -0.0).astype(u.dtype), updates)
        return updates, new_state

    return optax.GradientTransformationExtraArgs(multi.init, update_fn)


def _stage_lrs(groups, lr, lr_mult) -> dict[str, float]:
    values = schedules.group_lrs(lr, len(groups), lr_mult=lr_mult)
    return dict(zip(groups, values.tolist(), strict=True))


def _check_total(total_steps, schedule: str, cut_frac: float) -> int:
    total = int(total_steps)
    if total < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    if schedule == "stlr" and schedules.stlr_cut(total, cut_frac) < 1:
        raise ValueError(
            f"STLR needs total_steps * cut_frac >= 1 (got {total} * {cut_frac}): the warm-up "
            "would last zero steps"
        )
    return total


def new_stage(
    tx: optax.GradientTransformation,
    state: OptimizerState | optax.MultiStepsState,
    params: Any,
    *,
    lr: float | slice | Sequence[float],
    total_steps: int,
    lr_mult: float | None = schedules.LR_MULT,
    clear_state: bool = True,
    schedule: str | None = None,
    cut_frac: float = 0.1,
) -> OptimizerState | optax.MultiStepsState:
    """Start a stage (fastai: `freeze_to(...)` then `fit_one_cycle(epochs, lr)`).

    The schedule restarts at step 0 of `total_steps` with peak rates from `lr` (as in
    `make_optimizer`). With `clear_state` the Adam moments and step counts are reset, as fastai's
    `Learner.freeze_to` does (`opt.clear_state()`); without it they carry on (fastai: calling
    `fit_one_cycle` again without `freeze_to`). Only array values change, so a step function
    compiled for one stage serves the next. Pass `schedule` ("stlr") to check its minimum length.

    With gradient accumulation (`make_optimizer(accumulate=k)`, an `optax.MultiStepsState`) a
    partly accumulated gradient is dropped: the new stage's first update averages its own k
    micro-batches (the previous stage's trainable groups and rates may differ).
    """
    if isinstance(state, optax.MultiStepsState):
        fresh = tx.init(params) if clear_state else None
        inner = _stage_state(
            state.inner_opt_state,
            fresh.inner_opt_state if clear_state else None,
            lr=lr,
            total_steps=total_steps,
            lr_mult=lr_mult,
            schedule=schedule,
            cut_frac=cut_frac,
        )
        return state._replace(
            mini_step=jnp.zeros_like(state.mini_step),
            gradient_step=fresh.gradient_step if clear_state else state.gradient_step,
            inner_opt_state=inner,
            acc_grads=jax.tree.map(jnp.zeros_like, state.acc_grads),
        )
    fresh = tx.init(params) if clear_state else None
    return _stage_state(
        state,
        fresh,
        lr=lr,
        total_steps=total_steps,
        lr_mult=lr_mult,
        schedule=schedule,
        cut_frac=cut_frac,
    )


def _stage_state(state, fresh, *, lr, total_steps, lr_mult, schedule, cut_frac) -> OptimizerState:
    groups = sorted(state.lr_max, key=lambda name: int(name.split("_")[1]))
    total = _check_total(total_steps, schedule or "constant", cut_frac)
    return OptimizerState(
        step=jnp.zeros([], jnp.int32),
        total_steps=jnp.asarray(total, jnp.int32),
        lr_max={g: jnp.asarray(v, jnp.float32) for g, v in _stage_lrs(groups, lr, lr_mult).items()},
        inner=fresh.inner if fresh is not None else state.inner,
    )


def hyperparams(state: OptimizerState | optax.MultiStepsState) -> dict[str, dict[str, jax.Array]]:
    """{partition: {"learning_rate", "b1", "b2", "eps", "weight_decay"}} of each partition's
    latest step (a frozen group keeps those of its last trained step, or its initial ones).
    Partitions are the groups, plus "group_k:train_bn" for BatchNorm weights. Accepts an
    accumulating optimiser's `optax.MultiStepsState` (its latest *update*)."""
    if isinstance(state, optax.MultiStepsState):
        state = state.inner_opt_state
    return {
        p: dict(s.inner_state.hyperparams)
        for p, s in state.inner.inner_states.items()
        if p != BATCH_STATS
    }
