"""The one entry point the engine calls: :func:`select`."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, ValidationError
from ._core import Selection, check_n_instances, check_proba
from .modal import run_foreign as _run_foreign
from . import bayesian as _bay
from . import committee as _com
from . import diversity as _div
from . import uncertainty as _unc

__all__ = ["select", "register", "STRATEGIES"]

# name -> (public modAL-style function, selector on precomputed probabilities).
# A selector is called as selector(proba, n, X=..., X_labeled=..., model=..., random_state=...).
STRATEGIES: dict[str, tuple[Callable[..., Any], Callable[..., Selection]]] = {}
_BY_FUNCTION: dict[Callable[..., Any], Callable[..., Selection]] = {}
# Selectors that reject NaN / negative probabilities inside their own scoring pass.
_SELF_VALIDATING: set[Callable[..., Selection]] = set()


def register(
    name: str, function: Callable[..., Any], selector: Callable[..., Selection], *, validates_proba: bool = False
) -> None:
    """Make a strategy known to :func:`select` by name and by function object.

    ``selector(proba, n, X=, X_labeled=, model=, random_state=, **params) -> Selection``
    works on precomputed probabilities; ``validates_proba`` says it rejects
    invalid probabilities itself (otherwise :func:`select` checks them first).
    """
    STRATEGIES[name] = (function, selector)
    _BY_FUNCTION[function] = selector
    if validates_proba:
        _SELF_VALIDATING.add(selector)


register("random", _unc.random, _unc._select_random)
register("least_confident", _unc.least_confident, _unc._select_least_confident, validates_proba=True)
register("margin", _unc.margin, _unc._select_margin, validates_proba=True)
register("entropy", _unc.entropy, _unc._select_entropy, validates_proba=True)
register("vote_entropy", _com.vote_entropy, _com._select_vote_entropy)
register("kl_to_consensus", _com.kl_to_consensus, _com._select_kl)
register("bald", _bay.bald, _bay._select_bald)
register("density_weighted", _div.density_weighted, _div._select_density_weighted, validates_proba=True)
register("core_set", _div.core_set, _div._select_core_set)
register("badge", _div.badge, _div._select_badge, validates_proba=True)
register("cluster_margin", _div.cluster_margin, _div._select_cluster_margin, validates_proba=True)
register("ranked_batch", _div.ranked_batch, _div._select_ranked_batch, validates_proba=True)


def select(
    strategy: str | Callable[..., Any],
    n_instances: int,
    *,
    proba: Any,
    X: Any = None,
    X_labeled: Any = None,
    model: Any = None,
    random_state: Any = None,
    **params: Any,
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
    **params
        Hyper-parameters of the strategy (e.g. ``n_samples`` for BALD,
        ``beta`` for density weighting), passed through.

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
    selector = _BY_FUNCTION.get(strategy)
    # Kernel-backed selectors validate values inside their scoring pass; the rest get a checked matrix.
    P = check_proba(proba, check_values=selector not in _SELF_VALIDATING)
    if X is not None:
        n_x = X.shape[0] if hasattr(X, "shape") else len(X)
        if n_x != P.shape[0]:
            raise ValidationError(
                f"has {n_x} rows for {P.shape[0]} candidates", field="X", expected="one row per candidate"
            )
    if selector is not None:
        unknown = set(params) - _named_parameters(selector) if params else set()
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {sorted(unknown)} for this strategy",
                field="params",
                expected=f"some of {sorted(_named_parameters(selector) - _STANDARD)}",
            )
        sel = selector(P, n, X=X, X_labeled=X_labeled, model=model, random_state=random_state, **params)
    else:
        sel = _run_foreign(
            strategy, P, n, X=X, X_labeled=X_labeled, model=model, random_state=random_state, **params
        )
    return sel


_STANDARD = {"proba", "n", "X", "X_labeled", "model", "random_state"}


@functools.lru_cache(maxsize=None)
def _named_parameters(fn: Callable[..., Any]) -> frozenset[str]:
    """Keyword parameters a selector names (its ``**_`` only absorbs the standard ones)."""
    return frozenset(
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )
