"""Uncertainty sampling: least-confident, margin, entropy; and random sampling.

Each strategy comes in two forms:

- a modAL-style function ``strategy(classifier, X, n_instances=1, **kw) -> Selection``
  that calls ``classifier.predict_proba(X)`` (usable as ``query_strategy=`` of a
  ``modAL.ActiveLearner``), and
- a score-only function ``strategy_scores(proba) -> (n,)`` on a probability
  matrix, where a higher score means a more informative item.

Ties are broken by index: among equal scores the lower position comes first,
so the picks depend only on the probabilities (``random_state`` only matters
for :func:`random`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import Selection, check_n_instances, check_proba, get_proba, rng_of, top_k

__all__ = [
    "least_confident",
    "margin",
    "entropy",
    "random",
    "least_confident_scores",
    "margin_scores",
    "entropy_scores",
    "random_scores",
]


# --------------------------------------------------------------------------- score-only forms


def least_confident_scores(proba: Any) -> np.ndarray:
    """``1 - max_c p(c)`` per row: how unsure the model is of its top class.

    Examples
    --------
    >>> least_confident_scores([[0.9, 0.1], [0.6, 0.4]]).round(2).tolist()
    [0.1, 0.4]
    """
    P = check_proba(proba)
    return 1.0 - P.max(axis=1).astype(np.float64)


def margin_scores(proba: Any) -> np.ndarray:
    """``1 - (p_top1 - p_top2)`` per row: a small margin gives a high score.

    Examples
    --------
    >>> margin_scores([[0.9, 0.1, 0.0], [0.5, 0.3, 0.2]]).round(2).tolist()
    [0.2, 0.8]
    """
    P = check_proba(proba)
    if P.shape[1] == 1:
        return 1.0 - P[:, 0].astype(np.float64)
    part = np.partition(P, P.shape[1] - 2, axis=1)
    return 1.0 - (part[:, -1].astype(np.float64) - part[:, -2])


def entropy_scores(proba: Any) -> np.ndarray:
    """Shannon entropy ``-sum_c p(c) log p(c)`` (nats) per row, with ``0 log 0 = 0``.

    Rows are used as given (not renormalised).

    Examples
    --------
    >>> entropy_scores([[0.5, 0.5], [1.0, 0.0]]).round(4).tolist()
    [0.6931, 0.0]
    """
    P = check_proba(proba)
    return _entropy_rows(P)


def _entropy_rows(P: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = P * np.log(P, dtype=np.float64)
    terms[P == 0] = 0.0
    return 0.0 - terms.sum(axis=1)  # 0.0 - x turns -0.0 into 0.0


def random_scores(n: int, random_state: Any = None) -> np.ndarray:
    """Uniform random priorities in [0, 1), one per item (seeded by ``random_state``)."""
    return rng_of(random_state).random(n)


# --------------------------------------------------------------------------- selectors on probabilities


def _select_least_confident(proba: np.ndarray, n: int, **_: Any) -> Selection:
    return top_k(least_confident_scores(proba), n)


def _select_margin(proba: np.ndarray, n: int, **_: Any) -> Selection:
    return top_k(margin_scores(proba), n)


def _select_entropy(proba: np.ndarray, n: int, **_: Any) -> Selection:
    return top_k(entropy_scores(proba), n)


def _select_random(proba: np.ndarray, n: int, *, random_state: Any = None, **_: Any) -> Selection:
    return top_k(random_scores(proba.shape[0], random_state), n)


# --------------------------------------------------------------------------- modAL-style functions


def least_confident(classifier: Any, X: Any, n_instances: int = 1, **predict_proba_kwargs: Any) -> Selection:
    """Pick the items whose most probable class is least probable.

    Same picks as ``modAL.uncertainty.uncertainty_sampling`` (ties aside).

    Parameters
    ----------
    classifier : object with ``predict_proba``
    X : array-like of shape (n, d)
        The unlabeled pool.
    n_instances : int
        Batch size; fewer are returned when the pool is smaller.
    **predict_proba_kwargs
        Passed to ``classifier.predict_proba``.

    Returns
    -------
    Selection
        ``(indices, scores)``, best first.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [1.5]])
    >>> clf = LogisticRegression().fit(X[:4], [0, 0, 1, 1])
    >>> least_confident(clf, X, n_instances=1).indices.tolist()
    [4]
    """
    n = check_n_instances(n_instances)
    return _select_least_confident(get_proba(classifier, X, **predict_proba_kwargs), n)


def margin(classifier: Any, X: Any, n_instances: int = 1, **predict_proba_kwargs: Any) -> Selection:
    """Pick the items with the smallest gap between the two most probable classes.

    Same picks as ``modAL.uncertainty.margin_sampling`` (ties aside).
    Parameters and return value as in :func:`least_confident`.

    Examples
    --------
    >>> import numpy as np
    >>> from modAL.models import ActiveLearner
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [1.5]])
    >>> learner = ActiveLearner(LogisticRegression(), query_strategy=margin, X_training=X[:4], y_training=[0, 0, 1, 1])
    >>> idx, rows = learner.query(X, n_instances=2)
    >>> idx.tolist()
    [4, 1]
    """
    n = check_n_instances(n_instances)
    return _select_margin(get_proba(classifier, X, **predict_proba_kwargs), n)


def entropy(classifier: Any, X: Any, n_instances: int = 1, **predict_proba_kwargs: Any) -> Selection:
    """Pick the items whose predicted class distribution has the highest entropy.

    Same picks as ``modAL.uncertainty.entropy_sampling`` on normalised rows (ties aside).
    Parameters and return value as in :func:`least_confident`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [1.5]])
    >>> clf = LogisticRegression().fit(X[:4], [0, 0, 1, 1])
    >>> entropy(clf, X, n_instances=1).indices.tolist()
    [4]
    """
    n = check_n_instances(n_instances)
    return _select_entropy(get_proba(classifier, X, **predict_proba_kwargs), n)


def random(classifier: Any, X: Any, n_instances: int = 1, random_state: Any = None, **_: Any) -> Selection:
    """Pick items uniformly at random, without replacement (the classifier is not used).

    Examples
    --------
    >>> import numpy as np
    >>> random(None, np.zeros((10, 2)), n_instances=3, random_state=0).indices.shape
    (3,)
    """
    from ..errors import EmptyPoolError

    n = check_n_instances(n_instances)
    size = X.shape[0] if hasattr(X, "shape") else len(X)
    if size == 0:
        raise EmptyPoolError("no candidates to select from", field="X", expected="at least one unlabeled item")
    return top_k(random_scores(size, random_state), n)
