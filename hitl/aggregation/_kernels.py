"""Compiled inner loops shared by the EM aggregators.

Each kernel is one pass over the flat answer arrays (no per-answer Python work). They
keep the dtype of their float input, so EM can run in float32 or float64.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["task_class_sums", "answer_class_sums", "softmax_rows"]


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
