"""Labels of every kind, by name: single-label classes, multi-label sets, regression targets.

A `LabelEncoder` is fitted on the training split's raw labels and then encodes every other
split by *name*, so a label that training never saw is an error, and an exported model carries
its label names (evaluation maps gold labels through them, never by position).

    kind "single"      one class per document: int32[n] class ids (fastai's CategoryBlock)
    kind "multi"       a set of classes, raw labels split on `delim` (fastai's
                       MultiCategoryBlock): float32[n, n_class] multi-hot targets
    kind "regression"  a number per document: float32[n] (fastai's RegressionBlock)

Example:

    encoder = LabelEncoder.fit(["pos", "neg", "pos"])
    encoder.encode(["neg"], "valid")          # array([0], dtype=int32)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

KINDS = ("single", "multi", "regression")


def _blank(value: Any) -> bool:
    return (
        value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()
    )


@dataclasses.dataclass(frozen=True)
class LabelEncoder:
    """Raw labels <-> model targets.

    Attributes:
        kind: "single", "multi" or "regression".
        names: Class names in id order (empty for regression).
        delim: The multi-label delimiter.
        threshold: Multi-label decision threshold on sigmoid probabilities (fastai's 0.5).
    """

    kind: str = "single"
    names: tuple[str, ...] = ()
    delim: str = ""
    threshold: float = 0.5

    @property
    def n_outputs(self) -> int:
        """Width of the model's output: one per class, or one number for regression."""
        return 1 if self.kind == "regression" else len(self.names)

    @classmethod
    def fit(
        cls,
        raw: Sequence[Any],
        kind: str = "single",
        *,
        delim: str = "",
        names: Sequence[str] | None = None,
        threshold: float = 0.5,
        where: str = "train",
    ) -> LabelEncoder:
        """The encoder of the training labels `raw`.

        Args:
            kind: one of `KINDS`; "single" with a non-empty `delim` means "multi".
            names: the class order when the data defines one (a TFDS ClassLabel); else the
                sorted labels (numerically when they are all integers).
            where: names the data in messages.

        Raises:
            ValueError: blank labels, a single class, a delimiter that never occurs, or
                regression targets that are not numbers.
        """
        if kind == "single" and delim:
            kind = "multi"
        if kind not in KINDS:
            raise ValueError(f"unknown label kind {kind!r}: expected one of {KINDS}")
        blank = [i for i, value in enumerate(raw) if _blank(value)]
        if blank:
            raise ValueError(
                f"{where}: {len(blank)} blank label(s), the first in row {blank[0] + 1}; every "
                "document needs a label"
            )
        if kind == "regression":
            _numbers(raw, where)
            return cls("regression", (), "", threshold)
        if kind == "multi":
            if not delim:
                raise ValueError("multi-label data needs data.label_delim (e.g. ';')")
            if not any(delim in str(value) for value in raw) and names is None:
                raise ValueError(
                    f"{where}: the label delimiter {delim!r} never occurs in the labels; set "
                    "data.label_delim to the one the file uses, or '' for single labels"
                )
            found = {part for value in raw for part in _split(value, delim)}
        else:
            found = {str(value).strip() for value in raw}
        if names is None:
            names = _sort(found)
        else:
            names = tuple(str(n) for n in names)
            unknown = sorted(found - set(names))
            if unknown:
                raise ValueError(f"{where}: labels {unknown} are not among the classes {names}")
        if len(names) < 2 and kind == "single":
            raise ValueError(
                f"{where}: only one class ({names[0]!r}): a classifier needs at least two"
            )
        return cls(kind, tuple(names), delim, threshold)

    def encode(self, raw: Sequence[Any], where: str) -> np.ndarray:
        """Targets of `raw` labels: int32[n] ids, float32[n, n_class] multi-hot, or float32[n]."""
        blank = [i for i, value in enumerate(raw) if _blank(value)]
        if blank:
            raise ValueError(f"{where}: blank label in row {blank[0] + 1}")
        if self.kind == "regression":
            return _numbers(raw, where)
        index = {name: i for i, name in enumerate(self.names)}
        if self.kind == "single":
            labels = [str(value).strip() for value in raw]
            unknown = sorted(set(labels) - set(index))
            if unknown:
                raise ValueError(
                    f"{where}: label(s) {unknown} never occur in the training data, whose "
                    f"classes are {list(self.names)}"
                )
            return np.array([index[label] for label in labels], np.int32)
        targets = np.zeros((len(raw), len(self.names)), np.float32)
        for row, value in enumerate(raw):
            for part in _split(value, self.delim):
                if part not in index:
                    raise ValueError(
                        f"{where}: label {part!r} (row {row + 1}) never occurs in the training "
                        f"data, whose classes are {list(self.names)}"
                    )
                targets[row, index[part]] = 1.0
        return targets

    def decode(self, outputs: np.ndarray) -> list[Any]:
        """Predicted labels of model outputs (probabilities, or numbers for regression)."""
        outputs = np.asarray(outputs)
        if self.kind == "regression":
            return [float(v) for v in outputs.reshape(len(outputs), -1)[:, 0]]
        if self.kind == "single":
            return [self.names[i] for i in np.argmax(outputs, -1)]
        return [
            [n for n, p in zip(self.names, row, strict=True) if p > self.threshold]
            for row in outputs
        ]

    @property
    def mixed_names(self) -> str:
        """A warning when class names mix numbers and words ("1", "2", "neutral"): often a
        shifted or wrong label column; "" otherwise."""
        numbers = [n for n in self.names if _is_number(n)]
        words = [n for n in self.names if not _is_number(n)]
        if not numbers or not words or self.kind == "regression":
            return ""
        return (
            f"the labels mix numbers ({', '.join(numbers[:3])}) and words "
            f"({', '.join(words[:3])}): check that data.label_field names the label column"
        )

    def to_meta(self) -> dict:
        return dataclasses.asdict(self) | {"names": list(self.names)}

    @classmethod
    def from_meta(cls, meta: dict) -> LabelEncoder:
        return cls(
            meta.get("kind", "single"),
            tuple(meta.get("names", ())),
            meta.get("delim", ""),
            float(meta.get("threshold", 0.5)),
        )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _split(value: Any, delim: str) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(delim) if part.strip()]


def _sort(labels: set[str]) -> tuple[str, ...]:
    if all(label.lstrip("-").isdigit() for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def _numbers(raw: Sequence[Any], where: str) -> np.ndarray:
    values = []
    for row, value in enumerate(raw):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(
                f"{where}: regression target {value!r} in row {row + 1} is not a finite number"
            )
        values.append(number)
    return np.asarray(values, np.float32)
