"""A lease-based task queue for real HITers, kept in the project's SQLite store.

The engine records *assignments* (item, HITer) in the store; this queue adds what
people need to work on them, in its own tables of the same file:

* ``hq_items``: what a HITer sees for an item (PNG/JPEG bytes or text) and the
  model's suggestion, written when a round is posted, so a web server started on the
  file alone can show the task;
* ``hq_leases``: who is working on what, until when. A HITer takes the next task
  allowed to them for ``lease_seconds``; a lease that runs out puts the task back:
  the same HITer may take it again, or another HITer allowed by residency who holds
  nothing on that item (the assignment is moved with :meth:`Store.reassign`);
* ``hq_tokens``: per-HITer sign-in tokens, stored as salted SHA-256 digests only;
* ``hq_meta``: the queue's settings (lease length, sharing, suggestions shown).

A submission goes through :meth:`Store.add_answers`, which commits before it
returns, so an answer acknowledged to a HITer is durable. Time on task is measured
by the queue (from the lease to the submission, at most one lease long), never
taken from the client.

Several processes may share the file (the project and ``hitl serve``): every write
is its own ``BEGIN IMMEDIATE`` transaction with a busy timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ConflictingAnswerError, HitlError, StoreError, ValidationError
from .store import Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hq_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hq_items (
    item INTEGER PRIMARY KEY REFERENCES items(idx),
    kind TEXT NOT NULL CHECK (kind IN ('image', 'text')),
    mime TEXT NOT NULL, body BLOB NOT NULL,
    suggestion INTEGER, score REAL, posted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_leases (
    item INTEGER NOT NULL, worker INTEGER NOT NULL,
    leased_at REAL NOT NULL, expires_at REAL NOT NULL, taken_from INTEGER,
    PRIMARY KEY (item, worker)
);
CREATE TABLE IF NOT EXISTS hq_tokens (
    id TEXT PRIMARY KEY, worker INTEGER REFERENCES workers(idx),
    role TEXT NOT NULL CHECK (role IN ('hiter', 'admin')),
    salt BLOB NOT NULL, digest BLOB NOT NULL, created_at REAL NOT NULL, revoked_at REAL
);
CREATE TABLE IF NOT EXISTS hq_seen (worker INTEGER PRIMARY KEY, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS hq_leases_expiry ON hq_leases(expires_at);
"""

DEFAULTS = {"lease_seconds": 300.0, "share_after": None, "show_suggestions": True}
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
ONLINE_SECONDS = 300.0
_TOKEN_PREFIX = "hitl"


# -- errors a HITer can cause (each maps to one HTTP status) ----------------------------
class TaskError(HitlError):
    """A HITer asked for something the queue refuses; ``status`` is the HTTP status."""

    status = 400


class NotYourTask(TaskError):
    """The task is not assigned to this HITer (or does not exist): 403."""

    status = 403


class LeaseLost(TaskError):
    """The HITer's lease ran out and the task went to someone else: 410."""

    status = 410


class AlreadyAnswered(TaskError):
    """The task was already answered (a replayed submission): 409, nothing written."""

    status = 409


class NotTaken(TaskError):
    """An answer to a task the HITer never took (no lease, so no time on task): 409."""

    status = 409


@dataclass(frozen=True)
class Identity:
    """Who a valid token belongs to. ``worker`` is the store position (None for the admin)."""

    role: str
    worker: int | None
    hiter_id: str | None
    country: str | None


@dataclass
class Task:
    """One leased or viewable task, as the web app shows it."""

    item: int
    item_id: str
    worker: int
    round: int
    kind: str
    mime: str
    text: str | None
    suggestion: int | None
    score: float | None
    leased_at: float | None
    expires_at: float | None
    taken_from: int | None = None
    extra: dict = field(default_factory=dict)


class TaskQueue:
    """The queue of human tasks of one project store.

    Parameters
    ----------
    store : Store, str or Path
        A :class:`~hitl.store.Store` used from one thread (the engine's), or the path
        of the project file: each thread then opens its own connection (the web app).

    Examples
    --------
    >>> import numpy as np
    >>> from hitl.store import Store
    >>> from hitl.workforce import HITer
    >>> store = Store(":memory:")
    >>> store.ensure_project(fingerprint="f", classes=["cat", "dog"], config={})
    True
    >>> store.add_items(["a", "b"], ["default"] * 2, [None, None])
    >>> store.add_workers([HITer("ann", "FR")])
    >>> store.begin_round(0, items=np.array([0, 1]), workers=np.array([0, 0]))
    >>> q = TaskQueue(store)
    >>> q.post(np.array([0, 1]), [("text", "text/plain", b"a cat"), ("text", "text/plain", b"a dog")])
    2
    >>> task = q.next_task(0)
    >>> task.text, q.submit(0, task.item, 0)["label"]
    ('a cat', 0)
    """

    def __init__(self, store: Store | str | Path) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        if isinstance(store, Store):
            self._shared = store
            self.path = store.path
        else:
            self._shared = None
            self.path = str(store)
        self._ensure_schema(self.store)

    # -- connections -----------------------------------------------------------------------
    @property
    def store(self) -> Store:
        """The calling thread's :class:`Store` (the shared one when built from a Store)."""
        if self._shared is not None:
            return self._shared
        st = getattr(self._local, "store", None)
        if st is None:
            # An existing project store only: a wrong path must not leave a new file behind.
            st = Store(self.path, create=False)
            self._local.store = st
        return st

    def _ledger(self) -> Any:
        """The ledger of the calling thread's store (prices a task handed to another HITer)."""
        from .impact.ledger import Ledger

        # One per connection, as the store: the shared store's, or this thread's own.
        holder = self if self._shared is not None else self._local
        if getattr(holder, "ledger", None) is None:
            holder.ledger = Ledger(self.store)
        return holder.ledger

    @staticmethod
    def _ensure_schema(store: Store) -> None:
        store.ensure_schema(_SCHEMA)

    def close(self) -> None:
        st = getattr(self._local, "store", None)
        if st is not None and self._shared is None:
            st.close()
            self._local.store = None

    # -- settings --------------------------------------------------------------------------
    def configure(self, **settings: Any) -> None:
        """Write queue settings: ``lease_seconds``, ``share_after`` (None: only expired leases
        are re-offered), ``show_suggestions``."""
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise ValidationError(f"names {sorted(unknown)}", field="settings", expected=f"keys among {sorted(DEFAULTS)}")
        lease = settings.get("lease_seconds")
        if lease is not None and not (float(lease) > 0 and np.isfinite(float(lease))):
            raise ValidationError(f"is {lease!r}", field="lease_seconds", expected="a positive number of seconds")
        share = settings.get("share_after")
        if share is not None and not (float(share) >= 0):
            raise ValidationError(f"is {share!r}", field="share_after", expected="seconds >= 0 or None")
        with self.store.transaction() as db:
            db.executemany("INSERT INTO hq_meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           [(k, json.dumps(v)) for k, v in settings.items()])
            if lease is not None:
                # The lease is the task's time limit: no path may record more time on task.
                self.store.set_task_seconds(float(lease))

    def settings(self) -> dict:
        rows = dict(self.store._db.execute("SELECT key, value FROM hq_meta").fetchall())
        return {k: json.loads(rows[k]) if k in rows else v for k, v in DEFAULTS.items()}

    def classes(self) -> list[str]:
        """The project's label names (from the store), in class-index order."""
        classes = self.store.classes()
        if classes is None:
            raise StoreError("has no project yet", item=self.path, field="classes")
        return classes

    # -- posting (the project's side) -----------------------------------------------------
    def post(self, items: np.ndarray, contents: Sequence[tuple[str, str, bytes]],
             suggestion: np.ndarray | None = None, score: np.ndarray | None = None) -> int:
        """Make items showable: ``contents[j] = (kind, mime, body)`` for ``items[j]``.

        ``kind`` is ``"image"`` (``body``: PNG/JPEG/GIF/WebP bytes) or ``"text"`` (UTF-8).
        Posting an item already posted changes nothing. Returns how many were new.
        """
        items = np.asarray(items, dtype=np.int64)
        if len(contents) != len(items):
            raise ValidationError(f"has {len(contents)} entries for {len(items)} items", field="contents")
        if suggestion is None:
            suggestion, score = self.model_suggestions(items)
        sugg = [None] * len(items) if suggestion is None else [None if s is None or s < 0 else int(s) for s in np.asarray(suggestion).tolist()]
        sc = [None] * len(items) if score is None else [None if not np.isfinite(s) else float(s) for s in np.asarray(score, dtype=float).tolist()]
        rows = []
        now = time.time()
        for j, (i, (kind, mime, body)) in enumerate(zip(items.tolist(), contents)):
            if kind == "image" and mime not in IMAGE_TYPES:
                raise ValidationError(f"is {mime!r}", item=i, field="mime", expected=f"one of {IMAGE_TYPES}")
            if kind == "text" and mime != "text/plain":
                raise ValidationError(f"is {mime!r}", item=i, field="mime", expected="text/plain for text")
            if kind not in ("image", "text"):
                raise ValidationError(f"is {kind!r}", item=i, field="kind", expected="'image' or 'text'")
            if not isinstance(body, (bytes, bytearray)):
                raise ValidationError(f"is {type(body).__name__}", item=i, field="body", expected="bytes")
            rows.append((i, kind, mime, bytes(body), sugg[j], sc[j], now))
        with self.store.transaction() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO hq_items VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            return db.total_changes - before

    def model_suggestions(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's most probable class and its probability per item, from the store's priors.

        -1 and NaN where the store holds no prior or the prior is uniform (no model yet).
        """
        items = np.asarray(items, dtype=np.int64)
        label = np.full(len(items), -1, dtype=np.int64)
        score = np.full(len(items), np.nan)
        db = self.store._db
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'priors'").fetchone() is None:
            return label, score
        k = len(self.classes())
        pos = {i: j for j, i in enumerate(items.tolist())}
        wanted = list(pos)
        rows = []
        for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            part = wanted[start:start + 500]
            rows += db.execute("SELECT item, proba FROM priors WHERE item IN (%s)" % ",".join("?" * len(part)), part).fetchall()
        if rows:
            proba = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), k)
            at = np.array([pos[r[0]] for r in rows], dtype=np.int64)
            informative = proba.max(1) > 1.0 / k + 1e-6
            label[at[informative]] = proba.argmax(1)[informative]
            score[at[informative]] = proba.max(1)[informative]
        return label, score

    def posted(self, items: np.ndarray) -> np.ndarray:
        """Which of ``items`` are posted (bool array)."""
        items = np.asarray(items, dtype=np.int64)
        have = {r[0] for r in self.store._db.execute("SELECT item FROM hq_items")}
        return np.fromiter((i in have for i in items.tolist()), dtype=bool, count=len(items))

    # -- tokens ----------------------------------------------------------------------------
    def issue_token(self, hiter_id: str | None = None, *, admin: bool = False) -> str:
        """Create a sign-in token for a registered HITer (or the project's admin).

        The token is returned once; only a salted SHA-256 digest of its secret is stored.
        """
        token, row = self.mint_token(hiter_id, admin=admin)
        self.commit_tokens([row])
        return token

    def mint_token(self, hiter_id: str | None = None, *, admin: bool = False) -> tuple[str, tuple]:
        """Make a token in memory, storing nothing; :meth:`commit_tokens` makes it valid.

        Parameters
        ----------
        hiter_id : str, optional
            A registered HITer (exactly one of ``hiter_id`` and ``admin=True``).
        admin : bool, default False
            A token for the project's admin.

        Returns
        -------
        (token, row) : the token to hand out, and the ``hq_tokens`` row (its digest only)
        """
        if admin == (hiter_id is not None):
            raise ValidationError("needs exactly one of hiter_id or admin=True", field="hiter_id")
        worker = None
        if hiter_id is not None:
            worker = int(self.store.worker_positions([hiter_id])[0])
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(24)
        salt = secrets.token_bytes(16)
        row = (token_id, worker, "admin" if admin else "hiter", salt, _digest(salt, secret), time.time())
        return f"{_TOKEN_PREFIX}_{token_id}_{secret}", row

    def commit_tokens(self, rows: Sequence[tuple]) -> int:
        """Store rows made by :meth:`mint_token`, all in one transaction; returns how many.

        Parameters
        ----------
        rows : sequence of tuple
            The second element of each :meth:`mint_token` result.
        """
        with self.store.transaction() as db:
            db.executemany("INSERT INTO hq_tokens VALUES (?, ?, ?, ?, ?, ?, NULL)", [tuple(r) for r in rows])
        return len(rows)

    def revoke_tokens(self, hiter_id: str) -> int:
        """Revoke every token of a HITer; returns how many."""
        worker = int(self.store.worker_positions([hiter_id])[0])
        with self.store.transaction() as db:
            return db.execute("UPDATE hq_tokens SET revoked_at = ? WHERE worker = ? AND revoked_at IS NULL",
                              (time.time(), worker)).rowcount

    def verify_token(self, token: str | None) -> Identity | None:
        """The identity behind a token, or None (wrong, malformed or revoked)."""
        parts = token.split("_", 2) if isinstance(token, str) and len(token) < 256 else []
        token_id = parts[1] if len(parts) == 3 and parts[0] == _TOKEN_PREFIX else ""
        secret = parts[2] if len(parts) == 3 else ""
        row = self.store._db.execute(
            "SELECT t.salt, t.digest, t.role, t.worker, w.id, w.country FROM hq_tokens t "
            "LEFT JOIN workers w ON w.idx = t.worker WHERE t.id = ? AND t.revoked_at IS NULL", (token_id,)
        ).fetchone()
        # Hash even when the id is unknown, so a wrong id and a wrong secret take as long.
        salt, digest = (row[0], row[1]) if row else (b"\0" * 16, b"\0" * 32)
        ok = hmac.compare_digest(_digest(salt, secret), digest)
        if not (row and ok):
            return None
        return Identity(role=row[2], worker=row[3], hiter_id=row[4], country=row[5])

    def touch(self, worker: int, now: float | None = None) -> None:
        """Record that a HITer was seen (for 'HITers online')."""
        with self.store.transaction() as db:
            db.execute("INSERT INTO hq_seen VALUES (?, ?) ON CONFLICT(worker) DO UPDATE SET at = excluded.at",
                       (int(worker), time.time() if now is None else now))

    # -- the HITer's side --------------------------------------------------------------------
    def next_task(self, worker: int, now: float | None = None) -> Task | None:
        """Lease the next task allowed to ``worker`` (store position), or None.

        In order: the HITer's own task under a running lease (shown again, not
        extended); the HITer's oldest open task (a fresh lease); a task whose lease ran
        out in someone else's hands; when ``share_after`` is set, another HITer's task
        nobody took for that long. The last two are moved to ``worker`` only if the
        item may go to their country and they hold nothing on it yet.
        """
        worker = int(worker)
        with self._lock:
            now = time.time() if now is None else float(now)
            cfg = self.settings()
            lease = float(cfg["lease_seconds"])
            db = self.store._db
            own = db.execute(
                "SELECT a.item, l.expires_at FROM assignments a "
                "JOIN hq_items q ON q.item = a.item "
                "JOIN rounds r ON r.round = a.round AND r.status = 'open' "
                "LEFT JOIN answers b ON b.item = a.item AND b.worker = a.worker "
                "LEFT JOIN hq_leases l ON l.item = a.item AND l.worker = a.worker "
                "WHERE a.worker = ? AND b.item IS NULL "
                "ORDER BY (l.expires_at IS NOT NULL AND l.expires_at > ?) DESC, a.round, a.rowid LIMIT 1",
                (worker, now),
            ).fetchone()
            if own is not None:
                item, expires = own
                if expires is None or expires <= now:
                    with self.store.transaction() as tx:
                        tx.execute(
                            "INSERT INTO hq_leases VALUES (?, ?, ?, ?, NULL) ON CONFLICT(item, worker) DO UPDATE SET "
                            "leased_at = excluded.leased_at, expires_at = excluded.expires_at", (item, worker, now, now + lease))
                        _seen(tx, worker, now)
                return self._task(item, worker)
            country = db.execute("SELECT country FROM workers WHERE idx = ?", (worker,)).fetchone()
            if country is None:
                raise NotYourTask("is not a registered HITer", item=worker, field="worker")
            for old_worker, item in self._others(worker, country[0], now, cfg):
                with self.store.transaction() as tx:
                    if self.move_task(item, old_worker, worker) is None:
                        continue  # answered or moved meanwhile
                    tx.execute("DELETE FROM hq_leases WHERE item = ? AND worker = ?", (item, old_worker))
                    tx.execute("INSERT OR REPLACE INTO hq_leases VALUES (?, ?, ?, ?, ?)", (item, worker, now, now + lease, old_worker))
                    _seen(tx, worker, now)
                return self._task(item, worker)
            return None

    def move_task(self, item: int, old_worker: int, new_worker: int) -> int | None:
        """Hand an unanswered task to another HITer and price it for them, in one transaction.

        The new HITer is paid at their own wage for the task's round (the ledger writes
        their task line); the first HITer's quote stops counting, since the assignment is
        no longer theirs. Returns the task's round, or None when nothing moved (answered
        meanwhile, gone, or the new HITer already holds the item).
        """
        with self.store.transaction():
            if not self.store.reassign(int(item), int(old_worker), int(new_worker)):
                return None
            round_no = self.store.assignment_round(int(item), int(new_worker))
            self._ledger().quote(round_no, [int(item)], [int(new_worker)])
            return round_no

    def _others(self, worker: int, country: str, now: float, cfg: dict) -> list[tuple[int, int]]:
        """(old worker, item) candidates to move to ``worker``: expired leases first."""
        common = (
            "JOIN hq_items q ON q.item = a.item "
            "JOIN rounds r ON r.round = a.round AND r.status = 'open' "
            "JOIN items i ON i.idx = a.item "
            "LEFT JOIN answers b ON b.item = a.item AND b.worker = a.worker "
            "WHERE a.worker != :w AND b.item IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM assignments x WHERE x.item = a.item AND x.worker = :w) "
            "AND (i.allowed IS NULL OR instr(',' || i.allowed || ',', ',' || :c || ',') > 0) "
        )
        p = {"w": worker, "c": country, "now": now}
        db = self.store._db
        rows = db.execute(
            "SELECT a.worker, a.item FROM assignments a JOIN hq_leases l ON l.item = a.item AND l.worker = a.worker "
            + common + "AND l.expires_at <= :now ORDER BY l.expires_at LIMIT 16", p).fetchall()
        if cfg.get("share_after") is not None:
            p["cut"] = now - float(cfg["share_after"])
            rows += db.execute(
                "SELECT a.worker, a.item FROM assignments a "
                "LEFT JOIN hq_leases l ON l.item = a.item AND l.worker = a.worker "
                + common + "AND l.item IS NULL AND q.posted_at <= :cut ORDER BY a.round, a.rowid LIMIT 16", p).fetchall()
        return rows

    def _task(self, item: int, worker: int) -> Task:
        item = _item(item)
        row = self.store._db.execute(
            "SELECT a.item, i.id, a.worker, a.round, q.kind, q.mime, CASE WHEN q.kind = 'text' THEN q.body END, "
            "q.suggestion, q.score, l.leased_at, l.expires_at, l.taken_from, a.kind FROM assignments a "
            "JOIN items i ON i.idx = a.item JOIN hq_items q ON q.item = a.item "
            "LEFT JOIN hq_leases l ON l.item = a.item AND l.worker = a.worker "
            "WHERE a.item = ? AND a.worker = ?", (int(item), int(worker))).fetchone()
        if row is None:
            raise NotYourTask("is not assigned to this HITer", item=int(item), field="task")
        text = row[6]
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        # Audits check the model and gold tasks check the HITer: neither may be shown the model's guess.
        show = bool(self.settings()["show_suggestions"]) and row[12] == "label"
        return Task(item=row[0], item_id=row[1], worker=row[2], round=row[3], kind=row[4], mime=row[5], text=text,
                    suggestion=row[7] if show else None, score=row[8] if show else None,
                    leased_at=row[9], expires_at=row[10], taken_from=row[11])

    def task(self, worker: int, item: int) -> Task:
        """A task of ``worker`` (raises :class:`NotYourTask` for anybody else's)."""
        return self._task(item, worker)

    def content(self, worker: int, item: int) -> tuple[str, bytes]:
        """(mime, body) of a task's item, for its HITer only."""
        self._task(item, worker)
        mime, body = self.store._db.execute("SELECT mime, body FROM hq_items WHERE item = ?", (int(item),)).fetchone()
        return mime, bytes(body)

    def submit(self, worker: int, item: int, label: int, now: float | None = None) -> dict:
        """Record ``worker``'s answer to ``item``; committed before this returns.

        Raises :class:`NotYourTask` (403), :class:`LeaseLost` (410),
        :class:`AlreadyAnswered` (409, also for a replay of the same answer),
        :class:`NotTaken` (409) or :class:`~hitl.errors.ValidationError` (a label outside
        the label set); in each case nothing is written.
        """
        worker, item = int(worker), _item(item)
        now = time.time() if now is None else float(now)
        db = self.store._db
        row = db.execute(
            "SELECT a.round, b.label, l.leased_at, q.item FROM assignments a "
            "LEFT JOIN answers b ON b.item = a.item AND b.worker = a.worker "
            "LEFT JOIN hq_leases l ON l.item = a.item AND l.worker = a.worker "
            "LEFT JOIN hq_items q ON q.item = a.item WHERE a.item = ? AND a.worker = ?", (item, worker)).fetchone()
        if row is None or row[3] is None:
            lost = db.execute("SELECT 1 FROM hq_leases WHERE item = ? AND taken_from = ?", (item, worker)).fetchone()
            if lost:
                raise LeaseLost("was given to another HITer after your lease ran out", item=item, field="task")
            raise NotYourTask("is not assigned to this HITer", item=item, field="task")
        round_no, old_label, leased_at, _ = row
        if old_label is not None:
            raise AlreadyAnswered(f"was already answered ({old_label})", item=item, field="task")
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise ValidationError(f"is {label!r}", item=item, field="label", expected="a class index")
        n_classes = len(self.classes())
        if not 0 <= int(label) < n_classes:
            raise ValidationError(f"is {label}", item=item, field="label", expected=f"a class index in [0, {n_classes})")
        if leased_at is None:
            raise NotTaken("was never taken: ask for the next task first", item=item, field="task")
        lease = float(self.settings()["lease_seconds"])
        seconds = float(min(max(now - leased_at, 0.0), lease))
        try:
            # No pay here: the store pays what was agreed when the task was assigned.
            new = self.store.add_answers(round_no, np.array([item]), np.array([worker]), np.array([int(label)]),
                                         np.array([seconds]))
        except ConflictingAnswerError:
            raise AlreadyAnswered("was already answered", item=item, field="task") from None
        except ValidationError:
            # The assignment moved between the check and the write (a lease taken over).
            raise LeaseLost("was given to another HITer after your lease ran out", item=item, field="task") from None
        if new == 0:
            raise AlreadyAnswered("was already answered", item=item, field="task")
        with self.store.transaction() as tx:
            tx.execute("DELETE FROM hq_leases WHERE item = ? AND worker = ?", (item, worker))
            _seen(tx, worker, now)
        return {"item": item, "label": int(label), "seconds": seconds, "round": int(round_no)}

    # -- the engineer's side -----------------------------------------------------------------
    def pending(self, items: np.ndarray | None = None, *, worker: int | None = None) -> int:
        """Posted assignments of open rounds still unanswered.

        Restricted to ``items`` if given, and to the HITer at store position ``worker`` if given.
        """
        sql = ("SELECT a.item FROM assignments a JOIN hq_items q ON q.item = a.item "
               "JOIN rounds r ON r.round = a.round AND r.status = 'open' "
               "LEFT JOIN answers b ON b.item = a.item AND b.worker = a.worker WHERE b.item IS NULL")
        params: tuple = ()
        if worker is not None:
            sql += " AND a.worker = ?"
            params = (int(worker),)
        got = np.array([r[0] for r in self.store._db.execute(sql, params)], dtype=np.int64)
        if items is not None:
            got = got[np.isin(got, np.asarray(items, dtype=np.int64))]
        return int(len(got))

    def progress(self, now: float | None = None) -> dict:
        """What the engineer's page shows: tasks and items by state, answers per hour, HITers online."""
        now = time.time() if now is None else float(now)
        db = self.store._db
        rows = db.execute(
            "SELECT a.item, b.item IS NOT NULL, l.expires_at FROM assignments a JOIN hq_items q ON q.item = a.item "
            "LEFT JOIN answers b ON b.item = a.item AND b.worker = a.worker "
            "LEFT JOIN hq_leases l ON l.item = a.item AND l.worker = a.worker").fetchall()
        arr = np.array([(r[0], r[1], np.nan if r[2] is None else r[2]) for r in rows], dtype=np.float64).reshape(-1, 3)
        answered = arr[:, 1] > 0
        leased = ~answered & np.isfinite(arr[:, 2]) & (arr[:, 2] > now)
        expired = ~answered & np.isfinite(arr[:, 2]) & (arr[:, 2] <= now)
        waiting = ~answered & ~leased & ~expired
        tasks = {"answered": int(answered.sum()), "in_progress": int(leased.sum()),
                 "lease_expired": int(expired.sum()), "waiting": int(waiting.sum())}
        items_state = {"answered": 0, "in_progress": 0, "waiting": 0}
        if len(arr):
            uniq, inv = np.unique(arr[:, 0].astype(np.int64), return_inverse=True)
            all_done = np.bincount(inv, weights=answered, minlength=len(uniq)) == np.bincount(inv, minlength=len(uniq))
            any_leased = np.bincount(inv, weights=leased, minlength=len(uniq)) > 0
            items_state = {"answered": int(all_done.sum()), "in_progress": int((~all_done & any_leased).sum()),
                           "waiting": int((~all_done & ~any_leased).sum())}
        times = np.array([r[0] for r in db.execute("SELECT created_at FROM answers WHERE created_at > ?", (now - 86400,))])
        hours_ago = np.floor((now - times) / 3600.0).astype(np.int64) if len(times) else np.zeros(0, np.int64)
        per_hour = np.bincount(np.clip(hours_ago, 0, 23), minlength=24)[::-1]  # oldest hour first
        since = now - ONLINE_SECONDS
        online = [r[0] for r in db.execute(
            "SELECT w.id FROM workers w WHERE w.idx IN (SELECT worker FROM hq_seen WHERE at > ?) ORDER BY w.id", (since,))]
        labels = dict(db.execute("SELECT source, COUNT(*) FROM labels GROUP BY source").fetchall())
        rounds = dict(db.execute("SELECT status, COUNT(*) FROM rounds GROUP BY status").fetchall())
        return {
            "at": now,
            "tasks": tasks,
            "items": items_state,
            "answers_total": int(db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]),
            "answers_last_hour": int(per_hour[-1]),
            "answers_per_hour_24h": per_hour.tolist(),
            "hiters_online": online,
            "labels_by_source": labels,
            "rounds": {"open": int(rounds.get("open", 0)), "done": int(rounds.get("done", 0))},
        }


def _item(item: Any) -> int:
    """A task id as SQLite can hold it; anything else is nobody's task."""
    if isinstance(item, bool) or not isinstance(item, (int, np.integer)) or not 0 <= int(item) < 2**63:
        raise NotYourTask("is not assigned to this HITer", item=str(item)[:32], field="task")
    return int(item)


def _digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(bytes(salt) + secret.encode("utf-8", "surrogatepass")).digest()


def _seen(db: Any, worker: int, now: float) -> None:
    db.execute("INSERT INTO hq_seen VALUES (?, ?) ON CONFLICT(worker) DO UPDATE SET at = excluded.at", (int(worker), now))
