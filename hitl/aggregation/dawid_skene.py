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

from ._em import EMAggregator, resolve_dtype, safe_log
from ._kernels import (
    answer_class_sums,
    answered_sum,
    softmax_rows,
    task_class_sums,
)

__all__ = ["DawidSkene", "OneCoinDawidSkene", "ds_e_step", "ds_m_step_sums", "ds_m_step", "ds_scores"]


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
    k = log_confusion.shape[1]
    scores = ds_scores(log_confusion, worker * k + label, task, n_tasks)
    scores += np.asarray(log_prior, dtype=scores.dtype)
    post, ll = softmax_rows(scores)
    return post, ll


def ds_scores(log_confusion: np.ndarray, worker_label: np.ndarray, task: np.ndarray, n_tasks: int) -> np.ndarray:
    """``(n_tasks, k)`` sum over each task's answers of ``log_confusion[w, :, given]``.

    ``worker_label`` is ``worker * k + label`` for each answer.
    """
    n_workers, k, _ = log_confusion.shape
    # Row (w * k + given) holds log P(given | true = j) for every j: one gather per answer.
    table = np.ascontiguousarray(log_confusion.transpose(0, 2, 1).reshape(n_workers * k, k))
    return task_class_sums(table, worker_label, task, n_tasks)


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
    Probabilities are floored at 1e-100 before the log; a row without mass
    becomes uniform.
    """
    dt = resolve_dtype(dtype)
    k = confusion_counts.shape[-1]
    c = confusion_counts + smoothing
    if diagonal:
        c = c + diagonal * np.eye(k)
    totals = c.sum(axis=2, keepdims=True)
    conf = np.where(totals > 0, c / np.where(totals > 0, totals, 1.0), 1.0 / k)
    prior = class_counts + smoothing
    prior = prior / prior.sum() if prior.sum() > 0 else np.full(k, 1.0 / k)
    log_conf = safe_log(conf)
    log_prior = safe_log(prior)
    return log_conf.astype(dt, copy=False), log_prior.astype(dt, copy=False)


def confusions_from_posteriors(
    posteriors: np.ndarray, task: np.ndarray, worker: np.ndarray, label: np.ndarray, n_workers: int
) -> np.ndarray:
    """Row-normalised confusion matrices ``(n_workers, k, k)`` implied by posteriors."""
    counts, _ = ds_m_step_sums(posteriors, task, worker, label, n_workers)
    k = counts.shape[-1]
    totals = counts.sum(axis=2, keepdims=True)
    return np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), 1.0 / k)


class DawidSkene(EMAggregator):
    """Dawid-Skene aggregation: one confusion matrix per worker, fitted by EM.

    Initialised from majority vote; deterministic. With a ``prior`` (the classifier's
    per-task probabilities) the prior replaces the class prior in the E-step: the
    model is one more annotator whose answer is a probability row.

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
        Working precision of the E-step; the M-step sums are float64 and
        ``posteriors_`` is always float64.

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

    def _m_step(self, post, a):
        k = a.n_classes
        sums, class_counts = a.m_step_sums(post)
        counts = sums.reshape(a.n_workers, k, k).transpose(0, 2, 1)
        log_conf, log_class_prior = ds_m_step(counts, class_counts, self.smoothing, self.diagonal, dtype=a.dtype)
        return {"log_confusion": log_conf, "log_class_prior": log_class_prior}

    def _finish(self, params, a):
        self.confusions_ = np.exp(params["log_confusion"].astype(np.float64))
        self.class_prior_ = np.exp(params["log_class_prior"].astype(np.float64))


class OneCoinDawidSkene(EMAggregator):
    """One-coin Dawid-Skene: each worker has one skill, the chance of giving the true label.

    A wrong answer is spread evenly over the other classes. Fitted by EM from majority
    vote; deterministic. Fewer parameters than :class:`DawidSkene`, so steadier when
    workers give few answers each.

    Parameters
    ----------
    n_iter, tol, dtype
        As in :class:`DawidSkene`.
    smoothing : float, default 0.0
        Pseudo-count added to each class count and, spread over the classes, to each
        worker's tally.
    diagonal : float, default 0.2
        Pseudo-count of right answers added to each worker's tally.

    Attributes
    ----------
    skills_ : ndarray of shape (n_workers,)
        Each worker's probability of answering right.
    posteriors_, labels_, confusions_, class_prior_, n_iter_, log_likelihood_
        As in :class:`DawidSkene` (``confusions_`` is built from ``skills_``).

    Examples
    --------
    >>> import numpy as np
    >>> from hitl.aggregation import OneCoinDawidSkene
    >>> m = OneCoinDawidSkene().fit(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 0, 1, 2]),
    ...                             np.array([1, 1, 0, 0, 0, 0]))
    >>> m.labels_
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

    def _m_step(self, post, a):
        k = a.n_classes
        sums, class_counts = a.m_step_sums(post)
        # expected right answers of worker w: the diagonal of their (given, true) sums
        right = np.einsum("wjj->w", sums.reshape(a.n_workers, k, k))
        denom = a.per_worker + self.diagonal + k * self.smoothing
        skill = np.where(denom > 0, (right + self.diagonal + self.smoothing) / np.where(denom > 0, denom, 1.0), 1.0 / k)
        class_prior = class_counts + self.smoothing
        class_prior = class_prior / class_prior.sum() if class_prior.sum() > 0 else np.full(k, 1.0 / k)
        eye = np.eye(k)
        wrong = (1.0 - skill) / max(k - 1, 1)
        log_conf = safe_log(skill)[:, None, None] * eye + safe_log(wrong)[:, None, None] * (1.0 - eye)
        return {"skill": skill, "log_confusion": log_conf.astype(a.dtype),
                "log_class_prior": safe_log(class_prior).astype(a.dtype)}

    def _finish(self, params, a):
        k = a.n_classes
        skill = params["skill"]
        self.skills_ = skill
        wrong = (1.0 - skill) / max(k - 1, 1)
        eye = np.eye(k)
        self.confusions_ = skill[:, None, None] * eye + wrong[:, None, None] * (1.0 - eye)
        self.class_prior_ = np.exp(params["log_class_prior"].astype(np.float64))
