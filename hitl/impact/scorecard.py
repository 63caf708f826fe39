"""The ScoreCard: a project's social impact, from its store and ledger, as JSON, Markdown and HTML.

Every money figure on the card is a sum of ledger lines (integer micros), so the card
can be checked against :meth:`Ledger.lines`. Figures the store does not hold (an
accuracy bound, skills gained) are reported as such, never guessed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..store import Store
from ._money import MICROS, PARTIES, format_money, micros_to_str
from .ledger import Ledger, open_store

# Chart colours (Dark2). The page's own CSS uses none of them, so a screenshot can tell
# a drawn chart from a broken image by counting these colours.
COLORS = {
    "hiter": "#1b9e77", "platform": "#d95f02", "programme": "#7570b3",
    "pay": "#e7298a", "machine": "#66a61e", "human": "#e6ab02", "country": "#a6761d",
}
CHARTS = ("pay_multiple", "split", "labels", "hiters")
_CHART_TITLES = {
    "pay_multiple": "Effective hourly pay, as a multiple of the local minimum wage",
    "split": "Where the client's money goes",
    "labels": "Items labeled by machine and by people; answers bought",
    "hiters": "HITers and hours on task by country",
}


@dataclass
class ScoreCard:
    """A project's impact: labels, people, pay against local minimum wages, split, tenure, residency, savings.

    Build it with :meth:`from_store`; read it with :meth:`to_dict`; write it with
    :meth:`write` (``scorecard.json``, ``scorecard.md``, ``scorecard.html`` and the chart PNGs).

    Attributes
    ----------
    data : dict
        Everything on the card, JSON-ready; money in integer micros (``*_micros``).
    hiters : DataFrame
        One row per HITer who answered (from :meth:`Ledger.hiters`).
    ledger : Ledger

    Examples
    --------
    >>> import numpy as np
    >>> from hitl import Store, HITer
    >>> store = Store(":memory:")
    >>> store.add_items(["a", "b"], ["default", "default"], [None, ["FR"]])
    >>> store.add_workers([HITer("h1", "TG"), HITer("h2", "FR")])
    >>> store.begin_round(0, items=np.array([0, 1]), workers=np.array([0, 1]))
    >>> _ = store.add_answers(0, np.array([0, 1]), np.array([0, 1]), np.array([1, 0]), np.array([9.0, 30.0]))
    >>> store.finish_round(0, {})
    >>> card = ScoreCard.from_store(store)
    >>> card.data["residency"]["passed"], card.data["pay"]["hiters_topped_up"]
    (2, 1)
    """

    data: dict
    hiters: pd.DataFrame = field(repr=False)
    ledger: Ledger = field(repr=False)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_store(
        cls,
        store: Store | str | Path,
        *,
        ledger: Ledger | None = None,
        wages: Any = None,
        settle: bool = True,
        final: bool = False,
        max_tenure_days: int = 3 * 365,
        baseline_answers_per_item: int = 3,
        as_of: _dt.date | None = None,
        **ledger_kwargs: Any,
    ) -> "ScoreCard":
        """Compute the card of the project in ``store``.

        Parameters
        ----------
        store : Store or path
        ledger : Ledger, optional
            The project's ledger; by default one is opened on the store with ``wages``
            and ``ledger_kwargs`` (settings recorded in the store are reused).
        settle : bool, default True
            Price unpriced answers and write the top-ups of closed periods first.
        final : bool, default False
            Settle every period, open ones included (the project is over).
        max_tenure_days : int, default 1095
            How long a HITer may stay on the platform (three years: a springboard, not an
            end); a HITer is within the window while on the platform at most this many days.
        baseline_answers_per_item : int, default 3
            The all-human practice the savings are measured against.
        as_of : date, optional
            Day the tenure is measured on; default the day of the last answer (UTC).
        """
        if ledger is None:
            ledger = Ledger(open_store(store), wages, **ledger_kwargs)
        elif ledger_kwargs or wages is not None:
            raise ConfigError("were given with a ledger", field="wages/ledger settings",
                              expected="either a Ledger or the settings to open one, not both")
        if int(baseline_answers_per_item) < 1:
            raise ConfigError(f"is {baseline_answers_per_item}", field="baseline_answers_per_item", expected="at least 1")
        if int(max_tenure_days) < 0:
            raise ConfigError(f"is {max_tenure_days}", field="max_tenure_days", expected="a number of days >= 0")
        st = ledger.store
        ledger.sync()
        periods = None
        if settle:
            ledger.settle(final=final)
            periods = ledger.periods_
        hiters = ledger.hiters()
        data = _build(st, ledger, hiters, int(max_tenure_days), int(baseline_answers_per_item), as_of, periods)
        return cls(data=data, hiters=hiters, ledger=ledger)

    # ------------------------------------------------------------------ outputs
    def to_dict(self) -> dict:
        return json.loads(json.dumps(self.data))

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.data, indent=2, ensure_ascii=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def charts(self) -> dict[str, bytes]:
        """The charts as PNG bytes: ``pay_multiple``, ``split``, ``labels``, ``hiters``."""
        return _charts(self.data, self.hiters)

    def to_markdown(self, chart_dir: str | None = "charts") -> str:
        """The card as Markdown; charts are linked from ``chart_dir`` (None: no images)."""
        return _markdown(self.data, chart_dir)

    def to_html(self, charts: dict[str, bytes] | None = None) -> str:
        """A self-contained HTML page (charts embedded as base64 PNGs, no external resource)."""
        return _html(self.data, self.charts() if charts is None else charts)

    def write(self, out: str | Path) -> dict[str, Path]:
        """Write ``scorecard.json``, ``scorecard.md``, ``scorecard.html`` and ``charts/*.png`` into ``out``."""
        out = Path(out)
        (out / "charts").mkdir(parents=True, exist_ok=True)
        charts = self.charts()
        paths = {"json": out / "scorecard.json", "markdown": out / "scorecard.md", "html": out / "scorecard.html"}
        for name, png in charts.items():
            paths[name] = out / "charts" / f"{name}.png"
            paths[name].write_bytes(png)
        self.to_json(paths["json"])
        paths["markdown"].write_text(self.to_markdown("charts"), encoding="utf-8")
        paths["html"].write_text(self.to_html(charts), encoding="utf-8")
        return paths

    def summary(self) -> str:
        """Three lines for a terminal."""
        d = self.data
        cur = d["currency"]
        m = d["wage_multiple"]
        return "\n".join([
            f"{d['items']['labeled']} items labeled ({d['items']['human']} by people, {d['items']['machine']} by machine); "
            f"{d['work']['human_answers']} answers, {d['work']['human_hours']:.2f} h by {d['work']['hiters']} HITers "
            f"in {len(d['work']['hiters_by_country'])} countries.",
            f"paid to HITers {format_money(d['pay']['total_paid_micros'], cur)} "
            f"(top-ups {format_money(d['pay']['topup_micros'], cur)}); client total {format_money(d['split']['price_micros'], cur)}; "
            f"effective pay {_x(m['median'])} the local minimum wage (median; min {_x(m['min'])}).",
            f"cost saved against {d['savings']['baseline_answers_per_item']} answers per item: "
            f"{format_money(d['savings']['cost_saved_micros'], cur)} ({d['savings']['answers_saved']} answers).",
        ])


# ---------------------------------------------------------------------- computing


def _build(store: Store, ledger: Ledger, hiters: pd.DataFrame, max_days: int, k: int, as_of: _dt.date | None,
           periods: pd.DataFrame | None) -> dict:
    db = store._db
    totals = ledger.totals()
    cur = ledger.currency

    # -- items and labels
    n_items = store.n_items()
    src = dict(db.execute("SELECT source, COUNT(*) FROM labels GROUP BY source").fetchall())
    finished = store.events("finished")
    last = finished[-1]["payload"] if finished else {}
    done = [r for r in store.rounds() if r["status"] == "done"]
    stats = done[-1]["stats"] if done else {}
    info = {**stats, **last}
    human = int(src.get("human", 0)) + int(src.get("aggregated", 0))
    items = {
        "total": n_items, "labeled": int(sum(src.values())), "human": human,
        "human_single": int(src.get("human", 0)), "aggregated": int(src.get("aggregated", 0)),
        "machine": int(src.get("machine", 0)),
        "auto_accepted": _int_or_none(info.get("auto_accepted")),
        "machine_unaccepted": _int_or_none(info.get("machine_unaccepted")),
    }

    # -- accuracy: what the engine recorded, nothing else
    bound = info.get("accuracy_bound")
    accuracy = {
        "label_accuracy": _float_or_none(info.get("label_accuracy")),
        "accepted_accuracy": _float_or_none(info.get("accepted_accuracy")),
        "auto_accepted_accuracy": _float_or_none(info.get("auto_accepted_accuracy")),
        "model_accuracy": _float_or_none(info.get("model_accuracy")),
        "target_accuracy": _float_or_none(info.get("target_accuracy")),
        "accuracy_bound": _jsonable(bound),
        "confidence": _float_or_none(info.get("confidence")) if bound is not None else None,
        "audited": _int_or_none(info.get("audited")) if bound is not None else None,
        "bound_text": _bound_text(bound, info),
        "from": "finished event" if last else ("last round's statistics" if done else "nothing recorded"),
    }

    # -- work
    n_answers = store.n_answers()
    seconds = float(db.execute("SELECT COALESCE(SUM(seconds), 0) FROM answers").fetchone()[0])
    worked = hiters[hiters["answers"] > 0]
    by_country = {}
    for country, g in worked.groupby("country", sort=True):
        mult = g["multiple"].dropna()
        by_country[str(country)] = {
            "hiters": int(len(g)), "answers": int(g["answers"].sum()), "hours": round(float(g["seconds"].sum()) / 3600, 4),
            "paid_micros": int(g["paid_micros"].sum()), "topup_micros": int(g["topup_micros"].sum()),
            "multiple_median": _round(mult.median()) if len(mult) else None,
            "multiple_min": _round(mult.min()) if len(mult) else None,
        }
    kinds = dict(db.execute("SELECT s.kind, COUNT(*) FROM answers a JOIN assignments s "
                            "ON s.item = a.item AND s.worker = a.worker GROUP BY s.kind").fetchall())
    work = {
        "human_answers": int(n_answers), "answers_by_kind": {str(k_): int(v) for k_, v in sorted(kinds.items())},
        "human_seconds": round(seconds, 3), "human_hours": round(seconds / 3600, 4),
        "hiters": int(len(worked)), "hiters_by_country": {c: v["hiters"] for c, v in by_country.items()},
        "hours_by_country": {c: v["hours"] for c, v in by_country.items()},
    }

    # -- pay
    pending = ledger.pending() if periods is None else periods[~periods["closed"] & (periods["short"] > 0)]
    topped = hiters[hiters["topup_micros"] > 0]
    pay = {
        "task_pay_micros": totals["task_pay_micros"], "topup_micros": totals["topup_micros"],
        "total_paid_micros": totals["hiter_micros"], "task_lines": totals["task_lines"], "topup_lines": totals["topup_lines"],
        "hiters_topped_up": int(len(topped)), "pending_topup_micros": int(pending["short"].sum()) if len(pending) else 0,
        "paid_by_country_micros": {c: v["paid_micros"] for c, v in by_country.items()},
        "mean_pay_per_answer_micros": _ratio_micros(totals["task_pay_micros"], n_answers),
    }
    mult = worked["multiple"].dropna()
    floor_ok = int((worked["paid_micros"] >= worked["floor_micros"]).sum())
    in_band = int(((worked["paid_micros"] >= worked["floor_micros"]) & (worked["multiple"] <= float(ledger.cap_multiple))).sum())
    wage_multiple = {
        "floor": _num(ledger.floor_multiple), "target": _num(ledger.fair_multiple), "cap": _num(ledger.cap_multiple),
        "median": _round(mult.median()) if len(mult) else None, "min": _round(mult.min()) if len(mult) else None,
        "max": _round(mult.max()) if len(mult) else None,
        "median_before_topups": _round(worked["multiple_before_topups"].dropna().median()) if len(mult) else None,
        "hiters_at_or_above_floor": floor_ok, "hiters_within_band": in_band,
        "share_at_or_above_floor": _share(floor_ok, len(worked)),
        "by_country": {c: {"median": v["multiple_median"], "min": v["multiple_min"], "hiters": v["hiters"]}
                       for c, v in by_country.items()},
    }

    # -- split
    price = totals["price_micros"]
    split = {
        "configured_percent": ledger.split.as_percent(), "price_micros": price,
        **{f"{p}_micros": totals[f"{p}_micros"] for p in PARTIES},
        "shares": {p: (_round(totals[f"{p}_micros"] / price, 6) if price else None) for p in PARTIES},
        "topup_payer": ledger.topup_payer,
    }

    # -- tenure: a springboard, not an end
    if as_of is None:
        last_at = db.execute("SELECT MAX(created_at) FROM answers").fetchone()[0]
        as_of = (_dt.datetime.fromtimestamp(last_at, _dt.timezone.utc).date() if last_at is not None
                 else _dt.datetime.now(_dt.timezone.utc).date())
    starts = [_dt.date.fromisoformat(s) for s in worked["start_date"]]
    days = [(as_of - s).days for s in starts]
    within = sum(d <= max_days for d in days)
    tenure_years = [round(d / 365.25, 3) for d in days]
    tenure = {
        "max_days": max_days, "max_years": round(max_days / 365, 2), "as_of": as_of.isoformat(), "hiters": len(starts),
        "within_window": int(within),
        "share_within_window": _share(within, len(starts)),
        "median_years": _round(float(np.median(tenure_years)), 3) if tenure_years else None,
        "max_years_seen": _round(max(tenure_years), 3) if tenure_years else None,
    }

    # -- skills gained (written by the router as events, if at all)
    events = store.events("skill_gained")
    by_skill: dict[str, int] = {}
    gainers = set()
    for ev in events:
        p = ev["payload"] or {}
        by_skill[str(p.get("skill", "unspecified"))] = by_skill.get(str(p.get("skill", "unspecified")), 0) + 1
        who = p.get("worker", p.get("hiter"))
        if who is not None:
            gainers.add(str(who))
    skills = {"gained": len(events), "hiters": len(gainers), "by_skill": dict(sorted(by_skill.items())),
              "recorded": bool(events)}

    # -- residency, recomputed from the assignments
    residency = _residency(db)

    # -- savings against k answers per item
    labeled = items["labeled"] or int(db.execute("SELECT COUNT(DISTINCT item) FROM answers").fetchone()[0])
    baseline = k * labeled
    saved_answers = baseline - n_answers
    mean_price = Fraction(totals["task_price_micros"], n_answers) if n_answers else Fraction(0)
    mean_seconds = Fraction(Decimal(repr(seconds))) / n_answers if n_answers else Fraction(0)
    savings = {
        "baseline_answers_per_item": k, "items_labeled": labeled, "baseline_answers": baseline,
        "answers_bought": int(n_answers), "answers_saved": int(saved_answers),
        "mean_price_per_answer_micros": _round_fraction(mean_price),
        "baseline_cost_micros": _round_fraction(mean_price * baseline),
        "cost_saved_micros": _round_fraction(mean_price * saved_answers),
        "hours_saved": round(float(mean_seconds * saved_answers) / 3600, 4),
    }

    # -- the wages behind the multiples, with their sources
    wages = {}
    for row in ledger.wages_used().itertuples(index=False):
        if row.country in wages or row.worker not in set(worked["worker"]):
            continue
        wages[row.country] = {"currency": row.currency, "hourly_wage": row.hourly_wage,
                              "hourly_settled": _round(float(Fraction(row.hourly_settled)), 6),
                              "source": row.source, "date": row.date, "notes": row.notes}

    run = {k_: info[k_] for k_ in ("rounds", "stop_reason") if k_ in last}
    return {
        "title": "Impact ScoreCard",
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "store": Path(store.path).name if store.path != ":memory:" else ":memory:",
        "currency": cur, "money_unit": "micros (1e-6 of the currency unit)",
        "settings": ledger.settings(), "run": run,
        "items": items, "accuracy": accuracy, "work": work, "pay": pay, "wage_multiple": wage_multiple,
        "split": split, "tenure": tenure, "skills": skills, "residency": residency, "savings": savings,
        "wages": dict(sorted(wages.items())),
        "rates": [{"round": int(r.round), "item_type": r.item_type, "seconds": float(r.seconds),
                   "measurements": int(r.measurements)} for r in ledger.rates().itertuples(index=False)],
    }


def _residency(db: Any) -> dict:
    asg = pd.read_sql_query("SELECT a.item, a.worker, i.id AS item_id, i.allowed, w.country FROM assignments a "
                            "JOIN items i ON i.idx = a.item JOIN workers w ON w.idx = a.worker", db)
    restricted = asg["allowed"].notna()
    ok = ~restricted.to_numpy()
    if restricted.any():
        sub = asg.loc[restricted, ["allowed", "country"]].reset_index()
        allowed = sub.assign(code=sub["allowed"].str.split(",")).explode("code")
        hit = allowed[allowed["code"].str.strip() == allowed["country"]]["index"].unique()
        ok[hit] = True
    bad = asg.loc[~ok, ["item_id", "country", "allowed"]].head(10)
    return {
        "assignments": int(len(asg)), "passed": int(ok.sum()), "restricted": int(restricted.sum()),
        "restricted_passed": int((ok & restricted.to_numpy()).sum()), "failed": int((~ok).sum()),
        "share_passed": _share(int(ok.sum()), len(asg)),
        "failures": [{"item": str(r.item_id), "country": r.country, "allowed": r.allowed} for r in bad.itertuples()],
    }


def _bound_text(bound: Any, info: dict) -> str:
    if bound is None:
        return "not computed"
    if isinstance(bound, (int, float)):
        how = [f"{100 * info['confidence']:g}% confidence" if isinstance(info.get("confidence"), (int, float)) else "",
               f"{info['audited']} audits" if isinstance(info.get("audited"), int) else ""]
        how = ", ".join(h for h in how if h)
        return f"at least {bound:.3f}" + (f" ({how})" if how else "")
    if isinstance(bound, dict):
        return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in bound.items())
    return str(bound)


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def _int_or_none(x: Any) -> int | None:
    return None if x is None else int(x)


def _float_or_none(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def _round(x: Any, nd: int = 4) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else round(float(x), nd)


def _share(a: int, n: int) -> float | None:
    return round(a / n, 6) if n else None


def _num(f: Fraction) -> float | int:
    return int(f) if f.denominator == 1 else float(f)


def _round_fraction(x: Fraction) -> int:
    return int((Decimal(x.numerator) / Decimal(x.denominator)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _ratio_micros(total: int, n: int) -> int:
    return _round_fraction(Fraction(total, n)) if n else 0


def _x(m: float | None) -> str:
    return "n/a" if m is None else f"{m:.2f}x"


# ---------------------------------------------------------------------- charts


def _charts(d: dict, hiters: pd.DataFrame) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    out = {}
    cur = d["currency"]

    def png(fig: Any) -> bytes:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
        return buf.getvalue()

    def figure() -> tuple[Any, Any]:
        fig = Figure(figsize=(5.6, 3.5), layout="constrained")
        return fig, fig.add_subplot()

    # 1. effective multiple per HITer, by country, against the floor, the target and the cap
    fig, ax = figure()
    m = d["wage_multiple"]
    worked = hiters[(hiters["answers"] > 0) & hiters["multiple"].notna()]
    countries = sorted(worked["country"].unique())
    ax.axhspan(m["floor"], m["cap"], color="#eeeeee", zorder=0, label=f"promised band {m['floor']}-{m['cap']}x")
    ax.axhline(m["floor"], color="#444444", ls="--", lw=1, label=f"floor {m['floor']}x")
    ax.axhline(m["target"], color="#888888", lw=1, label=f"target {m['target']}x")
    rng = np.random.default_rng(0)
    for j, c in enumerate(countries):
        g = worked[worked["country"] == c]
        x = j + rng.uniform(-0.18, 0.18, len(g))
        before = g["multiple_before_topups"].to_numpy()
        lifted = g["topup_micros"].to_numpy() > 0
        if lifted.any():
            ax.scatter(x[lifted], before[lifted], marker="x", s=25, color="#555555", zorder=2,
                       label="before top-up" if j == next(i for i, cc in enumerate(countries)
                                                          if (worked[worked["country"] == cc]["topup_micros"] > 0).any()) else None)
        ax.scatter(x, g["multiple"], s=55, color=COLORS["pay"], edgecolor="white", lw=0.5, zorder=3,
                   label="HITer (after top-ups)" if j == 0 else None)
    ax.set_xticks(range(len(countries)), countries)
    ax.set_xlim(-0.6, max(len(countries) - 0.4, 0.6))
    top = max([m["cap"] + 0.5] + ([float(worked["multiple"].max()) * 1.08] if len(worked) else []))
    ax.set_ylim(0, top)
    ax.set_ylabel("x local minimum wage")
    ax.set_title("Effective hourly pay per HITer", fontsize=10)
    # Below the axes, so that no dot hides behind it.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    out["pay_multiple"] = png(fig)

    # 2. the split of the client's spend
    fig, ax = figure()
    s = d["split"]
    left = 0.0
    total = s["price_micros"] / MICROS
    for p, name in zip(PARTIES, ("HITers", "platform", "programme")):
        v = s[f"{p}_micros"] / MICROS
        ax.barh([0], [v], left=left, color=COLORS[p], height=0.55, label=f"{name}: {v:,.2f} {cur}")
        if total and v / total > 0.08:
            ax.text(left + v / 2, 0, f"{100 * v / total:.1f}%", ha="center", va="center", color="white", fontsize=10,
                    fontweight="bold")
        left += v
    ax.set_yticks([])
    ax.set_xlim(0, max(total, 1e-9) * 1.02)
    ax.set_xlabel(f"client spend ({cur})")
    ax.set_title(f"Client total {total:,.2f} {cur}; top-ups {d['pay']['topup_micros'] / MICROS:,.2f} {cur}", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3, frameon=False)
    out["split"] = png(fig)

    # 3. labels by source and answers bought against the all-human baseline
    fig, ax = figure()
    it, sv = d["items"], d["savings"]
    ax.bar([0], [it["human"]], color=COLORS["human"], width=0.6, label="items labeled by people")
    ax.bar([0], [it["machine"]], bottom=[it["human"]], color=COLORS["machine"], width=0.6, label="items labeled by machine")
    ax.bar([1], [sv["answers_bought"]], color=COLORS["human"], width=0.6, hatch="//", edgecolor="white",
           label="human answers bought")
    ax.bar([2], [sv["baseline_answers"]], color="none", edgecolor="#555555", width=0.6, lw=1.2,
           label=f"{sv['baseline_answers_per_item']} answers per item")
    ax.set_xticks([0, 1, 2], ["items", "answers bought", f"{sv['baseline_answers_per_item']}-per-item"])
    ax.set_title(f"{sv['answers_saved']:,} answers saved", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    out["labels"] = png(fig)

    # 4. HITers and hours by country
    fig, ax = figure()
    byc = d["work"]["hiters_by_country"]
    hours = d["work"]["hours_by_country"]
    names = list(byc)
    ax.bar(range(len(names)), [byc[c] for c in names], color=COLORS["country"], width=0.6)
    for j, c in enumerate(names):
        ax.text(j, byc[c], f"{hours[c]:.2f} h", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("HITers")
    ax.set_ylim(0, max(list(byc.values()) + [1]) * 1.2)
    ax.set_title(f"{d['work']['hiters']} HITers, {d['work']['human_hours']:.2f} h on task", fontsize=10)
    out["hiters"] = png(fig)
    return out


# ---------------------------------------------------------------------- text outputs


def _money(micros: int | None, cur: str, decimals: int = 2) -> str:
    return "n/a" if micros is None else format_money(micros, cur, decimals)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _acc(x: float | None) -> str:
    return "not recorded" if x is None else f"{x:.3f}"


def _rows(d: dict) -> dict[str, list[tuple[str, str]]]:
    """The card's sections as (label, value) rows, shared by Markdown and HTML."""
    cur = d["currency"]
    it, ac, wk, pay, wm, sp, te, sk, rs, sv = (d[k] for k in ("items", "accuracy", "work", "pay", "wage_multiple", "split",
                                                               "tenure", "skills", "residency", "savings"))
    sections = {
        "Labels": [
            ("Items in the pool", f"{it['total']:,}"),
            ("Items labeled", f"{it['labeled']:,}"),
            ("by people (one answer / aggregated)", f"{it['human']:,} ({it['human_single']:,} / {it['aggregated']:,})"),
            ("by machine", f"{it['machine']:,}" + (f" ({it['auto_accepted']:,} auto-accepted)" if it["auto_accepted"] is not None else "")),
            ("Label accuracy (whole pool)", _acc(ac["label_accuracy"])),
            ("Accuracy of human and auto-accepted labels", _acc(ac["accepted_accuracy"])),
            ("Accuracy bound", ac["bound_text"]),
        ],
        "People and hours": [
            ("HITers involved", f"{wk['hiters']}"),
            ("by country", ", ".join(f"{c} {n}" for c, n in wk["hiters_by_country"].items()) or "none"),
            ("Human answers", f"{wk['human_answers']:,}"
             + (" (" + ", ".join(f"{k_} {v:,}" for k_, v in wk["answers_by_kind"].items()) + ")"
                if len(wk["answers_by_kind"]) > 1 else "")),
            ("Human hours on task", f"{wk['human_hours']:.2f}"),
        ],
        "Fair pay": [
            ("Total paid to HITers", _money(pay["total_paid_micros"], cur)),
            ("of which task pay / top-ups", f"{_money(pay['task_pay_micros'], cur)} / {_money(pay['topup_micros'], cur)}"),
            ("HITers topped up to the floor", f"{pay['hiters_topped_up']} ({pay['topup_lines']} top-up lines)"),
            ("Top-ups pending (periods still open)", _money(pay["pending_topup_micros"], cur)),
            ("Effective pay, x local minimum wage (median)", _x(wm["median"])),
            ("minimum / maximum", f"{_x(wm['min'])} / {_x(wm['max'])}"),
            ("HITers at or above the floor", f"{wm['hiters_at_or_above_floor']} of {wk['hiters']} ({_pct(wm['share_at_or_above_floor'])})"),
            ("HITers within the promised band", f"{wm['hiters_within_band']} of {wk['hiters']} "
                                                f"({wm['floor']}x to {wm['cap']}x; faster ones earn more)"),
            ("Promise", f"floor {wm['floor']}x, target {wm['target']}x, band up to {wm['cap']}x"),
        ],
        "Split of the client's spend": [
            ("Client total", _money(sp["price_micros"], cur)),
            *[(f"to {name} ({sp['configured_percent'][p]}% configured)",
               f"{_money(sp[p + '_micros'], cur)} ({_pct(sp['shares'][p])})")
              for p, name in zip(PARTIES, ("HITers", "the platform", "the support programme"))],
            ("Top-ups paid by", sp["topup_payer"]),
        ],
        "Springboard, skills and residency": [
            ("HITers within their tenure window", f"{te['within_window']} of {te['hiters']} ({_pct(te['share_within_window'])}), "
                                                  f"window {te['max_days']} days, as of {te['as_of']}"),
            ("Skills gained", f"{sk['gained']}" if sk["recorded"] else "0 (none recorded)"),
            ("Residency checks passed", f"{rs['passed']:,} of {rs['assignments']:,} assignments "
                                        f"({rs['restricted']:,} on items with a residency rule; {rs['failed']} failed)"),
        ],
        f"Savings against {sv['baseline_answers_per_item']} answers per item": [
            ("Answers bought / baseline", f"{sv['answers_bought']:,} / {sv['baseline_answers']:,}"),
            ("Answers saved", f"{sv['answers_saved']:,}"),
            ("Mean client price per answer", _money(sv["mean_price_per_answer_micros"], cur, 4)),
            ("Human cost saved", f"{_money(sv['cost_saved_micros'], cur)} ({sv['hours_saved']:.2f} h)"),
        ],
    }
    return sections


def _by_country_rows(d: dict) -> list[list[str]]:
    cur = d["currency"]
    rows = []
    wages = d["wages"]
    for c, n in d["work"]["hiters_by_country"].items():
        w = wages.get(c, {})
        bc = d["wage_multiple"]["by_country"].get(c, {})
        rows.append([c, str(n), f"{d['work']['hours_by_country'][c]:.2f}", _money(d["pay"]["paid_by_country_micros"][c], cur),
                     _x(bc.get("median")), _x(bc.get("min")),
                     f"{w.get('hourly_wage', '?')} {w.get('currency', '')}/h" if w else "?"])
    return rows


_COUNTRY_HEAD = ["Country", "HITers", "Hours", "Paid", "Median multiple", "Min multiple", "Minimum wage"]


def _markdown(d: dict, chart_dir: str | None) -> str:
    cur = d["currency"]
    lines = [f"# {d['title']}", "",
             f"Project `{d['store']}`, generated {d['generated_at']}. Amounts in {cur}; the ledger keeps exact micros.", ""]
    if chart_dir is not None:
        lines += [f"![{_CHART_TITLES[c]}]({chart_dir}/{c}.png)" for c in CHARTS] + [""]
    for title, rows in _rows(d).items():
        lines += [f"## {title}", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]
    lines += ["## By country", "", "| " + " | ".join(_COUNTRY_HEAD) + " |", "|" + "---|" * len(_COUNTRY_HEAD)]
    lines += ["| " + " | ".join(r) + " |" for r in _by_country_rows(d)] + [""]
    lines += ["## Minimum wages used", "", "| Country | Hourly | Source | Date | Notes |", "|---|---|---|---|---|"]
    for c, w in d["wages"].items():
        lines.append(f"| {c} | {w['hourly_wage']} {w['currency']} | {w['source']} | {w['date'] or ''} | {w['notes'] or ''} |")
    lines += ["", "## Settings", "", "```json", json.dumps(d["settings"], indent=2), "```", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fff}
header{background:#1f2a44;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:24px} header p{margin:4px 0 0;color:#cfd6e6;font-size:13px}
main{padding:16px 32px;max-width:1160px}
.kpis{display:grid;grid-template-columns:repeat(6,1fr);gap:10px;margin:8px 0 16px}
.kpi{border:1px solid #ddd;border-radius:6px;padding:10px;background:#fafafa}
.kpi b{display:block;font-size:20px;color:#1f2a44} .kpi span{font-size:12px;color:#555}
.charts{display:grid;grid-template-columns:repeat(2,560px);gap:14px}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:4px;background:#fff}
figure img{display:block;width:560px;height:350px}
figcaption{font-size:12px;color:#555;padding:4px}
h2{font-size:17px;color:#1f2a44;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:24px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top} th{background:#f2f2f2}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:0 24px}
footer{font-size:11px;color:#777;padding:16px 32px}
"""


def _html(d: dict, charts: dict[str, bytes]) -> str:
    esc = html.escape
    cur = d["currency"]
    wm, pay, sv, te, rs = d["wage_multiple"], d["pay"], d["savings"], d["tenure"], d["residency"]
    kpis = [
        (f"{d['items']['labeled']:,}", f"items labeled ({d['items']['human']:,} by people)"),
        (f"{d['work']['hiters']}", f"HITers in {len(d['work']['hiters_by_country'])} countries"),
        (_money(pay["total_paid_micros"], cur), "paid to HITers"),
        (_x(wm["median"]), "median pay vs local minimum wage"),
        (_pct(te["share_within_window"]), f"within the {te['max_years']:g}-year window"),
        (_money(sv["cost_saved_micros"], cur), f"saved vs {sv['baseline_answers_per_item']} answers/item"),
    ]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(d['title'])} - {esc(d['store'])}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{esc(d['title'])}</h1><p>Project {esc(d['store'])} &middot; generated {esc(d['generated_at'])} "
        f"&middot; amounts in {esc(cur)}</p></header><main>",
        '<section class="kpis">' + "".join(f'<div class="kpi"><b>{esc(v)}</b><span>{esc(t)}</span></div>' for v, t in kpis)
        + "</section>",
        '<section class="charts">',
    ]
    for name in CHARTS:
        if name in charts:
            b64 = base64.b64encode(charts[name]).decode("ascii")
            parts.append(f'<figure><img id="chart-{name}" alt="{esc(_CHART_TITLES[name])}" width="560" height="350" '
                         f'src="data:image/png;base64,{b64}"><figcaption>{esc(_CHART_TITLES[name])}</figcaption></figure>')
    parts.append("</section>")
    parts.append('<section class="grid">')
    for title, rows in _rows(d).items():
        parts.append(f"<div><h2>{esc(title)}</h2><table>"
                     + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows) + "</table></div>")
    parts.append("</section><h2>By country</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in _COUNTRY_HEAD) + "</tr>")
    parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in _by_country_rows(d)]
    parts.append("</table><h2>Minimum wages used</h2><table><tr><th>Country</th><th>Hourly</th><th>Source</th><th>Date</th>"
                 "<th>Notes</th></tr>")
    for c, w in d["wages"].items():
        parts.append(f"<tr><td>{esc(c)}</td><td>{esc(str(w['hourly_wage']))} {esc(w['currency'])}</td><td>{esc(w['source'])}</td>"
                     f"<td>{esc(w['date'] or '')}</td><td>{esc(w['notes'] or '')}</td></tr>")
    parts.append("</table>")
    if rs["failures"]:
        parts.append("<h2>Residency failures (first 10)</h2><table><tr><th>Item</th><th>HITer country</th><th>Allowed</th></tr>"
                     + "".join(f"<tr><td>{esc(f['item'])}</td><td>{esc(f['country'])}</td><td>{esc(f['allowed'])}</td></tr>"
                               for f in rs["failures"]) + "</table>")
    parts.append(f"<h2>Settings</h2><pre>{esc(json.dumps(d['settings'], indent=2))}</pre>")
    parts.append("</main><footer>Money is kept exact in the ledger (integer micros); figures here are rounded for display. "
                 "Minimum wages come from the table named above, each with its source and date.</footer></body></html>")
    return "\n".join(parts)


__all__ = ["ScoreCard", "CHARTS", "COLORS"]
