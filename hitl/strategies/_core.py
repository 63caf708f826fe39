"""Shared pieces of the query strategies: the result type, input checks, top-k."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..errors import ConfigError, EmptyPoolError, ValidationError


class Selection(NamedTuple):
    """The items a strategy picked, best first.

    A ``NamedTuple``, so it unpacks as ``indices, scores`` exactly like the
    ``(indices, metrics)`` pair that modAL's own strategies return, which is what
    ``modAL.ActiveLearner.query`` expects of a ``query_strategy``.

    Attributes
    ----------
    indices : ndarray of int64
        Positions in the candidate pool, most informative first, no duplicates.
    scores : ndarray of float64
        Utility of each picked item (higher was picked earlier for score-based
        strategies). For a foreign (modAL-style) function run through
        :func:`select`, the metric it returned, in its own convention (modAL's
        ``margin_sampling`` returns margins, lower first), or ``nan`` when it
        returned none; its indices keep the function's order.

    Examples
    --------
    >>> import numpy as np
    >>> sel = Selection(np.array([2, 0]), np.array([0.9, 0.5]))
    >>> idx, scores = sel
    >>> idx.tolist()
    [2, 0]
    """

    indices: np.ndarray
    scores: np.ndarray

    @property
    def n(self) -> int:
        """Number of items picked."""
        return int(self.indices.shape[0])


def _empty_selection() -> Selection:
    return Selection(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))


def check_n_instances(n_instances: Any) -> int:
    """Validate a batch size: an integer >= 0."""
    if isinstance(n_instances, (bool, np.bool_)) or not isinstance(n_instances, (int, np.integer)):
        raise ConfigError(f"is {n_instances!r}", field="n_instances", expected="a non-negative integer")
    if n_instances < 0:
        raise ConfigError(f"is {n_instances}", field="n_instances", expected="a non-negative integer")
    return int(n_instances)


def check_proba(proba: Any, *, field: str = "proba", n_rows: int | None = None, check_values: bool = True) -> np.ndarray:
    """Return ``proba`` as a 2-d float array, or raise a typed error.

    Raises :class:`EmptyPoolError` for zero rows and :class:`ValidationError`
    naming the first bad row for NaN, infinite or negative values.
    """
    if not hasattr(proba, "shape") or not hasattr(proba, "dtype"):
        try:
            proba = np.asarray(proba, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValidationError("is not numeric", field=field, expected="an (n, k) array of probabilities") from None
    if proba.ndim != 2:
        raise ValidationError(f"has shape {tuple(proba.shape)}", field=field, expected="an (n, k) array of probabilities")
    if not (np.issubdtype(proba.dtype, np.floating) or np.issubdtype(proba.dtype, np.integer)):
        raise ValidationError(f"has dtype {proba.dtype}", field=field, expected="floating-point probabilities")
    if n_rows is not None and proba.shape[0] != n_rows:
        raise ValidationError(
            f"has {proba.shape[0]} rows for {n_rows} candidates", field=field, expected="one row per candidate"
        )
    if proba.shape[0] == 0:
        raise EmptyPoolError("no candidates to select from", field=field, expected="at least one unlabeled item")
    if proba.shape[1] == 0:
        raise ValidationError("has no columns", field=field, expected="at least one class")
    if not np.issubdtype(proba.dtype, np.floating):
        proba = proba.astype(np.float64)
    if check_values:
        _check_values(proba, field)
    return proba


def _check_values(proba: np.ndarray, field: str) -> None:
    # Reductions first (cheap); locate the culprit only when something is wrong.
    lo = proba.min()
    if np.isfinite(lo) and lo >= 0 and np.isfinite(proba.max()):
        return
    raise_bad_row(proba, field)


def raise_bad_row(proba: np.ndarray, field: str = "proba") -> None:
    """Raise the ValidationError that names the first NaN / infinite / negative row."""
    flat = proba.reshape(proba.shape[0], -1)
    nan_rows = np.isnan(flat).any(axis=1)
    if nan_rows.any():
        i = int(np.argmax(nan_rows))
        raise ValidationError("is NaN", item=i, field=field, expected="finite probabilities")
    inf_rows = np.isinf(flat).any(axis=1)
    if inf_rows.any():
        i = int(np.argmax(inf_rows))
        raise ValidationError("is infinite", item=i, field=field, expected="finite probabilities")
    neg_rows = (flat < 0).any(axis=1)
    if neg_rows.any():
        i = int(np.argmax(neg_rows))
        raise ValidationError(
            f"is negative ({float(flat[i].min())})", item=i, field=field, expected="probabilities >= 0"
        )


def rng_of(random_state: Any) -> np.random.Generator:
    """A numpy Generator from an int, None, a Generator or a legacy RandomState."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    return np.random.default_rng(random_state)


class InvalidScores(Exception):
    """Internal: a score was NaN, i.e. its row of probabilities was invalid."""

    def __init__(self, row: int) -> None:
        super().__init__(row)
        self.row = row


def top_k(scores: np.ndarray, k: int, random_state: Any = None) -> Selection:
    """The ``k`` highest scores, best first.

    Ties go to the lower index when ``random_state`` is None, and are ordered
    by a random draw from ``random_state`` otherwise (index order can be a
    systematic bias: a pool sorted by class, and a score with few distinct
    values, such as vote entropy, would take one class first).

    Linear time: on large arrays a threshold taken from a strided sample keeps a
    few times ``k`` survivors in one compiled pass, and only those are
    partitioned and sorted; on small ones ``np.argpartition`` does it. Raises
    :class:`InvalidScores` on a NaN score.

    Examples
    --------
    >>> import numpy as np
    >>> top_k(np.array([0.2, 0.9, 0.5, 0.9]), 3).indices.tolist()
    [1, 3, 2]
    """
    n = scores.shape[0]
    k = min(k, n)
    if k == 0:
        return _empty_selection()
    rng = None if random_state is None else rng_of(random_state)
    if n >= _SAMPLED_MIN_N and k * 8 <= n:
        survivors = _sampled_survivors(scores, k)
        if survivors is not None:
            # Every item tied with the k-th score is a survivor, so ties are settled among all of them.
            sel = _top_k_exact(scores[survivors], k, rng)
            return Selection(survivors[sel.indices], sel.scores)
    return _top_k_exact(scores, k, rng)


_SAMPLED_MIN_N = 1 << 16
_SAMPLE_SIZE = 1 << 14


def _sampled_survivors(scores: np.ndarray, k: int) -> np.ndarray | None:
    from ._kernels import indices_at_least

    n = scores.shape[0]
    step = max(1, n // _SAMPLE_SIZE)
    sample = np.array(scores[::step], dtype=np.float64)
    m = sample.shape[0]
    # Aim for about twice k survivors (plus slack) so the exact stage stays small
    # while a short count is rare; a short count falls back to the exact path.
    r = int(np.ceil(2.0 * k * m / n)) + 16
    if r >= m:
        return None
    threshold = float(np.partition(sample, m - r)[m - r])
    survivors = indices_at_least(scores, threshold)
    if survivors.shape[0] < k:
        return None
    return survivors


def _top_k_exact(scores: np.ndarray, k: int, rng: np.random.Generator | None = None) -> Selection:
    n = scores.shape[0]
    k = min(k, n)
    if k < n:
        # The k-th largest value; everything strictly above it is in, and the
        # remaining seats go to those equal to it: the lowest indices, or a random draw.
        part = np.argpartition(scores, n - k)[n - k :]
        vals = scores[part]
        if np.isnan(vals).any():
            raise InvalidScores(int(np.flatnonzero(np.isnan(scores))[0]))
        threshold = vals.min()
        above = part[vals > threshold]
        need = k - above.shape[0]
        if need > 0:
            ties = np.flatnonzero(scores == threshold)
            if rng is None:
                ties = ties[:need]
            else:
                ties = ties[rng.choice(ties.shape[0], size=need, replace=False)]
            chosen = np.concatenate([above, ties])
        else:
            chosen = above
    else:
        if np.isnan(scores).any():
            raise InvalidScores(int(np.flatnonzero(np.isnan(scores))[0]))
        chosen = np.arange(n)
    chosen = chosen.astype(np.int64, copy=False)
    # lexsort: last key is primary -> by score descending, then index (or a random priority).
    secondary = chosen if rng is None else rng.random(chosen.shape[0])
    order = np.lexsort((secondary, -scores[chosen]))
    chosen = chosen[order]
    return Selection(chosen, np.asarray(scores[chosen], dtype=np.float64))


class ProbaProxy:
    """A stand-in classifier whose ``predict_proba`` returns precomputed probabilities.

    It lets any modAL-style strategy run on probabilities the engine has already
    computed. It mimics the attributes modAL's learners expose (``classes_``,
    ``X_training``, ``on_transformed``, ``estimator``).

    Examples
    --------
    >>> import numpy as np
    >>> from modAL.uncertainty import margin_sampling
    >>> P = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    >>> idx, _ = margin_sampling(ProbaProxy(P), np.zeros((3, 1)), n_instances=1)
    >>> idx.tolist()
    [0]
    """

    def __init__(self, proba: np.ndarray, X_training: Any = None, model: Any = None) -> None:
        self.proba = proba
        self.X_training = X_training
        self.model = model
        self.estimator = self
        self.on_transformed = False
        self.classes_ = np.arange(proba.shape[1])
        self.n_classes_ = proba.shape[1]

    def predict_proba(self, X: Any, **kwargs: Any) -> np.ndarray:
        n = X.shape[0] if hasattr(X, "shape") else len(X)
        if n != self.proba.shape[0]:
            raise ValidationError(
                f"strategy asked for {n} rows, {self.proba.shape[0]} were precomputed",
                field="X",
                expected="the candidate pool",
            )
        return self.proba

    def predict(self, X: Any, **kwargs: Any) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)

    def transform_without_estimating(self, X: Any) -> Any:
        return X

    def __getattr__(self, name: str) -> Any:
        # Optional model capabilities (sample_proba, grad_embed, embed, ...) come from the real model.
        model = self.__dict__.get("model")
        if model is not None and not name.startswith("__"):
            return getattr(model, name)
        raise AttributeError(name)


def get_proba(classifier: Any, X: Any, *, check_values: bool = True, **predict_proba_kwargs: Any) -> np.ndarray:
    """``classifier.predict_proba(X)``, checked (values too unless the caller's kernel does it)."""
    if not hasattr(classifier, "predict_proba"):
        raise ValidationError(
            f"{type(classifier).__name__} has no predict_proba", field="classifier", expected="a probabilistic classifier"
        )
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    if n == 0:
        raise EmptyPoolError("no candidates to select from", field="X", expected="at least one unlabeled item")
    proba = classifier.predict_proba(X, **predict_proba_kwargs)
    return check_proba(proba, n_rows=n, check_values=check_values)
