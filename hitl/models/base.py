"""The model protocol every pre-labeling model follows.

A model sees features ``X`` and integer labels ``y`` in ``[0, n_classes)``; it
returns a probability for each of the ``n_classes`` classes, including classes it
has not seen yet (they get probability 0). That fixed column layout is what lets
the engine, the strategies and the aggregators pass plain ``(n, k)`` arrays.

Required: ``fit(X, y) -> self``, ``predict_proba(X) -> (n, k) float array``
(float64 or float32; rows sum to 1), and an ``n_classes`` attribute (``None``
until the first ``fit`` fixes it from ``max(y) + 1``).

Optional, each present only when the model can honour it (test with ``hasattr``):

- ``embed(X) -> (n, d)``: a feature space for diversity strategies (core-set,
  ranked batch).
- ``sample_proba(X, n_samples) -> (n_samples, n, k)``: Monte-Carlo samples of the
  predictive distribution (MC dropout) for BALD and other Bayesian strategies.
- ``sample_stats(X, n_samples) -> (mean_proba (n, k), expected_entropy (n,))``:
  the same samples summarised in the memory of one pass; BALD is
  ``entropy(mean_proba) - expected_entropy``. Prefer it on large pools.
- ``grad_embed(X) -> (n, k * d)``: gradient embeddings of the last layer at the
  predicted label, for BADGE.
- ``predict_logits(X) -> (n, k)``: raw scores (``-inf`` for classes never seen);
  calibration uses them for temperature scaling.
- ``predict_proba_members(X) -> (n_members, n, k)``: per-member probabilities of a
  committee, for query-by-committee.

Members: :class:`~hitl.models.SklearnModel`, :class:`~hitl.models.TorchClassifier`,
:class:`~hitl.models.TransformerClassifier`, :class:`~hitl.models.Committee` and
:class:`~hitl.models.CalibratedModel` (which keeps exactly the optional methods of
the model it wraps).
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
