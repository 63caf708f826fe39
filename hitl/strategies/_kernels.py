"""Compiled row kernels for scoring probability matrices.

One pass over the rows, both cores (``prange``). Input validation is folded into
the same pass at no extra cost: a row holding a NaN, an infinity or a negative
value gets a NaN score, and the callers turn any NaN into a ValidationError that
names the row. For that to hold, the fast-math flags below leave out ``nnan`` and
``ninf`` (which would let the compiler assume NaN never occurs) and ``afn``
(approximate ``log``), so the scores equal those of a plain numpy reference up to
the last bits of floating-point rounding.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numba
import numpy as np
from numba import njit, prange

# Reassociation and contraction let LLVM vectorise the row reductions; NaN and
# infinity semantics stay IEEE (see module docstring).
_FM = {"nsz", "arcp", "contract", "reassoc"}


@njit(cache=True, parallel=True, fastmath=_FM)
def least_confident_rows(P, out):  # pragma: no cover - compiled
    """out[i] = 1 - max_j P[i, j]; NaN when the row is invalid."""
    n, k = P.shape
    for i in prange(n):
        m = P[i, 0]
        lo = m
        s = m
        for j in range(1, k):
            v = P[i, j]
            m = max(m, v)
            lo = min(lo, v)
            s += v
        # A NaN or +inf anywhere makes the sum fail `s < inf`; -inf and negatives fail `lo >= 0`.
        out[i] = (1.0 - m) if (lo >= 0.0 and s < np.inf) else np.nan


@njit(cache=True, parallel=True, fastmath=_FM)
def margin_rows(P, out):  # pragma: no cover - compiled
    """out[i] = 1 - (top1 - top2) of row i (branch-free top-2); NaN when invalid."""
    n, k = P.shape
    for i in prange(n):
        a = P[i, 0]
        b = 0.0  # probabilities are >= 0, so 0 is a neutral start (and the second best of one class)
        lo = a
        s = a
        for j in range(1, k):
            v = P[i, j]
            b = max(b, min(a, v))
            a = max(a, v)
            lo = min(lo, v)
            s += v
        out[i] = (1.0 - (a - b)) if (lo >= 0.0 and s < np.inf) else np.nan


@njit(cache=True, parallel=True, fastmath=_FM)
def entropy_rows(P, out):  # pragma: no cover - compiled
    """out[i] = -sum_j P[i, j] log P[i, j] with 0 log 0 = 0; NaN when invalid."""
    n, k = P.shape
    for i in prange(n):
        h = 0.0
        lo = P[i, 0]
        s = 0.0
        for j in range(k):
            v = P[i, j]
            lo = min(lo, v)
            s += v
            if v > 0.0:
                h -= v * np.log(v)
        out[i] = (h + 0.0) if (lo >= 0.0 and s < np.inf) else np.nan


@njit(cache=True, parallel=True)
def _count_at_least(x, t, n_chunks):  # pragma: no cover - compiled
    n = x.shape[0]
    step = (n + n_chunks - 1) // n_chunks
    counts = np.zeros(n_chunks, dtype=np.int64)
    for c in prange(n_chunks):
        lo = c * step
        hi = min(n, lo + step)
        cnt = 0
        for i in range(lo, hi):
            # "not below" keeps NaN as well, so invalid rows always reach the check.
            if not (x[i] < t):
                cnt += 1
        counts[c] = cnt
    return counts


@njit(cache=True, parallel=True)
def _fill_at_least(x, t, offsets, out):  # pragma: no cover - compiled
    n = x.shape[0]
    n_chunks = offsets.shape[0] - 1
    step = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        lo = c * step
        hi = min(n, lo + step)
        pos = offsets[c]
        for i in range(lo, hi):
            if not (x[i] < t):
                out[pos] = i
                pos += 1


def indices_at_least(x: np.ndarray, t: float, n_chunks: int = 64) -> np.ndarray:
    """Ascending positions ``i`` with ``not (x[i] < t)`` (so NaN positions are included)."""
    n_chunks = max(1, min(n_chunks, x.shape[0]))
    counts = _count_at_least(x, t, n_chunks)
    offsets = np.zeros(n_chunks + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.int64)
    _fill_at_least(x, t, offsets, out)
    return out


@njit(cache=True, parallel=True, fastmath=_FM)
def _min_sq_dist_update_par(X, center, d2):  # pragma: no cover - compiled
    n, d = X.shape
    for i in prange(n):
        acc = 0.0
        for j in range(d):
            diff = X[i, j] - center[j]
            acc += diff * diff
        if acc < d2[i]:
            d2[i] = acc


@njit(cache=True, fastmath=_FM)
def _min_sq_dist_update_seq(X, center, d2):  # pragma: no cover - compiled
    n, d = X.shape
    for i in range(n):
        acc = 0.0
        for j in range(d):
            diff = X[i, j] - center[j]
            acc += diff * diff
        if acc < d2[i]:
            d2[i] = acc


# Below this many multiply-adds a thread hand-off costs more than it saves
# (much more on a busy machine, where the other thread may not be scheduled soon).
_PARALLEL_MIN_WORK = 1 << 20


@contextmanager
def threads_for(work: int) -> Iterator[None]:
    """Run the parallel kernels called inside on the calling thread alone when ``work`` is small."""
    if work >= _PARALLEL_MIN_WORK:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def min_sq_dist_update(X, center, d2):
    """d2[i] = min(d2[i], ||X[i] - center||^2), computed directly (no cancellation)."""
    if X.shape[0] * X.shape[1] >= _PARALLEL_MIN_WORK:
        _min_sq_dist_update_par(X, center, d2)
    else:
        _min_sq_dist_update_seq(X, center, d2)


# ----------------------------------------------------------------------------- fused score + select
#
# These walk the rows once and keep only the rows whose score is not below a
# threshold ``t`` (estimated beforehand from a sample of rows), writing
# (row, score) into per-chunk buffers. No score array is written, so the pass
# costs little more than reading the matrix. ``counts[c]`` may exceed the
# buffer capacity; the caller then falls back to the exact two-pass path.
# Invalid rows are always kept, with a NaN score.


@njit(cache=True, parallel=True, fastmath=_FM)
def least_confident_select(P, t, rows_out, scores_out, counts):  # pragma: no cover - compiled
    n, k = P.shape
    n_chunks, cap = rows_out.shape
    step = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        cnt = 0
        for i in range(c * step, min(n, (c + 1) * step)):
            m = P[i, 0]
            lo = m
            s = m
            for j in range(1, k):
                v = P[i, j]
                m = max(m, v)
                lo = min(lo, v)
                s += v
            sc = (1.0 - m) if (lo >= 0.0 and s < np.inf) else np.nan
            if not (sc < t):
                if cnt < cap:
                    rows_out[c, cnt] = i
                    scores_out[c, cnt] = sc
                cnt += 1
        counts[c] = cnt


@njit(cache=True, parallel=True, fastmath=_FM)
def margin_select(P, t, rows_out, scores_out, counts):  # pragma: no cover - compiled
    """Keep rows whose margin score ``1 - (top1 - top2)`` is not below ``t`` (branch-free top-2).

    (Skipping the second-largest search where ``1 + sum - 2 top1 < t`` was
    tried: with a third of the rows still needing a second scan it was slower.)
    """
    n, k = P.shape
    n_chunks, cap = rows_out.shape
    step = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        cnt = 0
        for i in range(c * step, min(n, (c + 1) * step)):
            a = P[i, 0]
            b = 0.0
            lo = a
            s = a
            for j in range(1, k):
                v = P[i, j]
                b = max(b, min(a, v))
                a = max(a, v)
                lo = min(lo, v)
                s += v
            sc = (1.0 - (a - b)) if (lo >= 0.0 and s < np.inf) else np.nan
            if not (sc < t):
                if cnt < cap:
                    rows_out[c, cnt] = i
                    scores_out[c, cnt] = sc
                cnt += 1
        counts[c] = cnt


@njit(cache=True, parallel=True, fastmath=_FM)
def entropy_select(P, t, key_cut, slack, tangent_slope, tangent_at, rows_out, scores_out, counts):  # pragma: no cover
    """Keep rows with entropy >= t; logarithms only where the bounds allow it.

    Two log-free upper bounds on a row's entropy (see the caller). Rows summing
    to ``1 +- slack`` with ``1 - max < key_cut`` have a bound from the top
    probability alone below ``t``. Every other valid row gets the tangent bound
    ``sum_j slope[b_j] * p_j + at[b_j]``, ``b_j`` the bucket of ``p_j``, which
    never falls below the entropy (``-p log p`` is concave) and is within about
    ``k / (2 B)`` of it; rows whose bound is below ``t`` need no logarithm.
    """
    n, k = P.shape
    n_chunks, cap = rows_out.shape
    n_buckets = tangent_at.shape[0]
    scale = float(n_buckets)
    step = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        cnt = 0
        for i in range(c * step, min(n, (c + 1) * step)):
            m = P[i, 0]
            lo = m
            s = m
            for j in range(1, k):
                v = P[i, j]
                m = max(m, v)
                lo = min(lo, v)
                s += v
            if lo >= 0.0 and s < np.inf:
                if abs(s - 1.0) <= slack and (1.0 - m) < key_cut:
                    continue
                bound = 0.0
                for j in range(k):
                    v = P[i, j]
                    b = min(int(v * scale), n_buckets - 1)
                    bound += tangent_slope[b] * v + tangent_at[b]
                if bound < t:
                    continue
                h = 0.0
                for j in range(k):
                    v = P[i, j]
                    if v > 0.0:
                        h -= v * np.log(v)
                if h < t:
                    continue
                sc = h + 0.0
            else:
                sc = np.nan
            if cnt < cap:
                rows_out[c, cnt] = i
                scores_out[c, cnt] = sc
            cnt += 1
        counts[c] = cnt
