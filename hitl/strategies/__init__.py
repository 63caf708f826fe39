"""Query strategies: which unlabeled items are worth a human's time.

Every strategy is a plain function usable as a modAL ``query_strategy``
(``strategy(classifier, X, n_instances=1, **kw) -> Selection``) and has a
score-only form on a probability matrix. The engine calls :func:`select` with
probabilities it computed once per round.

Examples
--------
>>> import numpy as np
>>> from hitl.strategies import select, margin_scores
>>> P = np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3]])
>>> sel = select("margin", 2, proba=P)
>>> sel.indices.tolist(), sel.scores.round(2).tolist()
([1, 2], [1.0, 0.6])
"""

from ._core import ProbaProxy, Selection, top_k
from .select import STRATEGIES, register, select
from .uncertainty import (
    entropy,
    entropy_scores,
    least_confident,
    least_confident_scores,
    margin,
    margin_scores,
    random,
    random_scores,
)

__all__ = [
    "Selection",
    "select",
    "register",
    "STRATEGIES",
    "ProbaProxy",
    "top_k",
    "random",
    "least_confident",
    "margin",
    "entropy",
    "random_scores",
    "least_confident_scores",
    "margin_scores",
    "entropy_scores",
]
