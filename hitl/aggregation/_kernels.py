"""Compiled inner loops shared by the EM aggregators.

Each kernel is one pass over the flat answer arrays (no per-answer Python work). They
keep the dtype of their float input, so EM can run in float32 or float64. All are
serial: on two cores, numba's parallel loops were slower here than plain ones (the
loops are short and memory-bound, and the parallel versions optimise worse), and a
serial sum adds in one fixed order, so results do not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["task_class_sums", "answer_class_sums", "softmax_rows", "vote_counts", "answered_sum", "normalize_rows",
           "one_coin_scores", "answer_posterior", "csr_em_step", "row_argmax"]


@njit(cache=True, nogil=True)
def _task_class_sums(table, rowidx, task, out):  # pragma: no cover - compiled
    k = table.shape[1]
    for i in range(task.shape[0]):
        t = task[i]
        r = rowidx[i]
        for j in range(k):
            out[t, j] += table[r, j]
    return out


@njit(cache=True, nogil=True)
def _answer_class_sums(post, task, rowidx, out):  # pragma: no cover - compiled
    k = post.shape[1]
    for i in range(task.shape[0]):
        t = task[i]
        r = rowidx[i]
        for j in range(k):
            out[r, j] += post[t, j]
    return out


@njit(cache=True, nogil=True)
def _vote_counts(task, label, weights, out):  # pragma: no cover - compiled
    for i in range(task.shape[0]):
        out[task[i], label[i]] += weights[i]
    return out


@njit(cache=True, nogil=True)
def _vote_counts_unweighted(task, label, out):  # pragma: no cover - compiled
    for i in range(task.shape[0]):
        out[task[i], label[i]] += 1.0
    return out


@njit(cache=True, nogil=True)
def _answered_sum(post, answered):  # pragma: no cover - compiled
    n, k = post.shape
    out = np.zeros(k, dtype=np.float64)
    for t in range(n):
        if answered[t]:
            for j in range(k):
                out[j] += post[t, j]
    return out


@njit(cache=True, nogil=True)
def _one_coin_scores(task, label, log_right, log_wrong, out):  # pragma: no cover - compiled
    k = out.shape[1]
    for i in range(task.shape[0]):
        t = task[i]
        lw = log_wrong[i]
        for j in range(k):
            out[t, j] += lw
        out[t, label[i]] += log_right[i] - lw
    return out


@njit(cache=True, nogil=True)
def _gather_answer_post(post, task, label, out):  # pragma: no cover - compiled
    for i in range(task.shape[0]):
        out[i] = post[task[i], label[i]]
    return out


@njit(cache=True, nogil=True)
def _normalize_rows(counts):  # pragma: no cover - compiled
    n, k = counts.shape
    for t in range(n):
        s = 0.0
        for j in range(k):
            s += counts[t, j]
        if s > 0:
            inv = 1.0 / s
            for j in range(k):
                counts[t, j] *= inv
        else:
            for j in range(k):
                counts[t, j] = 1.0 / k
    return counts


@njit(cache=True, nogil=True)
def _softmax_rows(scores):  # pragma: no cover - compiled
    n, k = scores.shape
    total = 0.0
    for t in range(n):
        m = scores[t, 0]
        for j in range(1, k):
            if scores[t, j] > m:
                m = scores[t, j]
        s = 0.0
        for j in range(k):
            e = np.exp(scores[t, j] - m)
            scores[t, j] = e
            s += e
        inv = 1.0 / s
        for j in range(k):
            scores[t, j] *= inv
        total += m + np.log(s)
    return total


_RESCALE = 1e100
_LOG_RESCALE = 230.25850929940458  # log(1e100)


def _make_em_kernel(K: int):
    """Build the fused EM kernel for ``K`` classes (``K = 0``: any number).

    With ``K`` a compile-time constant the per-class loops unroll and the scratch row
    lives in registers, about twice as fast as the generic kernel. The kernel is
    serial on purpose: numba's parallel version of this loop took about twice as long
    on two cores as the serial one, and as long even when given a single chunk of work.
    """

    @njit(cache=True, nogil=True)
    def kernel(ptable, rowmin, rowidx, indptr, prior, prior_stride, out, sums, class_sums):
        # pragma: no cover - compiled
        # The E-step in probability space, fused with the next M-step's sums.
        #
        # E: multiply the prior row by each answer's likelihood row, then normalise:
        # no exponential at all. ``lb`` is a lower bound of the row's largest entry
        # (it shrinks by at most the smallest entry of each likelihood row); only when
        # it gets small is the true maximum looked at and the row rescaled by 1e100,
        # so nothing underflows.
        # M sums: while the posterior row is hot, add it to the (worker, given label)
        # rows of each of the task's answers, and to the class totals.
        n = out.shape[0]
        k = out.shape[1] if K == 0 else K
        acc = np.empty(k, dtype=np.float64)
        total = 0.0
        # The log-likelihood is a sum of logs of the row sums (s <= 1, or <= k just
        # after a rescale): multiply them up and take one log whenever the product
        # leaves [1e-100, 1e100], not one log per task.
        prod = 1.0
        for t in range(n):
            start, stop = indptr[t], indptr[t + 1]
            p = t * prior_stride  # row t of a per-task prior, else row 0
            lb = 0.0
            for j in range(k):
                acc[j] = prior[p, j]
                lb = max(lb, acc[j])
            n_rescale = 0
            for a in range(start, stop):
                r = rowidx[a]
                for j in range(k):
                    acc[j] *= ptable[r, j]
                lb *= rowmin[r]
                if lb < 1e-200:
                    mx = 0.0
                    for j in range(k):
                        mx = max(mx, acc[j])
                    if mx < 1e-100:
                        for j in range(k):
                            acc[j] *= _RESCALE
                        mx *= _RESCALE
                        n_rescale += 1
                    lb = mx
            s = 0.0
            for j in range(k):
                s += acc[j]
            inv = 1.0 / s
            for j in range(k):
                acc[j] *= inv
                out[t, j] = acc[j]
            prod *= s
            if prod < 1e-100 or prod > 1e100:
                total += np.log(prod)
                prod = 1.0
            total -= n_rescale * _LOG_RESCALE
            if stop > start:
                for j in range(k):
                    class_sums[j] += acc[j]
                for a in range(start, stop):
                    r = rowidx[a]
                    for j in range(k):
                        sums[r, j] += acc[j]
        return total + np.log(prod)

    return kernel


_EM_KERNELS: dict = {}
_MAX_SPECIALISED_K = 16


def _em_kernel(k: int):
    key = k if k <= _MAX_SPECIALISED_K else 0
    if key not in _EM_KERNELS:
        _EM_KERNELS[key] = _make_em_kernel(key)
    return _EM_KERNELS[key]


def task_class_sums(table: np.ndarray, rowidx: np.ndarray, task: np.ndarray, n_tasks: int) -> np.ndarray:
    """``out[t, j] = sum(table[rowidx[i], j] for answers i of task t)``; dtype of ``table``."""
    out = np.zeros((n_tasks, table.shape[1]), dtype=table.dtype)
    return _task_class_sums(np.ascontiguousarray(table), rowidx, task, out)


def answer_class_sums(post: np.ndarray, task: np.ndarray, rowidx: np.ndarray, n_rows: int) -> np.ndarray:
    """``out[r, j] = sum(post[task[i], j] for answers i with rowidx[i] == r)``, in float64.

    Accumulates in float64 whatever the dtype of ``post``: these are the M-step sums,
    and a distributed run adds them up across shards.
    """
    out = np.zeros((n_rows, post.shape[1]), dtype=np.float64)
    return _answer_class_sums(np.ascontiguousarray(post), task, rowidx, out)


def softmax_rows(scores: np.ndarray) -> tuple[np.ndarray, float]:
    """Normalise log-scores row-wise in place; returns the rows and ``sum(logsumexp(row))``."""
    scores = np.ascontiguousarray(scores)
    total = _softmax_rows(scores)
    return scores, float(total)


def vote_counts(task: np.ndarray, label: np.ndarray, n_tasks: int, n_classes: int,
                weights: np.ndarray | None = None) -> np.ndarray:
    """``(n_tasks, n_classes)`` float64 tally of (weighted) votes."""
    out = np.zeros((n_tasks, n_classes), dtype=np.float64)
    if weights is None:
        return _vote_counts_unweighted(task, label, out)
    return _vote_counts(task, label, np.ascontiguousarray(weights, dtype=np.float64), out)


def one_coin_scores(task: np.ndarray, label: np.ndarray, log_right: np.ndarray, log_wrong: np.ndarray,
                    n_tasks: int, n_classes: int) -> np.ndarray:
    """Per-task log-likelihood of each true class when answer ``i`` is right with log-probability
    ``log_right[i]`` and each wrong label has log-probability ``log_wrong[i]``."""
    out = np.zeros((n_tasks, n_classes), dtype=log_right.dtype)
    return _one_coin_scores(task, label, log_right, log_wrong.astype(log_right.dtype, copy=False), out)


def answer_posterior(post: np.ndarray, task: np.ndarray, label: np.ndarray) -> np.ndarray:
    """``post[task[i], label[i]]`` for every answer: the probability that answer ``i`` is right."""
    out = np.empty(task.shape[0], dtype=post.dtype)
    return _gather_answer_post(np.ascontiguousarray(post), task, label, out)


@njit(cache=True, nogil=True)
def _row_argmax(post, out):  # pragma: no cover - compiled
    n, k = post.shape
    for t in range(n):
        best = 0
        for j in range(1, k):
            if post[t, j] > post[t, best]:
                best = j
        out[t] = best
    return out


def row_argmax(post: np.ndarray) -> np.ndarray:
    """Index of the largest entry of each row (the first one on ties), as int64."""
    return _row_argmax(np.ascontiguousarray(post), np.empty(post.shape[0], dtype=np.int64))


def normalize_rows(counts: np.ndarray) -> np.ndarray:
    """Divide each row by its sum in place; a row summing to zero becomes uniform."""
    return _normalize_rows(counts)


def answered_sum(post: np.ndarray, answered: np.ndarray) -> np.ndarray:
    """Column sums of ``post`` over the rows where ``answered`` is true, in float64."""
    return _answered_sum(np.ascontiguousarray(post), answered)


def csr_em_step(prob_table: np.ndarray, rowidx_by_task: np.ndarray, indptr: np.ndarray, prior: np.ndarray,
                n_tasks: int, dtype=np.float64) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Fused E-step (probability space) over answers grouped by task, plus the next M-step's sums.

    Parameters
    ----------
    prob_table : ndarray of shape (n_rows, k)
        ``prob_table[w * k + given, j] = P(given | true = j)``, no zeros.
    rowidx_by_task : ndarray of int
        ``w * k + given`` of each answer, answers grouped by task.
    indptr : ndarray of shape (n_tasks + 1,)
        Task ``t``'s answers are ``rowidx_by_task[indptr[t]:indptr[t + 1]]``.
    prior : ndarray of shape (k,) or (n_tasks, k)
        Prior probabilities.

    Returns
    -------
    posteriors : ndarray of shape (n_tasks, k) in ``dtype`` (computed in float64)
    log_likelihood : float
    sums : ndarray of shape (n_rows, k)
        ``sums[w * k + given, j]``: posterior mass of class ``j`` over the answers of that row.
    class_sums : ndarray of shape (k,)
        Posterior mass of each class over the tasks with at least one answer.
    """
    pr = np.asarray(prior, dtype=np.float64)
    per_task = pr.ndim == 2
    pr = np.ascontiguousarray(pr if per_task else pr[None, :])
    n_rows, k = prob_table.shape
    out = np.empty((n_tasks, k), dtype=dtype)
    table = np.ascontiguousarray(prob_table, dtype=np.float64)
    sums = np.zeros((n_rows, k), dtype=np.float64)
    class_sums = np.zeros(k, dtype=np.float64)
    total = _em_kernel(k)(table, table.min(axis=1), rowidx_by_task, indptr, pr, np.int64(1 if per_task else 0),
                          out, sums, class_sums)
    return out, float(total), sums, class_sums
