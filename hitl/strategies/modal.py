"""modAL interoperability: run modAL-style strategies on precomputed probabilities.

Also the small look-ups the modAL-style forms of our own strategies share:
finding an optional model capability (``sample_proba``, ``grad_embed``,
``embed``) on a modAL learner, its estimator, or a ``hitl`` model, and the
labeled features a modAL learner keeps in ``X_training``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

from ..errors import ValidationError
from ._core import ProbaProxy, Selection, rng_of

__all__ = ["run_foreign", "find_capability", "labeled_features"]


def find_capability(obj: Any, name: str) -> Any:
    """``obj.name`` if present, else on ``obj.estimator`` or ``obj.model`` (modAL learners, wrappers); or None."""
    seen = set()
    for candidate in (obj, getattr(obj, "estimator", None), getattr(obj, "model", None)):
        if candidate is None or id(candidate) in seen:
            continue
        seen.add(id(candidate))
        try:
            attr = getattr(candidate, name)
        except AttributeError:
            continue
        if attr is not None:
            return attr
    return None


def labeled_features(classifier: Any) -> Any:
    """The labeled features a modAL learner was taught (``X_training``), or None."""
    X = getattr(classifier, "X_training", None)
    if X is None:
        return None
    return X


def run_foreign(
    fn: Callable[..., Any],
    P: np.ndarray,
    n: int,
    *,
    X: Any,
    X_labeled: Any,
    model: Any,
    random_state: Any,
    **params: Any,
) -> Selection:
    """Run a modAL-style strategy on precomputed probabilities and normalise its answer."""
    n_cand = P.shape[0]
    k = min(n, n_cand)
    if k == 0:
        return Selection(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))
    if X_labeled is not None and (X_labeled.shape[0] if hasattr(X_labeled, "shape") else len(X_labeled)) == 0:
        X_labeled = None  # modAL reads "no labeled data" as X_training is None
    proxy = ProbaProxy(P, X_training=X_labeled, model=model)
    X_arg = X if X is not None else np.zeros((n_cand, 0))
    kwargs: dict[str, Any] = {"n_instances": k, **params}
    try:
        accepted = inspect.signature(fn).parameters
        if "random_state" in accepted:
            kwargs["random_state"] = random_state
    except (TypeError, ValueError):
        pass
    if random_state is not None and "random_state" not in kwargs:
        # modAL's random tie-breaking draws from numpy's global generator; seed it
        # for this call only so the picks are reproducible, then restore it.
        state = np.random.get_state()
        np.random.seed(rng_of(random_state).integers(0, 2**32 - 1))
        try:
            out = fn(proxy, X_arg, **kwargs)
        finally:
            np.random.set_state(state)
    else:
        out = fn(proxy, X_arg, **kwargs)
    return _normalise(out, n_cand, k, getattr(fn, "__name__", repr(fn)))


def _normalise(out: Any, n_cand: int, k: int, name: str) -> Selection:
    scores = None
    if isinstance(out, tuple):
        if len(out) == 0:
            raise ValidationError("returned an empty tuple", field=name, expected="indices or (indices, scores)")
        idx = out[0]
        if len(out) > 1 and out[-1] is not None:
            scores = out[-1]
    else:
        idx = out
    idx = np.asarray(idx).reshape(-1)
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        if np.issubdtype(idx.dtype, np.floating) and np.all(idx == np.round(idx)):
            idx = idx.astype(np.int64)
        else:
            raise ValidationError(f"returned indices of dtype {idx.dtype}", field=name, expected="integer positions")
    idx = idx.astype(np.int64, copy=False)
    if idx.size and (idx.min() < 0 or idx.max() >= n_cand):
        raise ValidationError("returned an index out of range", field=name, expected=f"positions in [0, {n_cand})")
    # Keep the first occurrence of each index, in the function's order.
    _, first = np.unique(idx, return_index=True)
    keep = np.sort(first)
    idx = idx[keep][:k]
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        s = s[keep][:k] if s.shape[0] >= keep.max(initial=-1) + 1 else np.full(idx.shape[0], np.nan)
    else:
        s = np.full(idx.shape[0], np.nan)
    return Selection(idx, s)
