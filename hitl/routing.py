"""The router: machine label, one HITer, or more -- within the rules.

Per item the router decides between the machine label and human answers:

* **Auto-accept with a guarantee.** A random sample of items is audited by humans
  and held out of training. The auto-accept threshold is the lowest model confidence
  ``t`` for which the Clopper-Pearson lower bound of the accuracy of audited items
  with confidence ``>= t`` reaches ``target_accuracy`` at ``confidence``. Thresholds
  are tested from the highest down and the search stops at the first that fails
  (fixed-sequence testing, as in Angelopoulos et al., *Learn then Test*, 2021), so
  the stated level holds for the threshold chosen, not only for a fixed one. The
  audits sample the items unlabeled when they were drawn; active learning then takes
  items of that population to people, possibly the right ones, so the bound is asked
  to hold for the items left to accept in the worst case (every error of the region
  among them; see :meth:`Router.decide_threshold`).
* **Dynamic redundancy.** An item goes to one HITer; another is asked only while the
  item's posterior (answers weighted by each HITer's estimated accuracy, with the
  model as prior) is below ``redundancy_target``, up to ``max_answers``. By default
  (``redundancy="set"``) the human labels are judged as a set: items below the target
  are asked again, lowest posterior first, only while the expected accuracy of all
  human labels delivered so far (at ``confidence``) is short of the target.
* **Constraints that are never broken.** Residency (an item only reaches HITers in its
  allowed countries), skills (an item type may need a skill, earned on gold tasks),
  tenure (nobody past ``max_tenure_days`` on the platform), hours (a daily cap of time
  on task per HITer) and the budget (answers, money).
"""

from __future__ import annotations

import math

import datetime as _dt
import functools
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, ValidationError


@dataclass(frozen=True)
class Budget:
    """Limits on what a project may buy.

    Parameters
    ----------
    answers : int, optional
        Most human answers, all rounds together (None: no limit).
    money : float, optional
        Most money the client pays (HITers' pay and the platform's and programme's
        shares), in the settlement currency (None: no limit).

    Examples
    --------
    >>> Budget(answers=500).remaining(answers_used=120)
    380
    """

    answers: int | None = None
    money: float | None = None

    def __post_init__(self) -> None:
        if self.answers is not None and (isinstance(self.answers, bool) or not isinstance(self.answers, (int, np.integer))
                                         or self.answers < 0):
            raise ConfigError(f"is {self.answers!r}", field="Budget.answers", expected="a whole number >= 0 or None")
        if self.money is not None and not _finite_amount(self.money):
            raise ConfigError(f"is {self.money!r}", field="Budget.money", expected="a finite amount >= 0 or None")

    def remaining(self, answers_used: int) -> int | None:
        """Answers still allowed (None: unlimited)."""
        return None if self.answers is None else max(0, int(self.answers) - int(answers_used))

    def remaining_cents(self, cents_used: int) -> int | None:
        """Money still allowed, in cents (None: unlimited)."""
        return None if self.money is None else max(0, int(round(float(self.money) * 100)) - int(cents_used))


def _finite_amount(value: object) -> bool:
    """Whether ``value`` is a number (not text, not a bool) that is finite and >= 0."""
    if isinstance(value, (str, bytes, bool)):
        return False
    try:
        return 0 <= float(value) < math.inf
    except (TypeError, ValueError):
        return False


@dataclass
class Routing:
    """What the router decided for a batch: one row per assignment, plus items nobody may take."""

    items: np.ndarray
    workers: np.ndarray
    unroutable: np.ndarray


@dataclass
class AcceptDecision:
    """The auto-accept threshold and the guarantee behind it.

    ``threshold`` is None when no threshold meets the target (nothing is accepted);
    ``bound`` is the Clopper-Pearson lower bound of the accuracy of audited items at or
    above the threshold, ``n_audited`` and ``n_correct`` are what it rests on.
    """

    threshold: float | None
    bound: float | None
    n_audited: int
    n_correct: int


def clopper_pearson_lower(successes: np.ndarray | int, trials: np.ndarray | int, confidence: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower confidence bound of a binomial proportion.

    Examples
    --------
    >>> round(float(clopper_pearson_lower(59, 59, 0.95)), 4)   # 59 of 59 right: 95% sure of >= 0.95
    0.9505
    """
    from scipy.stats import beta

    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = beta.ppf(1.0 - confidence, k, n - k + 1.0)
    return np.where(k > 0, np.nan_to_num(lower, nan=0.0), 0.0)


class Router:
    """Decides, per item, between the machine label and how many HITers.

    Parameters
    ----------
    target_accuracy : float, default 0.95
        Accuracy the auto-accepted machine labels must reach.
    confidence : float, default 0.95
        Level of the guarantee: the lower confidence bound is at this level.
    guarantee : bool, default True
        Choose the threshold from audits with a bound. ``False`` accepts every machine
        label whose probability is at least ``auto_accept`` (a point estimate, no bound).
    auto_accept : float, optional
        Fixed threshold used when ``guarantee=False`` (default: ``target_accuracy``);
        ``>= 1`` turns auto-acceptance off.
    answers_per_item : int, optional
        Fixed redundancy (every item gets exactly this many HITers). Default None:
        dynamic redundancy, from 1 up to ``max_answers``.
    max_answers : int, default 3
    redundancy_target : float, optional
        Posterior an item must reach before no more HITers are asked (default:
        ``target_accuracy``).
    audit_size : int, default 150
        Audited items to collect (held out of training), at most a quarter of the pool.
    audit_share : float, default 0.25
        Share of a round's items that are audits while audits are still missing.
    audit_max_share : float, default 0.3
        Most of the pool that may be audited when no threshold meets the target.
    max_tenure_days : int, default 1095
        No task to a HITer who has been on the platform longer (three years).
    hours_per_day : float, default 8.0
        Most time on task per HITer and project day.
    skill_gold : int, default 10
        Gold tasks of a type a HITer must answer to earn its skill ...
    skill_accuracy : float, default 0.8
        ... with at least this accuracy on them.
    task_seconds : float, default 600
        Time limit of one task (its lease); a pending task reserves this much of the
        HITer's daily hours, so the cap holds whatever the answer's real duration.
    audit_target : float, default 0.995
        Posterior an audited item must reach: an audit checks the model, so the human
        label it rests on must be surer than an ordinary one.
    audit_max_answers : int, default 5
    quality_min_answers : int, default 15
        Answers after which a HITer whose estimated accuracy is no better than chance
        (see :meth:`min_worker_accuracy`) gets no more label tasks.
    escalate : bool, default True
        Send the second and later answers of an item (and every audit) to the more
        reliable half of the crowd by estimated skill; first answers go to anyone
        eligible, so everybody keeps getting work.
    redundancy : {"set", "item"}, default "set"
        ``"item"``: every item is asked again until its own posterior reaches
        ``redundancy_target`` (or ``max_answers``), so each label is that sure.
        ``"set"``: the human labels are held to ``redundancy_target`` together (see
        :meth:`needs_more_set`), which spends answers where they lower the expected
        number of wrong labels most, and so buys fewer answers for labels that are, as
        a set, as accurate as asked. It rests on calibrated posteriors (see
        ``prior_mix`` of :class:`hitl.LabelingProject`).
    random_state : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> r = Router(answers_per_item=2, random_state=0)
    >>> eligible = np.array([[True, True, False], [False, False, False]])
    >>> out = r.assign(np.array([10, 11]), eligible, load=np.zeros(3))
    >>> sorted(out.workers.tolist()), out.unroutable.tolist()
    ([0, 1], [11])
    """

    def __init__(
        self,
        target_accuracy: float = 0.95,
        confidence: float = 0.95,
        *,
        guarantee: bool = True,
        auto_accept: float | None = None,
        answers_per_item: int | None = None,
        max_answers: int = 3,
        redundancy_target: float | None = None,
        audit_size: int = 150,
        audit_share: float = 0.25,
        audit_max_share: float = 0.3,
        max_tenure_days: int = 3 * 365,
        hours_per_day: float = 8.0,
        skill_gold: int = 10,
        skill_accuracy: float = 0.8,
        task_seconds: float = 600.0,
        audit_target: float = 0.995,
        audit_max_answers: int = 5,
        quality_min_answers: int = 15,
        escalate: bool = True,
        redundancy: str = "set",
        random_state: int | None = None,
    ) -> None:
        for name, value in (("target_accuracy", target_accuracy), ("confidence", confidence)):
            if not 0.0 < value < 1.0 + (name == "target_accuracy"):
                raise ConfigError(f"is {value}", field=name, expected="a probability in (0, 1)")
        if auto_accept is not None and not auto_accept > 0:
            raise ConfigError(f"is {auto_accept}", field="auto_accept", expected="a probability threshold in (0, 1]")
        if answers_per_item is not None and int(answers_per_item) < 1:
            raise ConfigError(f"is {answers_per_item}", field="answers_per_item", expected="at least 1")
        if int(max_answers) < 1:
            raise ConfigError(f"is {max_answers}", field="max_answers", expected="at least 1")
        if not 0.0 <= audit_share < 1.0:
            raise ConfigError(f"is {audit_share}", field="audit_share", expected="a share in [0, 1)")
        if not hours_per_day > 0:
            raise ConfigError(f"is {hours_per_day}", field="hours_per_day", expected="a positive number of hours")
        if int(max_tenure_days) < 0:
            raise ConfigError(f"is {max_tenure_days}", field="max_tenure_days", expected="a number of days >= 0")
        self.target_accuracy = float(target_accuracy)
        self.confidence = float(confidence)
        self.guarantee = bool(guarantee)
        self.auto_accept = float(target_accuracy if auto_accept is None else auto_accept)
        self.answers_per_item = None if answers_per_item is None else int(answers_per_item)
        self.max_answers = int(max_answers if answers_per_item is None else answers_per_item)
        self.redundancy_target = float(target_accuracy if redundancy_target is None else redundancy_target)
        self.audit_size = int(audit_size)
        self.audit_share = float(audit_share)
        self.audit_max_share = float(audit_max_share)
        self.max_tenure_days = int(max_tenure_days)
        self.hours_per_day = float(hours_per_day)
        self.skill_gold = int(skill_gold)
        self.skill_accuracy = float(skill_accuracy)
        self.task_seconds = float(task_seconds)
        self.audit_target = float(audit_target)
        self.audit_max_answers = int(audit_max_answers if answers_per_item is None else answers_per_item)
        self.quality_min_answers = int(quality_min_answers)
        self.escalate = bool(escalate)
        if redundancy not in ("item", "set"):
            raise ConfigError(f"is {redundancy!r}", field="redundancy", expected='"item" or "set"')
        self.redundancy = redundancy
        self.random_state = random_state

    # ------------------------------------------------------------- auto-accept
    @property
    def first_answers(self) -> int:
        """HITers asked at once for an item sent to humans."""
        return self.answers_per_item or 1

    def accept_mask(self, proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Which machine labels are accepted as they are, at ``threshold`` (default: the fixed one)."""
        proba = np.asarray(proba)
        if proba.ndim != 2:
            raise ValidationError(f"has shape {proba.shape}", field="proba", expected="(n_items, n_classes)")
        if threshold is None:
            if self.auto_accept >= 1.0:
                return np.zeros(len(proba), dtype=bool)
            threshold = self.auto_accept
        return proba.max(axis=1) >= threshold

    def decide_threshold(self, audit_confidence: np.ndarray, audit_correct: np.ndarray, *,
                         candidate_confidence: np.ndarray | None = None,
                         audit_population: float | None = None) -> AcceptDecision:
        """The lowest threshold whose audited accuracy bound meets the target (fixed-sequence test).

        Parameters
        ----------
        audit_confidence : (n,) the current model's confidence on the audited items
        audit_correct : (n,) bool, whether its label agrees with the humans' label
        candidate_confidence : (m,) optional, the confidence on the items that would be
            accepted (the unlabeled ones)
        audit_population : float, optional
            How many items the audits were drawn from (unlabeled when drawn). With
            ``candidate_confidence``, the bound is made to hold for what is left: active
            learning has since sent items of that population to people, and they may
            have been the right ones. In the worst case every wrong label of the
            region (about ``audit_population`` times its share of the audits, times
            one minus the Clopper-Pearson bound) is among the ``A`` items still to
            accept, so the bound reported and tested is
            ``1 - (1 - lower) * N_region / A`` when ``A < N_region``.

        Examples
        --------
        >>> import numpy as np
        >>> conf = np.linspace(0.5, 1.0, 400)
        >>> correct = np.r_[np.arange(200) % 3 != 0, np.ones(200, bool)]  # sure half always right
        >>> d = Router(0.95).decide_threshold(conf, correct)
        >>> round(d.threshold, 3), round(d.bound, 3), d.n_audited, d.n_correct   # a little of the unsure half too
        (0.731, 0.952, 216, 211)
        """
        conf = np.asarray(audit_confidence, dtype=np.float64)
        correct = np.asarray(audit_correct, dtype=bool)
        if conf.shape != correct.shape or conf.ndim != 1:
            raise ValidationError(f"shapes {conf.shape} and {correct.shape}", field="audits", expected="two equal 1-d arrays")
        if not self.guarantee:
            keep = conf >= self.auto_accept
            return AcceptDecision(self.auto_accept if self.auto_accept < 1 else None, None, int(keep.sum()),
                                  int(correct[keep].sum()))
        if len(conf) == 0:
            return AcceptDecision(None, None, 0, 0)
        order = np.argsort(-conf, kind="stable")
        c_sorted = conf[order]
        hits = np.cumsum(correct[order])
        n = np.arange(1, len(conf) + 1)
        # Cut only between distinct confidences: a threshold keeps all ties or none.
        last_of_tie = np.r_[c_sorted[1:] != c_sorted[:-1], True]
        cand = np.flatnonzero(last_of_tie)
        lower = clopper_pearson_lower(hits[cand], n[cand], self.confidence)
        if candidate_confidence is not None and audit_population is not None:
            region = n[cand] / len(conf) * float(audit_population)
            left = len(candidate_confidence) - np.searchsorted(np.sort(np.asarray(candidate_confidence, np.float64)),
                                                              c_sorted[cand], side="left")
            # Worst case: the region's errors all sit among the items still to accept.
            crowding = np.maximum(1.0, region / np.maximum(left, 1))
            lower = np.maximum(0.0, 1.0 - (1.0 - lower) * crowding)
        # The sequence starts where the region is large enough to pass with a few errors
        # (one per hundred audits, at least one); that start depends on the number and the
        # confidences of the audits only, never on their labels.
        start_n = _min_trials(self.target_accuracy, self.confidence, errors=max(1, len(conf) // 100))
        first = int(np.searchsorted(n[cand], min(start_n, n[cand][-1])))
        best = None
        for j in range(first, len(cand)):
            if lower[j] < self.target_accuracy:
                break
            best = j
        if best is None:
            return AcceptDecision(None, float(lower[first]), int(n[cand][first]), int(hits[cand][first]))
        return AcceptDecision(float(c_sorted[cand[best]]), float(lower[best]), int(n[cand[best]]), int(hits[cand[best]]))

    def audits_wanted(self, n_audited: int, n_items_round: int, pool_size: int, passed: bool = True,
                      promising: bool = True) -> int:
        """How many of this round's items should be audits.

        Up to ``audit_size`` (at most a quarter of the pool); when the last decision
        found no threshold that meets the target, auditing goes on, up to
        ``audit_max_share`` of the pool, rather than sending everything to humans --
        but only while more audits could still make a threshold pass (``promising``,
        see :meth:`more_audits_could_pass`).
        """
        if not self.guarantee:
            return 0
        goal = min(self.audit_size, pool_size // 4)
        if not passed and promising and n_audited >= goal:
            goal = int(self.audit_max_share * pool_size)
        missing = max(0, goal - n_audited)
        return int(min(missing, np.ceil(self.audit_share * n_items_round)))

    def more_audits_could_pass(self, audit_confidence: np.ndarray, audit_correct: np.ndarray, pool_size: int) -> bool:
        """Whether auditing up to ``audit_max_share`` of the pool could still let a threshold pass.

        With ``N`` audits, the fixed-sequence test starts at the ``start_n(N)`` most
        confident of them, so at the most audits allowed it would start at the top
        ``q = start_n(N_max) / N_max`` of the confidences. The audits already in hand
        that fall in that top share estimate its accuracy: when even the upper
        Clopper-Pearson bound of that estimate is below the accuracy that region
        needs to pass (the target plus room for the allowed misses), more audits of
        this model are money spent on a test it will fail (futility), so the router
        keeps to ``audit_size`` and waits for a better model. Cheap to be wrong in
        the other direction: a promising model just keeps being audited.

        Examples
        --------
        >>> import numpy as np
        >>> conf = np.linspace(0.4, 0.99, 150)
        >>> r = Router(0.95)
        >>> r.more_audits_could_pass(conf, np.ones(150, bool), pool_size=4000)
        True
        >>> r.more_audits_could_pass(conf, np.arange(150) % 4 != 0, pool_size=4000)   # 75% right at the top too
        False
        """
        conf = np.asarray(audit_confidence, dtype=np.float64)
        correct = np.asarray(audit_correct, dtype=bool)
        if not self.guarantee or len(conf) == 0:
            return True
        n_max = max(int(self.audit_max_share * pool_size), len(conf))
        errors = max(1, n_max // 100)
        start = _min_trials(self.target_accuracy, self.confidence, errors=errors)
        share = min(1.0, start / max(n_max, 1))
        # That first region passes only if it is at least this accurate (e.g. 0.969 for
        # 1,200 audits at 0.95 @ 95%): its bound must clear the target with `errors` misses.
        needed = 1.0 - errors / start
        top = conf >= np.quantile(conf, 1.0 - share)
        hits, n = int(correct[top].sum()), int(top.sum())
        from scipy.stats import beta

        upper = 1.0 if hits >= n else float(beta.ppf(self.confidence, hits + 1, n - hits))
        return upper >= needed

    # ------------------------------------------------------------- redundancy
    def needs_more(self, posterior_max: np.ndarray, n_answers: np.ndarray, audit: np.ndarray | None = None) -> np.ndarray:
        """Which items get one more HITer (audits answer to ``audit_target`` and ``audit_max_answers``)."""
        n_answers = np.asarray(n_answers)
        if self.answers_per_item is not None:
            return n_answers < self.answers_per_item
        target = np.full(len(n_answers), self.redundancy_target)
        most = np.full(len(n_answers), self.max_answers)
        if audit is not None:
            target[audit] = self.audit_target
            most[audit] = self.audit_max_answers
        return (np.asarray(posterior_max) < target) & (n_answers < most)

    def needs_more_set(self, posterior_max: np.ndarray, n_answers: np.ndarray, open_: np.ndarray,
                       audit: np.ndarray | None = None) -> np.ndarray:
        """Which items get one more HITer when the human labels are judged as a set.

        ``posterior_max`` and ``n_answers`` cover every human-labeled item delivered so
        far; only ``open_`` items (this round's) may be asked again. The expected
        number of wrong labels is ``E = sum(1 - p)``; the set meets the target when
        ``E`` plus ``z`` standard deviations (``z`` from ``confidence``, the normal
        approximation of the Poisson-binomial count of errors) is at most
        ``(1 - redundancy_target) * n``. While it is not, the open items furthest
        below the target are asked again, lowest posterior first, just enough of them
        that their expected errors cover the excess (the next wave looks again). No
        item at or above the target is ever asked again, and audits keep their own
        per-item rule (``audit_target``). The check rests on calibrated posteriors.

        Examples
        --------
        >>> import numpy as np
        >>> r = Router(0.95)
        >>> post = np.r_[np.full(28, 0.999), 0.93, 0.50]   # one item a little below, one far below
        >>> r.needs_more_set(post, np.ones(30, int), open_=np.ones(30, bool)).nonzero()[0].tolist()
        [29]
        >>> r.needs_more(post, np.ones(30, int)).nonzero()[0].tolist()   # item by item: both
        [28, 29]
        """
        p = np.asarray(posterior_max, dtype=np.float64)
        open_ = np.asarray(open_, dtype=bool)
        audit = np.zeros(len(p), dtype=bool) if audit is None else np.asarray(audit, dtype=bool)
        # What the per-item rule would ask; the set rule asks only part of it.
        per_item = open_ & self.needs_more(p, n_answers, audit=audit)
        if self.answers_per_item is not None:
            return per_item
        out = per_item & audit
        below = per_item & ~audit
        if not below.any():
            return out
        from scipy.stats import norm

        z = float(norm.ppf(self.confidence))
        errors = 1.0 - p
        excess = errors.sum() + z * np.sqrt(np.sum(p * errors)) - (1.0 - self.redundancy_target) * len(p)
        if excess <= 0:
            return out
        idx = np.flatnonzero(below)
        idx = idx[np.argsort(p[idx], kind="stable")]
        # Asking again removes most of an item's expected error; take the fewest lowest
        # items whose errors cover the excess (at least one).
        take = int(np.searchsorted(np.cumsum(errors[idx]), excess)) + 1
        out[idx[:take]] = True
        return out

    def min_worker_accuracy(self, n_classes: int) -> float:
        """Estimated accuracy under which a HITer gets no label tasks: chance plus 30% of the way to perfect."""
        chance = 1.0 / n_classes
        return chance + 0.3 * (1.0 - chance)

    # ------------------------------------------------------------- eligibility
    def eligible(self, residency: np.ndarray, *, item_skill: np.ndarray, worker_skills: np.ndarray,
                 tenure_days: np.ndarray, seconds_today: np.ndarray, seconds_per_task: np.ndarray,
                 already: np.ndarray | None = None) -> np.ndarray:
        """Eligibility matrix (items x HITers): residency, skills, tenure and hours together.

        Parameters
        ----------
        residency : (m, W) bool, may item go to that HITer's country
        item_skill : (m,) int, skill the item needs (-1: none)
        worker_skills : (W, n_skills) bool, skills each HITer holds
        tenure_days : (W,) days on the platform
        seconds_today : (W,) time on task already spent or reserved today
        seconds_per_task : (W,) time reserved for one more task of this HITer
        already : (m, W) bool, HITer already holds that item (never twice)
        """
        ok = np.asarray(residency, dtype=bool).copy()
        item_skill = np.asarray(item_skill, dtype=np.int64)
        needs = item_skill >= 0
        if needs.any():
            ok[needs] &= np.asarray(worker_skills, dtype=bool)[:, item_skill[needs]].T
        ok &= (np.asarray(tenure_days) <= self.max_tenure_days)[None, :]
        ok &= ((np.asarray(seconds_today) + np.asarray(seconds_per_task)) <= self.hours_per_day * 3600.0)[None, :]
        if already is not None:
            ok &= ~np.asarray(already, dtype=bool)
        return ok

    def assign(self, items: np.ndarray, eligible: np.ndarray, load: np.ndarray,
               rng: np.random.Generator | None = None, *, per_item: int | None = None,
               seconds_today: np.ndarray | None = None, seconds_per_task: np.ndarray | None = None) -> Routing:
        """Pick up to ``per_item`` (default :attr:`first_answers`) distinct eligible HITers per item.

        Least-loaded HITers are preferred. When ``seconds_today`` and
        ``seconds_per_task`` are given, the daily cap is also kept across the items of
        this batch: assignments that would push a HITer past it are dropped (the items
        stay unassigned this time, they are not reported unroutable).
        """
        items = np.asarray(items, dtype=np.int64)
        eligible = np.asarray(eligible, dtype=bool)
        m = len(items)
        if eligible.ndim != 2 or eligible.shape[0] != m:
            raise ValidationError(f"has shape {eligible.shape}", field="eligible", expected=f"({m}, n_workers)")
        n_workers = eligible.shape[1]
        rng = rng if rng is not None else np.random.default_rng(self.random_state)
        none = np.zeros(0, dtype=np.int64)
        if m == 0 or n_workers == 0:
            return Routing(none, none, items.copy())
        k = min(per_item or self.first_answers, n_workers)
        load = np.asarray(load, dtype=np.float64)
        # Random keys stretched by load: a HITer with twice the mean load is about half as
        # likely to be drawn, which spreads a batch without a loop over items.
        key = rng.random((m, n_workers)) * (1.0 + load / max(load.mean(), 1.0))[None, :]
        key[~eligible] = np.inf
        if k < n_workers:
            pick = np.argpartition(key, k - 1, axis=1)[:, :k]
        else:
            pick = np.broadcast_to(np.arange(n_workers), (m, n_workers))
        ok = np.isfinite(np.take_along_axis(key, pick, axis=1))
        rows = np.broadcast_to(np.arange(m)[:, None], pick.shape)
        routable = ok.any(axis=1)
        out_items, out_workers = items[rows[ok]], pick[ok].astype(np.int64)
        if seconds_today is not None and len(out_workers):
            # Keep each HITer's day under the cap: the j-th task of a HITer in this batch
            # reserves j times her time per task.
            per = np.asarray(seconds_per_task, dtype=np.float64)
            order = np.argsort(out_workers, kind="stable")
            w_sorted = out_workers[order]
            starts = np.r_[0, np.flatnonzero(np.diff(w_sorted)) + 1]
            rank = np.arange(len(w_sorted)) - np.repeat(starts, np.diff(np.r_[starts, len(w_sorted)]))
            fits = np.asarray(seconds_today)[w_sorted] + (rank + 1) * per[w_sorted] <= self.hours_per_day * 3600.0
            keep = np.zeros(len(out_workers), dtype=bool)
            keep[order[fits]] = True
            out_items, out_workers = out_items[keep], out_workers[keep]
        return Routing(out_items, out_workers, items[~routable])


@functools.lru_cache(maxsize=64)
def _min_trials(target: float, confidence: float, errors: int) -> int:
    """Smallest sample that can show ``target`` at ``confidence`` with ``errors`` mistakes."""
    for n in range(errors + 1, 100_000):
        if clopper_pearson_lower(n - errors, n, confidence) >= target:
            return n
    return 100_000


def tenure_days(start_dates: list[_dt.date], today: _dt.date) -> np.ndarray:
    """Days each HITer has been on the platform on ``today``."""
    return np.array([(today - d).days for d in start_dates], dtype=np.int64)
