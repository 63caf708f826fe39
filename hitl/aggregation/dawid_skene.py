"""Dawid-Skene EM over flat answer arrays.

Dawid & Skene (1979): each worker has a confusion matrix ``pi[w, true, given]``; the
E-step computes each task's posterior over true classes, the M-step re-estimates the
confusion matrices and the class prior from those posteriors. Both steps are pure
functions over arrays, so a distributed run can do the E-step per shard of tasks and
add up the M-step sums (:func:`ds_m_step_sums`) before :func:`ds_m_step`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import BaseAggregator
from ._kernels import answer_class_sums, answered_sum, softmax_rows, task_class_sums
from .majority import majority_posteriors

__all__ = ["DawidSkene", "ds_e_step", "ds_m_step_sums", "ds_m_step"]

_TINY = 1e-300
# Floor of any estimated probability before its log: an answer never seen from a worker
# stays possible, and float32 and float64 runs share the same floor.
FLOOR = 1e-100


def _resolve_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        from ..errors import ConfigError

        raise ConfigError(f"is {dt}", field="dtype", expected="float64 or float32")
    return dt


def ds_e_step(
    log_confusion: np.ndarray,
    log_prior: np.ndarray,
    task: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_tasks: int,
) -> tuple[np.ndarray, float]:
    """E-step: task posteriors from log confusion matrices and a log prior.

    Parameters
    ----------
    log_confusion : ndarray of shape (n_workers, k, k)
        ``log P(given = l | true = j)`` at ``[w, j, l]``.
    log_prior : ndarray of shape (k,) or (n_tasks, k)
        Log class prior, shared or per task (the classifier as one more annotator).
    task, worker, label : ndarray of int64
        The answers; ``task`` indexes rows of the result.
    n_tasks : int
        Rows of the result.

    Returns
    -------
    posteriors : ndarray of shape (n_tasks, k), same dtype as ``log_confusion``
    log_likelihood : float
        ``sum_t log sum_j exp(score[t, j])``, the marginal log-likelihood of the answers.

    Examples
    --------
    >>> import numpy as np
    >>> lc = np.log(np.array([[[0.9, 0.1], [0.2, 0.8]]]))
    >>> post, ll = ds_e_step(lc, np.log([0.5, 0.5]), np.array([0]), np.array([0]), np.array([1]), 1)
    >>> post.round(3)
    array([[0.111, 0.889]])
    """
    n_workers, k, _ = log_confusion.shape
    # Row (w * k + given) holds log P(given | true = j) for every j: one gather per answer.
    table = np.ascontiguousarray(log_confusion.transpose(0, 2, 1).reshape(n_workers * k, k))
    scores = task_class_sums(table, worker * k + label, task, n_tasks)
    scores += np.asarray(log_prior, dtype=scores.dtype)
    post, ll = softmax_rows(scores)
    return post, ll


def ds_m_step_sums(
    posteriors: np.ndarray,
    task: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_workers: int,
) -> tuple[np.ndarray, np.ndarray]:
    """M-step sufficient statistics; additive over disjoint shards of tasks.

    Returns
    -------
    confusion_counts : ndarray of shape (n_workers, k, k)
        Expected number of answers ``given = l`` by worker ``w`` on tasks of true class ``j``.
    class_counts : ndarray of shape (k,)
        Sum of posteriors over the tasks that have at least one answer.
    """
    n_tasks, k = posteriors.shape
    sums = answer_class_sums(posteriors, task, worker * k + label, n_workers * k)  # (n_workers * k, k) [(w, l), j]
    confusion_counts = sums.reshape(n_workers, k, k).transpose(0, 2, 1)
    answered = np.bincount(task, minlength=n_tasks) > 0
    class_counts = answered_sum(posteriors, answered)
    return np.ascontiguousarray(confusion_counts, dtype=np.float64), class_counts


def ds_m_step(
    confusion_counts: np.ndarray,
    class_counts: np.ndarray,
    smoothing: float = 0.0,
    diagonal: float = 0.0,
    *,
    dtype: Any = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """M-step: log confusion matrices and log class prior from the summed statistics.

    Parameters
    ----------
    confusion_counts, class_counts : ndarray
        Sums from :func:`ds_m_step_sums`, added up over shards.
    smoothing : float
        Pseudo-count added to every confusion cell and class count.
    diagonal : float
        Extra pseudo-count on the diagonal (the correct answer) of every confusion
        matrix: a Dirichlet prior saying workers are a little better than chance.
    dtype : float64 or float32
        dtype of the returned logs.

    Returns
    -------
    log_confusion : ndarray of shape (n_workers, k, k)
    log_class_prior : ndarray of shape (k,)

    Notes
    -----
    Probabilities are floored at ``FLOOR`` (1e-100) before the log; a row without mass
    becomes uniform.
    """
    dt = _resolve_dtype(dtype)
    k = confusion_counts.shape[-1]
    c = confusion_counts + smoothing
    if diagonal:
        c = c + diagonal * np.eye(k)
    totals = c.sum(axis=2, keepdims=True)
    conf = np.where(totals > 0, c / np.where(totals > 0, totals, 1.0), 1.0 / k)
    prior = class_counts + smoothing
    prior = prior / prior.sum() if prior.sum() > 0 else np.full(k, 1.0 / k)
    log_conf = np.log(np.maximum(conf, FLOOR))
    log_prior = np.log(np.maximum(prior, FLOOR))
    return log_conf.astype(dt, copy=False), log_prior.astype(dt, copy=False)


def confusions_from_posteriors(
    posteriors: np.ndarray, task: np.ndarray, worker: np.ndarray, label: np.ndarray, n_workers: int
) -> np.ndarray:
    """Row-normalised confusion matrices ``(n_workers, k, k)`` implied by posteriors."""
    counts, _ = ds_m_step_sums(posteriors, task, worker, label, n_workers)
    k = counts.shape[-1]
    totals = counts.sum(axis=2, keepdims=True)
    return np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), 1.0 / k)


class DawidSkene(BaseAggregator):
    """Dawid-Skene aggregation: one confusion matrix per worker, fitted by EM.

    Initialised from majority vote; deterministic.

    Parameters
    ----------
    n_iter : int, default 100
        Most EM iterations.
    tol : float, default 1e-5
        Stop when the mean log-likelihood per answer changes by less than this.
    smoothing : float, default 0.0
        Pseudo-count added to every confusion cell and class count.
    diagonal : float, default 0.2
        Pseudo-count added to the diagonal of every confusion matrix: a weak Dirichlet
        prior that workers are better than chance. It steadies the matrices of workers
        with few answers and pins the labelling of classes (no label switching).
    dtype : {"float64", "float32"}, default "float64"
        Working precision of the EM steps; ``posteriors_`` is always float64.

    Attributes
    ----------
    posteriors_ : ndarray of shape (n_tasks, n_classes)
    labels_ : ndarray of shape (n_tasks,)
    confusions_ : ndarray of shape (n_workers, n_classes, n_classes)
        ``P(given = l | true = j)`` at ``[w, j, l]``.
    class_prior_ : ndarray of shape (n_classes,)
    n_iter_ : int
        EM iterations run.
    log_likelihood_ : list of float
        Mean log-likelihood per answer after each iteration.

    Examples
    --------
    >>> import numpy as np
    >>> from hitl.aggregation import DawidSkene
    >>> ds = DawidSkene().fit(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 0, 1, 2]),
    ...                       np.array([1, 1, 0, 0, 0, 0]))
    >>> ds.labels_
    array([1, 0])
    """

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        smoothing: float = 0.0,
        diagonal: float = 0.2,
        dtype: Any = "float64",
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.smoothing = smoothing
        self.diagonal = diagonal
        self.dtype = dtype

    def _fit_arrays(self, task, worker, label, n_tasks, n_workers, n_classes, prior) -> None:
        dt = _resolve_dtype(self.dtype)
        post = majority_posteriors(task, label, n_tasks, n_classes, prior).astype(dt)
        log_task_prior = None if prior is None else np.log(np.maximum(prior, FLOOR)).astype(dt)
        n_answers = len(task)
        history: list[float] = []
        it = 0
        for it in range(1, int(self.n_iter) + 1):
            counts, class_counts = ds_m_step_sums(post, task, worker, label, n_workers)
            log_conf, log_class_prior = ds_m_step(counts, class_counts, self.smoothing, self.diagonal, dtype=dt)
            lp = log_class_prior if log_task_prior is None else log_task_prior
            post, ll = ds_e_step(log_conf, lp, task, worker, label, n_tasks)
            history.append(ll / n_answers)
            if len(history) > 1 and abs(history[-1] - history[-2]) < self.tol:
                break
        counts, class_counts = ds_m_step_sums(post, task, worker, label, n_workers)
        log_conf, log_class_prior = ds_m_step(counts, class_counts, self.smoothing, self.diagonal, dtype=np.float64)
        self.confusions_ = np.exp(log_conf)
        self.class_prior_ = np.exp(log_class_prior)
        self.n_iter_ = it
        self.log_likelihood_ = history
        post = post.astype(np.float64)
        if prior is None:
            unanswered = np.bincount(task, minlength=n_tasks) == 0
            post[unanswered] = 1.0 / n_classes
        self.posteriors_ = post
