"""The labeling loop: train, pre-label, auto-accept, select, route, collect, aggregate, repeat.

All state between rounds lives in the :class:`~hitl.store.Store`; the in-memory
objects are rebuilt from it, so a project killed at any point resumes by
constructing it again on the same file and calling :meth:`LabelingProject.run`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError, ValidationError
from .pool import Pool
from .routing import Budget, Router
from .store import Store
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
        Default :class:`hitl.aggregation.DawidSkene`.
    target_accuracy : float, default 0.95
        Auto-accept threshold on the model's confidence (unless ``router`` is given).
    answers_per_item : int, default 1
    budget : Budget, optional
    store : str, Path or Store, default ":memory:"
        Reopening the same file resumes the project.
    eval_set : (X_test, y_test), optional
        Held-out data to report the model's accuracy each round.
    y_true : array, optional
        True labels of the pool, only to report label accuracy (simulations, benchmarks).
    seed_size : int, optional
        Human labels needed before the model is trained at all (before that, items are
        picked at random); default 1.
    min_labels_to_accept : int, optional
        Human labels needed before any machine label is auto-accepted; default five
        per class.
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
    >>> result.summary["human_answers"], len(result.labels)
    (40, 200)
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
        answers_per_item: int = 1,
        budget: Budget | None = None,
        store: str | Store = ":memory:",
        eval_set: tuple[Any, Any] | None = None,
        y_true: Sequence[int] | None = None,
        seed_size: int | None = None,
        min_labels_to_accept: int | None = None,
        random_state: int = 0,
        progress: bool = True,
    ) -> None:
        if not isinstance(pool, Pool):
            raise ValidationError(f"is a {type(pool).__name__}", field="pool", expected="a hitl.Pool")
        for attr in ("fit", "predict_proba"):
            if not callable(getattr(model, attr, None)):
                raise ValidationError(f"has no {attr}()", field="model", expected="an object with fit and predict_proba")
        if not hasattr(workforce, "collect") or not getattr(workforce, "hiters", None):
            raise ValidationError("has no HITers or no collect()", field="workforce", expected="a Workforce with at least one HITer")
        if classes is None:
            n_classes = getattr(workforce, "n_classes", None)
            if n_classes is None:
                raise ConfigError("is missing", field="classes", expected="the list of label names")
            classes = list(range(int(n_classes)))
        self.classes = list(classes)
        if len(self.classes) < 2 or len(set(map(str, self.classes))) != len(self.classes):
            raise ConfigError(f"is {self.classes!r}", field="classes", expected="at least two distinct labels")
        if not 0.0 < target_accuracy <= 1.0:
            raise ConfigError(f"is {target_accuracy}", field="target_accuracy", expected="a probability in (0, 1]")
        self.pool = pool
        self.model = model
        self.workforce = workforce
        self.strategy = strategy
        if aggregator is None:
            from .aggregation import DawidSkene

            aggregator = DawidSkene()
        self.aggregator = aggregator
        self.router = router or Router(auto_accept=target_accuracy, answers_per_item=answers_per_item, random_state=random_state)
        self.budget = budget or Budget()
        self.random_state = int(random_state)
        self.progress = progress
        self.seed_size = seed_size
        self.min_labels_to_accept = 5 * len(self.classes) if min_labels_to_accept is None else int(min_labels_to_accept)
        self.eval_set = eval_set
        self.y_true = None if y_true is None else _check_truth(y_true, pool.n_items, len(self.classes), "y_true")
        if eval_set is not None:
            _check_truth(eval_set[1], len(eval_set[1]), len(self.classes), "eval_set")
        self.store = store if isinstance(store, Store) else Store(store)
        self.resumed = not self.store.ensure_project(
            fingerprint=pool.fingerprint(), classes=self.classes,
            config={"strategy": getattr(strategy, "__name__", str(strategy)), "random_state": random_state},
        )
        if not self.resumed:
            self.store.add_items(pool.ids.tolist(), pool.item_types.tolist(), pool.allowed_countries)
        self.store.add_workers(workforce.hiters)
        # Positions of the workforce's HITers in the store, and back.
        self._wpos = self.store.worker_positions([h.id for h in workforce.hiters])
        self._wback = np.full(int(self._wpos.max()) + 1, -1, dtype=np.int64)
        self._wback[self._wpos] = np.arange(len(self._wpos))
        self._countries = [h.country for h in workforce.hiters]

    # ------------------------------------------------------------------ public API
    def run(self, batch_size: int = 50, max_rounds: int | None = None) -> RunResult:
        """Run rounds until the budget, the pool or ``max_rounds`` is exhausted; returns a :class:`RunResult`."""
        if int(batch_size) < 1:
            raise ConfigError(f"is {batch_size}", field="batch_size", expected="at least 1")
        from tqdm.auto import tqdm

        total = None
        if self.budget.answers is not None:
            total = math.ceil(self.budget.answers / (batch_size * self.router.answers_per_item))
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
        return self._finish(reason or "max_rounds")

    def step(self, batch_size: int = 50) -> str | None:
        """Run one round; returns None, or why no round could run (``budget``, ``pool_exhausted``, ...)."""
        open_round = self.store.open_round()
        if open_round is not None:
            self._collect(open_round)
            self._close_round(open_round)
            return None
        done = self.store.rounds()
        r = done[-1]["round"] + 1 if done else 0
        labeled, _ = self._human_labels()
        remaining = self.budget.remaining(self.store.n_answers())
        k = self.router.answers_per_item
        n_items = batch_size if remaining is None else min(batch_size, remaining // k)
        if n_items <= 0:
            return "budget"
        rng = np.random.default_rng([self.random_state, r])
        state = self._fit_and_score(labeled)
        blocked = self._blocked_items()
        candidates = np.flatnonzero(~labeled & ~blocked & ~state["accepted"])
        if len(candidates) == 0:
            return "pool_exhausted"
        picked = self._select(candidates, state, n_items, rng)
        eligible = self.pool.may_go_to(self._countries, picked)
        assigned_to = self._wback[self.store.assignments()[1]]
        load = np.bincount(assigned_to[assigned_to >= 0], minlength=len(self._countries))
        routing = self.router.assign(picked, eligible, load, rng)
        if len(routing.unroutable):
            self.store.log("unroutable", {"items": self.pool.ids[routing.unroutable].tolist(),
                                          "reason": "no HITer allowed by residency"}, round_no=r)
        if remaining is not None and len(routing.items) > remaining:
            routing.items, routing.workers = routing.items[:remaining], routing.workers[:remaining]
        if len(routing.items) == 0:
            return "no_eligible_hiters" if len(routing.unroutable) else "budget"
        stats = {k_: v for k_, v in state["point"].items()}
        stats["selected"] = int(len(np.unique(routing.items)))
        self.store.begin_round(r, routing.items, self._wpos[routing.workers], stats=stats)
        self._collect(r)
        self._close_round(r)
        return None

    def result(self) -> RunResult:
        """The current labels and curve, without running anything."""
        return self._finish("inspected", write=False)

    # ------------------------------------------------------------------ internals
    def _human_labels(self) -> tuple[np.ndarray, np.ndarray]:
        lab = self.store.labels()
        mask = np.zeros(self.pool.n_items, dtype=bool)
        y = np.full(self.pool.n_items, -1, dtype=np.int64)
        human = np.isin(lab["source"], _HUMAN)
        mask[lab["item"][human]] = True
        y[lab["item"][human]] = lab["label"][human]
        return mask, y

    def _blocked_items(self) -> np.ndarray:
        """Items already assigned (answered or pending) or that nobody may take."""
        blocked = np.zeros(self.pool.n_items, dtype=bool)
        blocked[self.store.assignments()[0]] = True
        for ev in self.store.events("unroutable"):
            blocked[self.pool.index_of(ev["payload"]["items"])] = True
        return blocked

    def _fit_and_score(self, labeled: np.ndarray) -> dict:
        """Fit on the human labels, pre-label everything else, and measure where we stand."""
        _, y = self._human_labels()
        n = self.pool.n_items
        proba = None
        accepted = np.zeros(n, dtype=bool)
        model_acc = None
        seed = self.seed_size if self.seed_size is not None else 1
        if labeled.sum() >= max(seed, 1) and len(np.unique(y[labeled])) >= 1:
            idx = np.flatnonzero(labeled)
            self.model.fit(self.pool.X[idx], y[idx])
            rest = np.flatnonzero(~labeled)
            proba = np.zeros((n, len(self.classes)))
            if len(rest):
                proba[rest] = self.model.predict_proba(self.pool.X[rest])
            # A model that has seen a handful of labels, or one class, is sure of itself for no
            # reason: machine labels are only accepted once it has seen min_labels_to_accept.
            if len(rest) and labeled.sum() >= self.min_labels_to_accept and len(np.unique(y[labeled])) > 1:
                accepted[rest] = self.router.accept_mask(proba[rest])
            if self.eval_set is not None:
                model_acc = float(np.mean(self.model.predict_proba(self.eval_set[0]).argmax(1) == np.asarray(self.eval_set[1])))
        point = {"human_answers": self.store.n_answers(), "human_labeled": int(labeled.sum()),
                 "auto_accepted": int(accepted.sum()), "model_accuracy": model_acc}
        point.update(self._label_accuracy(labeled, y, proba, accepted))
        return {"proba": proba, "accepted": accepted, "point": point}

    def _label_accuracy(self, labeled: np.ndarray, y: np.ndarray, proba: np.ndarray | None, accepted: np.ndarray) -> dict:
        if self.y_true is None:
            return {"label_accuracy": None, "accepted_accuracy": None}
        pred = np.where(labeled, y, proba.argmax(1) if proba is not None else -1)
        kept = labeled | accepted
        return {
            "label_accuracy": float(np.mean(pred == self.y_true)),
            "accepted_accuracy": float(np.mean(pred[kept] == self.y_true[kept])) if kept.any() else None,
        }

    def _select(self, candidates: np.ndarray, state: dict, n_items: int, rng: np.random.Generator) -> np.ndarray:
        from . import strategies

        n_items = min(n_items, len(candidates))
        seed = int(rng.integers(2**31 - 1))
        if state["proba"] is None:
            # Cold start: nothing to be uncertain about yet, so a random seed set.
            return rng.choice(candidates, size=n_items, replace=False)
        sel = strategies.select(
            self.strategy, n_items, proba=state["proba"][candidates], X=self.pool.X[candidates],
            X_labeled=None, model=self.model, random_state=seed,
        )
        return candidates[np.asarray(sel.indices, dtype=np.int64)]

    def _collect(self, r: int) -> None:
        items, workers = self.store.assignments(r, pending=True)
        if len(items) == 0:
            return
        wf = self._wback[workers]
        hiters = self.workforce.hiters
        for chunk in self.workforce.collect(items, wf, self.pool.ids[items]):
            if len(chunk) == 0:
                continue
            pay = self._pay_cents(chunk.worker, chunk.seconds, hiters)
            # Committed before the next chunk is asked for: that is the acknowledgement.
            self.store.add_answers(r, chunk.item, self._wpos[chunk.worker], chunk.label, chunk.seconds, pay_cents=pay)

    @staticmethod
    def _pay_cents(workers: np.ndarray, seconds: np.ndarray, hiters: Sequence[Any], multiple: float = 3.0) -> np.ndarray:
        wage = np.array([hiters[w].hourly_min_wage for w in np.asarray(workers).tolist()])
        return np.ceil(wage * multiple * np.asarray(seconds) / 3600.0 * 100.0).astype(np.int64)

    def _close_round(self, r: int) -> None:
        ans = self.store.answers()
        stats = next(x["stats"] for x in self.store.rounds() if x["round"] == r)
        labels = None
        if len(ans["item"]):
            tasks, t_idx = np.unique(ans["item"], return_inverse=True)
            agg = self.aggregator.fit(t_idx, ans["worker"], ans["label"], n_tasks=len(tasks),
                                      n_workers=int(self._wpos.max()) + 1, n_classes=len(self.classes))
            post = np.asarray(agg.posteriors_)
            counts = np.bincount(t_idx, minlength=len(tasks))
            labels = {"items": tasks, "labels": post.argmax(1), "confidence": post.max(1),
                      "source": np.where(counts > 1, "aggregated", "human").tolist()}
        stats["human_answers_after"] = self.store.n_answers()
        if self.y_true is not None and labels is not None:
            stats["human_label_accuracy"] = float(np.mean(labels["labels"] == self.y_true[labels["items"]]))
        self.store.finish_round(r, stats, labels=labels)

    def _finish(self, reason: str, write: bool = True) -> RunResult:
        labeled, y = self._human_labels()
        state = self._fit_and_score(labeled)
        point = dict(state["point"], round=len(self.store.rounds()), final=True)
        curve = Curve([dict(s["stats"], round=s["round"]) for s in self.store.rounds() if s["status"] == "done"] + [point])
        curve.points = [{k: p.get(k) for k in ("round", "human_answers", "human_labeled", "auto_accepted",
                                                "model_accuracy", "label_accuracy", "accepted_accuracy")} for p in curve.points]
        proba = state["proba"]
        lab = self.store.labels()
        conf = np.zeros(self.pool.n_items)
        source = np.full(self.pool.n_items, "machine", dtype=object)
        label = np.full(self.pool.n_items, -1, dtype=np.int64)
        if proba is not None:
            label = proba.argmax(1)
            conf = proba.max(1)
        human = np.isin(lab["source"], _HUMAN)
        label[lab["item"][human]] = lab["label"][human]
        conf[lab["item"][human]] = lab["confidence"][human]
        source[lab["item"][human]] = lab["source"][human]
        machine = ~labeled
        if write and proba is not None and machine.any():
            idx = np.flatnonzero(machine)
            self.store.set_labels(len(self.store.rounds()), idx, label[idx], "machine", conf[idx])
        accepted = labeled | state["accepted"]
        names = np.array([str(c) for c in self.classes] + [""], dtype=object)
        df = pd.DataFrame({"id": self.pool.ids, "label": names[label], "source": source,
                           "confidence": conf, "accepted": accepted})
        summary = {
            "items": int(self.pool.n_items),
            "human_answers": int(self.store.n_answers()),
            "human_labeled": int(labeled.sum()),
            "auto_accepted": int(state["accepted"].sum()),
            "machine_unaccepted": int((~accepted).sum()),
            "label_accuracy": point.get("label_accuracy"),
            "accepted_accuracy": point.get("accepted_accuracy"),
            "model_accuracy": point.get("model_accuracy"),
            "rounds": sum(r["status"] == "done" for r in self.store.rounds()),
            "paid": {c: v / 100 for c, v in self.store.payments_total().items()},
            "unroutable": int(sum(len(e["payload"]["items"]) for e in self.store.events("unroutable"))),
            "stop_reason": reason,
        }
        if write:
            self.store.log("finished", summary)
        return RunResult(labels=df, curve=curve, summary=summary, stop_reason=reason)


def _check_truth(y: Sequence[int], n: int, k: int, field_name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValidationError(f"has shape {y.shape}", field=field_name, expected=f"({n},) class indices")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and (y.min() < 0 or y.max() >= k)):
        raise ValidationError("holds values outside the label set", field=field_name, expected=f"integers in [0, {k})")
    return y


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
