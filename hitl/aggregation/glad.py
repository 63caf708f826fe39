"""GLAD: worker ability times task easiness (Whitehill et al., NeurIPS 2009)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._em import EMAggregator, safe_log
from ._kernels import answer_posterior, answered_sum, one_coin_scores

__all__ = ["GLAD"]


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


class GLAD(EMAggregator):
    """GLAD: answer ``i`` is right with probability ``sigmoid(alpha[worker] * beta[task])``.

    ``alpha`` is the worker's ability (negative for an adversarial worker), ``beta > 0``
    the task's easiness (``beta = exp(log_beta)``); a wrong answer is spread evenly
    over the other classes. EM from majority vote; the M-step takes a few damped
    Fisher-scoring steps on ``alpha`` and ``log_beta`` under Gaussian priors, warm
    started from the previous iteration. Deterministic.

    Parameters
    ----------
    n_iter : int, default 100
        Most EM iterations.
    tol : float, default 1e-5
        Stop when the mean log-likelihood per answer changes by less than this.
    m_step_iter : int, default 3
        Fisher-scoring steps per M-step.
    alpha_prior : float, default 1.0
        Prior mean of every ``alpha`` (prior variance ``prior_var``).
    prior_var : float, default 1.0
        Prior variance of ``alpha`` and ``log_beta`` (prior mean of ``log_beta``: 0).
    learn_class_prior : bool, default False
        Re-estimate the class prior in each M-step. Off by default, as in the original
        method: with a learned class prior the abilities of a weak crowd can drift
        towards "everyone says the majority class", and accuracy drops.
    dtype : {"float64", "float32"}, default "float64"

    Attributes
    ----------
    alphas_ : ndarray of shape (n_workers,)
    betas_ : ndarray of shape (n_tasks,)
    posteriors_, labels_, confusions_, class_prior_, n_iter_, log_likelihood_
        As in :class:`hitl.aggregation.DawidSkene` (``confusions_`` is each worker's
        answers against the posteriors).

    Examples
    --------
    >>> import numpy as np
    >>> from hitl.aggregation import GLAD
    >>> GLAD().fit(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 0, 1, 2]), np.array([1, 1, 0, 0, 0, 0])).labels_
    array([1, 0])
    """

    # GLAD's EM has no per-worker matrix; only ``confusions_``, built at the end (sums,
    # their transpose, the normalised result).
    _worker_matrix_copies = 3

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        m_step_iter: int = 3,
        alpha_prior: float = 1.0,
        prior_var: float = 1.0,
        learn_class_prior: bool = False,
        dtype: Any = "float64",
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.m_step_iter = m_step_iter
        self.alpha_prior = alpha_prior
        self.prior_var = prior_var
        self.learn_class_prior = learn_class_prior
        self.dtype = dtype

    def _fit_arrays(self, task, worker, label, n_tasks, n_workers, n_classes, prior) -> None:
        self._alpha = np.full(n_workers, float(self.alpha_prior))
        self._log_beta = np.zeros(n_tasks)
        try:
            super()._fit_arrays(task, worker, label, n_tasks, n_workers, n_classes, prior)
        finally:
            del self._alpha, self._log_beta

    def _m_step(self, post, a):
        p = answer_posterior(post, a.task, a.label).astype(np.float64)
        alpha, log_beta = self._alpha, self._log_beta
        inv_var = 1.0 / float(self.prior_var)
        for _ in range(int(self.m_step_iter)):
            beta = np.exp(log_beta)[a.task]
            x = alpha[a.worker] * beta
            s = np.exp(_log_sigmoid(x))
            r, v = p - s, s * (1.0 - s)
            # d log-lik / d alpha = (p - s) beta ; Fisher information s (1 - s) beta^2
            g = np.bincount(a.worker, weights=r * beta, minlength=a.n_workers) - (alpha - self.alpha_prior) * inv_var
            f = np.bincount(a.worker, weights=v * beta * beta, minlength=a.n_workers) + inv_var
            alpha = alpha + np.clip(g / f, -1.0, 1.0)
            x = alpha[a.worker] * beta
            s = np.exp(_log_sigmoid(x))
            r, v = p - s, s * (1.0 - s)
            # d / d log_beta = (p - s) x ; Fisher information s (1 - s) x^2
            g = np.bincount(a.task, weights=r * x, minlength=a.n_tasks) - log_beta * inv_var
            f = np.bincount(a.task, weights=v * x * x, minlength=a.n_tasks) + inv_var
            log_beta = np.clip(log_beta + np.clip(g / f, -1.0, 1.0), -10.0, 10.0)
        self._alpha, self._log_beta = alpha, log_beta
        k = a.n_classes
        class_prior = answered_sum(post, a.answered) if self.learn_class_prior else np.ones(k)
        class_prior = class_prior / class_prior.sum() if class_prior.sum() > 0 else np.full(k, 1.0 / k)
        return {"alpha": alpha, "log_beta": log_beta, "log_class_prior": safe_log(class_prior).astype(a.dtype)}

    def _scores(self, params, a):
        x = params["alpha"][a.worker] * np.exp(params["log_beta"])[a.task]
        log_right = _log_sigmoid(x)
        log_wrong = _log_sigmoid(-x) - np.log(max(a.n_classes - 1, 1))
        return one_coin_scores(a.task, a.label, log_right.astype(a.dtype), log_wrong.astype(a.dtype),
                               a.n_tasks, a.n_classes)

    def _finish(self, params, a):
        from .dawid_skene import confusions_from_posteriors

        self.alphas_ = params["alpha"]
        self.betas_ = np.exp(params["log_beta"])
        self.confusions_ = confusions_from_posteriors(self.posteriors_, a.task, a.worker, a.label, a.n_workers)
        self.class_prior_ = np.exp(params["log_class_prior"].astype(np.float64))
