"""Vote counting: majority vote and Wawa (votes weighted by agreement with the majority)."""

from __future__ import annotations

import numpy as np

from ._base import BaseAggregator
from ._kernels import normalize_rows, vote_counts

__all__ = ["MajorityVote", "Wawa", "majority_posteriors", "weighted_vote_posteriors"]


def weighted_vote_posteriors(
    task: np.ndarray,
    label: np.ndarray,
    n_tasks: int,
    n_classes: int,
    weights: np.ndarray | None = None,
    prior: np.ndarray | None = None,
    prior_weight: float = 1.0,
) -> np.ndarray:
    """Per-task vote shares; ``prior`` counts as one more (soft) vote of weight ``prior_weight``.

    Tasks with no vote and no prior get a uniform row.
    """
    counts = vote_counts(task, label, n_tasks, n_classes, weights)
    if prior is not None:
        counts += prior_weight * prior
    return normalize_rows(counts)


def majority_posteriors(
    task: np.ndarray, label: np.ndarray, n_tasks: int, n_classes: int, prior: np.ndarray | None = None
) -> np.ndarray:
    """Vote shares per task (the prior, if any, as one more vote)."""
    return weighted_vote_posteriors(task, label, n_tasks, n_classes, None, prior)


class _VoteAggregator(BaseAggregator):
    """Vote counters: ``confusions_`` and ``class_prior_`` are computed on first access
    (a vote needs neither, and on millions of answers they cost more than the vote)."""

    def _keep_answers(self, task, worker, label, n_workers) -> None:
        self._answers = (task, worker, label, n_workers)
        self.__dict__.pop("_confusions", None)
        self.__dict__.pop("_class_prior", None)

    @property
    def confusions_(self) -> np.ndarray:
        """Each worker's answers against the posteriors, row-normalised: ``[w, true, given]``."""
        if "_confusions" not in self.__dict__:
            from .dawid_skene import confusions_from_posteriors

            self._check_fitted()
            task, worker, label, n_workers = self._answers
            self._confusions = confusions_from_posteriors(self.posteriors_, task, worker, label, n_workers)
        return self._confusions

    @property
    def class_prior_(self) -> np.ndarray:
        """Mean posterior over the tasks that have answers."""
        if "_class_prior" not in self.__dict__:
            from ._kernels import answered_sum

            self._check_fitted()
            task = self._answers[0]
            answered = np.bincount(task, minlength=self.posteriors_.shape[0]) > 0
            self._class_prior = answered_sum(self.posteriors_, answered) / max(int(answered.sum()), 1)
        return self._class_prior


class MajorityVote(_VoteAggregator):
    """Majority vote: the posterior of a task is its share of votes per class.

    Ties go to the smallest class index (deterministic). With a ``prior``, the
    classifier's probability row is added as one more vote.

    Attributes
    ----------
    posteriors_ : ndarray of shape (n_tasks, n_classes)
    labels_ : ndarray of shape (n_tasks,)
    confusions_ : ndarray of shape (n_workers, n_classes, n_classes)
        Each worker's answers against the vote shares, row-normalised.
    class_prior_ : ndarray of shape (n_classes,)

    Examples
    --------
    >>> import numpy as np
    >>> from hitl.aggregation import MajorityVote
    >>> mv = MajorityVote().fit(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 0]), np.array([1, 1, 0, 2]))
    >>> mv.labels_
    array([1, 2])
    >>> mv.posteriors_[0].round(3)
    array([0.333, 0.667, 0.   ])
    """

    def __init__(self) -> None:
        pass

    def _fit_arrays(self, task, worker, label, n_tasks, n_workers, n_classes, prior) -> None:
        self.posteriors_ = majority_posteriors(task, label, n_tasks, n_classes, prior)
        self._keep_answers(task, worker, label, n_workers)


class Wawa(_VoteAggregator):
    """Worker Agreement With Aggregate: a vote weighted by each worker's agreement with majority vote.

    Each worker's weight is the share of their answers that match the majority label
    (smoothed towards 1/2 by ``smoothing`` pseudo-answers); the posterior is the
    weighted vote share. With a ``prior``, the classifier votes too, weighted by its own
    agreement with the majority.

    Parameters
    ----------
    smoothing : float, default 0.0
        Pseudo-answers, half agreeing, added to every worker's tally.

    Attributes
    ----------
    posteriors_, labels_, confusions_, class_prior_
        As in :class:`MajorityVote`.
    skills_ : ndarray of shape (n_workers,)
        Each worker's weight.

    Examples
    --------
    >>> import numpy as np
    >>> from hitl.aggregation import Wawa
    >>> Wawa().fit(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 0, 1, 2]), np.array([0, 0, 1, 1, 1, 0])).labels_
    array([0, 1])
    """

    def __init__(self, smoothing: float = 0.0) -> None:
        self.smoothing = smoothing

    def _fit_arrays(self, task, worker, label, n_tasks, n_workers, n_classes, prior) -> None:
        mv = majority_posteriors(task, label, n_tasks, n_classes, prior)
        mv_label = mv.argmax(axis=1)
        agree = (label == mv_label[task]).astype(np.float64)
        hits = np.bincount(worker, weights=agree, minlength=n_workers)
        n = np.bincount(worker, minlength=n_workers).astype(np.float64)
        s = float(self.smoothing)
        denom = n + s
        skills = np.where(denom > 0, (hits + 0.5 * s) / np.where(denom > 0, denom, 1.0), 0.0)
        prior_weight = 1.0
        if prior is not None:
            answered = np.bincount(task, minlength=n_tasks) > 0
            n_tasks_answered = int(answered.sum())
            # the classifier's agreement with the majority, over the tasks people answered
            prior_weight = float((prior.argmax(axis=1) == mv_label)[answered].sum() / max(n_tasks_answered, 1))
        self.skills_ = skills
        self.posteriors_ = weighted_vote_posteriors(
            task, label, n_tasks, n_classes, skills[worker], prior, prior_weight
        )
        self._keep_answers(task, worker, label, n_workers)
