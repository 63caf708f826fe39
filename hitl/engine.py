"""The labeling loop: train, pre-label, auto-accept, select, route, collect, aggregate, repeat.

All state between rounds lives in the :class:`~hitl.store.Store`; the in-memory
objects are rebuilt from it, so a project killed at any point resumes by
constructing it again on the same file and calling :meth:`LabelingProject.run`.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .errors import AnswersPending, ConfigError, ValidationError
from .pool import Pool
from .routing import AcceptDecision, Budget, Router, tenure_days
from .store import Store, whole_numbers
from .workforce import Workforce

_HUMAN = ("human", "aggregated")


@dataclass
class Curve:
    """Label cost against accuracy, one row per point of the run.

    Columns: ``round``, ``human_answers`` (bought so far), ``human_labeled`` (items),
    ``auto_accepted`` (items), ``model_accuracy`` (on the evaluation set, if given),
    ``label_accuracy`` (of the labels delivered for the whole pool if stopped there,
    when the truth is known) and ``accepted_accuracy`` (of human and auto-accepted
    labels only).
    """

    points: list[dict] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.points)

    def plot(self, ax: Any = None, path: str | None = None) -> Any:
        """Plot human answers bought against accuracy; saves to ``path`` when given."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        df = self.to_frame()
        own = ax is None
        if own:
            fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        for col, name in (("label_accuracy", "labels delivered (whole pool)"),
                          ("accepted_accuracy", "human + auto-accepted labels"),
                          ("model_accuracy", "model on held-out test set")):
            if col in df and df[col].notna().any():
                ax.plot(df["human_answers"], df[col], marker="o", ms=3, label=name)
        ax.set_xlabel("human answers bought")
        ax.set_ylabel("accuracy")
        ax.set_title("Label cost vs accuracy")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        if own:
            fig.tight_layout()
            if path is not None:
                fig.savefig(path)
                plt.close(fig)
        return ax


@dataclass
class RunResult:
    """What :meth:`LabelingProject.run` returns.

    Attributes
    ----------
    labels : DataFrame with columns ``id, label, source, confidence, accepted``
        One row per pool item. ``source`` is ``human`` (one answer), ``aggregated``
        (several answers) or ``machine``; ``accepted`` says whether a machine label met
        the auto-accept threshold (human labels are always accepted).
    curve : Curve
    summary : dict (human_answers, label_accuracy, model_accuracy, auto_accepted, ...)
    stop_reason : str
    """

    labels: pd.DataFrame
    curve: Curve
    summary: dict
    stop_reason: str


class LabelingProject:
    """A labeling project: a pool, a model, a strategy and a workforce, looped to a budget.

    Each round trains the model on the human labels (audited items excepted), pre-labels
    the pool, sets the auto-accept threshold from the audits (see :class:`hitl.Router`),
    sends a batch of the most useful uncertain items and a few random audits to eligible
    HITers, asks more HITers only for items whose posterior is still below target (by
    default only while the human labels, as a set, fall short of it), and aggregates.
    It stops when every item is either human-labeled or auto-accepted, or when the
    budget is spent.

    Parameters
    ----------
    pool : Pool
    model : model following :class:`hitl.models.Model`
    workforce : Workforce (e.g. :class:`hitl.SimulatedCrowd`)
    classes : sequence, optional
        Label names; their positions are the class indices used everywhere else.
        Default: ``range(workforce.n_classes)``.
    strategy : str or callable, default "margin"
        Any strategy of :mod:`hitl.strategies` or a modAL-style function.
    aggregator : aggregator, optional
        Turns answers into labels. Default: one-coin Dawid-Skene weighted by each HITer's
        estimated accuracy, with the model as prior (audits excepted); give e.g.
        :class:`hitl.aggregation.MajorityVote` to aggregate without the model.
    router : Router, optional
        Default ``Router(target_accuracy, confidence, answers_per_item=...)``.
    target_accuracy, confidence : float, default 0.95, 0.95
        The guarantee asked of auto-accepted labels (used when ``router`` is not given).
    answers_per_item : int, optional
        Fixed redundancy; default dynamic (1 to 3 HITers as the posterior needs).
    budget : Budget, optional
    store : str, Path or Store, default ":memory:"
        Reopening the same file resumes the project.
    gold : dict, optional
        ``{item id: label}`` known to the client: trains the model, and gold tasks of a
        type teach HITers its skill.
    required_skills : dict or bool, optional
        ``{item type: skill name}`` needed to label items of that type; ``True``: every
        type needs the skill of the same name. HITers earn a skill on gold tasks.
    fair_pay_multiple : float, default 3.0
        Pay per task = median time on task x local minimum wage x this multiple.
    start_date : datetime.date, optional
        The project's first day (tenure is counted on it); default today.
    rounds_per_day : int, default 1
        Rounds in one project day (the daily hour cap resets each day).
    prior_mix : float or "audits", default "audits"
        How far the model's probabilities are trusted as the prior of an item's answers.
        ``"audits"``: calibrated on the audited items (a temperature and a flat share,
        :class:`hitl.models.TemperatureScaling` with ``flat=True``, refitted each round
        once 30 audits are in; a 0.1 flat share until then), so an over-confident model
        cannot pass its confidence to the labels. A float: the prior is mixed with this
        much of a flat distribution, so a confident model cannot outvote several
        agreeing HITers.
    wages : hitl.impact.WageTable, path or DataFrame, optional
        Local minimum wages (country, currency, hourly amount, source, date); default:
        the example table shipped with ``hitl``.
    pay : dict, optional
        More settings of the :class:`hitl.impact.Ledger` (``floor_multiple``, ``split``,
        ``currency``, ``period``, ...).
    use_ray : "auto", True, False or None, default None
        Where the pool is pre-labeled each round: None follows ``HITL_USE_RAY`` (default
        ``"auto"``: in-process below 100,000 rows, Ray actors above when that is faster;
        ``RAY_ADDRESS`` joins an existing cluster). See :mod:`hitl.distributed`.
    eval_set : (X_test, y_test), optional
        Held-out data to report the model's accuracy each round.
    y_true : array, optional
        True labels of the pool, only to report accuracy (simulations, benchmarks).
    random_state : int, default 0
    progress : bool, default True
        Show a progress bar per round.

    Examples
    --------
    >>> import numpy as np, hitl
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200); X = y[:, None] + rng.normal(0, 0.5, (200, 2))
    >>> crowd = hitl.SimulatedCrowd.from_profile("experts", 5, truth=y, n_classes=2)
    >>> project = hitl.LabelingProject(hitl.Pool(X), hitl.models.SklearnModel(LogisticRegression(), n_classes=2),
    ...                                workforce=crowd, budget=hitl.Budget(answers=40), progress=False)
    >>> result = project.run(batch_size=10)
    >>> result.summary["human_answers"] <= 40, len(result.labels)
    (True, 200)
    """

    def __init__(
        self,
        pool: Pool,
        model: Any,
        *,
        workforce: Workforce,
        classes: Sequence[Any] | None = None,
        strategy: str | Callable = "margin",
        aggregator: Any = None,
        router: Router | None = None,
        target_accuracy: float = 0.95,
        confidence: float = 0.95,
        answers_per_item: int | None = None,
        budget: Budget | None = None,
        store: str | Store = ":memory:",
        gold: dict | None = None,
        required_skills: dict | bool | None = None,
        fair_pay_multiple: float = 3.0,
        start_date: _dt.date | None = None,
        rounds_per_day: int = 1,
        prior_mix: float | str = "audits",
        wages: Any = None,
        pay: dict | None = None,
        eval_set: tuple[Any, Any] | None = None,
        y_true: Sequence[int] | None = None,
        use_ray: bool | str | None = None,
        random_state: int = 0,
        progress: bool = True,
        force: bool = False,
    ) -> None:
        self._check_parts(pool, model, workforce)
        self.classes = self._check_classes(classes, model, workforce)
        if not isinstance(target_accuracy, (int, float)) or not 0.0 < target_accuracy <= 1.0:
            raise ConfigError(f"is {target_accuracy!r}", field="target_accuracy", expected="a probability in (0, 1]")
        if prior_mix != "audits" and not (isinstance(prior_mix, (int, float)) and 0.0 <= prior_mix <= 1.0):
            raise ConfigError(f"is {prior_mix!r}", field="prior_mix", expected='a share in [0, 1] or "audits"')
        if not isinstance(fair_pay_multiple, (int, float)) or not fair_pay_multiple > 0:
            raise ConfigError(f"is {fair_pay_multiple!r}", field="fair_pay_multiple", expected="a positive multiple")
        self.rounds_per_day = _whole(rounds_per_day, "rounds_per_day", low=1)
        self.random_state = _whole(random_state, "random_state", low=0)
        if budget is not None and not isinstance(budget, Budget):
            raise ConfigError(f"is a {type(budget).__name__}", field="budget", expected="a hitl.Budget")
        if router is not None and not isinstance(router, Router):
            raise ConfigError(f"is a {type(router).__name__}", field="router", expected="a hitl.Router")
        if start_date is not None and not isinstance(start_date, _dt.date):
            raise ConfigError(f"is {start_date!r}", field="start_date", expected="a datetime.date")
        self.pool = pool
        self.model = model
        self.workforce = workforce
        self.strategy = strategy
        self.aggregator = aggregator
        self.router = router or Router(target_accuracy, confidence, answers_per_item=answers_per_item,
                                       random_state=self.random_state)
        self.budget = budget or Budget()
        self.progress = progress
        self.use_ray = use_ray
        from .distributed import Prelabeler

        self._prelabeler = Prelabeler(use_ray, progress=progress)
        self.prior_mix = prior_mix if prior_mix == "audits" else float(prior_mix)
        self._prior_calibrator = None
        self.fair_pay_multiple = float(fair_pay_multiple)
        self.eval_set = self._check_eval_set(eval_set)
        k = len(self.classes)
        self.y_true = None if y_true is None else _check_truth(y_true, pool.n_items, k, "y_true")
        self._gold_items, self._gold_labels = self._check_gold(gold)
        self._skills, self._item_skill = self._check_skills(required_skills)
        pay = self._check_pay(pay)
        self._open_store(store, start_date, wages, pay, force)
        self._new_audits = np.zeros(0, np.int64)
        bind = getattr(workforce, "bind", None)
        if callable(bind):
            # A workforce of real people needs the project's store and pool to post tasks.
            bind(self)

    def _open_store(self, store: str | Store, start_date: _dt.date | None, wages: Any, pay: dict,
                    force: bool) -> None:
        """Create the project in the store, or check that the store is this project's, in one transaction."""
        from .impact import Ledger

        self.store = store if isinstance(store, Store) else Store(store)
        config = self._settings(start_date)
        # One transaction: a process killed while the project is being made leaves an
        # empty store (made again next time), never one that every later run refuses.
        with self.store.transaction():
            self.resumed = not self.store.ensure_project(
                fingerprint=self.pool.fingerprint(), classes=self.classes, config=config,
                features=self.pool.features_fingerprint(), force=force,
            )
            if not self.resumed:
                self.store.add_items(self.pool.ids.tolist(), self.pool.item_types.tolist(), self.pool.allowed_countries)
                self.store.set_task_seconds(self.router.task_seconds)
                if len(self._gold_items):
                    self.store.set_labels(-1, self._gold_items, self._gold_labels, "human", np.ones(len(self._gold_items)))
            self.store.add_workers(self.workforce.hiters)
            # Positions of the workforce's HITers in the store, and back.
            self._wpos = self.store.worker_positions([h.id for h in self.workforce.hiters])
            # Pay, price and split of every task; the settings are recorded in the store, and
            # each HITer's minimum wage is fixed now, so any process prices from the store alone.
            self.ledger = Ledger(self.store, wages, fair_multiple=self.fair_pay_multiple, **pay)
            self.ledger.freeze_wages(self._wpos)
        self.start_date = _dt.date.fromisoformat(self.store.config()["start_date"])
        self._wback = np.full(int(self._wpos.max()) + 1, -1, dtype=np.int64)
        self._wback[self._wpos] = np.arange(len(self._wpos))
        self._countries = [h.country for h in self.workforce.hiters]
        self._n_store_workers = int(self._wpos.max()) + 1

    def _settings(self, start_date: _dt.date | None) -> dict:
        """The settings that change a project's results: recorded at creation, checked when it resumes.

        The budget is left out on purpose: raising it and running again is how a project
        goes on. The start date is recorded when first known, so a project resumed on
        another day keeps its calendar (tenure, daily hours).
        """
        router = {k: v for k, v in vars(self.router).items()
                  if k != "random_state" and isinstance(v, (int, float, str, bool, type(None)))}
        config = {
            "strategy": _describe(self.strategy),
            "random_state": self.random_state,
            "aggregator": _describe(self.aggregator),
            "prior_mix": self.prior_mix,
            "rounds_per_day": self.rounds_per_day,
            "router": router,
        }
        if start_date is not None or "start_date" not in self.store.config():
            config["start_date"] = (start_date or _dt.date.today()).isoformat()
        return config

    # ------------------------------------------------------------------ validation
    def _check_parts(self, pool: Any, model: Any, workforce: Any) -> None:
        if not isinstance(pool, Pool):
            raise ValidationError(f"is a {type(pool).__name__}", field="pool", expected="a hitl.Pool")
        for attr in ("fit", "predict_proba"):
            if not callable(getattr(model, attr, None)):
                raise ValidationError(f"has no {attr}()", field="model", expected="an object with fit and predict_proba")
        if not hasattr(workforce, "collect") or not getattr(workforce, "hiters", None):
            raise ValidationError("has no HITers or no collect()", field="workforce", expected="a Workforce with at least one HITer")
        n_items = getattr(workforce, "n_items", None)
        if n_items is not None and n_items != pool.n_items:
            raise ConfigError(f"knows {n_items} items for a pool of {pool.n_items}", field="workforce",
                              expected="one entry per pool item (truth, texts, images or files), in pool order")

    @staticmethod
    def _check_classes(classes: Sequence[Any] | None, model: Any, workforce: Any) -> list:
        """The label names, checked against what the model and the workforce say about their number."""
        said = {name: getattr(part, "n_classes", None) for name, part in (("workforce", workforce), ("model", model))}
        said = {name: n for name, n in said.items() if isinstance(n, (int, np.integer)) and not isinstance(n, bool)}
        if classes is None:
            if "workforce" not in said:
                raise ConfigError("is missing", field="classes", expected="the list of label names")
            classes = range(int(said["workforce"]))
        if isinstance(classes, str) or not hasattr(classes, "__iter__"):
            raise ConfigError(f"is {classes!r}", field="classes", expected="a list of label names")
        classes = list(classes)
        if len(classes) < 2 or len(set(map(str, classes))) != len(classes):
            raise ConfigError(f"is {classes!r}", field="classes", expected="at least two distinct labels")
        for name, n in said.items():
            if int(n) != len(classes):
                raise ConfigError(f"says {int(n)} classes, the project has {len(classes)} ({classes!r:.80})",
                                  field=f"{name}.n_classes", expected="the same label set everywhere")
        return classes

    def _check_eval_set(self, eval_set: Any) -> tuple[Any, np.ndarray] | None:
        if eval_set is None:
            return None
        if not isinstance(eval_set, (tuple, list)) or len(eval_set) != 2:
            raise ConfigError(f"is a {type(eval_set).__name__}", field="eval_set", expected="a pair (X_test, y_test)")
        X_test, y_test = eval_set
        n = len(y_test) if hasattr(y_test, "__len__") else -1
        if not hasattr(X_test, "__len__") or len(X_test) != n:
            raise ConfigError(f"has {len(X_test) if hasattr(X_test, '__len__') else '?'} items for {n} labels",
                              field="eval_set", expected="one label per test item")
        shape = getattr(X_test, "shape", None)
        if shape is not None and tuple(shape[1:]) != tuple(self.pool.X.shape[1:]):
            raise ConfigError(f"has items of shape {tuple(shape[1:])}", field="eval_set",
                              expected=f"the pool's item shape {tuple(self.pool.X.shape[1:])}")
        return X_test, _check_truth(y_test, n, len(self.classes), "eval_set")

    @staticmethod
    def _check_pay(pay: Any) -> dict:
        from .impact.ledger import LEDGER_SETTINGS

        if pay is None:
            return {}
        if not isinstance(pay, dict):
            raise ConfigError(f"is a {type(pay).__name__}", field="pay", expected="a dict of ledger settings")
        unknown = sorted(set(pay) - set(LEDGER_SETTINGS) | ({"fair_multiple"} & set(pay)))
        if unknown:
            raise ConfigError(f"names {unknown[0]!r}", field="pay",
                              expected=f"keys among {sorted(set(LEDGER_SETTINGS) - {'fair_multiple'})} "
                                       "(the fair multiple is fair_pay_multiple)")
        return dict(pay)

    # ------------------------------------------------------------------ validation
    def _check_gold(self, gold: dict | None) -> tuple[np.ndarray, np.ndarray]:
        if not gold:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        names = {str(c): i for i, c in enumerate(self.classes)}
        items, labels = [], []
        for item_id, label in gold.items():
            items.append(self.pool.index_of(str(item_id)))
            if str(label) not in names:
                raise ValidationError(f"is {label!r}", item=item_id, field="gold", expected=f"one of {self.classes}")
            labels.append(names[str(label)])
        return np.array(items, np.int64), np.array(labels, np.int64)

    def _check_skills(self, required: dict | bool | None) -> tuple[list[str], np.ndarray]:
        types = self.pool.item_types
        if not required:
            return [], np.full(self.pool.n_items, -1, dtype=np.int64)
        if required is not True and not isinstance(required, dict):
            raise ConfigError(f"is {required!r}", field="required_skills", expected="a dict {item type: skill} or True")
        mapping = {t: t for t in set(types.tolist())} if required is True else dict(required)
        bad = [v for v in mapping.values() if not isinstance(v, str) or not v]
        if bad:
            raise ConfigError(f"names skill {bad[0]!r}", field="required_skills", expected="skill names (strings)")
        skills = sorted(set(mapping.values()))
        col = {s: j for j, s in enumerate(skills)}
        item_skill = np.array([col[mapping[t]] if t in mapping else -1 for t in types.tolist()], dtype=np.int64)
        return skills, item_skill

    # ------------------------------------------------------------------ public API
    def run(self, batch_size: int = 50, max_rounds: int | None = None) -> RunResult:
        """Run rounds until the pool is labeled, the budget is spent or ``max_rounds`` ran; returns a :class:`RunResult`.

        Why the run stopped, and anything it left undone (items nobody may see, items
        with no label, nothing auto-accepted), is in ``summary["messages"]`` and, with
        ``progress``, printed.
        """
        batch_size = _whole(batch_size, "batch_size", low=1)
        if max_rounds is not None:
            max_rounds = _whole(max_rounds, "max_rounds", low=0)
        from tqdm.auto import tqdm

        total = None
        if self.budget.answers is not None:
            total = math.ceil(self.budget.answers / (batch_size * self.router.first_answers))
        bar = tqdm(total=total, desc="labeling", unit="round", disable=not self.progress, leave=True)
        bar.update(sum(r["status"] == "done" for r in self.store.rounds()))
        rounds_run = 0
        reason = "max_rounds"
        try:
            while max_rounds is None or rounds_run < max_rounds:
                reason = self.step(batch_size)
                if reason:
                    break
                rounds_run += 1
                last = self.store.rounds()[-1]["stats"]
                bar.update(1)
                bar.set_postfix(answers=last.get("human_answers_after"), auto_accepted=last.get("auto_accepted"))
        finally:
            bar.close()
        result = self._finish(reason or "max_rounds", write=reason != "waiting")
        if self.progress:
            for message in result.summary["messages"]:
                print(f"hitl: {message}")
        return result

    def step(self, batch_size: int = 50) -> str | None:
        """Run one round; returns None, or why no round could run (``budget``, ``complete``, ...)."""
        open_round = self.store.open_round()
        if open_round is not None:
            try:
                self._complete_round(open_round)
            except AnswersPending:
                return "waiting"
            return None
        done = self.store.rounds()
        r = done[-1]["round"] + 1 if done else 0
        answers_left = self.budget.remaining(self.store.n_answers() + len(self.store.assignments(pending=True)[0]))
        n_items = batch_size if answers_left is None else min(batch_size, answers_left // self.router.first_answers)
        if n_items <= 0 or self._money_left() == 0:
            return "budget"
        rng = np.random.default_rng([self.random_state, r])
        state = self._fit_and_score()
        blocked = self._blocked_items()
        free = ~state["labeled"] & ~blocked
        n_audited = int(state["audit_mask"].sum())
        passed = state["decision"].threshold is not None
        promising = passed or self.router.more_audits_could_pass(*state["audit_check"], self.pool.n_items)
        n_audit = min(self.router.audits_wanted(n_audited, n_items, self.pool.n_items, passed, promising),
                      int(free.sum()))
        if (not promising and n_audited >= min(self.router.audit_size, self.pool.n_items // 4)
                and not any(e["payload"].get("audited") == n_audited for e in self.store.events("audits_futile"))):
            # Once per audit count: the engineer learns why auditing stopped, not every round.
            self.store.log("audits_futile", {"audited": n_audited}, round_no=r)
        audits = rng.choice(np.flatnonzero(free), size=n_audit, replace=False) if n_audit else np.zeros(0, np.int64)
        free[audits] = False
        candidates = np.flatnonzero(free & ~state["accepted"])
        picked = self._select(candidates, state, n_items - n_audit, rng) if len(candidates) else np.zeros(0, np.int64)
        gold_items, gold_workers = self._gold_tasks(r)
        items = np.r_[audits, picked].astype(np.int64)
        if len(items) == 0 and len(gold_items) == 0:
            return "complete"
        kinds = np.r_[np.full(len(audits), "audit", dtype=object), np.full(len(picked), "label", dtype=object)]
        self._new_audits = audits
        routing = self._route(r, items, per_item=self.router.first_answers, rng=rng,
                              budget_answers=None if answers_left is None else answers_left - len(gold_items))
        kind_of = dict(zip(items.tolist(), kinds.tolist()))
        a_items = np.r_[routing.items, gold_items].astype(np.int64)
        a_workers = np.r_[routing.workers, gold_workers].astype(np.int64)
        a_kinds = [kind_of[i] for i in routing.items.tolist()] + ["gold"] * len(gold_items)
        if answers_left is not None and len(a_items) > answers_left:
            a_items, a_workers, a_kinds = a_items[:answers_left], a_workers[:answers_left], a_kinds[:answers_left]
        if len(a_items) == 0:
            self._log_unroutable(r, routing.unroutable)
            if len(routing.unroutable) == len(items):
                return self.step(batch_size) if len(candidates) > len(routing.unroutable) else "no_eligible_hiters"
            return "no_eligible_hiters"
        keep = self._within_money(self._price(r, a_items, a_workers, record=False)[1])
        if not keep.any():
            self._log_unroutable(r, routing.unroutable)
            return "budget"
        a_kinds = [k_ for k_, ok in zip(a_kinds, keep.tolist()) if ok]
        stats = dict(state["point"], selected=int(len(np.unique(routing.items))), audits=int(len(audits)),
                     gold_tasks=int(len(gold_items)))
        self._begin_round(r, a_items[keep], a_workers[keep], a_kinds, stats, state["proba"], routing.unroutable)
        try:
            self._complete_round(r)
        except AnswersPending:
            return "waiting"
        return None

    def _begin_round(self, r: int, items: np.ndarray, workers: np.ndarray, kinds: list[str], stats: dict,
                     proba: np.ndarray | None, unroutable: np.ndarray) -> None:
        """Price the round's tasks, open it with its assignments and priors, and note what nobody may take: one transaction."""
        prior_rows = (self._prior_rows(proba[items]) if proba is not None
                      else np.full((len(items), len(self.classes)), 1 / len(self.classes)))
        with self.store.transaction():
            self._log_unroutable(r, unroutable)
            self._price(r, items, workers, record=True)
            self.store.begin_round(r, items, self._wpos[workers], kind=kinds, stats=stats, priors=(items, prior_rows))

    def _log_unroutable(self, r: int, items: np.ndarray) -> None:
        if len(items):
            self.store.log("unroutable", {"items": self.pool.ids[items].tolist(),
                                          "reason": "no HITer on the platform may see it (residency, tenure)"}, round_no=r)

    def scorecard(self, out: Any = None, **kwargs: Any) -> Any:
        """The impact ScoreCard of this project (:class:`hitl.impact.ScoreCard`); written to ``out`` when given."""
        from .impact import ScoreCard

        last = max(len(self.store.rounds()) - 1, 0)
        kwargs.setdefault("as_of", self.start_date + _dt.timedelta(days=self._day(last)))
        kwargs.setdefault("max_tenure_days", self.router.max_tenure_days)
        card = ScoreCard.from_store(self.store, ledger=self.ledger, **kwargs)
        if out is not None:
            card.write(out)
        return card

    def result(self) -> RunResult:
        """The current labels and curve, without running anything."""
        return self._finish("inspected", write=False)

    # ------------------------------------------------------------------ one round
    def _complete_round(self, r: int) -> None:
        """Collect what is pending, ask more HITers while items stay uncertain, aggregate, close."""
        while True:
            self._collect(r)
            more_items = self._uncertain_items(r)
            if len(more_items) == 0:
                break
            answers_left = self.budget.remaining(self.store.n_answers())
            # The wave count is stored with the round: a resumed round draws what the
            # uninterrupted one would have drawn.
            wave = int(self.store.round_stats(r).get("waves", 0))
            rng = np.random.default_rng([self.random_state, r, 1000 + wave])
            routing = self._route(r, more_items, per_item=1, rng=rng, budget_answers=answers_left)
            if len(routing.items) == 0:
                break
            keep = self._within_money(self._price(r, routing.items, routing.workers, record=False)[1])
            if not keep.any():
                break
            items, workers = routing.items[keep], routing.workers[keep]
            with self.store.transaction():
                self._price(r, items, workers, record=True)
                self.store.add_assignments(r, items, self._wpos[workers], kind=self._kinds_of(items))
        self._close_round(r)

    def _collect(self, r: int) -> None:
        items, workers = self.store.assignments(r, pending=True)
        if len(items) == 0:
            return
        wf = self._wback[workers]
        for chunk in self.workforce.collect(items, wf, self.pool.ids[items]):
            if len(chunk) == 0:
                continue
            # Committed before the next chunk is asked for: that is the acknowledgement.
            self.store.add_answers(r, chunk.item, self._store_workers(chunk.worker), chunk.label, chunk.seconds)

    def _store_workers(self, workers: Any) -> np.ndarray:
        """Store positions of workforce positions, refusing any that is not a HITer of the workforce."""
        w = whole_numbers(workers, "worker")
        bad = (w < 0) | (w >= len(self._wpos))
        if bad.any():
            raise ValidationError(f"is {w[bad][0]}", field="worker",
                                  expected=f"a position in the workforce's HITers, 0 to {len(self._wpos) - 1}")
        return self._wpos[w]

    def _uncertain_items(self, r: int) -> np.ndarray:
        """Items of round ``r`` whose posterior is still below the redundancy target."""
        table = self.store.assignment_table()
        in_round = (table["round"] == r) & (table["kind"] != "gold")
        if not in_round.any() or not table["answered"][in_round].all():
            return np.zeros(0, np.int64)  # answers still missing (people left): nothing more to ask now
        post, counts = self._posteriors()
        audit_items = table["item"][table["kind"] == "audit"]
        if self.router.redundancy == "set":
            # Every human label delivered so far is judged together; only this round's may be asked again.
            items = np.flatnonzero(counts > 0)
            items = items[~np.isin(items, self._gold_items)]
            need = self.router.needs_more_set(post[items].max(1), counts[items], np.isin(items, table["item"][in_round]),
                                              audit=np.isin(items, audit_items))
        else:
            items = np.unique(table["item"][in_round])
            need = self.router.needs_more(post[items].max(1), counts[items], audit=np.isin(items, audit_items))
        return items[need]

    def _kinds_of(self, items: np.ndarray) -> list[str]:
        table = self.store.assignment_table()
        kind = dict(zip(table["item"].tolist(), table["kind"].tolist()))
        return [kind[i] for i in items.tolist()]

    def _close_round(self, r: int) -> None:
        post, counts = self._posteriors()
        answered = np.flatnonzero(counts > 0)
        answered = answered[~np.isin(answered, self._gold_items)]
        labels = None
        stats = self.store.round_stats(r)
        if len(answered):
            labels = {"items": answered, "labels": post[answered].argmax(1), "confidence": post[answered].max(1),
                      "source": np.where(counts[answered] > 1, "aggregated", "human").tolist()}
            if self.y_true is not None:
                stats["human_label_accuracy"] = float(np.mean(labels["labels"] == self.y_true[answered]))
        stats["human_answers_after"] = self.store.n_answers()
        # One transaction: a round closed is a round settled (top-ups for anyone below the
        # floor over it) and its skills granted; a kill leaves all of it or none.
        with self.store.transaction():
            self._grant_skills(r)
            self.store.finish_round(r, stats, labels=labels)
            self.ledger.settle()

    # ------------------------------------------------------------------ aggregation
    def _posteriors(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-item posterior over classes from all answers, and the number of answers per item."""
        n, k = self.pool.n_items, len(self.classes)
        ans = self.store.answers()
        counts = np.bincount(ans["item"], minlength=n)
        table = self.store.assignment_table()
        audit = np.zeros(n, dtype=bool)
        audit[table["item"][table["kind"] == "audit"]] = True
        has_prior, prior = self.store.priors(n, k)
        # Audits are judged by people alone: a model prior would tilt the check of the model.
        use_prior = has_prior & ~audit
        mix = 0.0 if self.prior_mix == "audits" else self.prior_mix  # "audits": mixed when stored
        prior = np.where(use_prior[:, None], (1 - mix) * prior + mix / k, 1.0 / k)
        if len(ans["item"]) == 0:
            return prior, counts
        tasks, t_idx = np.unique(ans["item"], return_inverse=True)
        if self.aggregator is not None:
            agg = self.aggregator.fit(t_idx, ans["worker"], ans["label"], n_tasks=len(tasks),
                                      n_workers=self._n_store_workers, n_classes=k)
            post_t = np.asarray(agg.posteriors_)
        else:
            gold_label = np.full(n, -1, dtype=np.int64)
            gold_label[self._gold_items] = self._gold_labels
            post_t, acc = one_coin_posteriors(t_idx, ans["worker"], ans["label"], n_tasks=len(tasks),
                                              n_workers=self._n_store_workers, n_classes=k, prior=prior[tasks],
                                              known=gold_label[tasks], return_accuracy=True)
            self._skill = acc
        post = prior.copy()
        post[tasks] = post_t
        return post, counts

    # ------------------------------------------------------------------ model
    def _fit_and_score(self) -> dict:
        """Fit on the human labels (audits excepted), pre-label, set the threshold, measure."""
        n, k = self.pool.n_items, len(self.classes)
        labeled, y = self._human_labels()
        table = self.store.assignment_table()
        audit_mask = np.zeros(n, dtype=bool)
        audit_mask[table["item"][table["kind"] == "audit"]] = True
        train = labeled & ~audit_mask
        proba = None
        accepted = np.zeros(n, dtype=bool)
        decision = AcceptDecision(None, None, 0, 0)
        audit_check = (np.zeros(0), np.zeros(0, dtype=bool))
        model_acc = None
        if train.any():
            idx = np.flatnonzero(train)
            self.model.fit(self.pool.X[idx], y[idx])
            proba = np.zeros((n, k))
            score = np.flatnonzero(~train)
            if len(score):
                # In-process for small pools; sharded over Ray actors when the pool is large
                # enough for that to pay. One Prelabeler per project keeps the pool in Ray's
                # object store across rounds.
                proba[score] = _check_proba(self._prelabeler.predict_proba(self.model, self.pool.X, rows=score),
                                            len(score), k)
            audited = np.flatnonzero(audit_mask & labeled)
            conf = proba.max(1)
            audit_check = (conf[audited], proba[audited].argmax(1) == y[audited])
            decision = self.router.decide_threshold(*audit_check, candidate_confidence=conf[~labeled],
                                                    audit_population=self._audit_population(table, audited))
            if self.prior_mix == "audits":
                self._prior_calibrator = self._fit_prior_calibrator(proba[audited], y[audited])
            if decision.threshold is not None and len(np.unique(y[train])) > 1:
                accepted = ~labeled & (conf >= decision.threshold)
            if self.eval_set is not None:
                model_acc = float(np.mean(self.model.predict_proba(self.eval_set[0]).argmax(1) == np.asarray(self.eval_set[1])))
        point = {"human_answers": self.store.n_answers(), "human_labeled": int(labeled.sum()),
                 "auto_accepted": int(accepted.sum()), "model_accuracy": model_acc,
                 "threshold": decision.threshold, "accuracy_bound": decision.bound,
                 "audited": decision.n_audited}
        point.update(self._label_accuracy(labeled, y, proba, accepted))
        return {"proba": proba, "accepted": accepted, "labeled": labeled, "y": y, "point": point,
                "decision": decision, "audit_mask": audit_mask, "audit_check": audit_check}

    def _audit_population(self, table: dict, audited: np.ndarray) -> float | None:
        """Mean number of unlabeled items at the rounds the audits were drawn (what they sample)."""
        if len(audited) == 0:
            return None
        is_audit = table["kind"] == "audit"
        drawn = np.full(self.pool.n_items, np.iinfo(np.int64).max)
        np.minimum.at(drawn, table["item"][is_audit], table["round"][is_audit])
        rounds = self.store.rounds()
        labeled_then = np.zeros(max(r["round"] for r in rounds) + 1 if rounds else 1)
        for r in rounds:  # one entry per round, not per item
            labeled_then[r["round"]] = r["stats"].get("human_labeled", 0)
        return float(np.mean(self.pool.n_items - labeled_then[np.minimum(drawn[audited], len(labeled_then) - 1)]))

    def _fit_prior_calibrator(self, proba: np.ndarray, y: np.ndarray) -> Any:
        """Temperature and flat share of the model prior, fitted on the audits (None: too few yet)."""
        from .models.calibration import TemperatureScaling

        # Audits are a random sample held out of training: an honest check of how far the
        # current model's probabilities can be trusted as a prior.
        if len(y) < _MIN_PRIOR_AUDITS or len(np.unique(y)) < 2:
            return None
        return TemperatureScaling(flat=True).fit(_log_proba(proba), y)

    def _prior_rows(self, proba: np.ndarray) -> np.ndarray:
        """The model prior as it is stored: calibrated on the audits, or mixed with a flat share."""
        if self.prior_mix != "audits":
            return proba
        if self._prior_calibrator is None:
            k = proba.shape[1]
            return (1 - _DEFAULT_PRIOR_MIX) * proba + _DEFAULT_PRIOR_MIX / k
        return self._prior_calibrator.predict_proba(_log_proba(proba))

    def _human_labels(self) -> tuple[np.ndarray, np.ndarray]:
        lab = self.store.labels()
        mask = np.zeros(self.pool.n_items, dtype=bool)
        y = np.full(self.pool.n_items, -1, dtype=np.int64)
        human = np.isin(lab["source"], _HUMAN)
        mask[lab["item"][human]] = True
        y[lab["item"][human]] = lab["label"][human]
        return mask, y

    def _label_accuracy(self, labeled: np.ndarray, y: np.ndarray, proba: np.ndarray | None, accepted: np.ndarray) -> dict:
        if self.y_true is None:
            return {"label_accuracy": None, "accepted_accuracy": None, "auto_accepted_accuracy": None}
        pred = np.where(labeled, y, proba.argmax(1) if proba is not None else -1)
        kept = labeled | accepted
        return {
            "label_accuracy": float(np.mean(pred == self.y_true)),
            "accepted_accuracy": float(np.mean(pred[kept] == self.y_true[kept])) if kept.any() else None,
            "auto_accepted_accuracy": float(np.mean(pred[accepted] == self.y_true[accepted])) if accepted.any() else None,
        }

    def _select(self, candidates: np.ndarray, state: dict, n_items: int, rng: np.random.Generator) -> np.ndarray:
        from . import strategies

        n_items = min(n_items, len(candidates))
        if n_items <= 0:
            return np.zeros(0, np.int64)
        seed = int(rng.integers(2**31 - 1))
        if state["proba"] is None:
            # Cold start: nothing to be uncertain about yet, so a random seed set.
            return rng.choice(candidates, size=n_items, replace=False)
        sel = strategies.select(
            self.strategy, n_items, proba=state["proba"][candidates], X=self.pool.X[candidates],
            X_labeled=None, model=self.model, random_state=seed,
        )
        return candidates[np.asarray(sel.indices, dtype=np.int64)]

    # ------------------------------------------------------------------ routing
    def _blocked_items(self) -> np.ndarray:
        """Items already assigned (answered or pending), gold items, or items nobody may take."""
        blocked = np.zeros(self.pool.n_items, dtype=bool)
        blocked[self.store.assignments()[0]] = True
        blocked[self._gold_items] = True
        for ev in self.store.events("unroutable"):
            blocked[self.pool.index_of(ev["payload"]["items"])] = True
        return blocked

    def _day(self, r: int) -> int:
        return r // self.rounds_per_day

    def _worker_state(self, r: int, table: dict) -> dict:
        """Per HITer (workforce order): load, time reserved today, tenure, skills (``table``: the assignments)."""
        W = len(self._countries)
        wf = self._wback[table["worker"]]
        ok = wf >= 0
        load = np.bincount(wf[ok], minlength=W).astype(np.float64)
        ans = self.store.answers()
        aw = self._wback[ans["worker"]]
        today_ans = (ans["round"] // self.rounds_per_day == self._day(r)) & (aw >= 0)
        seconds_today = np.bincount(aw[today_ans], weights=ans["seconds"][today_ans], minlength=W).astype(np.float64)
        # Pending tasks reserve the full time limit: a task cannot outlast its lease.
        pending = ok & ~table["answered"]
        pend_today = pending & (table["round"] // self.rounds_per_day == self._day(r))
        seconds_today += np.bincount(wf[pend_today], minlength=W) * self.router.task_seconds
        today = self.start_date + _dt.timedelta(days=self._day(r))
        tenure = tenure_days([h.start_date for h in self.workforce.hiters], today)
        return {"load": load, "seconds_today": seconds_today, "tenure": tenure, "skills": self._worker_skills()}

    def _worker_skills(self) -> np.ndarray:
        W = len(self._countries)
        out = np.zeros((W, len(self._skills)), dtype=bool)
        col = {s: j for j, s in enumerate(self._skills)}
        for w, h in enumerate(self.workforce.hiters):
            for s in h.skills:
                if s in col:
                    out[w, col[s]] = True
        for ev in self.store.events("skill_gained"):
            w = self._wback[ev["payload"]["worker"]] if ev["payload"]["worker"] < len(self._wback) else -1
            if w >= 0 and ev["payload"]["skill"] in col:
                out[w, col[ev["payload"]["skill"]]] = True
        return out

    def _route(self, r: int, items: np.ndarray, *, per_item: int, rng: np.random.Generator,
               budget_answers: int | None) -> Any:
        table = self.store.assignment_table()
        ws = self._worker_state(r, table)
        residency = self.pool.may_go_to(self._countries, items)
        already = np.zeros((len(items), len(self._countries)), dtype=bool)
        if len(table["item"]):
            pos = {i: j for j, i in enumerate(items.tolist())}
            rows = np.array([pos.get(i, -1) for i in table["item"].tolist()], dtype=np.int64)
            wf = self._wback[table["worker"]]
            hit = (rows >= 0) & (wf >= 0)
            already[rows[hit], wf[hit]] = True
        per_task = np.full(len(self._countries), float(self.router.task_seconds))
        eligible = self.router.eligible(residency, item_skill=self._item_skill[items], worker_skills=ws["skills"],
                                        tenure_days=ws["tenure"], seconds_today=ws["seconds_today"],
                                        seconds_per_task=per_task, already=already)
        eligible &= ~self._on_hold(r)[None, :]
        skill = getattr(self, "_skill", None)
        audit = np.isin(items, table["item"][table["kind"] == "audit"]) | np.isin(items, self._new_audits)
        # An audit checks the model, and a re-ask settles answers that disagree or are not
        # sure enough: both go to the more reliable half of the crowd, first answers to all.
        to_reliable = audit | (np.isin(items, table["item"]) if self.router.escalate else False)
        if skill is not None and to_reliable.any():
            s = np.full(len(self._countries), -1.0)
            mine = self._wpos < len(skill)
            s[mine] = skill[self._wpos[mine]]
            narrowed = eligible[to_reliable] & (s >= np.median(s))[None, :]
            # Where nobody of that half may take the item (residency, hours), anyone eligible may.
            ok = narrowed.any(axis=1)
            rows = np.flatnonzero(to_reliable)
            eligible[rows[ok]] = narrowed[ok]
        routing = self.router.assign(items, eligible, ws["load"], rng, per_item=per_item,
                                     seconds_today=ws["seconds_today"], seconds_per_task=per_task)
        # Unroutable for good only if residency and tenure rule out everybody; skills and
        # hours change with time, so those items simply wait.
        structural = (residency & (ws["tenure"] <= self.router.max_tenure_days)[None, :]).any(axis=1)
        routing.unroutable = items[~structural]
        if budget_answers is not None and len(routing.items) > budget_answers:
            routing.items, routing.workers = routing.items[:budget_answers], routing.workers[:budget_answers]
        return routing

    def _on_hold(self, r: int) -> np.ndarray:
        """HITers whose answers are no better than chance: no label tasks until retrained (workforce order)."""
        W = len(self._countries)
        hold = np.zeros(W, dtype=bool)
        skill = getattr(self, "_skill", None)
        if skill is None:
            self._posteriors()
            skill = getattr(self, "_skill", None)
        if skill is None:
            return hold
        n = np.bincount(self.store.answers()["worker"], minlength=self._n_store_workers)
        bad = (n >= self.router.quality_min_answers) & (skill < self.router.min_worker_accuracy(len(self.classes)))
        hold[self._wback[np.flatnonzero(bad)][self._wback[np.flatnonzero(bad)] >= 0]] = True
        known = {e["payload"]["worker"] for e in self.store.events("quality_hold")}
        for w in np.flatnonzero(bad).tolist():
            if w not in known:
                self.store.log("quality_hold", {"worker": int(w), "estimated_accuracy": float(skill[w]),
                                                "answers": int(n[w])}, round_no=r)
        return hold

    def _gold_tasks(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Gold tasks for HITers still learning a skill they lack."""
        if not len(self._skills) or not len(self._gold_items):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        table = self.store.assignment_table()
        ws = self._worker_state(r, table)
        done = set(zip(table["item"].tolist(), self._wback[table["worker"]].tolist()))
        gold_skill = self._item_skill[self._gold_items]
        items, workers = [], []
        for w in range(len(self._countries)):
            if ws["tenure"][w] > self.router.max_tenure_days:
                continue
            for s in range(len(self._skills)):
                if ws["skills"][w, s]:
                    continue
                mine = [g for g in self._gold_items[gold_skill == s].tolist() if (g, w) not in done
                        and self.pool.may_go_to([self._countries[w]], np.array([g]))[0, 0]]
                n_done = sum(1 for g in self._gold_items[gold_skill == s].tolist() if (g, w) in done)
                take = mine[: max(0, min(self.router.skill_gold - n_done, 5))]
                items += take
                workers += [w] * len(take)
        items_a, workers_a = np.array(items, np.int64), np.array(workers, np.int64)
        # The hour cap holds for gold tasks too.
        if len(items_a):
            per = np.full(len(self._countries), float(self.router.task_seconds))
            only_her = np.arange(len(self._countries))[None, :] == workers_a[:, None]
            routing = self.router.assign(items_a, only_her, np.zeros(len(self._countries)), None, per_item=1,
                                         seconds_today=ws["seconds_today"], seconds_per_task=per)
            return routing.items, routing.workers
        return items_a, workers_a

    def _grant_skills(self, r: int) -> None:
        """A HITer earns a skill after enough correct gold tasks of its type."""
        if not len(self._skills) or not len(self._gold_items):
            return
        ans = self.store.answers()
        gold_label = np.full(self.pool.n_items, -1, dtype=np.int64)
        gold_label[self._gold_items] = self._gold_labels
        on_gold = gold_label[ans["item"]] >= 0
        if not on_gold.any():
            return
        held = self._worker_skills()
        for s, name in enumerate(self._skills):
            sel = on_gold & (self._item_skill[ans["item"]] == s)
            wf = self._wback[ans["worker"][sel]]
            n = np.bincount(wf, minlength=len(self._countries))
            right = np.bincount(wf, weights=(ans["label"][sel] == gold_label[ans["item"][sel]]), minlength=len(self._countries))
            earned = (n >= self.router.skill_gold) & (right >= self.router.skill_accuracy * n) & ~held[:, s]
            for w in np.flatnonzero(earned).tolist():
                self.store.log("skill_gained", {"worker": int(self._wpos[w]), "hiter": self.workforce.hiters[w].id,
                                                "skill": name, "gold_answers": int(n[w]), "correct": int(right[w])},
                               round_no=r)

    # ------------------------------------------------------------------ money
    def _price(self, r: int, items: np.ndarray, workers: np.ndarray, record: bool) -> tuple[np.ndarray, np.ndarray]:
        """HITer pay and client price per task (micros), fixed in the ledger when the task is assigned."""
        return self.ledger.quote(r, items, self._wpos[workers], record=record)

    def _money_left(self) -> int | None:
        """Client money still allowed, in micros (None: unlimited)."""
        if self.budget.money is None:
            return None
        return max(0, int(round(float(self.budget.money) * 1_000_000)) - self.ledger.spent_micros())

    def _within_money(self, price: np.ndarray) -> np.ndarray:
        left = self._money_left()
        if left is None:
            return np.ones(len(price), dtype=bool)
        # Each task is also billed in whole cents, rounded up: the bill must fit too, not
        # only the exact micros (20 tasks at 1.2 cents are 24 cents exact but 40 billed).
        cents_left = self.budget.remaining_cents(self.ledger.spent_cents())
        return (np.cumsum(price) <= left) & (np.cumsum(self.ledger.to_cents(price)) <= cents_left)

    # ------------------------------------------------------------------ the end
    def _finish(self, reason: str, write: bool = True) -> RunResult:
        state = self._fit_and_score()
        labeled = state["labeled"]
        rounds = self.store.rounds()
        point = dict(state["point"], round=len(rounds), final=True)
        done_rounds = [dict(s["stats"], round=s["round"]) for s in rounds if s["status"] == "done"]
        cols = ("round", "human_answers", "human_labeled", "auto_accepted", "model_accuracy", "label_accuracy",
                "accepted_accuracy", "auto_accepted_accuracy", "threshold", "accuracy_bound")
        curve = Curve([{c: p.get(c) for c in cols} for p in done_rounds + [point]])
        label, conf, source = self._delivered(state)
        machine = ~labeled & (label >= 0)
        if write and machine.any():
            idx = np.flatnonzero(machine)
            self.store.set_labels(len(rounds), idx, label[idx], "machine", conf[idx])
        accepted = labeled | state["accepted"]
        names = np.array([str(c) for c in self.classes] + [None], dtype=object)
        df = pd.DataFrame({"id": self.pool.ids, "label": names[label], "source": source,
                           "confidence": conf, "accepted": accepted})
        unroutable = set()
        for e in self.store.events("unroutable"):
            unroutable.update(e["payload"]["items"])
        summary = {
            "items": int(self.pool.n_items),
            "human_answers": int(self.store.n_answers()),
            "human_labeled": int(labeled.sum()),
            "auto_accepted": int(state["accepted"].sum()),
            "machine_unaccepted": int((~accepted & (label >= 0)).sum()),
            "unlabeled": int((label < 0).sum()),
            "label_accuracy": point.get("label_accuracy") if (label >= 0).any() else None,
            "accepted_accuracy": point.get("accepted_accuracy"),
            "auto_accepted_accuracy": point.get("auto_accepted_accuracy"),
            "model_accuracy": point.get("model_accuracy"),
            "threshold": point.get("threshold"),
            "accuracy_bound": point.get("accuracy_bound"),
            "target_accuracy": self.router.target_accuracy,
            "confidence": self.router.confidence if self.router.guarantee else None,
            "audited": point.get("audited"),
            "rounds": sum(r["status"] == "done" for r in rounds),
            "paid": {self.ledger.currency: self.ledger.totals()["hiter_micros"] / 1_000_000},
            "spent": self.ledger.spent_micros() / 1_000_000,
            "unroutable": len(unroutable),
            "unroutable_items": sorted(unroutable)[:50],
            "skills_gained": len(self.store.events("skill_gained")),
            "stop_reason": reason,
        }
        summary["messages"] = _messages(summary)
        if write:
            self.store.log("finished", summary)
        return RunResult(labels=df, curve=curve, summary=summary, stop_reason=reason)

    def _delivered(self, state: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per item: the label delivered (-1: none), its confidence and its source (``none`` when unlabeled)."""
        n = self.pool.n_items
        label = np.full(n, -1, dtype=np.int64)
        conf = np.full(n, np.nan)
        source = np.full(n, "none", dtype=object)
        proba = state["proba"]
        if proba is not None:
            label, conf = proba.argmax(1), proba.max(1)
            source[:] = "machine"
        lab = self.store.labels()
        human = np.isin(lab["source"], _HUMAN)
        label[lab["item"][human]] = lab["label"][human]
        conf[lab["item"][human]] = lab["confidence"][human]
        source[lab["item"][human]] = lab["source"][human]
        return label, conf, source


def _messages(summary: dict) -> list[str]:
    """What a person should know about how a run ended, in words (no silent outcomes)."""
    out = []
    why = {
        "budget": f"stopped at the budget ({summary['human_answers']} answers, {summary['spent']:.2f} spent); "
                  "raise it and run again on the same store to go on.",
        "no_eligible_hiters": "stopped: no HITer of this workforce may take the items left now (residency, skills, "
                              "tenure, daily hours or quality holds); add HITers or wait, then run again.",
        "waiting": "answers are still out: the round stays open; run again to go on waiting.",
    }
    if summary["stop_reason"] in why:
        out.append(why[summary["stop_reason"]])
    if summary["unroutable"]:
        out.append(f"{summary['unroutable']} item(s) may go to no HITer on the platform (residency, tenure): they "
                   "carry the model's label, not accepted (summary['unroutable_items']).")
    if summary["unlabeled"]:
        out.append(f"{summary['unlabeled']} item(s) have no label at all: no model could be trained yet "
                   "(no human label outside the audits); label is None for them.")
    if summary["rounds"] and summary["auto_accepted"] == 0 and summary["machine_unaccepted"]:
        out.append(f"no machine label was auto-accepted: the audits do not show the target accuracy "
                   f"{summary['target_accuracy']:g} yet; {summary['machine_unaccepted']} item(s) carry an "
                   "unaccepted machine label.")
    return out


#: Audited items needed before the model prior is calibrated on them (``prior_mix="audits"``) ...
_MIN_PRIOR_AUDITS = 30
#: ... and the flat share used until then.
_DEFAULT_PRIOR_MIX = 0.1


def _log_proba(proba: np.ndarray) -> np.ndarray:
    """Probabilities as logits for temperature scaling; a zero becomes a very small one."""
    return np.log(np.clip(proba, 1e-12, None))


def one_coin_posteriors(task: np.ndarray, worker: np.ndarray, label: np.ndarray, *, n_tasks: int, n_workers: int,
                        n_classes: int, prior: np.ndarray, known: np.ndarray | None = None, n_iter: int = 20,
                        skill_prior: tuple[float, float] = (8.0, 2.0), return_accuracy: bool = False) -> Any:
    """One-coin Dawid-Skene with a per-task prior: each HITer is right with her own probability.

    A HITer's accuracy is estimated by EM, shrunk toward ``skill_prior`` (a Beta
    prior: 8 right, 2 wrong, i.e. 0.8) so that newcomers with a few answers are neither
    trusted nor dismissed; tasks with a ``known`` label (gold) anchor it. Errors are
    spread evenly over the other classes. Vectorised over answers (``np.bincount``).
    Returns the (n_tasks, n_classes) posteriors, and the per-HITer accuracies too with
    ``return_accuracy=True``.

    Examples
    --------
    >>> import numpy as np
    >>> post = one_coin_posteriors(np.array([0, 0, 0]), np.array([0, 1, 2]), np.array([1, 1, 0]), n_tasks=1,
    ...                            n_workers=3, n_classes=2, prior=np.full((1, 2), 0.5))
    >>> int(post.argmax(1)[0])
    1
    """
    k = n_classes
    known = np.full(n_tasks, -1, dtype=np.int64) if known is None else np.asarray(known, dtype=np.int64)
    log_prior = np.log(np.clip(prior, 1e-12, None))
    flat = task * k + label
    a0, b0 = skill_prior
    acc = np.full(n_workers, a0 / (a0 + b0))
    is_known = known >= 0
    onehot_known = np.zeros((n_tasks, k))
    onehot_known[np.flatnonzero(is_known), known[is_known]] = 1.0
    n_per_worker = np.bincount(worker, minlength=n_workers).astype(np.float64)
    post = None
    for _ in range(n_iter):
        a = np.clip(acc, 1e-4, 1 - 1e-4)
        log_right = np.log(a)[worker]
        log_wrong = np.log((1 - a) / (k - 1))[worker]
        scores = log_prior + np.bincount(task, weights=log_wrong, minlength=n_tasks)[:, None]
        scores = scores.ravel()
        scores += np.bincount(flat, weights=log_right - log_wrong, minlength=n_tasks * k)
        scores = scores.reshape(n_tasks, k)
        scores -= scores.max(1, keepdims=True)
        new = np.exp(scores)
        new /= new.sum(1, keepdims=True)
        new[is_known] = onehot_known[is_known]
        right = np.bincount(worker, weights=new[task, label], minlength=n_workers)
        acc_new = (right + a0) / (n_per_worker + a0 + b0)
        if post is not None and np.abs(new - post).max() < 1e-6 and np.abs(acc_new - acc).max() < 1e-6:
            post, acc = new, acc_new
            break
        post, acc = new, acc_new
    if return_accuracy:
        return post, acc
    return post


def _check_truth(y: Sequence[int], n: int, k: int, field_name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValidationError(f"has shape {y.shape}", field=field_name, expected=f"({n},) class indices")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and (y.min() < 0 or y.max() >= k)):
        raise ValidationError("holds values outside the label set", field=field_name, expected=f"integers in [0, {k})")
    return y


def _check_proba(proba: Any, n: int, k: int) -> np.ndarray:
    """The model's probabilities, refused with a typed error when they do not cover the project's classes."""
    proba = np.asarray(proba)
    if proba.shape != (n, k):
        raise ValidationError(f"returned shape {proba.shape} for {n} items", field="model.predict_proba",
                              expected=f"({n}, {k}): one column per class of the project (give the model n_classes={k})")
    return proba


def _whole(value: Any, field_name: str, *, low: int) -> int:
    """``value`` as an int, refusing floats, strings and booleans (no silent truncation)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ConfigError(f"is {value!r}", field=field_name, expected=f"a whole number >= {low}")
    return int(value)


def _describe(part: Any) -> Any:
    """A stable description of a strategy or an aggregator, to tell on resume whether it changed."""
    if part is None or isinstance(part, str):
        return part
    if callable(part) and hasattr(part, "__qualname__"):
        return f"{getattr(part, '__module__', '')}.{part.__qualname__}"
    params = part.get_params() if callable(getattr(part, "get_params", None)) else {}
    return f"{type(part).__module__}.{type(part).__qualname__}({sorted((k, repr(v)) for k, v in params.items())})"
