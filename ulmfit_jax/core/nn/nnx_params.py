"""A functional parameter dict held as Flax NNX variables, and the way back.

Both families' NNX modules (`ulmfit_jax.nnx`, `elmo_jax.nnx`) are a skin over pure functions
that take a nested dict of arrays. `ParamTree` is their base: each top-level key of the dict
becomes an attribute holding the same nested dict with every array wrapped in an `nnx.Variable`
(`nnx.Param`, `nnx.BatchStat` or a frozen type), so `nnx.state(module, nnx.Param)` has the
functional dict's paths and `to_params()` rebuilds the dict exactly (the very arrays, no copy).
`DropoutParamTree` adds what every model module has besides: its config, the train/eval mode
and the dropout stream a training call draws its one key from.

    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> class Affine(ParamTree):
    ...     def __init__(self, params):
    ...         self.hold(params, nnx.Param)
    >>> m = Affine({"w": jnp.ones((2, 3)), "out": {"b": jnp.zeros(3)}})
    >>> jax.tree.map(jnp.shape, m.to_params())
    {'out': {'b': (3,)}, 'w': (2, 3)}

Sharding metadata: `sharding_rules` is a sequence of `(regex, axis names)` pairs matched (first
match wins, `re.fullmatch`) against a leaf's "/"-joined path from the model's root, e.g.
`[("encoder/embedding", ("model", None))]`. A matched leaf's variable gets `out_sharding`
metadata (what `nnx.with_partitioning` sets), which `nnx.get_named_sharding` reads; every other
leaf is replicated, as the functional data-parallel steps keep parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
from flax import nnx

ShardingRules = Sequence[tuple[str, tuple[str | None, ...]]]
# What a call's `rngs=` may be: `nnx.Rngs` (its dropout stream), one stream, a key, or None.
Rngs = nnx.Rngs | nnx.RngStream | jax.Array | None


def _out_sharding(path: tuple[str, ...], rules: ShardingRules | None) -> dict[str, Any]:
    name = "/".join(path)
    for pattern, axes in rules or ():
        if re.fullmatch(pattern, name):
            return {"out_sharding": tuple(axes)}
    return {}


def to_variables(
    tree: Any,
    variable_type: Callable[[tuple[str, ...]], type[nnx.Variable]] | type[nnx.Variable],
    *,
    prefix: tuple[str, ...] = (),
    sharding_rules: ShardingRules | None = None,
) -> Any:
    """Wrap each array of a nested dict in a variable.

    Args:
      tree: a nested dict of arrays (or one array).
      variable_type: the `nnx.Variable` subclass, or a function of the leaf's path from the
        root (e.g. `("head", "layer_0", "bn", "mean")`) returning it.
      prefix: the path of `tree` inside the model (for `variable_type` and the rules).
      sharding_rules: see the module docstring.

    Returns:
      The same nesting (plain dicts) with `nnx.Variable` leaves.
    """
    if isinstance(tree, Mapping):
        return {
            key: to_variables(
                value, variable_type, prefix=(*prefix, key), sharding_rules=sharding_rules
            )
            for key, value in tree.items()
        }
    kind = variable_type if isinstance(variable_type, type) else variable_type(prefix)
    return kind(tree, **_out_sharding(prefix, sharding_rules))


def to_arrays(tree: Any) -> Any:
    """The inverse of `to_variables`: variables -> their values; a `ParamTree` -> its dict."""
    if isinstance(tree, nnx.Variable):
        return tree.get_value()
    if isinstance(tree, ParamTree):
        return tree.to_params()
    if isinstance(tree, Mapping):
        return {key: to_arrays(value) for key, value in tree.items()}
    raise TypeError(f"not a parameter leaf: {type(tree).__name__}")


def assign(tree: Any, values: Any) -> None:
    """Write arrays into the variables of `tree` (same nesting as `values`)."""
    if isinstance(tree, nnx.Variable):
        tree.set_value(values)
    elif isinstance(tree, Mapping):
        for key, value in values.items():
            assign(tree[key], value)
    else:
        raise TypeError(f"not a parameter leaf: {type(tree).__name__}")


class ParamTree(nnx.Module):
    """Base of modules holding a functional parameter dict (see the module docstring)."""

    def hold(
        self,
        params: Mapping[str, Any],
        variable_type: Callable[[tuple[str, ...]], type[nnx.Variable]] | type[nnx.Variable],
        *,
        prefix: tuple[str, ...] = (),
        sharding_rules: ShardingRules | None = None,
        skip: Sequence[str] = (),
    ) -> None:
        """Set one attribute per key of `params` (keys in `skip` are set by the caller, e.g. to
        a submodule) and remember the keys for `to_params`."""
        for key, value in params.items():
            if key in skip:
                continue
            held = to_variables(
                value, variable_type, prefix=(*prefix, key), sharding_rules=sharding_rules
            )
            setattr(self, key, nnx.data(held) if isinstance(held, dict) else held)
        self.param_keys = tuple(params)

    def to_params(self) -> dict[str, Any]:
        """The functional parameter dict, lossless: the same keys, the held arrays."""
        return {key: to_arrays(getattr(self, key)) for key in self.param_keys}


def dropout_stream(rngs: nnx.Rngs | None) -> Any:
    """The stream a module draws dropout keys from: `rngs["dropout"]` itself (shared, not
    forked, so a caller can reproduce its keys), or None."""
    if rngs is not None:
        try:
            return rngs["dropout"]
        except KeyError:
            pass
    return nnx.data(None)


def draw_key(source: Any, owner: str) -> jax.Array:
    """One key from `nnx.Rngs` (its dropout stream), an `nnx.RngStream`, or a key as is."""
    if isinstance(source, nnx.Rngs):
        return source.dropout()
    if isinstance(source, nnx.RngStream):
        return source()
    if source is None:
        raise ValueError(
            f"{owner} in training mode needs dropout keys: build it with "
            "rngs=nnx.Rngs(dropout=...) or pass rngs= to the call"
        )
    return source


def init_key(rngs: nnx.Rngs | None, owner: str) -> jax.Array:
    """The key that initialises `owner`'s parameters when none are given: `rngs.params()`."""
    if rngs is None:
        raise ValueError(f"{owner} without params needs rngs to initialise them")
    return rngs.params()


class DropoutParamTree(ParamTree):
    """A `ParamTree` with a config, a train/eval mode and a dropout stream: the base of both
    families' model modules.

    `deterministic` is the mode: True is evaluation (the default), False training; NNX's
    `model.train()` / `model.eval()` set it on every submodule that has it. A training call
    draws one key, the functional API's `rng`, from the call's `rngs`, else from the dropout
    stream given to the constructor (`dropout_stream`: shared, so a caller can reproduce it).
    """

    def keep_config_and_mode(self, config: Any, deterministic: bool, rngs: nnx.Rngs | None):
        """Set `config`, the mode and the dropout stream (call it in `__init__`)."""
        self.config = config
        self.deterministic = deterministic
        self.dropout_rngs = dropout_stream(rngs)

    def is_deterministic(self, deterministic: bool | None) -> bool:
        """A call's mode: its own `deterministic` when given, else the module's."""
        return self.deterministic if deterministic is None else deterministic

    def dropout_key(self, deterministic: bool | None, rngs: Rngs) -> jax.Array | None:
        """The functional `rng` of a call: None in evaluation, else one key drawn from `rngs`
        (the call's, else the constructor's dropout stream)."""
        if self.is_deterministic(deterministic):
            return None
        return draw_key(self.dropout_rngs if rngs is None else rngs, type(self).__name__)


def labels_state(model: nnx.Module, labels: Any, wrt: nnx.filterlib.Filter = nnx.Param) -> Any:
    """The functional labels of a model's `wrt` variables, shaped as `nnx.state(model, wrt)`.

    `labels` is a labelling of the full functional dict (e.g. `param_groups.lm_param_groups`);
    leaves that are not `wrt` variables (BatchNorm running statistics) are left out, so the
    result has exactly the tree `nnx.Optimizer(model, tx, wrt=wrt)` hands its optax `tx`.
    """
    state = nnx.as_pure(nnx.state(model, wrt))

    def label(path, _):
        node = labels
        for key in path:
            node = node[getattr(key, "key", getattr(key, "name", key))]
        return node

    return jax.tree_util.tree_map_with_path(label, state)


def place(model: nnx.Module, mesh: jax.sharding.Mesh) -> nnx.Module:
    """Put a model's state on `mesh` as its `out_sharding` metadata says (replicated where it
    has none); returns the model, updated in place."""
    state = nnx.state(model)
    shardings = nnx.get_named_sharding(state, mesh)
    nnx.update(model, jax.device_put(state, shardings))
    return model
