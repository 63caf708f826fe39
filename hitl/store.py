"""The project's durable state, in one SQLite file (WAL mode).

Everything the engine needs to resume lives here: items, HITers, rounds,
assignments, every human answer, every label with its source and an event log.
Money lives beside it, in the ledger's tables (:mod:`hitl.impact.ledger`): the store
keeps no copy of any amount.

Every write is a transaction committed before the call returns, so a process killed
at any instant loses nothing that was acknowledged. Transactions nest
(:meth:`Store.transaction` inside another joins it as a savepoint), so a change of
state made of several steps (creating a project, closing and settling a round) is
one transaction: a kill leaves it done or not done, never half done.
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

SCHEMA_VERSION = 2
#: Schema versions this code reads: 1 kept money in ``payments`` and in two columns of
#: ``assignments``, which are no longer written or read (the ledger is the one record).
READABLE_SCHEMAS = ("1", "2")
#: Time limit of one task (its lease) when the project never set one: answers are
#: recorded with at most this much time on task, whatever the source reports.
DEFAULT_TASK_SECONDS = 600.0

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
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, round INTEGER, kind TEXT NOT NULL, payload TEXT
);
CREATE INDEX IF NOT EXISTS answers_round ON answers(round);
CREATE INDEX IF NOT EXISTS assignments_round ON assignments(round);
"""

LABEL_SOURCES = ("machine", "human", "aggregated")
# Tables a hitl store may hold (its own, the task queue's, the ledger's, schema 1's payments):
# a file with any other table belongs to another application and is never written to.
_OWN_PREFIXES = ("hq_", "ledger_", "sqlite_")
_OWN_TABLES = {"meta", "items", "workers", "rounds", "assignments", "priors", "answers", "labels", "events",
               "payments"}


class Store:
    """SQLite-backed state of one labeling project.

    Parameters
    ----------
    path : str or Path, default ":memory:"
        The database file. Reopening the same file resumes the project.
    create : bool, default True
        Make a new store when the file is missing or empty. ``False`` opens an existing
        project store only (for commands that read one): a missing file, an empty one or
        another application's database is refused with :class:`~hitl.errors.StoreError`
        and nothing is written to it.

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

    def __init__(self, path: str | Path = ":memory:", *, create: bool = True) -> None:
        self.path = str(path)
        self._depth = 0
        self._classes: list[str] | None = None
        if not create and (self.path == ":memory:" or not Path(self.path).is_file()):
            raise StoreError("does not exist", item=self.path, field="store", expected="a project store file")
        try:
            # mode=rw never creates a file: a reader must not leave an empty database behind.
            target = Path(self.path).resolve().as_uri() + "?mode=rw" if not create else self.path
            self._db = sqlite3.connect(target, isolation_level=None, timeout=30.0, uri=not create)
            self._check_ownership(create)
            self._db.execute("PRAGMA foreign_keys = ON")
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed answer survives a power cut, not only a crash.
            self._db.execute("PRAGMA synchronous = FULL")
            self.ensure_schema(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot be opened as a project store ({exc})", field="store", item=self.path) from None

    def _check_ownership(self, create: bool) -> None:
        """Refuse another application's database, and (readers) a file that holds no project."""
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        foreign = sorted(t for t in tables if t not in _OWN_TABLES and not t.startswith(_OWN_PREFIXES))
        if foreign:
            self._db.close()
            raise StoreError(f"is another application's database (it has table {foreign[0]!r})", item=self.path,
                             field="store", expected="a hitl project store, or a new file")
        schema = None
        if "meta" in tables:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            schema = None if row is None else row[0]
        if schema is not None and schema not in READABLE_SCHEMAS:
            self._db.close()
            raise StoreError(f"has schema version {schema}", item=self.path, field="schema",
                             expected=f"one of {READABLE_SCHEMAS} (a newer hitl made it?)")
        if not create and schema is None:
            self._db.close()
            raise StoreError("holds no labeling project", item=self.path, field="store",
                             expected="a store made by a LabelingProject")

    def ensure_schema(self, script: str) -> None:
        """Create the tables of ``script`` (``CREATE ... IF NOT EXISTS`` statements) inside the current transaction.

        Unlike ``executescript``, this never commits a transaction in progress, so a
        component adding its tables can do so as part of a larger change of state.
        """
        with self.transaction() as db:
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)

    # -- transactions ---------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``); rolled back on error.

        Inside another transaction of this store it is a savepoint of the outer one: its
        writes commit with the outer transaction, and an error undoes its own writes only.
        """
        if self._depth:
            name = f"hitl_sp{self._depth}"
            self._db.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self._db
            except BaseException:
                self._db.execute(f"ROLLBACK TO {name}")
                self._db.execute(f"RELEASE {name}")
                raise
            else:
                self._db.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A consistent view for several reads: nothing committed meanwhile by others is seen by some and not others."""
        if self._depth:
            yield self._db
            return
        self._db.execute("BEGIN")
        self._depth = 1
        try:
            yield self._db
        finally:
            self._depth = 0
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- project identity -----------------------------------------------------------
    def _meta(self) -> dict[str, str]:
        # Read afresh: another process (the web app) may change a setting such as the lease.
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def ensure_project(self, *, fingerprint: str, classes: Sequence[Any], config: dict, features: str | None = None,
                       force: bool = False) -> bool:
        """Record the project's identity and settings, or check them against the file's. Returns True if new.

        The identity (item ids' ``fingerprint`` and the ``classes``) must always match: it
        fixes what every stored position means. The settings (``features``, a hash of the
        pool's features, and ``config``, the settings that change results) must match too,
        unless ``force`` is true: then the new ones are recorded and a ``settings_changed``
        event keeps the old ones. A setting the file never recorded (a store made by an
        older version) is recorded as it is now.
        """
        wanted = {"fingerprint": fingerprint, "classes": json.dumps([str(c) for c in classes])}
        settings = {"config": json.dumps(config, sort_keys=True, default=str)}
        if features is not None:
            settings["features"] = features
        with self.transaction() as db:
            meta = self._meta()
            if "schema" not in meta:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                               [("schema", str(SCHEMA_VERSION)), *wanted.items(), *settings.items()])
                return True
            for key, value in wanted.items():
                if meta.get(key) != value:
                    raise StoreError(
                        f"belongs to another project ({key} is {meta.get(key)!r}, this project has {value!r})",
                        item=self.path, field=key, expected="the same pool and classes as when the file was created",
                    )
            self._check_settings(db, meta, settings, force)
            if meta["schema"] != str(SCHEMA_VERSION):
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
        return False

    def _check_settings(self, db: sqlite3.Connection, meta: dict, settings: dict, force: bool) -> None:
        changed = {}
        for key, value in settings.items():
            old = meta.get(key)
            if key == "config" and old is not None:
                # Keys the file never recorded are adopted; keys it recorded must agree.
                old_cfg, new_cfg = json.loads(old), json.loads(value)
                diff = sorted(k for k in old_cfg.keys() & new_cfg.keys() if old_cfg[k] != new_cfg[k])
                if diff:
                    changed[key] = {k: (old_cfg[k], new_cfg[k]) for k in diff}
                value = json.dumps({**old_cfg, **new_cfg}, sort_keys=True)
            elif old is not None and old != value:
                changed[key] = (old, value)
            if changed.get(key) and not force:
                what = (", ".join(f"{k} was {a!r}, is now {b!r}" for k, (a, b) in changed[key].items())
                        if key == "config" else "the pool's features differ from those the project was made with")
                raise StoreError(f"belongs to a project with other settings ({what})", item=self.path, field=key,
                                 expected="the same settings as when the file was created, or force=True to go on "
                                          "deliberately with the new ones")
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        if changed:
            db.execute("INSERT INTO events (at, round, kind, payload) VALUES (?, NULL, 'settings_changed', ?)",
                       (time.time(), json.dumps(changed, default=str)))

    def config(self) -> dict:
        value = self._meta().get("config")
        return json.loads(value) if value else {}

    def classes(self) -> list[str] | None:
        """The label names recorded for the project (None before it is created)."""
        if self._classes is None:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'classes'").fetchone()
            # Fixed once recorded: kept, since every answer is checked against it.
            self._classes = None if row is None else json.loads(row[0])
        return self._classes

    def task_seconds(self) -> float:
        """Time limit of one task: the most time on task an answer is recorded with."""
        value = self._meta().get("task_seconds")
        return DEFAULT_TASK_SECONDS if value is None else float(value)

    def set_task_seconds(self, seconds: float) -> None:
        """Set the time limit of one task (the engine's task time limit, or the web app's lease)."""
        seconds = float(seconds)
        if not (np.isfinite(seconds) and seconds > 0):
            raise ValidationError(f"is {seconds!r}", field="task_seconds", expected="a positive number of seconds")
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('task_seconds', ?)", (repr(seconds),))

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
        with self.transaction() as db:
            existing = dict(db.execute("SELECT id, idx FROM workers").fetchall())
            nxt = max(existing.values(), default=-1) + 1
            rows = []
            for h in hiters:
                if h.id in existing:
                    continue
                rows.append((nxt, h.id, h.country, ",".join(sorted(h.skills)), float(h.hourly_min_wage), h.currency,
                             h.start_date.isoformat()))
                existing[h.id] = nxt
                nxt += 1
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
                    stats: dict | None = None, priors: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Open a round and record its assignments (and the model's priors) in one transaction."""
        with self.transaction() as db:
            db.execute("INSERT INTO rounds (round, status, started_at, stats) VALUES (?, 'open', ?, ?)",
                       (int(round_no), time.time(), json.dumps(stats or {}, default=_json_default)))
            self._insert_assignments(db, round_no, items, workers, kind)
            if priors is not None:
                self._write_priors(db, round_no, *priors)

    def add_assignments(self, round_no: int, items: np.ndarray, workers: np.ndarray,
                        kind: str | Sequence[str] = "label") -> None:
        """Add assignments to an open round (one more HITer for items still uncertain).

        Counts the round's waves of added assignments (``stats["waves"]``) in the same
        transaction: the engine draws each wave's random numbers from that count, so a
        resumed round draws exactly what the uninterrupted one would have.
        """
        with self.transaction() as db:
            row = db.execute("SELECT status, stats FROM rounds WHERE round = ?", (int(round_no),)).fetchone()
            if row is None or row[0] != "open":
                raise StoreError("is not open", item=round_no, field="round")
            self._insert_assignments(db, round_no, items, workers, kind)
            stats = json.loads(row[1] or "{}")
            stats["waves"] = int(stats.get("waves", 0)) + 1
            db.execute("UPDATE rounds SET stats = ? WHERE round = ?", (json.dumps(stats), int(round_no)))

    def round_stats(self, round_no: int) -> dict:
        """The statistics recorded for a round (``{}`` for a round never begun)."""
        row = self._db.execute("SELECT stats FROM rounds WHERE round = ?", (int(round_no),)).fetchone()
        return {} if row is None else json.loads(row[0] or "{}")

    @staticmethod
    def _insert_assignments(db, round_no, items, workers, kind) -> None:
        items = np.asarray(items, dtype=np.int64)
        workers = np.asarray(workers, dtype=np.int64)
        n = len(items)
        kinds = [kind] * n if isinstance(kind, str) else list(kind)
        now = time.time()
        try:
            db.executemany("INSERT INTO assignments (item, worker, round, kind, created_at) VALUES (?, ?, ?, ?, ?)",
                           zip(items.tolist(), workers.tolist(), [int(round_no)] * n, kinds, [now] * n))
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
        """Every assignment: item, worker, round, kind, answered (bool)."""
        rows = self._db.execute(
            "SELECT a.item, a.worker, a.round, a.kind, b.item IS NOT NULL FROM assignments a "
            "LEFT JOIN answers b ON a.item = b.item AND a.worker = b.worker ORDER BY a.rowid").fetchall()
        if not rows:
            z = np.zeros(0, dtype=np.int64)
            return {"item": z, "worker": z, "round": z, "kind": np.zeros(0, object), "answered": z.astype(bool)}
        item, worker, rnd, kind, answered = zip(*rows)
        return {"item": np.array(item, np.int64), "worker": np.array(worker, np.int64), "round": np.array(rnd, np.int64),
                "kind": np.array(kind, object), "answered": np.array(answered, bool)}

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

    def assignment_round(self, item: int, worker: int) -> int | None:
        """The round of the (item, HITer) assignment, or None when there is none."""
        row = self._db.execute("SELECT round FROM assignments WHERE item = ? AND worker = ?",
                               (int(item), int(worker))).fetchone()
        return None if row is None else int(row[0])

    def reassign(self, item: int, old_worker: int, new_worker: int) -> bool:
        """Hand an unanswered assignment to another HITer (e.g. after a lease ran out).

        Returns False, changing nothing, when the old assignment is already answered or
        does not exist, or when the new HITer already holds that item. The task's pay is
        not the store's business: whoever moves a task re-prices it in the ledger within
        the same transaction (see :meth:`hitl.queue.TaskQueue.move_task`).
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
                    seconds: np.ndarray) -> int:
        """Commit a chunk of answers; returns how many were new.

        The whole chunk is checked before anything is written, and refused as a whole
        (nothing written) on the first bad answer: a label that is not a class index of
        the project, a time on task that is negative or not finite, an answer to an item
        never assigned to that HITer. One vote per (item, HITer): an answer repeated with
        the same label, in the chunk or already stored, is stored once (re-submitting is a
        no-op); with a different label it raises
        :class:`~hitl.errors.ConflictingAnswerError`. Time on task above the task's time
        limit (:meth:`task_seconds`) is recorded as the limit, and a ``time_capped`` event
        says which answers were capped: time beyond one lease is not time worked.
        """
        items, workers, labels, seconds = self._check_answers(items, workers, labels, seconds)
        if len(items) == 0:
            return 0
        now = time.time()
        with self.transaction() as db:
            limit = self.task_seconds()
            capped = seconds > limit
            if capped.any():
                db.execute("INSERT INTO events (at, round, kind, payload) VALUES (?, ?, 'time_capped', ?)",
                           (now, int(round_no), json.dumps({
                               "limit": limit, "answers": int(capped.sum()), "longest": float(seconds[capped].max()),
                               "pairs": np.stack([items[capped], workers[capped]], 1)[:20].tolist()})))
                seconds = np.minimum(seconds, limit)
            new = self._new_answers(db, items, workers, labels)
            if not new.any():
                return 0
            rows = zip(items[new].tolist(), workers[new].tolist(), labels[new].tolist(), [int(round_no)] * int(new.sum()),
                       seconds[new].tolist(), [now] * int(new.sum()))
            try:
                db.executemany("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?)", rows)
            except sqlite3.IntegrityError as exc:
                raise ValidationError(f"answers an assignment that does not exist ({exc})", field="answers",
                                      expected="answers only to assigned (item, HITer) pairs") from None
        return int(new.sum())

    def _check_answers(self, items: Any, workers: Any, labels: Any, seconds: Any) -> tuple[np.ndarray, ...]:
        """The four columns of a chunk as arrays, or a :class:`ValidationError` naming the first bad answer."""
        items = whole_numbers(items, "item")
        workers = whole_numbers(workers, "worker")
        labels_in = labels
        labels = whole_numbers(labels, "label")
        seconds = _numbers(seconds, "seconds")
        n = len(items)
        if not (len(workers) == len(labels) == len(seconds) == n):
            raise ValidationError("items, workers, labels and seconds differ in length", field="answers")
        for arr, name in ((items, "item"), (workers, "worker")):
            if (arr < 0).any():
                j = int(np.argmax(arr < 0))
                raise ValidationError(f"is {arr[j]}", item=int(items[j]), field=name, expected="a store position >= 0")
        classes = self.classes()
        k = len(classes) if classes else None
        bad = (labels < 0) | (labels >= k if k else False)
        if bad.any():
            j = int(np.argmax(bad))
            raise ValidationError(f"is {np.asarray(labels_in).reshape(-1)[j]!r} from HITer {self._hiter_name(workers[j])}",
                                  item=self._item_name(items[j]), field="label",
                                  expected=f"a class index in [0, {k})" if k else "a class index >= 0")
        bad = ~np.isfinite(seconds) | (seconds < 0)
        if bad.any():
            j = int(np.argmax(bad))
            raise ValidationError(f"is {seconds[j]} from HITer {self._hiter_name(workers[j])}",
                                  item=self._item_name(items[j]), field="seconds", expected="a time >= 0")
        return items, workers, labels, seconds

    def _hiter_name(self, worker: int) -> str:
        row = self._db.execute("SELECT id FROM workers WHERE idx = ?", (int(worker),)).fetchone()
        return repr(row[0]) if row else f"#{int(worker)}"

    def _item_name(self, item: int) -> Any:
        row = self._db.execute("SELECT id FROM items WHERE idx = ?", (int(item),)).fetchone()
        return row[0] if row else int(item)

    def _new_answers(self, db: sqlite3.Connection, items: np.ndarray, workers: np.ndarray,
                     labels: np.ndarray) -> np.ndarray:
        """Which answers of a chunk are new: one per (item, HITer), conflicts refused."""
        order = np.lexsort((workers, items))
        si, sw, sl = items[order], workers[order], labels[order]
        repeat = np.r_[False, (si[1:] == si[:-1]) & (sw[1:] == sw[:-1])]
        clash = repeat & np.r_[False, sl[1:] != sl[:-1]]
        if clash.any():
            j = int(np.argmax(clash))
            raise ConflictingAnswerError(
                f"is given twice by HITer {self._hiter_name(sw[j])} in one chunk, as {sl[j - 1]} and {sl[j]}",
                item=self._item_name(si[j]), field="label", expected="one label per HITer and item")
        new = np.ones(len(items), dtype=bool)
        new[order[repeat]] = False
        existing = self._existing_answers(db, items[new], workers[new])
        if existing:
            for j in np.flatnonzero(new).tolist():
                old = existing.get((int(items[j]), int(workers[j])))
                if old is None:
                    continue
                if old != labels[j]:
                    raise ConflictingAnswerError(
                        f"was already answered {old} by HITer {self._hiter_name(workers[j])}, now {labels[j]}",
                        item=self._item_name(items[j]), field="label",
                        expected="the same label when an answer is re-submitted")
                new[j] = False
        return new

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

    def answers_since(self, rowid: int, rounds: Sequence[int]) -> list[tuple]:
        """Answers of ``rounds`` committed after ``rowid``: (rowid, item, worker, label, seconds), in commit order."""
        marks = ",".join("?" * len(rounds))
        return self._db.execute(
            f"SELECT rowid, item, worker, label, seconds FROM answers WHERE rowid > ? AND round IN ({marks}) ORDER BY rowid",
            (int(rowid), *rounds)).fetchall()

    def pending_items(self, rounds: Sequence[int]) -> np.ndarray:
        """Items of the unanswered assignments of ``rounds`` (one entry per assignment)."""
        marks = ",".join("?" * len(rounds))
        rows = self._db.execute(
            "SELECT a.item FROM assignments a LEFT JOIN answers b ON b.item = a.item AND b.worker = a.worker "
            f"WHERE b.item IS NULL AND a.round IN ({marks})", list(rounds)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def rounds_of(self, items: np.ndarray, workers: np.ndarray) -> list[int]:
        """Rounds of the given (item, worker) assignments, sorted."""
        pairs = list(zip(np.asarray(items).tolist(), np.asarray(workers).tolist()))
        out: set[int] = set()
        for start in range(0, len(pairs), 400):  # SQLite's bound-parameter limit
            part = pairs[start:start + 400]
            sql = "SELECT DISTINCT round FROM assignments WHERE (item, worker) IN (VALUES %s)" % ",".join("(?, ?)" for _ in part)
            out.update(r[0] for r in self._db.execute(sql, [v for p in part for v in p]))
        return sorted(out)

    def n_answers(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

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


def whole_numbers(values: Any, field: str) -> np.ndarray:
    """A 1-d int64 array of ``values``, refusing anything that is not a whole number (no silent truncation).

    Integers pass; floats pass only when they hold a whole number (``2.0``, not ``2.5``).

    Examples
    --------
    >>> whole_numbers([1, 2.0], "label").tolist()
    [1, 2]
    """
    arr = np.asarray(values).reshape(-1)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" or (arr.dtype.kind == "O" and all(isinstance(v, (int, float, np.number))
                                                               and not isinstance(v, bool) for v in arr.tolist())):
        f = arr.astype(np.float64)
        bad = ~np.isfinite(f) | (f != np.round(f)) | (np.abs(f) > 2**53)
        if not bad.any():
            return f.astype(np.int64)
        j = int(np.argmax(bad))
        raise ValidationError(f"is {arr[j]!r}", item=j, field=field, expected="a whole number")
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    raise ValidationError(f"holds {arr.dtype} values such as {arr[0]!r}", field=field, expected="whole numbers")


def _numbers(values: Any, field: str) -> np.ndarray:
    """A 1-d float64 array of ``values``, refusing text, booleans and anything else that is not a number."""
    arr = np.asarray(values).reshape(-1)
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64)
    if len(arr) == 0 or (arr.dtype.kind == "O" and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                                                         for v in arr.tolist())):
        try:
            return arr.astype(np.float64)
        except OverflowError:
            raise ValidationError("holds a number too large for a float", field=field, expected="numbers") from None
    raise ValidationError(f"holds {arr.dtype} values such as {arr[0]!r}", field=field, expected="numbers")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
