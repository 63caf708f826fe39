"""The one entry point the engine calls: :func:`select`."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, ValidationError
from ._core import ProbaProxy, Selection, check_n_instances, check_proba, rng_of
from . import uncertainty as _unc

__all__ = ["select", "register", "STRATEGIES"]

# name -> (public modAL-style function, selector on precomputed probabilities).
# A selector is called as selector(proba, n, X=..., X_labeled=..., model=..., random_state=...).
STRATEGIES: dict[str, tuple[Callable[..., Any], Callable[..., Selection]]] = {}
_BY_FUNCTION: dict[Callable[..., Any], Callable[..., Selection]] = {}


def register(name: str, function: Callable[..., Any], selector: Callable[..., Selection]) -> None:
    """Make a strategy known to :func:`select` by name and by function object."""
    STRATEGIES[name] = (function, selector)
    _BY_FUNCTION[function] = selector


register("random", _unc.random, _unc._select_random)
register("least_confident", _unc.least_confident, _unc._select_least_confident)
register("margin", _unc.margin, _unc._select_margin)
register("entropy", _unc.entropy, _unc._select_entropy)


def select(
    strategy: str | Callable[..., Any],
    n_instances: int,
    *,
    proba: Any,
    X: Any = None,
    X_labeled: Any = None,
    model: Any = None,
    random_state: Any = None,
) -> Selection:
    """Choose up to ``n_instances`` candidates to label, best first.

    Parameters
    ----------
    strategy : str or callable
        A strategy of :mod:`hitl.strategies` (the function or its name, e.g.
        ``"margin"``), or any modAL-style function
        ``f(classifier, X, n_instances=..., **kw)``; the latter is run through a
        stand-in classifier whose ``predict_proba`` returns ``proba``.
    n_instances : int
        Batch size; the result has ``min(n_instances, n_candidates)`` items.
    proba : array of shape (n_candidates, k)
        Model probabilities of the unlabeled candidates.
    X : array of shape (n_candidates, d), optional
        Features of the candidates (needed by diversity strategies).
    X_labeled : array of shape (n_labeled, d), optional
        Features of the labeled items (needed by diversity strategies).
    model : object, optional
        The fitted model, for strategies that need more than probabilities
        (``sample_proba``, ``grad_embed``, a committee).
    random_state : int, Generator or None
        Seed for strategies with randomness.

    Returns
    -------
    Selection
        ``indices`` (int64, into the candidates) and ``scores`` (float64).

    Raises
    ------
    EmptyPoolError
        When there are no candidates.
    ValidationError
        When ``proba`` is not a finite, non-negative (n, k) matrix, or ``X``
        does not have one row per candidate.

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3]])
    >>> select("margin", 2, proba=P).indices.tolist()
    [1, 2]
    >>> from modAL.uncertainty import margin_sampling
    >>> select(margin_sampling, 2, proba=P).indices.tolist()
    [1, 2]
    """
    n = check_n_instances(n_instances)
    if isinstance(strategy, str):
        try:
            strategy = STRATEGIES[strategy][0]
        except KeyError:
            raise ConfigError(
                f"unknown strategy {strategy!r}", field="strategy", expected=f"one of {sorted(STRATEGIES)} or a function"
            ) from None
    if not callable(strategy):
        raise ConfigError(f"is {type(strategy).__name__}", field="strategy", expected="a strategy name or function")
    P = check_proba(proba)
    if X is not None:
        n_x = X.shape[0] if hasattr(X, "shape") else len(X)
        if n_x != P.shape[0]:
            raise ValidationError(
                f"has {n_x} rows for {P.shape[0]} candidates", field="X", expected="one row per candidate"
            )
    selector = _BY_FUNCTION.get(strategy)
    if selector is not None:
        sel = selector(P, n, X=X, X_labeled=X_labeled, model=model, random_state=random_state)
    else:
        sel = _run_foreign(strategy, P, n, X=X, X_labeled=X_labeled, model=model, random_state=random_state)
    return sel


def _run_foreign(
    fn: Callable[..., Any], P: np.ndarray, n: int, *, X: Any, X_labeled: Any, model: Any, random_state: Any
) -> Selection:
    """Run a modAL-style strategy on precomputed probabilities and normalise its answer."""
    n_cand = P.shape[0]
    k = min(n, n_cand)
    if k == 0:
        return Selection(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))
    proxy = ProbaProxy(P, X_training=X_labeled, model=model)
    X_arg = X if X is not None else np.zeros((n_cand, 0))
    kwargs: dict[str, Any] = {"n_instances": k}
    try:
        params = inspect.signature(fn).parameters
        if "random_state" in params:
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
