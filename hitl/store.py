"""The project's durable state, in one SQLite file (WAL mode).

Everything the engine needs to resume lives here: items, HITers, rounds,
assignments, every human answer, every label with its source, payments and an
event log. Each write is its own transaction, committed before the call returns,
so a process killed at any instant loses nothing that was acknowledged.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .errors import ConflictingAnswerError, StoreError, ValidationError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    idx INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, item_type TEXT NOT NULL, allowed TEXT
);
CREATE TABLE IF NOT EXISTS workers (
    idx INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, country TEXT NOT NULL, skills TEXT NOT NULL,
    hourly_min_wage REAL NOT NULL, currency TEXT NOT NULL, start_date TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY, status TEXT NOT NULL CHECK (status IN ('open', 'done')),
    started_at REAL NOT NULL, finished_at REAL, stats TEXT
);
CREATE TABLE IF NOT EXISTS assignments (
    item INTEGER NOT NULL REFERENCES items(idx), worker INTEGER NOT NULL REFERENCES workers(idx),
    round INTEGER NOT NULL REFERENCES rounds(round), kind TEXT NOT NULL, created_at REAL NOT NULL,
    pay_cents INTEGER, price_cents INTEGER,
    PRIMARY KEY (item, worker)
);
CREATE TABLE IF NOT EXISTS priors (
    item INTEGER PRIMARY KEY REFERENCES items(idx), round INTEGER NOT NULL, proba BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    item INTEGER NOT NULL, worker INTEGER NOT NULL, label INTEGER NOT NULL, round INTEGER NOT NULL,
    seconds REAL NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (item, worker),
    FOREIGN KEY (item, worker) REFERENCES assignments(item, worker)
);
CREATE TABLE IF NOT EXISTS labels (
    item INTEGER PRIMARY KEY REFERENCES items(idx), label INTEGER NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('machine', 'human', 'aggregated')),
    confidence REAL NOT NULL, round INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS payments (
    item INTEGER NOT NULL, worker INTEGER NOT NULL, round INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL, currency TEXT NOT NULL,
    PRIMARY KEY (item, worker),
    FOREIGN KEY (item, worker) REFERENCES answers(item, worker)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, round INTEGER, kind TEXT NOT NULL, payload TEXT
);
CREATE INDEX IF NOT EXISTS answers_round ON answers(round);
CREATE INDEX IF NOT EXISTS assignments_round ON assignments(round);
"""

LABEL_SOURCES = ("machine", "human", "aggregated")


class Store:
    """SQLite-backed state of one labeling project.

    Parameters
    ----------
    path : str or Path, default ":memory:"
        The database file. Reopening the same file resumes the project.

    Examples
    --------
    >>> import numpy as np
    >>> store = Store(":memory:")
    >>> store.ensure_project(fingerprint="abc", classes=["cat", "dog"], config={})   # True: a new project
    True
    >>> store.add_items(["a", "b"], ["default", "default"], [None, None])
    >>> from hitl.workforce import HITer
    >>> store.add_workers([HITer("h1", "TG")])
    >>> store.begin_round(0, items=np.array([0]), workers=np.array([0]))
    >>> store.add_answers(0, np.array([0]), np.array([0]), np.array([1]), np.array([7.5]))
    1
    >>> store.add_answers(0, np.array([0]), np.array([0]), np.array([1]), np.array([7.5]))  # idempotent
    0
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA foreign_keys = ON")
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed answer survives a power cut, not only a crash.
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot be opened as a project store ({exc})", field="store", item=self.path) from None

    # -- transactions ---------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``); rolled back on error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- project identity -----------------------------------------------------------
    def ensure_project(self, *, fingerprint: str, classes: Sequence[Any], config: dict) -> bool:
        """Record the project's identity, or check it against the file's. Returns True if new."""
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        wanted = {"schema": str(SCHEMA_VERSION), "fingerprint": fingerprint, "classes": json.dumps([str(c) for c in classes])}
        if not meta:
            with self.transaction() as db:
                db.executemany("INSERT INTO meta VALUES (?, ?)", [*wanted.items(), ("config", json.dumps(config, default=str))])
            return True
        for key, value in wanted.items():
            if meta.get(key) != value:
                raise StoreError(
                    f"belongs to another project ({key} is {meta.get(key)!r}, this project has {value!r})",
                    item=self.path, field=key, expected="the same pool and classes as when the file was created",
                )
        return False

    def config(self) -> dict:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        return json.loads(row[0]) if row else {}

    # -- items and workers ----------------------------------------------------------
    def add_items(self, ids: Sequence[str], item_types: Sequence[str], allowed: Sequence[Any]) -> None:
        rows = [
            (i, str(item_id), str(t), None if a is None else ",".join(sorted(a)))
            for i, (item_id, t, a) in enumerate(zip(ids, item_types, allowed))
        ]
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?)", rows)

    def n_items(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def add_workers(self, hiters: Sequence[Any]) -> None:
        """Insert HITers in order; a HITer already known keeps its position."""
        existing = dict(self._db.execute("SELECT id, idx FROM workers").fetchall())
        nxt = max(existing.values(), default=-1) + 1
        rows = []
        for h in hiters:
            if h.id in existing:
                continue
            rows.append((nxt, h.id, h.country, ",".join(sorted(h.skills)), float(h.hourly_min_wage), h.currency, h.start_date.isoformat()))
            existing[h.id] = nxt
            nxt += 1
        with self.transaction() as db:
            db.executemany("INSERT INTO workers VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def worker_positions(self, worker_ids: Sequence[str]) -> np.ndarray:
        """Store positions of HITers by id (the engine maps workforce order to these)."""
        known = dict(self._db.execute("SELECT id, idx FROM workers").fetchall())
        missing = [w for w in worker_ids if w not in known]
        if missing:
            raise StoreError("is not registered in the store", item=missing[0], field="worker")
        return np.array([known[w] for w in worker_ids], dtype=np.int64)

    def workers(self) -> list[dict]:
        cur = self._db.execute("SELECT idx, id, country, skills, hourly_min_wage, currency, start_date FROM workers ORDER BY idx")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    # -- rounds and assignments -----------------------------------------------------
    def begin_round(self, round_no: int, items: np.ndarray, workers: np.ndarray, kind: str | Sequence[str] = "label",
                    stats: dict | None = None, pay_cents: np.ndarray | None = None, price_cents: np.ndarray | None = None,
                    priors: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Open a round and record its assignments (and the model's priors) in one transaction."""
        with self.transaction() as db:
            db.execute("INSERT INTO rounds (round, status, started_at, stats) VALUES (?, 'open', ?, ?)",
                       (int(round_no), time.time(), json.dumps(stats or {}, default=_json_default)))
            self._insert_assignments(db, round_no, items, workers, kind, pay_cents, price_cents)
            if priors is not None:
                self._write_priors(db, round_no, *priors)

    def add_assignments(self, round_no: int, items: np.ndarray, workers: np.ndarray, kind: str | Sequence[str] = "label",
                        pay_cents: np.ndarray | None = None, price_cents: np.ndarray | None = None) -> None:
        """Add assignments to an open round (one more HITer for items still uncertain)."""
        with self.transaction() as db:
            row = db.execute("SELECT status FROM rounds WHERE round = ?", (int(round_no),)).fetchone()
            if row is None or row[0] != "open":
                raise StoreError("is not open", item=round_no, field="round")
            self._insert_assignments(db, round_no, items, workers, kind, pay_cents, price_cents)

    @staticmethod
    def _insert_assignments(db, round_no, items, workers, kind, pay_cents, price_cents) -> None:
        items = np.asarray(items, dtype=np.int64)
        workers = np.asarray(workers, dtype=np.int64)
        n = len(items)
        kinds = [kind] * n if isinstance(kind, str) else list(kind)
        pay = [None] * n if pay_cents is None else np.asarray(pay_cents, dtype=np.int64).tolist()
        price = [None] * n if price_cents is None else np.asarray(price_cents, dtype=np.int64).tolist()
        now = time.time()
        try:
            db.executemany("INSERT INTO assignments VALUES (?, ?, ?, ?, ?, ?, ?)",
                           zip(items.tolist(), workers.tolist(), [int(round_no)] * n, kinds, [now] * n, pay, price))
        except sqlite3.IntegrityError as exc:
            raise ValidationError(f"repeats an (item, HITer) pair or names an unknown one ({exc})", field="assignments",
                                  expected="each HITer at most once per item") from None

    @staticmethod
    def _write_priors(db, round_no: int, items: np.ndarray, proba: np.ndarray) -> None:
        proba = np.ascontiguousarray(proba, dtype=np.float32)
        db.executemany("INSERT OR REPLACE INTO priors VALUES (?, ?, ?)",
                       zip(np.asarray(items, dtype=np.int64).tolist(), [int(round_no)] * len(proba),
                           [row.tobytes() for row in proba]))

    def priors(self, n_items: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """The model's probabilities recorded when items were sent to humans: (has_prior mask, (n_items, k))."""
        out = np.full((n_items, n_classes), 1.0 / n_classes, dtype=np.float64)
        has = np.zeros(n_items, dtype=bool)
        rows = self._db.execute("SELECT item, proba FROM priors").fetchall()
        if rows:
            idx = np.array([r[0] for r in rows], dtype=np.int64)
            out[idx] = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), n_classes)
            has[idx] = True
        return has, out

    def finish_round(self, round_no: int, stats: dict, labels: dict | None = None) -> None:
        """Close a round, writing its statistics and (optionally) labels atomically with it."""
        with self.transaction() as db:
            if labels is not None:
                self._write_labels(db, round_no=round_no, **labels)
            cur = db.execute("UPDATE rounds SET status = 'done', finished_at = ?, stats = ? WHERE round = ?",
                             (time.time(), json.dumps(stats, default=_json_default), int(round_no)))
            if cur.rowcount != 1:
                raise StoreError("was never begun", item=round_no, field="round")

    def rounds(self) -> list[dict]:
        rows = self._db.execute("SELECT round, status, started_at, finished_at, stats FROM rounds ORDER BY round").fetchall()
        return [dict(round=r, status=s, started_at=a, finished_at=b, stats=json.loads(st or "{}")) for r, s, a, b, st in rows]

    def open_round(self) -> int | None:
        row = self._db.execute("SELECT round FROM rounds WHERE status = 'open' ORDER BY round LIMIT 1").fetchone()
        return None if row is None else row[0]

    def assignment_table(self) -> dict[str, np.ndarray]:
        """Every assignment: item, worker, round, kind, answered (bool), pay_cents, price_cents (-1 when unset)."""
        rows = self._db.execute(
            "SELECT a.item, a.worker, a.round, a.kind, b.item IS NOT NULL, COALESCE(a.pay_cents, -1), "
            "COALESCE(a.price_cents, -1) FROM assignments a LEFT JOIN answers b ON a.item = b.item AND a.worker = b.worker "
            "ORDER BY a.rowid").fetchall()
        if not rows:
            z = np.zeros(0, dtype=np.int64)
            return {"item": z, "worker": z, "round": z, "kind": np.zeros(0, object), "answered": z.astype(bool),
                    "pay_cents": z, "price_cents": z}
        item, worker, rnd, kind, answered, pay, price = zip(*rows)
        return {"item": np.array(item, np.int64), "worker": np.array(worker, np.int64), "round": np.array(rnd, np.int64),
                "kind": np.array(kind, object), "answered": np.array(answered, bool),
                "pay_cents": np.array(pay, np.int64), "price_cents": np.array(price, np.int64)}

    def assignments(self, round_no: int | None = None, *, pending: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(items, workers) of a round's assignments (all rounds if None); ``pending``: those not answered yet."""
        sql = "SELECT a.item, a.worker FROM assignments a"
        if pending:
            sql += " LEFT JOIN answers b ON a.item = b.item AND a.worker = b.worker WHERE b.item IS NULL"
        else:
            sql += " WHERE 1"
        params: tuple = ()
        if round_no is not None:
            sql += " AND a.round = ?"
            params = (int(round_no),)
        rows = np.array(self._db.execute(sql + " ORDER BY a.rowid", params).fetchall(), dtype=np.int64).reshape(-1, 2)
        return rows[:, 0], rows[:, 1]

    def reassign(self, item: int, old_worker: int, new_worker: int) -> bool:
        """Hand an unanswered assignment to another HITer (e.g. after a lease ran out).

        Returns False, changing nothing, when the old assignment is already answered or
        does not exist, or when the new HITer already holds that item.
        """
        with self.transaction() as db:
            answered = db.execute("SELECT 1 FROM answers WHERE item = ? AND worker = ?", (item, old_worker)).fetchone()
            taken = db.execute("SELECT 1 FROM assignments WHERE item = ? AND worker = ?", (item, new_worker)).fetchone()
            if answered or taken:
                return False
            cur = db.execute("UPDATE assignments SET worker = ? WHERE item = ? AND worker = ?", (new_worker, item, old_worker))
            if cur.rowcount == 1:
                db.execute("INSERT INTO events (at, round, kind, payload) VALUES (?, NULL, 'reassigned', ?)",
                           (time.time(), json.dumps({"item": item, "from": old_worker, "to": new_worker})))
            return cur.rowcount == 1

    # -- answers -------------------------------------------------------------------
    def add_answers(self, round_no: int, items: np.ndarray, workers: np.ndarray, labels: np.ndarray,
                    seconds: np.ndarray, pay_cents: np.ndarray | None = None, currency: str = "USD") -> int:
        """Commit a chunk of answers (and their payments); returns how many were new.

        Re-submitting an answer already stored is a no-op; the same (item, HITer)
        with a different label raises :class:`~hitl.errors.ConflictingAnswerError` and
        writes nothing. An answer to an item never assigned to that HITer is refused.
        """
        items = np.asarray(items, dtype=np.int64)
        workers = np.asarray(workers, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        seconds = np.asarray(seconds, dtype=np.float64)
        n = len(items)
        if not (len(workers) == len(labels) == len(seconds) == n):
            raise ValidationError("items, workers, labels and seconds differ in length", field="answers")
        if n == 0:
            return 0
        if not np.isfinite(seconds).all() or (seconds < 0).any():
            bad = int(np.argmax(~np.isfinite(seconds) | (seconds < 0)))
            raise ValidationError(f"is {seconds[bad]}", item=int(items[bad]), field="seconds", expected="a time >= 0")
        now = time.time()
        with self.transaction() as db:
            existing = self._existing_answers(db, items, workers)
            new = np.ones(n, dtype=bool)
            for j, (i, w, l) in enumerate(zip(items.tolist(), workers.tolist(), labels.tolist())):
                old = existing.get((i, w))
                if old is None:
                    continue
                if old != l:
                    raise ConflictingAnswerError(
                        f"was already answered {old} by HITer {w}, now {l}", item=i, field="label",
                        expected="the same label when an answer is re-submitted",
                    )
                new[j] = False
            if not new.any():
                return 0
            rows = zip(items[new].tolist(), workers[new].tolist(), labels[new].tolist(), [int(round_no)] * int(new.sum()),
                       seconds[new].tolist(), [now] * int(new.sum()))
            try:
                db.executemany("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?)", rows)
            except sqlite3.IntegrityError as exc:
                raise ValidationError(f"answers an assignment that does not exist ({exc})", field="answers",
                                      expected="answers only to assigned (item, HITer) pairs") from None
            if pay_cents is not None:
                pay = np.asarray(pay_cents, dtype=np.int64)[new]
                db.executemany(
                    "INSERT INTO payments VALUES (?, ?, ?, ?, ?)",
                    zip(items[new].tolist(), workers[new].tolist(), [int(round_no)] * len(pay), pay.tolist(), [currency] * len(pay)),
                )
            else:
                # The pay agreed when the task was assigned, if any, is what the HITer earns.
                db.executemany(
                    "INSERT INTO payments SELECT item, worker, ?, pay_cents, ? FROM assignments "
                    "WHERE item = ? AND worker = ? AND pay_cents IS NOT NULL",
                    [(int(round_no), currency, i, w) for i, w in zip(items[new].tolist(), workers[new].tolist())],
                )
        return int(new.sum())

    def _existing_answers(self, db: sqlite3.Connection, items: np.ndarray, workers: np.ndarray) -> dict:
        out = {}
        pairs = list(zip(items.tolist(), workers.tolist()))
        for start in range(0, len(pairs), 400):  # stay under SQLite's bound-parameter limit
            part = pairs[start : start + 400]
            values = ",".join("(?, ?)" for _ in part)
            flat = [v for p in part for v in p]
            for i, w, l in db.execute(f"SELECT item, worker, label FROM answers WHERE (item, worker) IN (VALUES {values})", flat):
                out[(i, w)] = l
        return out

    def answers(self, round_no: int | None = None) -> dict[str, np.ndarray]:
        """All answers as arrays: item, worker, label, round, seconds (in commit order)."""
        sql = "SELECT item, worker, label, round, seconds FROM answers"
        params: tuple = ()
        if round_no is not None:
            sql += " WHERE round = ?"
            params = (int(round_no),)
        rows = self._db.execute(sql + " ORDER BY rowid", params).fetchall()
        arr = np.array(rows, dtype=np.float64).reshape(-1, 5)
        return {
            "item": arr[:, 0].astype(np.int64), "worker": arr[:, 1].astype(np.int64), "label": arr[:, 2].astype(np.int64),
            "round": arr[:, 3].astype(np.int64), "seconds": arr[:, 4],
        }

    def n_answers(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def spent_cents(self) -> int:
        """Client price of every assignment made so far (answered or pending), in cents."""
        return int(self._db.execute("SELECT COALESCE(SUM(price_cents), 0) FROM assignments").fetchone()[0])

    def payments_total(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT currency, SUM(amount_cents) FROM payments GROUP BY currency").fetchall())

    # -- labels --------------------------------------------------------------------
    def set_labels(self, round_no: int, items: np.ndarray, labels: np.ndarray, source: str | Sequence[str],
                   confidence: np.ndarray) -> None:
        """Upsert the current label of items (``source``: machine, human or aggregated)."""
        with self.transaction() as db:
            self._write_labels(db, round_no=round_no, items=items, labels=labels, source=source, confidence=confidence)

    @staticmethod
    def _write_labels(db: sqlite3.Connection, *, round_no: int, items: np.ndarray, labels: np.ndarray,
                      source: str | Sequence[str], confidence: np.ndarray) -> None:
        items = np.asarray(items, dtype=np.int64)
        src = [source] * len(items) if isinstance(source, str) else list(source)
        bad = [s for s in set(src) if s not in LABEL_SOURCES]
        if bad:
            raise ValidationError(f"is {bad[0]!r}", field="source", expected=f"one of {LABEL_SOURCES}")
        db.executemany(
            "INSERT INTO labels VALUES (?, ?, ?, ?, ?) ON CONFLICT(item) DO UPDATE SET "
            "label = excluded.label, source = excluded.source, confidence = excluded.confidence, round = excluded.round",
            zip(items.tolist(), np.asarray(labels, dtype=np.int64).tolist(), src,
                np.asarray(confidence, dtype=np.float64).tolist(), [int(round_no)] * len(items)),
        )

    def labels(self) -> dict[str, np.ndarray]:
        rows = self._db.execute("SELECT item, label, source, confidence, round FROM labels ORDER BY item").fetchall()
        if not rows:
            return {"item": np.zeros(0, np.int64), "label": np.zeros(0, np.int64), "source": np.zeros(0, object),
                    "confidence": np.zeros(0), "round": np.zeros(0, np.int64)}
        item, label, source, conf, rnd = zip(*rows)
        return {"item": np.array(item, np.int64), "label": np.array(label, np.int64), "source": np.array(source, object),
                "confidence": np.array(conf, np.float64), "round": np.array(rnd, np.int64)}

    # -- events --------------------------------------------------------------------
    def log(self, kind: str, payload: dict | None = None, round_no: int | None = None) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO events (at, round, kind, payload) VALUES (?, ?, ?, ?)",
                       (time.time(), round_no, kind, json.dumps(payload or {}, default=_json_default)))

    def events(self, kind: str | None = None) -> list[dict]:
        sql, params = "SELECT at, round, kind, payload FROM events", ()
        if kind is not None:
            sql, params = sql + " WHERE kind = ?", (kind,)
        return [dict(at=a, round=r, kind=k, payload=json.loads(p or "{}")) for a, r, k, p in self._db.execute(sql + " ORDER BY id", params)]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
