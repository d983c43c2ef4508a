"""Metrics of predictions against gold labels."""

from __future__ import annotations

import numpy as np


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of rows of `probs` float[n, n_class] whose argmax is `labels` int[n]."""
    return float(np.mean(np.argmax(probs, -1) == labels))
