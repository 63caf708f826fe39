"""The model protocol every pre-labeling model follows.

A model sees features ``X`` and integer labels ``y`` in ``[0, n_classes)``; it
returns a probability for each of the ``n_classes`` classes, including classes it
has not seen yet (they get probability 0). That fixed column layout is what lets
the engine, the strategies and the aggregators pass plain ``(n, k)`` arrays.

Required: ``fit(X, y) -> self``, ``predict_proba(X) -> (n, k) float array``.
Optional: ``embed(X) -> (n, d)`` (feature space for diversity strategies),
``sample_proba(X, n_samples) -> (n_samples, n, k)`` (Monte-Carlo samples for BALD),
``grad_embed(X) -> (n, d)`` (gradient embeddings for BADGE).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Model(Protocol):
    """What the engine needs of a model: ``fit`` and ``predict_proba`` over fixed classes."""

    n_classes: int

    def fit(self, X: Any, y: np.ndarray) -> "Model": ...

    def predict_proba(self, X: Any) -> np.ndarray: ...


def predict(model: Model, X: Any) -> np.ndarray:
    """Most probable class index of each row.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from hitl.models import SklearnModel
    >>> m = SklearnModel(LogisticRegression(), n_classes=3).fit(np.eye(2), np.array([0, 2]))
    >>> predict(m, np.eye(2)).tolist()
    [0, 2]
    """
    return np.asarray(model.predict_proba(X)).argmax(axis=1)
