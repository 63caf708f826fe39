"""MACE: Multi-Annotator Competence Estimation (Hovy et al., NAACL 2013)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._em import EMAggregator, safe_log
from ._kernels import answer_posterior, answered_sum, vote_counts

__all__ = ["MACE"]


class MACE(EMAggregator):
    """MACE: each worker either answers truthfully or, with probability ``1 - competence``, spams.

    A spamming worker draws a label from their own spam distribution ``spam_``,
    whatever the truth, so a worker who always clicks the first option is found out.
    Fitted by EM (MAP with Beta and Dirichlet pseudo-counts) from majority vote;
    deterministic, where the reference method uses random restarts.

    Parameters
    ----------
    n_iter : int, default 100
        Most EM iterations.
    tol : float, default 1e-5
        Stop when the mean log-likelihood per answer changes by less than this.
    alpha, beta : float, default 1.0
        Pseudo-counts of truthful and spamming answers added to each worker's tally.
    smoothing : float, default 0.1
        Pseudo-count added to each label of each worker's spam distribution.
    initial_competence : float, default 0.5
        Competence used in the first M-step.
    dtype : {"float64", "float32"}, default "float64"

    Attributes
    ----------
    competence_ : ndarray of shape (n_workers,)
        Probability that the worker answers truthfully.
    spam_ : ndarray of shape (n_workers, n_classes)
        Each worker's label distribution when spamming.
    posteriors_, labels_, confusions_, class_prior_, n_iter_, log_likelihood_
        As in :class:`hitl.aggregation.DawidSkene` (``confusions_`` is
        ``competence * I + (1 - competence) * spam``).

    Examples
    --------
    >>> import numpy as np
    >>> from hitl.aggregation import MACE
    >>> MACE().fit(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 0, 1, 2]), np.array([1, 1, 0, 0, 0, 0])).labels_
    array([1, 0])
    """

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        alpha: float = 1.0,
        beta: float = 1.0,
        smoothing: float = 0.1,
        initial_competence: float = 0.5,
        dtype: Any = "float64",
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.alpha = alpha
        self.beta = beta
        self.smoothing = smoothing
        self.initial_competence = initial_competence
        self.dtype = dtype

    def _fit_arrays(self, task, worker, label, n_tasks, n_workers, n_classes, prior) -> None:
        self._theta = np.full(n_workers, float(self.initial_competence))
        self._spam = np.full((n_workers, n_classes), 1.0 / n_classes)
        try:
            super()._fit_arrays(task, worker, label, n_tasks, n_workers, n_classes, prior)
        finally:
            del self._theta, self._spam

    def _m_step(self, post, a):
        theta, spam = self._theta, self._spam
        k = a.n_classes
        p = answer_posterior(post, a.task, a.label).astype(np.float64)
        th = theta[a.worker]
        # Chance that answer i was truthful: its label is the truth and it was not spam.
        truthful = p * th / (th + (1.0 - th) * spam[a.worker, a.label])
        theta = (np.bincount(a.worker, weights=truthful, minlength=a.n_workers) + self.alpha) / (
            a.per_worker + self.alpha + self.beta
        )
        spam = vote_counts(a.worker, a.label, a.n_workers, k, 1.0 - truthful) + self.smoothing
        totals = spam.sum(axis=1, keepdims=True)
        spam = np.where(totals > 0, spam / np.where(totals > 0, totals, 1.0), 1.0 / k)
        self._theta, self._spam = theta, spam
        class_prior = answered_sum(post, a.answered)
        class_prior = class_prior / class_prior.sum() if class_prior.sum() > 0 else np.full(k, 1.0 / k)
        conf = theta[:, None, None] * np.eye(k) + (1.0 - theta)[:, None, None] * spam[:, None, :]
        return {
            "log_confusion": safe_log(conf).astype(a.dtype),
            "log_class_prior": safe_log(class_prior).astype(a.dtype),
            "theta": theta,
            "spam": spam,
            "confusion": conf,
        }

    def _finish(self, params, a):
        self.competence_ = params["theta"]
        self.spam_ = params["spam"]
        self.confusions_ = params["confusion"]
        self.class_prior_ = np.exp(params["log_class_prior"].astype(np.float64))
