"""Nested dicts as flat `{"a.b.c": leaf}` dicts and back: what safetensors files, npz exports
and config comparisons store.

    flatten({"encoder": {"lstm_0": {"w_ih": w}}})   # {"encoder.lstm_0.w_ih": w}
    unflatten(flatten(tree)) == tree
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def flatten(
    tree: Mapping[str, Any], sep: str = ".", leaf: Callable[[Any], Any] = lambda x: x
) -> dict[str, Any]:
    """`{path: leaf(value)}` of a nested mapping, its keys joined by `sep`; anything that is
    not a mapping (arrays, lists, tuples) is a leaf.

    Raises:
      ValueError: a key contains `sep` (the path could not be split back).
    """
    flat: dict[str, Any] = {}

    def visit(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if sep in str(key):
                raise ValueError(f"key {key!r} contains {sep!r}, which joins the path")
            if isinstance(value, Mapping):
                visit(value, f"{prefix}{key}{sep}")
            else:
                flat[f"{prefix}{key}"] = leaf(value)

    visit(tree, "")
    return flat


def unflatten(flat: Mapping[str, Any], sep: str = ".") -> dict[str, Any]:
    """The inverse of `flatten`."""
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        node = tree
        *parents, last = name.split(sep)
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree
