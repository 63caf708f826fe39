"""BALD: Bayesian active learning by disagreement, from Monte-Carlo samples.

The model draws ``n_samples`` probability matrices (``sample_proba(X, n_samples)
-> (n_samples, n, k)``: MC dropout, an ensemble, a posterior sample). BALD scores
each item by the mutual information between its label and the model
parameters (Houlsby et al., 2011; Gal et al., 2017):

    I(y; w) = H[mean_t p_t] - mean_t H[p_t]

high where the samples are individually confident but disagree with each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, ValidationError
from ._core import Selection, check_n_instances, top_k
from .committee import check_member_proba
from .modal import find_capability

__all__ = ["bald", "bald_scores", "sample_proba_of"]


def _entropy_last_axis(p: np.ndarray) -> np.ndarray:
    out = np.zeros(p.shape[:-1], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    out -= terms.sum(axis=-1)
    return out


def bald_scores(samples: Any) -> np.ndarray:
    """Mutual information per item from ``(n_samples, n, k)`` Monte-Carlo probabilities.

    Examples
    --------
    >>> import numpy as np
    >>> S = np.array([[[0.5, 0.5], [1.0, 0.0]], [[0.5, 0.5], [0.0, 1.0]]])   # 2 samples, 2 items
    >>> bald_scores(S).round(4).tolist()     # item 0: unsure but agreed; item 1: sure but split
    [0.0, 0.6931]
    """
    S = check_member_proba(samples, field="samples")
    mean = S.mean(axis=0)
    mi = _entropy_last_axis(mean) - _entropy_last_axis(S).mean(axis=0)
    return np.maximum(mi, 0.0)  # rounding can leave -1e-17


def sample_proba_of(model: Any, X: Any, n_samples: int) -> np.ndarray:
    """``model.sample_proba(X, n_samples)`` (found on a modAL learner's estimator too), checked."""
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ConfigError(f"is {n_samples!r}", field="n_samples", expected="an integer >= 2")
    fn = find_capability(model, "sample_proba")
    if fn is None:
        raise ConfigError(
            f"{type(model).__name__} has no sample_proba",
            field="model",
            expected="a model with sample_proba(X, n_samples) (MC dropout, ensemble)",
        )
    S = np.asarray(fn(X, n_samples))
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    if S.ndim != 3 or S.shape[1] != n:
        raise ValidationError(f"has shape {S.shape}", field="sample_proba", expected=f"(n_samples, {n}, k)")
    return S


def bald(
    classifier: Any, X: Any, n_instances: int = 1, n_samples: int = 20, random_state: Any = None, **_: Any
) -> Selection:
    """Pick the items with the highest BALD mutual information.

    Parameters
    ----------
    classifier : model with ``sample_proba(X, n_samples)``
        A ``hitl`` model, or a modAL learner whose estimator has it.
    X : array-like of shape (n, d)
    n_instances : int
    n_samples : int
        Monte-Carlo samples to draw.

    Examples
    --------
    >>> import numpy as np
    >>> class Coin:
    ...     def sample_proba(self, X, n_samples):
    ...         rng = np.random.default_rng(0)
    ...         p = rng.uniform(size=(n_samples, len(X), 1)) * (np.arange(len(X)) % 2)[None, :, None]
    ...         return np.concatenate([p, 1 - p], axis=2)
    >>> sorted(bald(Coin(), np.zeros((6, 1)), n_instances=3, n_samples=10).indices.tolist())   # odd items disagree
    [1, 3, 5]
    """
    n = check_n_instances(n_instances)
    return top_k(bald_scores(sample_proba_of(classifier, X, n_samples)), n, random_state)


def _select_bald(
    proba: np.ndarray, n: int, *, X: Any = None, model: Any = None, n_samples: int = 20,
    random_state: Any = None, **_: Any,
) -> Selection:
    if X is None:
        raise ConfigError("is None", field="X", expected="candidate features, which sample_proba scores")
    S = sample_proba_of(model, X, n_samples)
    if S.shape[2] != proba.shape[1]:
        raise ValidationError(
            f"has {S.shape[2]} classes, proba has {proba.shape[1]}", field="sample_proba", expected="the same classes"
        )
    return top_k(bald_scores(S), n, random_state)
