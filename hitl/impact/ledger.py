"""The fair-pay ledger: what each answer earns its HITer, what the client pays, and who gets what.

How pay is set
    Each task type has a *posted rate*: the median measured time on task for that
    type over every answer committed in earlier rounds (``default_seconds`` until
    ``min_measurements`` answers exist), frozen per round in the ``ledger_rates``
    table. A task pays ``rate x local hourly minimum wage x fair_multiple``, rounded
    up to the micro. Pay is a piece rate: a fast HITer earns more per hour, a slow one
    less, and a HITer whose effective hourly pay over a period falls below
    ``floor_multiple x minimum wage`` gets a *top-up* line for the difference when the
    period is settled.

How the price is split
    The client price of a line is the smallest integer whose HITer share covers the
    HITer's pay (``pay / 0.60`` rounded up, for the default 60/35/5). The price is then
    apportioned to HITer, platform and support programme by largest remainder, so the
    three lines sum to the price exactly and the HITer line is never below the pay.

Currency
    Everything is settled in one currency (``currency``, default USD), in integer
    micros. Local minimum wages are converted once per HITer with the wage table's
    exchange rate and frozen (``ledger_wages``). Effective multiples of the minimum
    wage compare two amounts converted at the same rate, so they do not depend on it.

Durability
    The ledger lives in the project's SQLite file (tables ``ledger_*``). A task line
    is written when the answer is priced and never changes afterwards; pricing the
    same (item, HITer) again returns the stored pay. Top-ups are added, never taken
    back. Settings are recorded on first use and checked when the file is reopened.
"""

from __future__ import annotations

import json
import time
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..errors import ConfigError, ValidationError
from ..store import Store
from ._money import MICROS, PARTIES, Split, ceil_fraction, to_fraction
from .wages import WageTable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_rates (
    round INTEGER NOT NULL, item_type TEXT NOT NULL, seconds TEXT NOT NULL, measurements INTEGER NOT NULL,
    PRIMARY KEY (round, item_type)
);
CREATE TABLE IF NOT EXISTS ledger_wages (
    worker INTEGER PRIMARY KEY, country TEXT NOT NULL, currency TEXT NOT NULL, hourly_wage TEXT NOT NULL,
    hourly_settled TEXT NOT NULL, source TEXT NOT NULL, date TEXT, notes TEXT
);
CREATE TABLE IF NOT EXISTS ledger_lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('task', 'topup')),
    item INTEGER, worker INTEGER NOT NULL, round INTEGER, period TEXT, seq INTEGER NOT NULL DEFAULT 0,
    base_micros INTEGER NOT NULL, price_micros INTEGER NOT NULL,
    hiter_micros INTEGER NOT NULL, platform_micros INTEGER NOT NULL, programme_micros INTEGER NOT NULL,
    currency TEXT NOT NULL, created_at REAL NOT NULL,
    CHECK (hiter_micros + platform_micros + programme_micros = price_micros)
);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_task ON ledger_lines(item, worker) WHERE kind = 'task';
CREATE UNIQUE INDEX IF NOT EXISTS ledger_topup ON ledger_lines(worker, period, seq) WHERE kind = 'topup';
"""

PERIODS = ("round", "day", "week", "month", "project")
PAYERS = ("client", "platform")
_MS_PER_HOUR = 3_600_000

_DEFAULTS: dict[str, Any] = {
    "fair_multiple": 3,
    "floor_multiple": 2,
    "cap_multiple": 4,
    "split": (60, 35, 5),
    "currency": "USD",
    "default_seconds": 10,
    "min_measurements": 5,
    "period": "round",
    "topup_payer": "client",
}
#: The settings a Ledger takes, each recorded in the store on first use.
LEDGER_SETTINGS = tuple(_DEFAULTS)


class Ledger:
    """Pay, price and revenue split of every human answer in a project store.

    Parameters
    ----------
    store : Store or path
        The project's store; the ledger adds its own ``ledger_*`` tables to it.
    wages : WageTable, path or rows, optional
        Local minimum wages (default: the example table shipped with ``hitl``). A HITer
        whose country is not in the table is paid from the ``hourly_min_wage`` and
        ``currency`` of their own record.
    fair_multiple : number, default 3
        Pay per task, as a multiple of the local minimum wage for the posted time.
    floor_multiple : number, default 2
        Lowest effective hourly pay allowed over a period, as a multiple of the minimum
        wage; shortfalls are topped up by :meth:`settle`.
    cap_multiple : number, default 4
        Top of the promised band (reported, not enforced: piece rates reward speed).
    split : (hiter, platform, programme), default (60, 35, 5)
        Shares of the client price, in percent or fractions; must sum to exactly 100%.
    currency : str, default "USD"
        Settlement currency; every amount is in its micros (1e-6 of a unit).
    default_seconds : number, default 10
        Posted time on task for a task type before it has ``min_measurements`` answers.
    min_measurements : int, default 5
    period : {"round", "day", "week", "month", "project"}, default "round"
        Pay period over which the floor is checked. ``round`` (a labeling round) is
        reproducible when a run is replayed; calendar periods use the commit time (UTC).
    topup_payer : {"client", "platform"}, default "client"
        ``client``: a top-up is billed like task pay, with the same split.
        ``platform``: the platform pays it from its share (a line of price 0).

    Settings are recorded in the store on first use; reopening with other values
    raises :class:`~hitl.errors.ConfigError`, leaving a setting out reuses the recorded one.

    Examples
    --------
    >>> import numpy as np
    >>> from hitl import Store, HITer
    >>> store = Store(":memory:")
    >>> store.add_items(["a", "b"], ["default", "default"], [None, None])
    >>> store.add_workers([HITer("h1", "TG")])
    >>> store.begin_round(0, items=np.array([0, 1]), workers=np.array([0, 0]))
    >>> ledger = Ledger(store)
    >>> pay = ledger.price(0, [0, 1], [0, 0])      # quoted before the answers are committed
    >>> _ = store.add_answers(0, np.array([0, 1]), np.array([0, 0]), np.array([1, 0]), np.array([9.0, 12.0]))
    >>> int(pay[0])                                   # 10 s x 302.88 XOF/h / 577 XOF per USD x 3, in micros
    4375
    >>> t = ledger.totals(); t["hiter_micros"] + t["platform_micros"] + t["programme_micros"] == t["price_micros"]
    True
    """

    def __init__(
        self,
        store: Store | str | Path,
        wages: WageTable | str | Path | pd.DataFrame | Iterable | None = None,
        *,
        fair_multiple: Any = None,
        floor_multiple: Any = None,
        cap_multiple: Any = None,
        split: Any = None,
        currency: str | None = None,
        default_seconds: Any = None,
        min_measurements: int | None = None,
        period: str | None = None,
        topup_payer: str | None = None,
    ) -> None:
        self.store = open_store(store)
        self.wages = WageTable.coerce(wages)
        given = {k: v for k, v in dict(
            fair_multiple=fair_multiple, floor_multiple=floor_multiple, cap_multiple=cap_multiple, split=split,
            currency=currency, default_seconds=default_seconds, min_measurements=min_measurements, period=period,
            topup_payer=topup_payer).items() if v is not None}
        self.store.ensure_schema(_SCHEMA)  # joins a transaction in progress (a project being created)
        config = self._load_or_record_config(given)
        self.fair_multiple: Fraction = to_fraction(config["fair_multiple"], field="fair_multiple")
        self.floor_multiple: Fraction = to_fraction(config["floor_multiple"], field="floor_multiple")
        self.cap_multiple: Fraction = to_fraction(config["cap_multiple"], field="cap_multiple")
        self.split: Split = Split.parse(config["split"])
        self.currency: str = config["currency"]
        self.default_seconds: Decimal = _ms_decimal(to_fraction(config["default_seconds"], field="default_seconds"))
        self.min_measurements: int = int(config["min_measurements"])
        self.period: str = config["period"]
        self.topup_payer: str = config["topup_payer"]
        self._rates: dict[tuple[int, str], Decimal] = {}
        self._wage_cache: dict[int, Fraction] = {}
        self._types: np.ndarray | None = None
        # Time on task of every answer read so far (answers are only ever inserted, so
        # reading the rows past the last rowid keeps this exact): rowid, round, item.
        self._synced = -1
        self._settle_mark = -1  # answers (rowid) looked at by the last settle
        self._unsettled: set[int] = set()  # rounds still open at the last settle
        self._base_cache: dict[tuple[int, int], int] = {}
        self._seen = {"rowid": -1, "round": np.zeros(0, np.int64), "item": np.zeros(0, np.int64),
                      "seconds": np.zeros(0, np.float64)}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_store(cls, store: Store | str | Path, wages: Any = None, *, settle: bool = True, **kwargs: Any) -> "Ledger":
        """A ledger over a store's answers: prices every answer not yet priced, then settles closed periods.

        Works on any store (answers committed by the engine, imported, or from a run
        made before pay was wired in); re-running it changes nothing already priced.
        """
        ledger = cls(store, wages, **kwargs)
        ledger.sync()
        if settle:
            ledger.settle()
        return ledger

    def settings(self) -> dict[str, Any]:
        """The recorded settings, as plain JSON values."""
        return json.loads(self.store._db.execute("SELECT value FROM ledger_meta WHERE key = 'config'").fetchone()[0])

    # ------------------------------------------------------------------ pricing
    def price(self, round_no: int, items: Any, workers: Any) -> np.ndarray:
        """Pay, in micros, of HITer ``workers[j]`` answering item ``items[j]`` in round ``round_no``.

        Writes one task line per new (item, HITer) pair (the quote: durable before the
        answer is) and returns the stored pay for pairs priced before, so calling it
        again, after a crash for instance, never changes anyone's pay. ``items`` and
        ``workers`` are store positions. Call it when a task is assigned (the HITer
        sees the pay before taking the task) or when its answer is committed.
        """
        return self.quote(round_no, items, workers)[0]

    def quote(self, round_no: int, items: Any, workers: Any, *, record: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(pay, price)`` in micros for each (item, HITer): what the HITer earns and what the client pays.

        Same rules as :meth:`price` (written once, never changed). ``record=False``
        only looks: nothing is written for new pairs (to check a money budget before
        assigning, say), and a later recorded quote in the same round gives the same amounts.
        """
        return self._quote(round_no, items, workers, lookup=True, record=record)

    def _quote(self, round_no: int, items: Any, workers: Any, *, lookup: bool,
               record: bool = True) -> tuple[np.ndarray, np.ndarray]:
        items = _positions(items, "items")
        workers = _positions(workers, "workers")
        if len(items) != len(workers):
            raise ValidationError(f"{len(items)} items for {len(workers)} workers", field="workers",
                                  expected="one HITer per item")
        if len(items) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        round_no = int(round_no)
        pairs, inverse = np.unique(np.stack([items, workers], axis=1), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        with self.store.transaction() as db:
            if lookup:
                stored, stored_price = self._task_pay(db, pairs[:, 0], pairs[:, 1])
            else:  # the caller knows these pairs have no line (and a racing writer's line wins: OR IGNORE)
                stored, stored_price = np.full(len(pairs), -1, np.int64), np.full(len(pairs), -1, np.int64)
            new = stored < 0
            if new.any():
                self._check_positions(db, pairs[new, 0], pairs[new, 1])
                base = self._base_pay(db, round_no, pairs[new, 0], pairs[new, 1])
                price = self.split.price_for(base)
                lines = self.split.allocate(price)
                now = time.time()
                if record:
                    db.executemany(
                        "INSERT OR IGNORE INTO ledger_lines (kind, item, worker, round, base_micros, price_micros, "
                        "hiter_micros, platform_micros, programme_micros, currency, created_at) "
                        "VALUES ('task', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        zip(pairs[new, 0].tolist(), pairs[new, 1].tolist(), [round_no] * len(base), base.tolist(),
                            price.tolist(), lines[:, 0].tolist(), lines[:, 1].tolist(), lines[:, 2].tolist(),
                            [self.currency] * len(base), [now] * len(base)),
                    )
                stored[new] = lines[:, 0]
                stored_price[new] = price
        return stored[inverse], stored_price[inverse]

    def sync(self) -> int:
        """Price every committed answer that has no task line yet; returns how many were priced."""
        # Answers are only inserted and lines never deleted: answers up to the last rowid
        # seen priced stay priced, so only newer ones need looking at.
        top = self.store._db.execute("SELECT COALESCE(MAX(rowid), -1) FROM answers").fetchone()[0]
        rows = np.array(self.store._db.execute(
            "SELECT a.round, a.item, a.worker FROM answers a LEFT JOIN ledger_lines l "
            "ON l.kind = 'task' AND l.item = a.item AND l.worker = a.worker "
            "WHERE a.rowid > ? AND a.rowid <= ? AND l.id IS NULL ORDER BY a.round, a.rowid", (self._synced, top),
        ).fetchall(), dtype=np.int64).reshape(-1, 3)
        if len(rows):
            bounds = np.flatnonzero(np.diff(rows[:, 0])) + 1
            for chunk in np.split(rows, bounds):
                self._quote(int(chunk[0, 0]), chunk[:, 1], chunk[:, 2], lookup=False)
        self._synced = top
        return len(rows)

    @staticmethod
    def to_cents(micros: Any) -> np.ndarray:
        """Micros rounded up to whole cents (for a payment system that only takes cents)."""
        m = np.asarray(micros, dtype=np.int64)
        return -((-m) // (MICROS // 100))

    # ------------------------------------------------------------------ settlement
    def settle(self, *, final: bool = False, now: float | None = None) -> int:
        """Write top-up lines so that nobody's effective pay over a closed period is below the floor.

        A period is closed when its round is done (``period="round"``), when its end
        has passed (calendar periods), or when ``final`` is true (every period,
        ``project`` included). Settling again only adds what is still owed. Returns the
        micros topped up by this call; ``periods_`` holds the periods it looked at, as they
        stand after it (with ``period="round"``, a ledger that settled before only looks
        at rounds with new answers or still open then).
        """
        self.sync()
        now = time.time() if now is None else float(now)
        with self.store.transaction() as db:
            mark = db.execute("SELECT COALESCE(MAX(rowid), -1) FROM answers").fetchone()[0]
            rounds = None
            if self.period == "round" and self._settle_mark >= 0:
                # Only rounds with new answers, or open at the last call, can owe anything new.
                fresh = {r for (r,) in db.execute("SELECT DISTINCT round FROM answers WHERE rowid > ? AND rowid <= ?",
                                                  (self._settle_mark, mark))}
                rounds = sorted(fresh | self._unsettled)
            groups = self._periods(db, now, rounds)
            settled = ((groups["closed"] | final) & (groups["short"] > 0)).to_numpy()
            due = groups[settled]
            short = due["short"].to_numpy(np.int64)
            if self.topup_payer == "client":
                price = self.split.price_for(short)
                lines = self.split.allocate(price)
            else:  # the platform pays the HITer out of its own share: no new money from the client
                price = np.zeros(len(short), dtype=np.int64)
                lines = np.stack([short, -short, np.zeros_like(short)], axis=1)
            if len(due):
                rnd = [int(p[len("round-"):]) if self.period == "round" else None for p in due["period"]]
                stamp = time.time()
                db.executemany(
                    "INSERT INTO ledger_lines (kind, item, worker, round, period, seq, base_micros, price_micros, "
                    "hiter_micros, platform_micros, programme_micros, currency, created_at) "
                    "VALUES ('topup', NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    zip(due["worker"].astype(int).tolist(), rnd, due["period"].tolist(), due["next_seq"].astype(int).tolist(),
                        short.tolist(), price.tolist(), lines[:, 0].tolist(), lines[:, 1].tolist(), lines[:, 2].tolist(),
                        [self.currency] * len(short), [stamp] * len(short)),
                )
        # The table as it stands after this call (the ScoreCard reads it instead of a second pass).
        after = groups.copy()
        after.loc[settled, "topped"] += lines[:, 0]
        after.loc[settled, "short"] = 0
        after.loc[settled, "next_seq"] += 1
        if final:
            after["closed"] = True
        self.periods_ = after.reset_index(drop=True)
        self._settle_mark = mark
        if self.period == "round":
            self._unsettled = {int(p[len("round-"):]) for p in after.loc[~after["closed"], "period"]}
        return int(lines[:, 0].sum())

    def pending(self, *, now: float | None = None) -> pd.DataFrame:
        """Shortfalls in periods not closed yet (what :meth:`settle` will top up once they close)."""
        self.sync()
        now = time.time() if now is None else float(now)
        groups = self._periods(self.store._db, now)
        return groups[~groups["closed"] & (groups["short"] > 0)].reset_index(drop=True)

    def periods(self, *, now: float | None = None) -> pd.DataFrame:
        """Per HITer and pay period: milliseconds on task, pay, top-ups, the floor and what is still short."""
        self.sync()
        return self._periods(self.store._db, time.time() if now is None else float(now))

    # ------------------------------------------------------------------ reading
    def lines(self, *, quotes: bool = False) -> pd.DataFrame:
        """Every ledger line: task lines of committed answers and top-ups (``quotes``: also unanswered quotes).

        Columns: ``line, kind, item, item_id, worker, hiter, country, round, period, seconds,
        base_micros, price_micros, hiter_micros, platform_micros, programme_micros, currency, answered``.
        """
        df = pd.read_sql_query(
            "SELECT l.id AS line, l.kind, l.item, i.id AS item_id, l.worker, w.id AS hiter, w.country, l.round, l.period, "
            "a.seconds, l.base_micros, l.price_micros, l.hiter_micros, l.platform_micros, l.programme_micros, l.currency, "
            "CASE WHEN l.kind = 'topup' OR a.item IS NOT NULL THEN 1 ELSE 0 END AS answered "
            "FROM ledger_lines l JOIN workers w ON w.idx = l.worker LEFT JOIN items i ON i.idx = l.item "
            "LEFT JOIN answers a ON l.kind = 'task' AND a.item = l.item AND a.worker = l.worker ORDER BY l.id",
            self.store._db,
        )
        df["answered"] = df["answered"].astype(bool)
        return df if quotes else df[df["answered"]].reset_index(drop=True)

    def totals(self) -> dict[str, int]:
        """Sums in micros over the lines that count (answered tasks and top-ups), by kind and party."""
        row = self.store._db.execute(
            "SELECT "
            "COALESCE(SUM(CASE WHEN l.kind = 'task' THEN 1 END), 0), "
            "COALESCE(SUM(CASE WHEN l.kind = 'topup' THEN 1 END), 0), "
            "COALESCE(SUM(CASE WHEN l.kind = 'task' THEN l.hiter_micros END), 0), "
            "COALESCE(SUM(CASE WHEN l.kind = 'topup' THEN l.hiter_micros END), 0), "
            "COALESCE(SUM(CASE WHEN l.kind = 'task' THEN l.price_micros END), 0), "
            "COALESCE(SUM(CASE WHEN l.kind = 'topup' THEN l.price_micros END), 0), "
            "COALESCE(SUM(l.price_micros), 0), COALESCE(SUM(l.hiter_micros), 0), "
            "COALESCE(SUM(l.platform_micros), 0), COALESCE(SUM(l.programme_micros), 0) "
            "FROM ledger_lines l LEFT JOIN answers a ON l.kind = 'task' AND a.item = l.item AND a.worker = l.worker "
            "WHERE l.kind = 'topup' OR a.item IS NOT NULL"
        ).fetchone()
        keys = ("task_lines", "topup_lines", "task_pay_micros", "topup_micros", "task_price_micros", "topup_price_micros",
                "price_micros", "hiter_micros", "platform_micros", "programme_micros")
        return dict(zip(keys, (int(v) for v in row)))

    def spent_cents(self) -> int:
        """The client's bill for tasks assigned so far, in whole cents: each task's price rounded up to the cent.

        Counts the same task lines as :meth:`spent_micros` (top-ups, owed after the
        fact, are not tasks a budget can refuse). A money budget must hold for this bill
        as well as for the exact micros: 20 tasks of 1.2 cents are 24 cents exact, 40 billed.
        """
        per_cent = MICROS // 100
        row = self.store._db.execute(
            "SELECT COALESCE(SUM((l.price_micros + ?) / ?), 0) FROM ledger_lines l WHERE l.kind = 'task' AND EXISTS "
            "(SELECT 1 FROM assignments a WHERE a.item = l.item AND a.worker = l.worker)", (per_cent - 1, per_cent)).fetchone()
        return int(row[0])

    def freeze_wages(self, workers: Any) -> None:
        """Fix the hourly minimum wage of these HITers (store positions) now, from this ledger's wage table.

        Done when a project registers its HITers, so that any process pricing a task later
        (the web app handing a task to another HITer, say) prices it from the store alone,
        with the wage table the project was given.
        """
        with self.store.transaction() as db:
            for w in sorted(set(_positions(workers, "workers").tolist())):
                self._wage(db, int(w))

    def spent_micros(self) -> int:
        """Client price committed so far: tasks assigned (answered or pending) plus top-ups, in micros.

        What a money budget is checked against: a quote counts from the moment the task
        is assigned, and stops counting if the task is handed to someone else.
        """
        row = self.store._db.execute(
            "SELECT COALESCE(SUM(l.price_micros), 0) FROM ledger_lines l WHERE l.kind = 'topup' OR EXISTS "
            "(SELECT 1 FROM assignments a WHERE a.item = l.item AND a.worker = l.worker)").fetchone()
        return int(row[0])

    def hiters(self) -> pd.DataFrame:
        """One row per HITer with answers: time on task, pay, top-ups and effective multiple of the minimum wage."""
        self.sync()
        db = self.store._db
        rows = np.array(db.execute("SELECT worker, seconds FROM answers").fetchall(), dtype=np.float64).reshape(-1, 2)
        worker = rows[:, 0].astype(np.int64)
        ms = _milliseconds(rows[:, 1])
        present = np.unique(worker)
        n = int(present.max()) + 1 if len(present) else 0
        work = pd.DataFrame({
            "worker": present,
            "answers": np.bincount(worker, minlength=n)[present],
            "seconds": np.bincount(worker, weights=rows[:, 1], minlength=n)[present],
            # float sums of integers stay exact below 2**53 ms (285,000 years)
            "ms": np.round(np.bincount(worker, weights=ms, minlength=n)[present]).astype(np.int64),
        })
        paid = {"task": {}, "topup": {}}
        for w, kind, total in db.execute(
            "SELECT l.worker, l.kind, SUM(l.hiter_micros) FROM ledger_lines l WHERE l.kind = 'topup' OR EXISTS "
            "(SELECT 1 FROM answers a WHERE a.item = l.item AND a.worker = l.worker) GROUP BY l.worker, l.kind"):
            paid[kind][w] = total
        who = pd.read_sql_query("SELECT idx AS worker, id AS hiter, country, skills, start_date FROM workers", db)
        wages = pd.read_sql_query("SELECT worker, currency AS wage_currency, hourly_wage, hourly_settled, source AS wage_source "
                                  "FROM ledger_wages", db)
        df = work.merge(who, on="worker", how="left").merge(wages, on="worker", how="left")
        df["task_micros"] = np.array([paid["task"].get(w, 0) for w in df["worker"].tolist()], dtype=np.int64)
        df["topup_micros"] = np.array([paid["topup"].get(w, 0) for w in df["worker"].tolist()], dtype=np.int64)
        df["paid_micros"] = df["task_micros"] + df["topup_micros"]
        mult, mult_before, floor = [], [], []
        for paid_m, task_m, ms_, hs in zip(df["paid_micros"], df["task_micros"], df["ms"], df["hourly_settled"]):
            owed_at_1x = Fraction(hs) * MICROS * int(ms_) / _MS_PER_HOUR if isinstance(hs, str) and ms_ > 0 else None
            mult.append(float(Fraction(int(paid_m)) / owed_at_1x) if owed_at_1x else float("nan"))
            mult_before.append(float(Fraction(int(task_m)) / owed_at_1x) if owed_at_1x else float("nan"))
            floor.append(ceil_fraction(owed_at_1x * self.floor_multiple) if owed_at_1x else 0)
        df["multiple"] = mult
        df["multiple_before_topups"] = mult_before
        # Over the whole project: what the floor multiple of the minimum wage comes to for the time worked.
        df["floor_micros"] = np.array(floor, dtype=np.int64)
        df["hourly_settled"] = [float(Fraction(h)) if isinstance(h, str) else float("nan") for h in df["hourly_settled"]]
        return df.sort_values("worker").reset_index(drop=True)

    def rates(self) -> pd.DataFrame:
        """The posted time on task per round and task type (``measurements`` = 0: the default was used)."""
        df = pd.read_sql_query("SELECT round, item_type, seconds, measurements FROM ledger_rates ORDER BY round, item_type",
                               self.store._db)
        df["seconds"] = df["seconds"].astype(float)
        return df

    def wages_used(self) -> pd.DataFrame:
        """The minimum wage frozen for each HITer when first priced, with its source."""
        return pd.read_sql_query("SELECT w.*, k.id AS hiter FROM ledger_wages w JOIN workers k ON k.idx = w.worker "
                                 "ORDER BY w.worker", self.store._db)

    # ------------------------------------------------------------------ internals
    def _load_or_record_config(self, given: dict[str, Any]) -> dict[str, Any]:
        for key, value in given.items():
            given[key] = _canonical(key, value)
        db = self.store._db
        row = db.execute("SELECT value FROM ledger_meta WHERE key = 'config'").fetchone()
        if row is not None:
            recorded = json.loads(row[0])
            for key, value in given.items():
                if recorded.get(key) != value:
                    raise ConfigError(
                        f"is {value!r} but this project's ledger was opened with {recorded.get(key)!r}",
                        item=self.store.path, field=key,
                        expected="the recorded setting (leave it out to reuse it) or a new project store",
                    )
            return {**{k: _canonical(k, v) for k, v in _DEFAULTS.items()}, **recorded}
        config = {**{k: _canonical(k, v) for k, v in _DEFAULTS.items()}, **given}
        _validate(config)
        with self.store.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO ledger_meta VALUES ('config', ?)", (json.dumps(config),))
            stored = tx.execute("SELECT value FROM ledger_meta WHERE key = 'config'").fetchone()[0]
        if json.loads(stored) != config:  # another process recorded first
            return self._load_or_record_config(given)
        return config

    def _item_types(self, db: Any) -> np.ndarray:
        if self._types is None:
            rows = db.execute("SELECT idx, item_type FROM items ORDER BY idx").fetchall()
            types = np.full((rows[-1][0] + 1) if rows else 0, None, dtype=object)
            for idx, t in rows:
                types[idx] = t
            self._types = types
        return self._types

    def _check_positions(self, db: Any, items: np.ndarray, workers: np.ndarray) -> None:
        types = self._item_types(db)
        bad = (items < 0) | (items >= len(types))
        if not bad.any():
            bad = np.equal(types[items], None)
        if bad.any():
            self._types = None
            types = self._item_types(db)
            bad = (items < 0) | (items >= len(types))
            bad[~bad] = np.equal(types[items[~bad]], None)
            if bad.any():
                raise ValidationError("is not an item of the store", item=int(items[bad][0]), field="items",
                                      expected="store positions of items")
        n_workers = db.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM workers").fetchone()[0]
        if (workers < 0).any() or (workers >= n_workers).any():
            w = int(workers[(workers < 0) | (workers >= n_workers)][0])
            raise ValidationError("is not a HITer of the store", item=w, field="workers", expected="store positions of HITers")

    def _task_pay(self, db: Any, items: np.ndarray, workers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored HITer pay and price of each (item, worker) pair's task line, -1 where there is none."""
        out = np.full(len(items), -1, dtype=np.int64)
        price = np.full(len(items), -1, dtype=np.int64)
        pos = {(i, w): j for j, (i, w) in enumerate(zip(items.tolist(), workers.tolist()))}
        wanted = sorted(set(items.tolist()))
        for start in range(0, len(wanted), 500):  # under SQLite's bound-parameter limit
            part = wanted[start:start + 500]
            # `item IN (...)` walks the (item, worker) index; a row-value IN would scan the table.
            for i, w, pay, pr in db.execute(
                f"SELECT item, worker, hiter_micros, price_micros FROM ledger_lines WHERE kind = 'task' "
                f"AND item IN ({','.join('?' * len(part))})", part,
            ):
                j = pos.get((i, w))
                if j is not None:
                    out[j] = pay
                    price[j] = pr
        return out, price

    def _base_pay(self, db: Any, round_no: int, items: np.ndarray, workers: np.ndarray) -> np.ndarray:
        """Piece rate in micros: posted seconds x hourly wage (settled) x fair multiple, rounded up, at least 1."""
        types = self._item_types(db)[items]
        type_names, type_code = np.unique(types.astype(str), return_inverse=True)
        rate_ms = np.array([int(self._rate(db, round_no, t) * 1000) for t in type_names], dtype=np.int64)
        combos, inverse = np.unique(np.stack([type_code.reshape(-1), workers], axis=1), axis=0, return_inverse=True)
        base = np.empty(len(combos), dtype=np.int64)
        for j, (code, w) in enumerate(combos.tolist()):
            key = (int(rate_ms[code]), w)
            if key not in self._base_cache:
                pay = self._wage(db, w) * self.fair_multiple * MICROS * key[0] / _MS_PER_HOUR
                self._base_cache[key] = max(1, ceil_fraction(pay))
            base[j] = self._base_cache[key]
        return base[inverse.reshape(-1)]

    def _rate(self, db: Any, round_no: int, item_type: str) -> Decimal:
        key = (round_no, item_type)
        if key in self._rates:
            return self._rates[key]
        row = db.execute("SELECT seconds FROM ledger_rates WHERE round = ? AND item_type = ?", key).fetchone()
        if row is None:
            seen = self._read_answers(db)
            types = self._item_types(db)
            secs = seen["seconds"][(seen["round"] < round_no) & (types[seen["item"]] == item_type)]
            if len(secs) >= self.min_measurements:
                rate = max(_ms_decimal(Fraction(Decimal(repr(float(np.median(secs)))))), Decimal("0.001"))
            else:
                rate = self.default_seconds
            db.execute("INSERT INTO ledger_rates VALUES (?, ?, ?, ?)",
                       (round_no, item_type, str(rate), int(len(secs)) if len(secs) >= self.min_measurements else 0))
        else:
            rate = Decimal(row[0])
        self._rates[key] = rate
        return rate

    def _read_answers(self, db: Any) -> dict[str, np.ndarray]:
        """Round, item and time on task of every answer, read incrementally by rowid."""
        seen = self._seen
        rows = db.execute("SELECT rowid, round, item, seconds FROM answers WHERE rowid > ? ORDER BY rowid",
                          (seen["rowid"],)).fetchall()
        if rows:
            arr = np.array(rows, dtype=np.float64)
            seen["rowid"] = int(arr[-1, 0])
            seen["round"] = np.concatenate([seen["round"], arr[:, 1].astype(np.int64)])
            seen["item"] = np.concatenate([seen["item"], arr[:, 2].astype(np.int64)])
            seen["seconds"] = np.concatenate([seen["seconds"], arr[:, 3]])
            if len(self._item_types(db)) <= seen["item"].max():
                self._types = None
        return seen

    def _wage(self, db: Any, worker: int) -> Fraction:
        """The HITer's hourly minimum wage in the settlement currency, frozen at first use."""
        if worker in self._wage_cache:
            return self._wage_cache[worker]
        row = db.execute("SELECT hourly_settled FROM ledger_wages WHERE worker = ?", (worker,)).fetchone()
        if row is not None:
            wage = Fraction(row[0])
        else:
            rec = db.execute("SELECT id, country, hourly_min_wage, currency FROM workers WHERE idx = ?", (worker,)).fetchone()
            if rec is None:
                raise ValidationError("is not a HITer of the store", item=worker, field="workers")
            hiter, country, own_wage, own_currency = rec
            table_row = self.wages.lookup(country)
            if table_row is not None:
                amount, cur = Fraction(table_row.hourly_wage), table_row.currency
                source, date, notes = table_row.source, table_row.date, table_row.notes
            else:
                amount, cur = to_fraction(float(own_wage), field="hourly_min_wage"), own_currency
                source, date, notes = f"HITer record ({country} is not in the wage table)", None, ""
            wage = self.wages.convert(amount, cur, self.currency, item=hiter)
            db.execute("INSERT INTO ledger_wages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (worker, country, cur, str(Decimal(amount.numerator) / Decimal(amount.denominator)),
                        f"{wage.numerator}/{wage.denominator}", source, date, notes))
        self._wage_cache[worker] = wage
        return wage

    def _answer_ms(self, db: Any, rounds: list[int] | None = None) -> pd.DataFrame:
        """Priced answers (of ``rounds`` only, if given): HITer, round, commit time, pay, milliseconds on task."""
        sql = ("SELECT a.worker, a.round, a.seconds, a.created_at, l.hiter_micros FROM answers a JOIN ledger_lines l "
               "ON l.kind = 'task' AND l.item = a.item AND l.worker = a.worker")
        if rounds is None:
            fetched = db.execute(sql).fetchall()
        else:
            fetched = []
            for start in range(0, len(rounds), 500):
                part = rounds[start:start + 500]
                fetched += db.execute(sql + f" WHERE a.round IN ({','.join('?' * len(part))})", part).fetchall()
        rows = np.array(fetched, dtype=np.float64).reshape(-1, 5)
        # float64 holds these integers exactly (all far below 2**53)
        return pd.DataFrame({"worker": rows[:, 0].astype(np.int64), "round": rows[:, 1].astype(np.int64),
                             "seconds": rows[:, 2], "created_at": rows[:, 3],
                             "hiter_micros": rows[:, 4].astype(np.int64), "ms": _milliseconds(rows[:, 2])})

    def _periods(self, db: Any, now: float, rounds: list[int] | None = None) -> pd.DataFrame:
        df = self._answer_ms(db, rounds)
        cols = ["worker", "period", "closed", "ms", "earned", "topped", "floor", "short", "next_seq"]
        if df.empty:
            return pd.DataFrame({c: pd.Series(dtype=bool if c == "closed" else (object if c == "period" else np.int64))
                                 for c in cols})
        if self.period == "round":
            df["period"] = "round-" + df["round"].astype(str)
            done = {r for (r,) in db.execute("SELECT round FROM rounds WHERE status = 'done'")}
            ends = df["round"].isin(done)
        elif self.period == "project":
            df["period"] = "project"
            ends = pd.Series(False, index=df.index)
        else:
            stamp = pd.to_datetime(df["created_at"], unit="s", utc=True).dt.tz_localize(None)
            freq = {"day": "D", "week": "W-SUN", "month": "M"}[self.period]
            per = stamp.dt.to_period(freq)
            df["period"] = per.astype(str)
            ends = (per.dt.end_time - pd.Timestamp("1970-01-01")).dt.total_seconds() < now
        df["closed"] = ends.to_numpy()
        g = df.groupby(["worker", "period"], sort=True).agg(ms=("ms", "sum"), earned=("hiter_micros", "sum"),
                                                            closed=("closed", "all")).reset_index()
        top = pd.read_sql_query("SELECT worker, period, SUM(hiter_micros) AS topped, MAX(seq) AS seq FROM ledger_lines "
                                "WHERE kind = 'topup' GROUP BY worker, period", db)
        g = g.merge(top, on=["worker", "period"], how="left")
        g["topped"] = g["topped"].fillna(0).astype(np.int64)
        g["next_seq"] = (g["seq"].fillna(-1) + 1).astype(np.int64)
        # floor = ceil(rate_w * ms) with rate_w = p_w / q_w exact; Python integers in object arrays, no overflow
        workers = g["worker"].to_numpy(np.int64)
        uniq, inv = np.unique(workers, return_inverse=True)
        rates = [self._wage(db, int(w)) * self.floor_multiple * MICROS / _MS_PER_HOUR for w in uniq.tolist()]
        p = np.array([r.numerator for r in rates] + [0], dtype=object)[:-1][inv.reshape(-1)]
        q = np.array([r.denominator for r in rates] + [0], dtype=object)[:-1][inv.reshape(-1)]
        ms = np.array(g["ms"].tolist() + [0], dtype=object)[:-1]
        g["floor"] = (-((-p * ms) // q)).astype(np.int64) if len(g) else np.zeros(0, np.int64)
        g["short"] = np.maximum(g["floor"] - g["earned"] - g["topped"], 0)
        return g[cols]


def open_store(store: Store | str | Path) -> Store:
    """A Store, opened from a path only if it holds a project (never creates one, never writes to another file)."""
    if isinstance(store, Store):
        return store
    if isinstance(store, (str, Path)):
        if str(store) == ":memory:":
            return Store(store)
        return Store(store, create=False)
    raise ValidationError(f"is a {type(store).__name__}", field="store", expected="a hitl.Store or a path to one")


def _positions(values: Any, field: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if len(arr) and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValidationError(f"has dtype {arr.dtype}", field=field, expected="integer store positions")
    return arr.astype(np.int64)


def _milliseconds(seconds: np.ndarray) -> np.ndarray:
    """Time on task in whole milliseconds, rounded up: rounding can only raise the floor a HITer is owed."""
    return np.ceil(np.round(np.asarray(seconds, dtype=np.float64) * 1000.0, 6)).astype(np.int64)


def _ms_decimal(seconds: Fraction) -> Decimal:
    """Seconds to the millisecond, exactly (half to even)."""
    d = Decimal(seconds.numerator) / Decimal(seconds.denominator)
    return d.quantize(Decimal("0.001"), rounding=ROUND_HALF_EVEN)


def _canonical(key: str, value: Any) -> Any:
    """A JSON-stable form of a setting (exact numbers as text)."""
    if key == "split":
        return Split.parse(value).as_percent()
    if key in ("fair_multiple", "floor_multiple", "cap_multiple", "default_seconds"):
        f = to_fraction(value, field=key)
        return format(_ms_decimal(f).normalize(), "f") if key == "default_seconds" else _frac_text(f)
    if key == "min_measurements":
        if isinstance(value, bool) or int(value) != value or int(value) < 1:
            raise ConfigError(f"is {value!r}", field=key, expected="a whole number >= 1")
        return int(value)
    if key == "currency":
        v = str(value).upper()
        if len(v) != 3 or not v.isalpha():
            raise ConfigError(f"is {value!r}", field=key, expected="an ISO 4217 code such as 'USD'")
        return v
    if key == "period":
        if value not in PERIODS:
            raise ConfigError(f"is {value!r}", field=key, expected=f"one of {PERIODS}")
        return value
    if key == "topup_payer":
        if value not in PAYERS:
            raise ConfigError(f"is {value!r}", field=key, expected=f"one of {PAYERS}")
        return value
    return value


def _frac_text(f: Fraction) -> str:
    if f.denominator == 1:
        return str(f.numerator)
    d = Decimal(f.numerator) / Decimal(f.denominator)
    return format(d.normalize(), "f") if Fraction(d) == f else f"{f.numerator}/{f.denominator}"


def _validate(config: dict[str, Any]) -> None:
    floor, fair, cap = (to_fraction(config[k], field=k) for k in ("floor_multiple", "fair_multiple", "cap_multiple"))
    if floor <= 0:
        raise ConfigError(f"is {config['floor_multiple']}", field="floor_multiple", expected="a positive multiple")
    if not floor <= fair <= cap:
        raise ConfigError(f"is {config['fair_multiple']} with floor {config['floor_multiple']} and cap {config['cap_multiple']}",
                          field="fair_multiple", expected="floor_multiple <= fair_multiple <= cap_multiple")
    if to_fraction(config["default_seconds"], field="default_seconds") <= 0:
        raise ConfigError(f"is {config['default_seconds']}", field="default_seconds", expected="a positive time")


__all__ = ["Ledger", "PERIODS", "PAYERS", "PARTIES", "LEDGER_SETTINGS", "open_store"]
