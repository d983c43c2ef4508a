"""Span-level precision, recall and F1 of BIO taggings, with `seqeval` (conlleval's rules).

    metrics = span_metrics(gold_tags, predicted_tags)
    metrics["f1"], metrics["f1/PER"]

An entity counts as found only when its type and both boundaries match. `seqeval` is an
optional dependency: `pip install 'ulmfit-jax[tagging]'`.
"""

from __future__ import annotations

from collections.abc import Sequence


def _seqeval():
    try:
        from seqeval import metrics
    except ImportError as error:
        raise ImportError(
            "span metrics need seqeval: pip install 'ulmfit-jax[tagging]' (or seqeval)"
        ) from error
    return metrics


def span_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """Micro-averaged span precision / recall / F1 and per-type F1.

    Args:
      gold: BIO tags of each sentence.
      predicted: the predicted BIO tags, the same lengths.

    Returns:
      `{"precision", "recall", "f1", "f1/<TYPE>", "support/<TYPE>"}` for every entity type of
      `gold` or `predicted` (floats; support is the number of gold entities).
    """
    if len(gold) != len(predicted) or any(
        len(g) != len(p) for g, p in zip(gold, predicted, strict=True)
    ):
        raise ValueError("gold and predicted tags must have the same sentences and lengths")
    m = _seqeval()
    gold, predicted = [list(g) for g in gold], [list(p) for p in predicted]
    result = {
        "precision": float(m.precision_score(gold, predicted, zero_division=0)),
        "recall": float(m.recall_score(gold, predicted, zero_division=0)),
        "f1": float(m.f1_score(gold, predicted, zero_division=0)),
    }
    report = m.classification_report(gold, predicted, output_dict=True, zero_division=0)
    for name, row in report.items():
        if not name.endswith(" avg"):
            result[f"f1/{name}"] = float(row["f1-score"])
            result[f"support/{name}"] = float(row["support"])
    return result
