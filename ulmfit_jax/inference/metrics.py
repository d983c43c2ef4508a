"""Metrics of predictions against gold labels, for each kind of label.

    single-label   accuracy, macro-F1, per-class precision and recall, the confusion matrix
    multi-label    accuracy and F1 at the threshold (fastai's `accuracy_multi`, micro F1)
    regression     MSE and MAE

`outputs` are what `predict_batches` returns: softmax probabilities float[n, n_class],
sigmoid probabilities float[n, n_class], or regression outputs float[n, 1].
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ulmfit_jax.core.data.labels import LabelEncoder


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of rows of `probs` float[n, n_class] whose argmax is `labels` int[n]."""
    return float(np.mean(np.argmax(probs, -1) == labels))


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray, n_class: int) -> np.ndarray:
    """int64[n_class, n_class]: rows are the true class, columns the predicted one."""
    matrix = np.zeros((n_class, n_class), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def _precision_recall_f1(tp, fp, fn):
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / np.maximum(tp + fn, 1)
    f1 = np.where(
        precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0
    )
    return precision, recall, f1


def classification_metrics(
    outputs: np.ndarray, targets: np.ndarray, encoder: LabelEncoder
) -> dict[str, float]:
    """The metrics of the encoder's kind (module docstring), plus the mean loss.

    Per-class precision and recall are named `precision/NAME` and `recall/NAME`.
    """
    outputs = np.asarray(outputs, np.float64)
    if encoder.kind == "regression":
        err = outputs.reshape(len(outputs), -1)[:, 0] - np.asarray(targets, np.float64)
        mse = float(np.mean(err**2))
        return {"loss": mse, "mse": mse, "mae": float(np.mean(np.abs(err)))}
    if encoder.kind == "multi":
        p = np.clip(outputs, 1e-7, 1 - 1e-7)
        loss = float(-np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p)))
        predicted = outputs > encoder.threshold
        truth = targets > 0.5
        tp = float(np.sum(predicted & truth))
        fp, fn = float(np.sum(predicted & ~truth)), float(np.sum(~predicted & truth))
        f1 = 2 * tp / max(2 * tp + fp + fn, 1.0)
        return {"loss": loss, "accuracy": float(np.mean(predicted == truth)), "f1": f1}
    targets = np.asarray(targets, np.int64)
    probs = outputs[np.arange(len(targets)), targets]
    loss = float(-np.mean(np.log(np.maximum(probs, 1e-12))))
    predicted = np.argmax(outputs, -1)
    matrix = confusion_matrix(predicted, targets, len(encoder.names))
    tp = np.diag(matrix).astype(np.float64)
    precision, recall, f1 = _precision_recall_f1(tp, matrix.sum(0) - tp, matrix.sum(1) - tp)
    result = {
        "loss": loss,
        "accuracy": float(np.mean(predicted == targets)),
        "f1_macro": float(np.mean(f1)),
    }
    for name, p, r in zip(encoder.names, precision, recall, strict=True):
        result[f"precision/{name}"] = float(p)
        result[f"recall/{name}"] = float(r)
    return result


def write_confusion_matrix(matrix: np.ndarray, names: Sequence[str], directory: Path) -> None:
    """`confusion_matrix.csv` (rows true, columns predicted) and `confusion_matrix.png`."""
    directory = Path(directory)
    with open(directory / "confusion_matrix.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *names])
        for name, row in zip(names, matrix, strict=True):
            writer.writerow([name, *map(int, row)])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.6 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            color = "white" if matrix[i, j] > threshold else "black"
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", color=color)
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    fig.savefig(directory / "confusion_matrix.png", dpi=100)
    plt.close(fig)


def per_example_losses(
    outputs: np.ndarray, targets: np.ndarray, encoder: LabelEncoder
) -> np.ndarray:
    """float64[n]: each document's loss (cross-entropy, binary cross-entropy, or squared error)."""
    outputs = np.asarray(outputs, np.float64)
    if encoder.kind == "regression":
        return (outputs.reshape(len(outputs), -1)[:, 0] - np.asarray(targets)) ** 2
    if encoder.kind == "multi":
        p = np.clip(outputs, 1e-7, 1 - 1e-7)
        return -np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p), axis=-1)
    targets = np.asarray(targets, np.int64)
    return -np.log(np.maximum(outputs[np.arange(len(targets)), targets], 1e-12))


def write_top_losses(
    texts: Sequence[str],
    raw_labels: Sequence,
    outputs: np.ndarray,
    targets: np.ndarray,
    encoder: LabelEncoder,
    path: Path,
    n: int = 50,
) -> None:
    """`top_losses.csv`: the `n` documents with the highest loss (document, true, predicted,
    probability of the prediction, loss), as fastai's `ClassificationInterpretation`."""
    losses = per_example_losses(outputs, targets, encoder)
    predicted = encoder.decode(outputs)
    order = np.argsort(-losses, kind="stable")[:n]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["document", "true", "predicted", "probability", "loss"])
        for i in order:
            pred = predicted[i]
            if encoder.kind == "single":
                prob = float(np.max(outputs[i]))
            elif encoder.kind == "multi":
                pred, prob = encoder.delim.join(pred), float(np.max(outputs[i]))
            else:
                prob = float("nan")
            writer.writerow([texts[i], raw_labels[i], pred, f"{prob:.4f}", f"{losses[i]:.4f}"])
