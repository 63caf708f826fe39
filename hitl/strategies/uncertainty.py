"""Uncertainty sampling: least-confident, margin, entropy; and random sampling.

Each strategy comes in two forms:

- a modAL-style function ``strategy(classifier, X, n_instances=1, **kw) -> Selection``
  that calls ``classifier.predict_proba(X)`` (usable as ``query_strategy=`` of a
  ``modAL.ActiveLearner``), and
- a score-only function ``strategy_scores(proba) -> (n,)`` on a probability
  matrix, where a higher score means a more informative item.

Ties: among equal scores the lower position comes first when no
``random_state`` is given; with one, ties are ordered by a random draw from it
(deterministic for a given seed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _kernels as _k
from ._core import (
    InvalidScores,
    Selection,
    check_n_instances,
    check_proba,
    get_proba,
    raise_bad_row,
    rng_of,
    top_k,
)

__all__ = [
    "least_confident",
    "margin",
    "entropy",
    "random",
    "least_confident_scores",
    "margin_scores",
    "entropy_scores",
    "random_scores",
]


# --------------------------------------------------------------------------- row scoring

#: Rows scored per kernel call for memory-mapped pools; after each block its pages
#: are handed back to the OS, so resident memory stays near one block.
CHUNK_ROWS = 1 << 20


def _as_kernel_input(P: np.ndarray) -> np.ndarray:
    if P.dtype not in (np.float32, np.float64):
        P = P.astype(np.float64)
    return P


def _chunks(P: np.ndarray, chunk_rows: int | None):
    """Yield (lo, hi, block): one block for in-memory arrays, bounded blocks for memmaps."""
    n = P.shape[0]
    if chunk_rows is None:
        chunk_rows = CHUNK_ROWS if isinstance(P, np.memmap) else n
    chunk_rows = max(1, int(chunk_rows))
    for lo in range(0, n, chunk_rows):
        hi = min(n, lo + chunk_rows)
        # np.asarray drops the memmap subclass (a zero-copy view), which the kernels expect.
        yield lo, hi, _as_kernel_input(np.asarray(P[lo:hi]))
        if isinstance(P, np.memmap):
            _release_pages(P, lo, hi)


def _release_pages(P: np.memmap, lo: int, hi: int) -> None:
    """Drop rows ``lo:hi`` of a shared, file-backed memmap from this process's resident set.

    ``MADV_DONTNEED`` on a shared file mapping only unmaps the pages here; the
    data stays in the file and the page cache and is read again on the next
    access. Private (copy-on-write, mode "c") maps are left alone: there it
    would discard changes. Best effort: any failure leaves the pages mapped.
    """
    import mmap

    mm = getattr(P, "_mmap", None)
    if mm is None or getattr(P, "mode", None) not in ("r", "r+") or not hasattr(mm, "madvise"):
        return
    if not P.flags.c_contiguous:
        return
    try:
        base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
        start = P.ctypes.data - base + lo * P.strides[0]
        stop = P.ctypes.data - base + hi * P.strides[0]
        page = mmap.PAGESIZE
        start = -(-start // page) * page  # whole pages inside the block only
        stop = (stop // page) * page
        if stop > start:
            mm.madvise(mmap.MADV_DONTNEED, start, stop - start)
    except (AttributeError, BufferError, OSError, TypeError, ValueError):
        pass


def _score_rows(kernel: Any, P: np.ndarray, chunk_rows: int | None = None) -> np.ndarray:
    out = np.empty(P.shape[0], dtype=np.float64)
    with _k.threads_for(P.shape[0] * P.shape[1]):
        for lo, hi, block in _chunks(P, chunk_rows):
            kernel(block, out[lo:hi])
    return out


def _raise_if_nan(scores: np.ndarray, P: np.ndarray) -> None:
    if np.isnan(scores).any():
        raise_bad_row(P)


def _top(scores: np.ndarray, n: int, P: np.ndarray, random_state: Any = None) -> Selection:
    try:
        return top_k(scores, n, random_state)
    except InvalidScores:
        raise_bad_row(P)
        raise  # unreachable: raise_bad_row always raises on an invalid matrix


# --------------------------------------------------------------------------- score-only forms


def least_confident_scores(proba: Any, *, chunk_rows: int | None = None) -> np.ndarray:
    """``1 - max_c p(c)`` per row: how unsure the model is of its top class.

    Parameters
    ----------
    proba : array of shape (n, k)
        Probabilities; a ``numpy.memmap`` is read in chunks of ``chunk_rows``.

    Examples
    --------
    >>> least_confident_scores([[0.9, 0.1], [0.6, 0.4]]).round(2).tolist()
    [0.1, 0.4]
    """
    P = check_proba(proba, check_values=False)
    out = _score_rows(_k.least_confident_rows, P, chunk_rows)
    _raise_if_nan(out, P)
    return out


def margin_scores(proba: Any, *, chunk_rows: int | None = None) -> np.ndarray:
    """``1 - (p_top1 - p_top2)`` per row: a small margin gives a high score.

    Examples
    --------
    >>> margin_scores([[0.9, 0.1, 0.0], [0.5, 0.3, 0.2]]).round(2).tolist()
    [0.2, 0.8]
    """
    P = check_proba(proba, check_values=False)
    out = _score_rows(_k.margin_rows, P, chunk_rows)
    _raise_if_nan(out, P)
    return out


def entropy_scores(proba: Any, *, chunk_rows: int | None = None) -> np.ndarray:
    """Shannon entropy ``-sum_c p(c) log p(c)`` (nats) per row, with ``0 log 0 = 0``.

    Rows are used as given (not renormalised).

    Examples
    --------
    >>> entropy_scores([[0.5, 0.5], [1.0, 0.0]]).round(4).tolist()
    [0.6931, 0.0]
    """
    P = check_proba(proba, check_values=False)
    out = _score_rows(_k.entropy_rows, P, chunk_rows)
    _raise_if_nan(out, P)
    return out


def random_scores(n: int, random_state: Any = None) -> np.ndarray:
    """Uniform random priorities in [0, 1), one per item (seeded by ``random_state``)."""
    return rng_of(random_state).random(n)


# --------------------------------------------------------------------------- selectors on probabilities


# Pools at least this large (and batches at most 1/8 of them) take the fused one-pass path.
_FUSED_MIN_ROWS = 1 << 16
_SAMPLE_BLOCKS = 64
_SAMPLE_RUN = 64
# Rows whose sum is off 1 by more than this are never pruned by the entropy bounds.
_SUM_SLACK = 1e-4
# Prune only where the bound is below the threshold by more than rounding can explain.
_BOUND_TOL = 1e-9


def _entropy_bound(m: float, k: int, slack: float = _SUM_SLACK) -> float:
    """Largest entropy of a row with top probability ``m`` whose other classes share ``1 - m + slack`` evenly."""
    r = max(0.0, 1.0 - m + slack)
    h = 0.0
    if m > 0:
        h -= m * np.log(m)
    if r > 0:
        h -= r * np.log(r / (k - 1))
    return h


def _entropy_key_cut(t: float, k: int) -> float:
    """Rows with ``1 - max < key_cut`` have entropy below ``t``; -inf when nothing can be pruned.

    The bound above (Jensen: the rest spread evenly maximises their entropy)
    holds for rows summing to ``1 +- slack``: there the rest ``r <= 1 + slack - m``
    stays below ``(k - 1) / e``, where ``r log((k - 1) / r)`` still grows with
    ``r``. For k >= 3 the bound falls as the top probability rises past
    ``(1 + slack) / k``; bisection finds where it crosses ``t``.
    """
    if k < 3:
        return -np.inf
    lo, hi = (1.0 + _SUM_SLACK) / k, 1.0
    target = t - _BOUND_TOL
    if _entropy_bound(hi, k) >= target:
        return -np.inf
    if _entropy_bound(lo, k) < target:
        m_cut = lo
    else:
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            if _entropy_bound(mid, k) >= target:
                lo = mid
            else:
                hi = mid
        m_cut = hi
    return (1.0 - m_cut) - 1e-12


_TANGENT_BUCKETS = 1024


def _entropy_tangents(n_buckets: int = _TANGENT_BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """Slope and intercept of the tangent to ``f(p) = -p log p`` at the middle of each bucket.

    ``f`` is concave, so each tangent lies above it everywhere on ``p >= 0``:
    ``f(p) <= (-log c - 1) p + c`` for any ``c > 0``. Taking ``c`` at the middle
    of ``p``'s own bucket of width ``1 / B`` makes the gap at most ``1 / (2 B)``
    (in the first bucket, at ``p = 0``) and far less elsewhere. The intercept is
    nudged up by a few ulps so that rounding in the kernel cannot undercut ``f``.
    """
    c = (np.arange(n_buckets) + 0.5) / n_buckets
    slope = -np.log(c) - 1.0
    at = c * (1.0 + 1e-12) + 1e-15
    return np.ascontiguousarray(slope), np.ascontiguousarray(at)


_TANGENTS = _entropy_tangents()


_ROW_KERNELS = {
    "least_confident": (_k.least_confident_rows, _k.least_confident_select),
    "margin": (_k.margin_rows, _k.margin_select),
    "entropy": (_k.entropy_rows, _k.entropy_select),
}


def _fused_select(
    P: np.ndarray, n: int, kind: str, chunk_rows: int | None, random_state: Any = None
) -> Selection | None:
    """Top ``n`` in one pass over ``P``; None when the sampled threshold turned out too tight."""
    N, k = P.shape
    rows_kernel, select_kernel = _ROW_KERNELS[kind]
    # Threshold from a sample of rows: its r-th best score leaves about 2n +
    # slack rows above it in expectation; being low only costs a few extra
    # survivors, being high is caught below and falls back. The sample is
    # runs of consecutive rows spread evenly over the pool (64 runs per million
    # rows, at least 64): far fewer pages touched than single rows at a stride.
    blocks = min(1024, max(_SAMPLE_BLOCKS, N // (1 << 14)))
    run = max(1, min(_SAMPLE_RUN, N // blocks))
    starts = (np.arange(blocks) * (N - run)) // max(1, blocks - 1)
    rows = np.unique((starts[:, None] + np.arange(run)[None, :]).ravel())
    if isinstance(P, np.memmap):
        # Touching rows all over a file maps their neighbours too (fault-around):
        # gather block by block and let each block go.
        sample = np.empty((rows.shape[0], k), dtype=P.dtype)
        block = chunk_rows or CHUNK_ROWS
        for lo in range(0, N, block):
            a, b = np.searchsorted(rows, [lo, lo + block])
            sample[a:b] = P[rows[a:b]]
            _release_pages(P, lo, min(N, lo + block))
        sample = _as_kernel_input(sample)
    else:
        sample = _as_kernel_input(np.ascontiguousarray(P[rows]))
    m = sample.shape[0]
    r = int(np.ceil(2.0 * n * m / N)) + 16
    if r >= m:
        return None
    sample_scores = np.empty(m, dtype=np.float64)
    with _k.threads_for(sample.size):
        rows_kernel(sample, sample_scores)
    if np.isnan(sample_scores).any():
        raise_bad_row(P)
    t = float(np.partition(sample_scores, m - r)[m - r])
    extra: tuple[Any, ...] = ()
    if kind == "entropy":
        # The key cut keeps _BOUND_TOL below t; the tangents carry their own rounding margin.
        extra = (_entropy_key_cut(t, k), _SUM_SLACK, *_TANGENTS)
    expected = r * N / m
    found_rows, found_scores = [], []
    for lo, hi, block in _chunks(P, chunk_rows):
        nb = hi - lo
        n_chunks = max(1, min(256, nb // 4096))
        cap = int(4.0 * expected * nb / N / n_chunks) + 64
        rows_out = np.empty((n_chunks, cap), dtype=np.int64)
        scores_out = np.empty((n_chunks, cap), dtype=np.float64)
        counts = np.zeros(n_chunks, dtype=np.int64)
        select_kernel(block, t, *extra, rows_out, scores_out, counts)
        if (counts > cap).any():
            return None
        keep = np.arange(cap)[None, :] < counts[:, None]
        found_rows.append(rows_out[keep] + lo)
        found_scores.append(scores_out[keep])
    rows = np.concatenate(found_rows)
    scores = np.concatenate(found_scores)
    if np.isnan(scores).any():
        raise_bad_row(P)
    if rows.shape[0] < n:
        return None
    sel = top_k(scores, n, random_state)
    return Selection(rows[sel.indices], sel.scores)


def _select_by(kind: str, P: np.ndarray, n: int, chunk_rows: int | None, random_state: Any = None) -> Selection:
    N = P.shape[0]
    if N >= _FUSED_MIN_ROWS and 0 < n and n * 8 <= N:
        sel = _fused_select(P, n, kind, chunk_rows, random_state)
        if sel is not None:
            return sel
    return _top(_score_rows(_ROW_KERNELS[kind][0], P, chunk_rows), n, P, random_state)


def _select_least_confident(
    proba: np.ndarray, n: int, *, chunk_rows: int | None = None, random_state: Any = None, **_: Any
) -> Selection:
    return _select_by("least_confident", proba, n, chunk_rows, random_state)


def _select_margin(
    proba: np.ndarray, n: int, *, chunk_rows: int | None = None, random_state: Any = None, **_: Any
) -> Selection:
    return _select_by("margin", proba, n, chunk_rows, random_state)


def _select_entropy(
    proba: np.ndarray, n: int, *, chunk_rows: int | None = None, random_state: Any = None, **_: Any
) -> Selection:
    """Top-n entropy, exact, taking logarithms only for rows that can still make the cut.

    A row's entropy is at most that of the row with the same top probability and
    the remaining mass spread evenly over the other classes, and that bound
    falls as the top probability rises. With a threshold from a sample of rows,
    every row whose top probability puts its bound under the threshold is
    skipped without a logarithm (see ``_entropy_key_cut``); of the rest, those
    whose sum of per-class tangent bounds is under it are skipped too (see
    ``_entropy_tangents``).
    """
    return _select_by("entropy", proba, n, chunk_rows, random_state)


def _select_random(proba: np.ndarray, n: int, *, random_state: Any = None, **_: Any) -> Selection:
    return top_k(random_scores(proba.shape[0], random_state), n)


# --------------------------------------------------------------------------- modAL-style functions


def least_confident(
    classifier: Any, X: Any, n_instances: int = 1, random_state: Any = None, **predict_proba_kwargs: Any
) -> Selection:
    """Pick the items whose most probable class is least probable.

    Same picks as ``modAL.uncertainty.uncertainty_sampling`` (ties aside).

    Parameters
    ----------
    classifier : object with ``predict_proba``
    X : array-like of shape (n, d)
        The unlabeled pool.
    n_instances : int
        Batch size; fewer are returned when the pool is smaller.
    random_state : int, optional
        When given, ties are ordered by a random draw from it (else by index).
    **predict_proba_kwargs
        Passed to ``classifier.predict_proba``.

    Returns
    -------
    Selection
        ``(indices, scores)``, best first.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [1.5]])
    >>> clf = LogisticRegression().fit(X[:4], [0, 0, 1, 1])
    >>> least_confident(clf, X, n_instances=1).indices.tolist()
    [4]
    """
    n = check_n_instances(n_instances)
    proba = get_proba(classifier, X, check_values=False, **predict_proba_kwargs)
    return _select_least_confident(proba, n, random_state=random_state)


def margin(
    classifier: Any, X: Any, n_instances: int = 1, random_state: Any = None, **predict_proba_kwargs: Any
) -> Selection:
    """Pick the items with the smallest gap between the two most probable classes.

    Same picks as ``modAL.uncertainty.margin_sampling`` (ties aside).
    Parameters and return value as in :func:`least_confident`.

    Examples
    --------
    >>> import numpy as np
    >>> from modAL.models import ActiveLearner
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [1.5]])
    >>> learner = ActiveLearner(LogisticRegression(), query_strategy=margin, X_training=X[:4], y_training=[0, 0, 1, 1])
    >>> idx, rows = learner.query(X, n_instances=2)
    >>> idx.tolist()
    [4, 1]
    """
    n = check_n_instances(n_instances)
    proba = get_proba(classifier, X, check_values=False, **predict_proba_kwargs)
    return _select_margin(proba, n, random_state=random_state)


def entropy(
    classifier: Any, X: Any, n_instances: int = 1, random_state: Any = None, **predict_proba_kwargs: Any
) -> Selection:
    """Pick the items whose predicted class distribution has the highest entropy.

    Same picks as ``modAL.uncertainty.entropy_sampling`` on normalised rows (ties aside).
    Parameters and return value as in :func:`least_confident`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [1.5]])
    >>> clf = LogisticRegression().fit(X[:4], [0, 0, 1, 1])
    >>> entropy(clf, X, n_instances=1).indices.tolist()
    [4]
    """
    n = check_n_instances(n_instances)
    proba = get_proba(classifier, X, check_values=False, **predict_proba_kwargs)
    return _select_entropy(proba, n, random_state=random_state)


def random(classifier: Any, X: Any, n_instances: int = 1, random_state: Any = None, **_: Any) -> Selection:
    """Pick items uniformly at random, without replacement (the classifier is not used).

    Examples
    --------
    >>> import numpy as np
    >>> random(None, np.zeros((10, 2)), n_instances=3, random_state=0).indices.shape
    (3,)
    """
    from ..errors import EmptyPoolError

    n = check_n_instances(n_instances)
    size = X.shape[0] if hasattr(X, "shape") else len(X)
    if size == 0:
        raise EmptyPoolError("no candidates to select from", field="X", expected="at least one unlabeled item")
    return top_k(random_scores(size, random_state), n)
