"""A committee of models for query-by-committee and bagged uncertainty."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, clone, is_classifier

from ..errors import ConfigError, NotFittedError
from ._device import check_labels, check_positive_int, n_rows, take_rows

__all__ = ["Committee"]


def _default_member() -> Any:
    from sklearn.linear_model import LogisticRegression

    from .sklearn import SklearnModel

    return SklearnModel(LogisticRegression(max_iter=1000))


class Committee(BaseEstimator):
    """Several models voting on each item: bagged copies of one model, or different models.

    Every member predicts the same fixed ``n_classes`` columns, so
    :meth:`predict_proba_members` is a plain ``(n_members, n, k)`` array for
    vote entropy or KL-disagreement, and :meth:`predict_proba` is the
    members' mean (a protocol model in its own right).

    Parameters
    ----------
    models : model, list of models, or None
        A single model is cloned ``n_members`` times; a list gives one member
        per entry (``n_members`` is then ignored); None uses ``n_members``
        logistic regressions. Members are cloned at every ``fit``.
    n_members : int, default 5
    bagging : bool, default True
        Train each member on a bootstrap sample drawn within each class (every
        member sees every class present). Without bagging, copies of one model
        differ only by their ``random_state``.
    n_classes : int, optional
    random_state : int, optional
        Seeds the bootstrap samples and, for members that take one and have
        none set, their ``random_state``.

    Attributes
    ----------
    members_ : list of fitted models
    n_classes_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> c = Committee(n_members=3, random_state=0).fit(X[:300], y[:300])
    >>> c.predict_proba_members(X[300:305]).shape
    (3, 5, 10)
    """

    def __init__(
        self,
        models: Any | Sequence[Any] | None = None,
        n_members: int = 5,
        bagging: bool = True,
        n_classes: int | None = None,
        random_state: Any = None,
    ) -> None:
        self.models = models
        self.n_members = n_members
        self.bagging = bagging
        self.n_classes = n_classes
        self.random_state = random_state

    def _templates(self) -> list[Any]:
        if self.models is None:
            return [_default_member() for _ in range(check_positive_int(self.n_members, "n_members"))]
        if isinstance(self.models, (list, tuple)):
            if len(self.models) == 0:
                raise ConfigError("is empty", field="models", expected="at least one model")
            return list(self.models)
        return [self.models] * check_positive_int(self.n_members, "n_members")

    def fit(self, X: Any, y: Any) -> "Committee":
        y, k = check_labels(y, n_rows(X), self.n_classes)
        self.n_classes_ = k
        rng = np.random.default_rng(self.random_state)
        members = []
        for tmpl in self._templates():
            if not (hasattr(tmpl, "fit") and hasattr(tmpl, "predict_proba")):
                raise ConfigError(f"holds a {type(tmpl).__name__}", field="models",
                                  expected="models with fit and predict_proba")
            m = clone(tmpl, safe=False)
            params = m.get_params(deep=False) if hasattr(m, "get_params") else {}
            if "n_classes" in params and params["n_classes"] is None:
                m.set_params(n_classes=k)
            elif "n_classes" not in params and is_classifier(m):
                from .sklearn import SklearnModel

                m = SklearnModel(m, n_classes=k)  # a bare scikit-learn classifier: fix its columns
                params = {}
            seed = int(rng.integers(0, 2**31 - 1))
            if "random_state" in params and params["random_state"] is None:
                m.set_params(random_state=seed)
            if self.bagging:
                idx = _stratified_bootstrap(y, rng)
                m.fit(take_rows(X, idx), y[idx])
            else:
                m.fit(X, y)
            members.append(m)
        self.members_ = members
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "members_"):
            raise NotFittedError("predict_proba called before fit", field="Committee")

    def predict_proba_members(self, X: Any) -> np.ndarray:
        """``(n_members, n, n_classes)`` probabilities, one slice per member."""
        self._check_fitted()
        first = np.asarray(self.members_[0].predict_proba(X))
        out = np.empty((len(self.members_), *first.shape), dtype=first.dtype)
        out[0] = first
        for i, m in enumerate(self.members_[1:], start=1):
            out[i] = m.predict_proba(X)
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        """Mean of the members' probabilities (accumulated, never stacked)."""
        self._check_fitted()
        total = np.array(self.members_[0].predict_proba(X), dtype=np.float64)
        for m in self.members_[1:]:
            total += m.predict_proba(X)
        return total / len(self.members_)

    def predict(self, X: Any) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


def _stratified_bootstrap(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bootstrap sample that keeps each class's count: row i is redrawn within its own class."""
    order = np.argsort(y, kind="stable")
    _, starts, counts = np.unique(y[order], return_index=True, return_counts=True)
    cls = np.repeat(np.arange(len(counts)), counts)
    pick = starts[cls] + np.floor(rng.random(len(y)) * counts[cls]).astype(np.int64)
    return order[pick]
