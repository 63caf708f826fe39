"""Adapter for any scikit-learn classifier."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

from ..errors import ConfigError, NotFittedError, ValidationError


class SklearnModel(BaseEstimator):
    """Wrap a scikit-learn classifier so it speaks the ``hitl`` model protocol.

    The wrapper fixes the class layout to ``n_classes`` columns: classes absent
    from the training labels get probability 0, and a training set with a single
    class yields a constant prediction instead of the estimator's error. The
    estimator is cloned on every ``fit``, so refitting never leaks state between
    rounds.

    Parameters
    ----------
    estimator : sklearn classifier
        Any object with ``fit`` and ``predict_proba`` (a ``Pipeline`` works too).
    n_classes : int, optional
        Number of classes; labels are integers in ``[0, n_classes)``. When not
        given it is taken from ``max(y) + 1`` at the first ``fit``.

    Attributes
    ----------
    estimator_ : fitted clone of ``estimator`` (None if only one class was seen)
    classes_seen_ : ndarray of the class indices present at fit time
    n_classes_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> m = SklearnModel(LogisticRegression(), n_classes=3).fit(X, np.array([0, 0, 1, 1]))
    >>> m.predict_proba(X).shape
    (4, 3)
    >>> float(m.predict_proba(X)[:, 2].max())   # class 2 never seen
    0.0
    """

    def __init__(self, estimator: Any, n_classes: int | None = None) -> None:
        self.estimator = estimator
        self.n_classes = n_classes

    def fit(self, X: Any, y: Any) -> "SklearnModel":
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValidationError(f"has shape {y.shape}", field="y", expected="a 1-d array of class indices")
        if len(y) == 0:
            raise ValidationError("is empty", field="y", expected="at least one labeled item")
        if len(y) != _n_rows(X):
            raise ValidationError(
                f"has {len(y)} labels for {_n_rows(X)} rows", field="y", expected="one label per row of X"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise ValidationError(f"has dtype {y.dtype}", field="y", expected="integer class indices")
        if y.min() < 0:
            raise ValidationError(f"holds {int(y.min())}", field="y", expected="class indices >= 0")
        k = self.n_classes if self.n_classes is not None else int(y.max()) + 1
        if k < 1:
            raise ConfigError(f"is {k}", field="n_classes", expected="a positive number of classes")
        if y.max() >= k:
            bad = int(np.argmax(y >= k))
            raise ValidationError(
                f"is {int(y[bad])}", item=bad, field="y", expected=f"class indices in [0, {k})"
            )
        self.n_classes_ = k
        self.classes_seen_ = np.unique(y)
        if len(self.classes_seen_) == 1:
            # Most classifiers refuse one class; a constant prediction is the honest answer.
            self.estimator_ = None
        else:
            self.estimator_ = clone(self.estimator).fit(X, y)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        if not hasattr(self, "n_classes_"):
            raise NotFittedError("predict_proba called before fit", field="SklearnModel")
        n = _n_rows(X)
        out = np.zeros((n, self.n_classes_), dtype=np.float64)
        if self.estimator_ is None:
            out[:, self.classes_seen_[0]] = 1.0
            return out
        if n == 0:
            return out
        p = self.estimator_.predict_proba(X)
        # The estimator orders its columns by the classes it saw; put them in place.
        cols = np.asarray(self.estimator_.classes_, dtype=np.int64)
        out[:, cols] = p
        return out

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class index of each row."""
        return self.predict_proba(X).argmax(axis=1)


def _n_rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None else len(X)
