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
           "one_coin_scores", "answer_posterior", "csr_em_step", "row_argmax", "pair_repeats",
           "group_by_task"]


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


@njit(cache=True, nogil=True)
def _tasks_contiguous(task, n_tasks):  # pragma: no cover - compiled
    # True when each task's answers form one run (tasks in any order): touches the
    # flag array once per run, not once per answer.
    done = np.zeros(n_tasks, dtype=np.bool_)
    for i in range(1, task.shape[0]):
        if task[i] != task[i - 1]:
            if done[task[i]]:
                return False
            done[task[i - 1]] = True
    return True


@njit(cache=True, nogil=True)
def _group_by_task(task, n_tasks, order):  # pragma: no cover - compiled
    # Stable counting sort by task, O(n + n_tasks): ``order`` gets the input positions
    # grouped by task, in input order within a task. Only positions are scattered (one
    # random write per answer); scattering worker ids too cost more than it saved.
    fill = np.zeros(n_tasks + 1, dtype=order.dtype)
    for i in range(task.shape[0]):
        fill[task[i] + 1] += 1
    for t in range(n_tasks):
        fill[t + 1] += fill[t]
    for i in range(task.shape[0]):
        t = task[i]
        order[fill[t]] = i
        fill[t] += 1
    return order


@njit(cache=True, nogil=True)
def _walk_repeats(order, identity, task, worker, label, n_workers, keep):  # pragma: no cover - compiled
    # One vote per (task, worker): walk the answers task by task, in input order within a
    # task, remembering per worker the task and input position of their latest answer. A
    # worker seen again on the same task makes that earlier answer a repeat; the later
    # one is kept. Labels are read only at repeats (rare), not for every answer.
    seen_task = np.full(n_workers, -1, dtype=np.int64)
    seen_at = np.zeros(n_workers, dtype=np.int64)
    conflict_task = np.full(n_workers, -1, dtype=np.int64)
    n_dropped = 0
    n_conflict_pairs = 0
    first_a = -1
    first_b = -1
    for p in range(task.shape[0]):
        i = p if identity else order[p]
        t = task[i]
        w = worker[i]
        if seen_task[w] == t:
            j = seen_at[w]
            keep[j] = False
            n_dropped += 1
            if label[j] != label[i]:
                if conflict_task[w] != t:
                    conflict_task[w] = t
                    n_conflict_pairs += 1
                if first_b < 0 or i < first_b:  # the conflict seen first in input order
                    first_a = j
                    first_b = i
        seen_task[w] = t
        seen_at[w] = i
    return n_dropped, n_conflict_pairs, first_a, first_b


def group_by_task(task: np.ndarray, n_tasks: int) -> np.ndarray:
    """Input positions of the answers grouped by task, in input order within a task.

    The same as ``np.argsort(task, kind="stable")``, by a counting sort: O(n + n_tasks),
    about ten times faster on millions of answers. int32 where the positions fit.

    Examples
    --------
    >>> import numpy as np
    >>> group_by_task(np.array([2, 0, 2, 1, 0]), 3).tolist()
    [1, 4, 3, 0, 2]
    """
    n = task.shape[0]
    dt = np.int32 if max(n, n_tasks) < 2**31 - 1 else np.int64  # half the bytes scattered
    return _group_by_task(task, np.int64(n_tasks), np.empty(n, dtype=dt))


def pair_repeats(task: np.ndarray, worker: np.ndarray, label: np.ndarray, n_tasks: int,
                 n_workers: int) -> tuple[np.ndarray | None, int, int, tuple[int, int] | None]:
    """Find repeated ``(task, worker)`` answers in one O(n) pass.

    Parameters
    ----------
    task, worker, label : ndarray of int64
        The answers; ids in ``[0, n_tasks)`` and ``[0, n_workers)``.
    n_tasks, n_workers : int
        Sizes.

    Returns
    -------
    keep : ndarray of bool or None
        False for every answer followed, later in input order, by another answer of the
        same worker to the same task (so the last one is kept); None when there is no repeat.
    n_dropped : int
        Answers that ``keep`` drops.
    n_conflict_pairs : int
        ``(task, worker)`` pairs answered with at least two different labels.
    first_conflict : tuple of int or None
        Positions ``(earlier, later)`` of the conflicting pair whose later answer comes
        first in input order; None without conflict.

    Examples
    --------
    >>> import numpy as np
    >>> t, w, y = np.array([0, 0, 0, 1]), np.array([0, 0, 1, 0]), np.array([1, 0, 1, 1])
    >>> keep, n_dropped, n_conflicts, first = pair_repeats(t, w, y, 2, 2)
    >>> keep.tolist(), n_dropped, n_conflicts, first
    ([False, True, True, True], 1, 1, (0, 1))
    """
    keep = np.ones(task.shape[0], dtype=np.bool_)
    if _tasks_contiguous(task, n_tasks):  # already grouped (a common file layout): walk in place
        order, identity = np.empty(0, dtype=np.int64), True
    else:
        order, identity = group_by_task(task, n_tasks), False
    n_dropped, n_pairs, a, b = _walk_repeats(order, identity, task, worker, label, np.int64(n_workers), keep)
    return (keep if n_dropped else None), int(n_dropped), int(n_pairs), ((int(a), int(b)) if b >= 0 else None)
