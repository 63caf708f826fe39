"""The EM loop shared by Dawid-Skene, one-coin Dawid-Skene, GLAD and MACE."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ._base import BaseAggregator
from ._kernels import answer_class_sums, answered_sum, csr_em_step, group_by_task, softmax_rows
from .majority import majority_posteriors

__all__ = ["EMAggregator", "FLOOR", "resolve_dtype"]

# Floor of any estimated probability before its log: an answer never seen from a worker
# stays possible (if very unlikely), and float32 and float64 runs share one floor.
FLOOR = 1e-100


def resolve_dtype(dtype: Any) -> np.dtype:
    """float64 or float32, else a ConfigError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ConfigError(f"is {dtype!r}", field="dtype", expected="float64 or float32") from None
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ConfigError(f"is {dt}", field="dtype", expected="float64 or float32")
    return dt


def safe_log(p: np.ndarray) -> np.ndarray:
    """``log(max(p, FLOOR))`` in float64."""
    return np.log(np.maximum(p, FLOOR))


class EMAggregator(BaseAggregator):
    """Skeleton of an EM aggregator.

    Subclasses implement ``_m_step(post, answers) -> params`` (a dict) and
    ``_finish(params, answers)`` to store fitted attributes. When ``params`` holds a
    ``"log_confusion"`` array ``(n_workers, k, k)`` the E-step is the fused Dawid-Skene
    one; otherwise ``_scores(params, answers)`` gives the ``(n_tasks, k)``
    log-likelihood of the answers per true class. The loop
    starts from majority vote (the classifier's prior counted as one more vote), runs
    M then E until the mean log-likelihood per answer changes by less than ``tol`` or
    ``n_iter`` is reached, and handles the prior: a per-task prior replaces the class
    prior in the E-step.
    """

    n_iter: int
    tol: float
    dtype: Any
    # Peak copies of the (n_workers, k, k) float64 arrays in an EM iteration (confusion
    # sums, the M-step's temporaries, logs, the E-step's table): about six.
    _worker_matrix_copies = 6

    def _m_step(self, post: np.ndarray, a: "_Answers") -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _scores(self, params: Any, a: "_Answers") -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _log_class_prior(self, params: Any) -> np.ndarray:
        return params["log_class_prior"]

    def _finish(self, params: Any, a: "_Answers") -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit_arrays(self, task, worker, label, n_tasks, n_workers, n_classes, prior) -> None:
        n_iter = int(self.n_iter)
        if n_iter < 1:
            raise ConfigError(f"is {self.n_iter}", field="n_iter", expected="an integer >= 1")
        dt = resolve_dtype(self.dtype)
        a = _Answers(task, worker, label, n_tasks, n_workers, n_classes, dt)
        post = majority_posteriors(task, label, n_tasks, n_classes, prior).astype(dt)
        log_task_prior = None if prior is None else safe_log(prior).astype(dt)
        task_prior = None if prior is None else np.maximum(prior, FLOOR)
        history: list[float] = []
        it = 0
        params = None
        for it in range(1, n_iter + 1):
            params = self._m_step(post, a)
            lp = self._log_class_prior(params) if log_task_prior is None else log_task_prior
            if "log_confusion" in params:
                pp = np.exp(lp.astype(np.float64)) if task_prior is None else task_prior
                post, ll = a.e_step(params["log_confusion"], pp)
            else:
                scores = self._scores(params, a)
                scores += lp
                post, ll = softmax_rows(scores)
            history.append(ll / a.n_answers)
            if len(history) > 1 and abs(history[-1] - history[-2]) < self.tol:
                break
        params = self._m_step(post, a)
        self.n_iter_ = it
        self.log_likelihood_ = history
        post = post.astype(np.float64)
        if prior is None:
            post[~a.answered] = 1.0 / n_classes
        self.posteriors_ = post
        self._finish(params, a)


class _Answers:
    """The answer arrays plus what every step needs and only needs computing once."""

    def __init__(self, task, worker, label, n_tasks, n_workers, n_classes, dtype):
        self.task, self.worker, self.label = task, worker, label
        self.n_tasks, self.n_workers, self.n_classes = n_tasks, n_workers, n_classes
        self.dtype = dtype
        self.n_answers = len(task)
        self.per_task = np.bincount(task, minlength=n_tasks)
        self.answered = self.per_task > 0
        self.per_worker = np.bincount(worker, minlength=n_workers).astype(np.float64)
        self.worker_label = worker * n_classes + label
        self._csr = None
        self._sums = None  # (posteriors, sums, class_sums) of the last fused E-step

    def m_step_sums(self, post: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(n_workers * k, k)`` posterior mass per (worker, given label) row, and per class.

        Free when ``post`` comes from the last fused E-step; computed otherwise.
        """
        if self._sums is not None and self._sums[0] is post:
            return self._sums[1], self._sums[2]
        sums = answer_class_sums(post, self.task, self.worker_label, self.n_workers * self.n_classes)
        return sums, answered_sum(post, self.answered)

    def e_step(self, log_confusion: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, float]:
        """Dawid-Skene E-step over the answers grouped by task (grouped once, on first use).

        ``prior`` holds probabilities, ``(k,)`` or ``(n_tasks, k)``.
        """
        if self._csr is None:
            task = self.task
            if task.size > 1 and (task[1:] < task[:-1]).any():
                order = group_by_task(task, self.n_tasks)  # = argsort(kind="stable"), in O(n)
                rows = self.worker_label[order]
            else:
                rows = self.worker_label
            indptr = np.zeros(self.n_tasks + 1, dtype=np.int64)
            np.cumsum(self.per_task, out=indptr[1:])
            if self.n_workers * self.n_classes < 2**31:  # halves the bytes read per answer
                rows = rows.astype(np.int32)
            self._csr = (np.ascontiguousarray(rows), indptr)
        rows, indptr = self._csr
        n_workers, k, _ = log_confusion.shape
        # Row (w * k + given) holds P(given | true = j) for every j.
        table = np.exp(log_confusion.astype(np.float64).transpose(0, 2, 1).reshape(n_workers * k, k))
        post, ll, sums, class_sums = csr_em_step(table, rows, indptr, prior, self.n_tasks, self.dtype)
        self._sums = (post, sums, class_sums)
        return post, ll
