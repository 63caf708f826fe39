"""Compiled inner loops shared by the EM aggregators.

Each kernel is one pass over the flat answer arrays (no per-answer Python work). They
keep the dtype of their float input, so EM can run in float32 or float64.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["task_class_sums", "answer_class_sums", "softmax_rows", "vote_counts", "answered_sum", "normalize_rows",
           "one_coin_scores", "answer_posterior"]


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


@njit(cache=True, nogil=True, parallel=True)
def _normalize_rows(counts):  # pragma: no cover - compiled
    n, k = counts.shape
    for t in prange(n):
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


@njit(cache=True, nogil=True, parallel=True)
def _softmax_rows(scores):  # pragma: no cover - compiled
    n, k = scores.shape
    total = 0.0
    for t in prange(n):
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


def normalize_rows(counts: np.ndarray) -> np.ndarray:
    """Divide each row by its sum in place; a row summing to zero becomes uniform."""
    return _normalize_rows(counts)


def answered_sum(post: np.ndarray, answered: np.ndarray) -> np.ndarray:
    """Column sums of ``post`` over the rows where ``answered`` is true, in float64."""
    return _answered_sum(np.ascontiguousarray(post), answered)
