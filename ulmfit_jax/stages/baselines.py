"""The baseline a practitioner tries first: TF-IDF word n-grams with logistic regression.

Word 1-2 grams (scikit-learn's `TfidfVectorizer`, sublinear term frequency, lower-cased,
vocabulary from the training texts only), then `LogisticRegression` with its inverse
regularisation `C` chosen on the validation split, never on test. Needs scikit-learn (an
optional dependency: `pip install 'ulmfit-jax[baselines]'`).

Example:

    result = tfidf_logistic(train_texts, train_y, valid_texts, valid_y, test_texts, test_y)
    result["test_accuracy"], result["C"]
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


def _sklearn():
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError as error:
        raise ImportError(
            "the TF-IDF baseline needs scikit-learn: pip install 'ulmfit-jax[baselines]'"
        ) from error
    return TfidfVectorizer, LogisticRegression


def tfidf_logistic(
    train_texts: Sequence[str],
    train_labels: np.ndarray,
    valid_texts: Sequence[str],
    valid_labels: np.ndarray,
    test_texts: Sequence[str] | None = None,
    test_labels: np.ndarray | None = None,
    *,
    ngram_range: tuple[int, int] = (1, 2),
    c_grid: Sequence[float] = C_GRID,
    max_features: int | None = 200_000,
) -> dict:
    """Fit the baseline for each `C`, keep the one with the best validation accuracy.

    Returns:
      `{"C", "valid_accuracy", "test_accuracy" (when test is given), "by_C": {C: valid acc},
      "seconds"}`.
    """
    TfidfVectorizer, LogisticRegression = _sklearn()
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(
        ngram_range=tuple(ngram_range), sublinear_tf=True, max_features=max_features
    )
    x_train = vectorizer.fit_transform(train_texts)
    x_valid = vectorizer.transform(valid_texts)
    by_c, best = {}, None
    for c in c_grid:
        model = LogisticRegression(C=c, max_iter=2000)
        model.fit(x_train, train_labels)
        accuracy = float(np.mean(model.predict(x_valid) == np.asarray(valid_labels)))
        by_c[float(c)] = accuracy
        if best is None or accuracy > best[1]:
            best = (float(c), accuracy, model)
    result = {"C": best[0], "valid_accuracy": best[1], "by_C": by_c}
    if test_texts is not None:
        predicted = best[2].predict(vectorizer.transform(test_texts))
        result["test_accuracy"] = float(np.mean(predicted == np.asarray(test_labels)))
    result["seconds"] = time.perf_counter() - start
    return result
