"""Quality control of a crowd: worker accuracy from gold tasks or from the aggregation, spammers.

* Gold (honeypot) tasks have known answers: a worker's accuracy on them is a binomial
  proportion, reported with a Wilson or Clopper-Pearson interval.
* Without gold, the aggregation's posteriors give each answer's chance of being right;
  their mean is the worker's expected accuracy.
* Both together (:func:`worker_accuracy`): the aggregation is fitted with the gold
  tasks pinned to their known labels, and every answer counts, the gold ones exactly
  and the others by their posterior chance of being right. Gold is usually a small
  share of the work, so this rests on many more answers than gold alone: a worker
  with 50 gold answers among 500 is estimated from 500.
* A spammer answers without looking: their confusion matrix has (nearly) equal rows,
  i.e. it is near rank one. The spammer score of Raykar & Yu (JMLR 2012) measures the
  distance from that: 0 for a spammer, 1 for a perfect worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ConfigError, ValidationError
from ._base import _factorize, check_answers, dedupe_answers, one_vote_arrays
from ._kernels import answer_posterior

__all__ = [
    "WorkerAccuracy",
    "binomial_interval",
    "worker_accuracy_from_gold",
    "worker_accuracy_from_posteriors",
    "worker_accuracy",
    "gold_prior",
    "spammer_scores",
    "detect_spammers",
    "gold_accuracy",
]


@dataclass
class WorkerAccuracy:
    """Per-worker accuracy estimates (arrays of length ``n_workers``).

    Attributes
    ----------
    accuracy : ndarray
        Point estimate (NaN for a worker with no evidence).
    n : ndarray
        Answers the estimate rests on (gold answers, or all answers for posteriors).
    correct : ndarray
        (Expected) number of right answers.
    lower, upper : ndarray
        Bounds of the confidence interval (NaN where ``n == 0``).
    """

    accuracy: np.ndarray
    n: np.ndarray
    correct: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def to_frame(self, index: Any = None) -> pd.DataFrame:
        """The estimates as a DataFrame, one row per worker."""
        return pd.DataFrame(
            {"accuracy": self.accuracy, "n": self.n, "correct": self.correct, "lower": self.lower,
             "upper": self.upper},
            index=index,
        )


def binomial_interval(
    successes: Any, n: Any, confidence: float = 0.95, method: str = "wilson"
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence interval of a binomial proportion, vectorised.

    Parameters
    ----------
    successes, n : array-like
        Successes (may be fractional for ``"wilson"``) and trials.
    confidence : float, default 0.95
    method : {"wilson", "clopper-pearson"}
        Wilson score interval, or the exact (conservative) Clopper-Pearson interval.

    Returns
    -------
    lower, upper : ndarray
        NaN where ``n == 0``.

    Examples
    --------
    >>> lo, hi = binomial_interval([45], [50])
    >>> round(float(lo[0]), 3), round(float(hi[0]), 3)
    (0.786, 0.957)
    """
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"is {confidence}", field="confidence", expected="a number in (0, 1)")
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    ok = n > 0
    safe_n = np.where(ok, n, 1.0)
    alpha = 1.0 - confidence
    if method == "wilson":
        z = stats.norm.ppf(1.0 - alpha / 2.0)
        p = x / safe_n
        denom = 1.0 + z * z / safe_n
        centre = (p + z * z / (2.0 * safe_n)) / denom
        half = z * np.sqrt(np.maximum(p * (1.0 - p) / safe_n + z * z / (4.0 * safe_n * safe_n), 0.0)) / denom
        lower, upper = np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
    elif method in ("clopper-pearson", "exact"):
        with np.errstate(invalid="ignore"):
            lower = np.where(x > 0, stats.beta.ppf(alpha / 2.0, x, safe_n - x + 1.0), 0.0)
            upper = np.where(x < n, stats.beta.ppf(1.0 - alpha / 2.0, x + 1.0, safe_n - x), 1.0)
    else:
        raise ConfigError(f"is {method!r}", field="method", expected="'wilson' or 'clopper-pearson'")
    return np.where(ok, lower, np.nan), np.where(ok, upper, np.nan)


def worker_accuracy_from_gold(
    task: Any,
    worker: Any,
    label: Any,
    gold: Any,
    *,
    n_workers: int | None = None,
    confidence: float = 0.95,
    method: str = "wilson",
) -> WorkerAccuracy:
    """Each worker's accuracy on the gold (honeypot) tasks, with a confidence interval.

    Parameters
    ----------
    task, worker, label : array-like of int
        The answers (dense integer ids).
    gold : array-like of int, shape (n_tasks,)
        Known label of each task, ``-1`` where the task is not gold. Tasks beyond its
        length count as not gold.
    n_workers : int, optional
        Defaults to ``max(worker) + 1``.
    confidence, method
        See :func:`binomial_interval`.

    Returns
    -------
    WorkerAccuracy
        ``n`` is the number of gold answers of each worker. Every answer given counts:
        apply the one-vote rule first (:func:`hitl.aggregation.dedupe_answers`).

    Examples
    --------
    >>> acc = worker_accuracy_from_gold([0, 1, 2, 0], [0, 0, 0, 1], [1, 0, 1, 0], gold=[1, 1, -1])
    >>> acc.accuracy.tolist(), acc.n.tolist()
    ([0.5, 0.0], [2, 1])
    """
    t, w, y, nt, nw, _ = check_answers(task, worker, label, n_workers=n_workers)
    g = _gold_array(gold, nt)
    known = g[t] >= 0
    n = np.bincount(w[known], minlength=nw)
    correct = np.bincount(w[known], weights=(y[known] == g[t[known]]).astype(np.float64), minlength=nw)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(n > 0, correct / np.maximum(n, 1), np.nan)
    lower, upper = binomial_interval(correct, n, confidence, method)
    return WorkerAccuracy(accuracy, n, correct, lower, upper)


def worker_accuracy_from_posteriors(
    posteriors: np.ndarray,
    task: Any,
    worker: Any,
    label: Any,
    *,
    n_workers: int | None = None,
    confidence: float = 0.95,
) -> WorkerAccuracy:
    """Each worker's expected accuracy under the aggregation's posteriors.

    Answer ``i`` is right with probability ``posteriors[task[i], label[i]]``; the
    worker's accuracy is the mean of those over their answers. The interval is a Wilson
    interval on the expected number of right answers (approximate: it ignores the
    uncertainty of the posteriors themselves). Every answer given counts: apply the
    one-vote rule first (:func:`hitl.aggregation.dedupe_answers`).

    Examples
    --------
    >>> import numpy as np
    >>> post = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> worker_accuracy_from_posteriors(post, [0, 1], [0, 0], [0, 0]).accuracy.round(2).tolist()
    [0.55]
    """
    p = np.asarray(posteriors, dtype=np.float64)
    if p.ndim != 2:
        raise ValidationError(f"has shape {p.shape}", field="posteriors", expected="a (n_tasks, n_classes) matrix")
    t, w, y, _, nw, _ = check_answers(task, worker, label, n_tasks=p.shape[0], n_workers=n_workers,
                                      n_classes=p.shape[1])
    right = answer_posterior(np.ascontiguousarray(p), t, y)
    n = np.bincount(w, minlength=nw)
    correct = np.bincount(w, weights=right, minlength=nw)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(n > 0, correct / np.maximum(n, 1), np.nan)
    lower, upper = binomial_interval(correct, n, confidence, "wilson")
    return WorkerAccuracy(accuracy, n, correct, lower, upper)


def _gold_array(gold: Any, n_tasks: int) -> np.ndarray:
    """Gold labels as int64, padded with -1 (no gold) to at least ``n_tasks`` entries."""
    g = np.asarray(gold)
    if g.ndim != 1 or g.dtype.kind not in "iu":
        raise ValidationError(f"has shape {g.shape} and dtype {g.dtype}", field="gold",
                              expected="a 1-d integer array, -1 where a task has no gold label")
    return np.concatenate([g.astype(np.int64), np.full(max(0, n_tasks - g.size), -1, dtype=np.int64)])


def gold_prior(gold: Any, n_tasks: int, n_classes: int, *, floor: float = 1e-6) -> np.ndarray:
    """A per-task prior that pins gold tasks to their known label.

    Gold rows put ``1 - (k - 1) floor`` on the known label; every other row gets the
    class frequencies of the gold labels (add-one smoothed), since gold is usually a
    random sample of the work. Pass it as ``prior=`` to an aggregator.

    Examples
    --------
    >>> gold_prior([1, -1], n_tasks=2, n_classes=2).round(3).tolist()
    [[0.0, 1.0], [0.333, 0.667]]
    """
    g = _gold_array(gold, n_tasks)
    if g.size > n_tasks:
        raise ValidationError(f"has {g.size} entries for {n_tasks} tasks", field="gold",
                              expected=f"at most one entry per task ({n_tasks})")
    known = g >= 0
    if (g >= n_classes).any():
        bad = int(np.flatnonzero(g >= n_classes)[0])
        raise ValidationError(f"is {int(g[bad])}", item=bad, field="gold",
                              expected=f"a label in [0, {n_classes}) or -1")
    freq = np.bincount(g[known], minlength=n_classes).astype(np.float64) + 1.0
    prior = np.tile(freq / freq.sum(), (n_tasks, 1))
    prior[known] = floor
    prior[np.flatnonzero(known), g[known]] = 1.0 - (n_classes - 1) * floor
    return prior


def worker_accuracy(
    task: Any,
    worker: Any,
    label: Any,
    gold: Any,
    *,
    aggregator: Any = None,
    n_tasks: int | None = None,
    n_workers: int | None = None,
    n_classes: int | None = None,
    confidence: float = 0.95,
    duplicates: str = "refuse",
) -> WorkerAccuracy:
    """Each worker's accuracy from gold and from the aggregation together.

    The aggregator is fitted with the gold tasks pinned to their labels
    (:func:`gold_prior`), so gold anchors every worker's skill. A gold answer then
    counts as right or wrong; any other answer counts as right with its task's
    posterior probability of the given label. The estimate is the mean over all of a
    worker's answers, with a Wilson interval on that many answers (approximate: it
    ignores the uncertainty of the posteriors). Gold alone over ``n`` answers has a
    sampling error of about ``sqrt(p (1 - p) / n)``, 0.06 at ``n = 50``; counting
    the other answers shrinks that by the square root of their number.

    Parameters
    ----------
    task, worker, label : array-like of int
        The answers (dense integer ids).
    gold : array-like of int, shape (n_tasks,) or shorter
        Known label of each task, ``-1`` where the task is not gold.
    aggregator : estimator, default ``OneCoinDawidSkene()``
        Any aggregator of :mod:`hitl.aggregation` that takes a ``prior``.
    n_tasks, n_workers, n_classes : int, optional
        Sizes; default to ``max + 1`` (gold labels count for ``n_classes``).
    confidence : float, default 0.95
    duplicates : {"refuse", "last"}, default "refuse"
        One vote per (task, worker), as in :meth:`hitl.aggregation.BaseAggregator.fit`:
        identical repeats count once, conflicting ones are refused or the last one counts.

    Returns
    -------
    WorkerAccuracy
        ``n`` is every answer of the worker (one per task), ``correct`` the (expected) right ones.

    Examples
    --------
    Worker 1 is wrong on the gold task 0, so their disagreement with worker 0 on
    task 2 is settled in worker 0's favour:

    >>> acc = worker_accuracy([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1], [1, 0, 0, 0, 1, 0], gold=[1, -1, -1])
    >>> acc.n.tolist(), acc.accuracy.round(2).tolist()
    ([3, 3], [0.71, 0.06])
    """
    from .dawid_skene import OneCoinDawidSkene

    t, w, y, nt, nw, k = check_answers(task, worker, label, n_tasks=n_tasks, n_workers=n_workers)
    t, w, y = one_vote_arrays(t, w, y, nt, nw, duplicates)
    g = _gold_array(gold, nt)
    k = max(k, int(g.max()) + 1, 2) if n_classes is None else int(n_classes)
    if (y >= k).any():
        raise ValidationError(f"has a label {int(y.max())}", field="label", expected=f"labels below n_classes={k}")
    model = OneCoinDawidSkene() if aggregator is None else aggregator
    model.fit(t, w, y, n_tasks=nt, n_workers=nw, n_classes=k, prior=gold_prior(g, nt, k))
    post = np.array(model.posteriors_, dtype=np.float64)
    known = g >= 0
    post[known] = 0.0
    post[np.flatnonzero(known), g[known]] = 1.0  # gold is known, not estimated
    return worker_accuracy_from_posteriors(post, t, w, y, n_workers=nw, confidence=confidence)


def spammer_scores(confusions: Any) -> np.ndarray:
    """Raykar & Yu's spammer score of each worker's confusion matrix.

    With ``A`` a worker's row-stochastic confusion matrix (``A[j, l] = P(given l | true
    j)``), the score is ``sum over pairs j < j' of ||A[j] - A[j']||^2 / (k (k - 1))``:
    0 when all rows are equal (the answer does not depend on the truth, a rank-one
    matrix), 1 for a worker who is always right (or who always permutes the classes
    the same way). For a worker right with probability ``p`` and wrong uniformly, the
    score is ``((k p - 1) / (k - 1))^2``.

    Parameters
    ----------
    confusions : array-like of shape (n_workers, k, k) or (k, k)

    Returns
    -------
    ndarray of shape (n_workers,) (a float for one matrix)

    Examples
    --------
    >>> import numpy as np
    >>> spammer_scores(np.array([[[1, 0], [0, 1]], [[0.7, 0.3], [0.7, 0.3]]])).tolist()
    [1.0, 0.0]
    """
    c = np.asarray(confusions, dtype=np.float64)
    single = c.ndim == 2
    if single:
        c = c[None]
    if c.ndim != 3 or c.shape[1] != c.shape[2]:
        raise ValidationError(f"has shape {c.shape}", field="confusions", expected="shape (n_workers, k, k)")
    k = c.shape[1]
    if k < 2:
        return np.zeros(c.shape[0]) if not single else 0.0
    # sum_{j<j'} ||r_j - r_j'||^2 = k * sum_j ||r_j||^2 - ||sum_j r_j||^2
    total = k * np.einsum("wjl,wjl->w", c, c) - np.einsum("wl,wl->w", c.sum(axis=1), c.sum(axis=1))
    score = np.clip(total / (k * (k - 1)), 0.0, None)
    return float(score[0]) if single else score


def detect_spammers(
    confusions: Any,
    n_answers: Any,
    *,
    threshold: float = 0.05,
    min_answers: int = 10,
    noise_allowance: float = 2.0,
) -> np.ndarray:
    """Flag workers whose confusion matrix is near rank one.

    A confusion matrix estimated from ``n`` answers is noisy: even a true spammer's
    rows differ by chance, and their expected :func:`spammer_scores` value is about
    ``(k - 1) / n``. A worker is flagged when their score is below
    ``threshold + noise_allowance * (k - 1) / n`` and they gave at least
    ``min_answers`` answers (below that, the matrix says too little to judge).

    Parameters
    ----------
    confusions : array-like of shape (n_workers, k, k)
    n_answers : array-like of shape (n_workers,)
    threshold : float, default 0.05
        Score below which a worker with very many answers is a spammer. For a worker
        right with probability ``p`` and wrong uniformly, the score is
        ``((k p - 1) / (k - 1))^2``: 0.05 is ``p`` = 0.61 with two classes, 0.42 with four.
    min_answers : int, default 10
    noise_allowance : float, default 2.0

    Examples
    --------
    >>> import numpy as np
    >>> conf = np.array([[[0.9, 0.1], [0.1, 0.9]], [[0.5, 0.5], [0.55, 0.45]], [[0.5, 0.5], [0.5, 0.5]]])
    >>> detect_spammers(conf, [50, 50, 3]).tolist()
    [False, True, False]
    """
    if not threshold >= 0:
        raise ConfigError(f"is {threshold}", field="threshold", expected="a number >= 0")
    c = np.asarray(confusions, dtype=np.float64)
    scores = np.atleast_1d(spammer_scores(c))
    n = np.asarray(n_answers)
    if n.shape != scores.shape:
        raise ValidationError(f"has shape {n.shape}", field="n_answers", expected=f"shape {scores.shape}")
    k = c.shape[-1]
    limit = threshold + noise_allowance * (k - 1) / np.maximum(n, 1)
    return (scores < limit) & (n >= min_answers)


def gold_accuracy(
    answers: pd.DataFrame, gold: pd.DataFrame | pd.Series, *, confidence: float = 0.95, method: str = "wilson",
    duplicates: str = "refuse",
) -> pd.DataFrame:
    """Per-worker accuracy on gold tasks from a ``task, worker, label`` DataFrame.

    Parameters
    ----------
    answers : DataFrame
        Columns ``task, worker, label``; one vote per (task, worker), see
        :func:`hitl.aggregation.dedupe_answers` (``duplicates`` is passed to it).
    gold : DataFrame with columns ``task, label``, or Series indexed by task

    Returns
    -------
    DataFrame
        Indexed by worker (every worker in ``answers``): ``accuracy, n, correct, lower, upper``.

    Examples
    --------
    >>> import pandas as pd
    >>> answers = pd.DataFrame({"task": ["a", "b", "a"], "worker": ["x", "x", "y"], "label": ["1", "0", "0"]})
    >>> gold_accuracy(answers, pd.DataFrame({"task": ["a"], "label": ["1"]}))["accuracy"].tolist()
    [1.0, 0.0]
    """
    if isinstance(gold, pd.DataFrame):
        missing = [c for c in ("task", "label") if c not in gold.columns]
        if missing:
            raise ValidationError(f"missing column(s) {', '.join(missing)}", field="gold",
                                  expected="columns task, label")
        gold = gold.drop_duplicates("task").set_index("task")["label"]
    for col in ("task", "worker", "label"):
        if col not in answers.columns:
            raise ValidationError(f"missing column {col}", field="answers", expected="columns task, worker, label")
    answers = dedupe_answers(answers, duplicates)
    t, task_ids = _factorize(answers["task"])
    w, worker_ids = _factorize(answers["worker"])
    labels = pd.concat([answers["label"], pd.Series(gold.to_numpy())], ignore_index=True)
    codes, _ = _factorize(labels)
    y = codes[: len(answers)]
    gold_codes = pd.Series(codes[len(answers):], index=gold.index)
    g = gold_codes.reindex(task_ids).fillna(-1).to_numpy(dtype=np.int64)
    acc = worker_accuracy_from_gold(t, w, y, g, n_workers=len(worker_ids), confidence=confidence, method=method)
    return acc.to_frame(index=pd.Index(worker_ids, name="worker"))
