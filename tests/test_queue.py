"""The lease-based task queue: leases, re-offers, residency, idempotent submission, tokens."""

import inspect
import sqlite3
import threading

import numpy as np
import pytest

from hitl.errors import ValidationError
from hitl.queue import AlreadyAnswered, LeaseLost, NotTaken, NotYourTask, TaskQueue
from hitl.store import Store
from hitl.workforce import HITer

CLASSES = ["cat", "dog", "cow"]
PEOPLE = (("ann", "FR"), ("bob", "TG"), ("cid", "TG"))


def make_store(path=":memory:", n_items=6, allowed=None, people=PEOPLE):
    store = Store(path)
    store.ensure_project(fingerprint="f", classes=CLASSES, config={})
    store.add_items([f"it-{i}" for i in range(n_items)], ["default"] * n_items, allowed or [None] * n_items)
    store.add_workers([HITer(h, c) for h, c in people])
    return store


def post_texts(q, items):
    items = np.asarray(items)
    return q.post(items, [("text", "text/plain", f"text of {i}".encode()) for i in items.tolist()])


def answers(store):
    return store._db.execute("SELECT item, worker, label, round, seconds FROM answers ORDER BY item, worker").fetchall()


def test_own_tasks_in_order_same_task_until_submitted():
    store = make_store()
    store.begin_round(0, items=np.array([3, 1, 2]), workers=np.array([0, 0, 1]))
    q = TaskQueue(store)
    assert post_texts(q, [1, 2, 3]) == 3
    assert post_texts(q, [1, 2, 3]) == 0  # posting again is a no-op
    t = q.next_task(0, now=100.0)
    assert (t.item, t.text, t.item_id) == (3, "text of 3", "it-3")
    assert t.expires_at == pytest.approx(100.0 + 300.0)
    # Asking again while the lease runs shows the same task, lease not extended.
    again = q.next_task(0, now=150.0)
    assert (again.item, again.leased_at) == (3, 100.0)
    q.submit(0, 3, 1, now=160.0)
    assert q.next_task(0, now=161.0).item == 1
    q.submit(0, 1, 0, now=170.0)
    assert q.next_task(0, now=171.0) is None  # item 2 belongs to bob, whose lease has not run out
    assert answers(store) == [(1, 0, 0, 0, 9.0), (3, 0, 1, 0, 60.0)]


def test_unposted_or_closed_round_tasks_are_not_offered():
    store = make_store()
    store.begin_round(0, items=np.array([0, 1]), workers=np.array([0, 0]))
    q = TaskQueue(store)
    post_texts(q, [1])
    assert q.next_task(0).item == 1  # item 0 was never posted: nothing to show
    store.finish_round(0, {})
    post_texts(q, [0])
    assert q.next_task(0) is None


def test_expired_lease_goes_back_to_the_same_hiter_when_nobody_else_may_take_it():
    store = make_store(people=(("ann", "FR"),))
    store.begin_round(0, items=np.array([0]), workers=np.array([0]))
    q = TaskQueue(store)
    q.configure(lease_seconds=10)
    post_texts(q, [0])
    assert q.next_task(0, now=0.0).leased_at == 0.0
    t = q.next_task(0, now=11.0)  # lease ran out: a fresh one
    assert (t.item, t.leased_at, t.expires_at) == (0, 11.0, 21.0)
    out = q.submit(0, 0, 2, now=14.0)
    assert out["seconds"] == pytest.approx(3.0)  # time on task counts from the fresh lease


def test_expired_lease_moves_to_another_eligible_hiter():
    store = make_store()
    store.begin_round(0, items=np.array([0, 1]), workers=np.array([1, 1]))  # both bob's
    q = TaskQueue(store)
    q.configure(lease_seconds=10)
    post_texts(q, [0, 1])
    assert q.next_task(1, now=0.0).item == 0  # bob takes item 0 and vanishes
    assert q.next_task(2, now=5.0) is None  # still leased; bob's item 1 is his (no sharing)
    t = q.next_task(2, now=10.5)  # cid may see item 0 (no residency rule) and holds nothing on it
    assert (t.item, t.worker, t.taken_from) == (0, 2, 1)
    assert store._db.execute("SELECT worker FROM assignments WHERE item = 0").fetchall() == [(2,)]
    assert [e["payload"] for e in store.events("reassigned")] == [{"item": 0, "from": 1, "to": 2}]
    with pytest.raises(LeaseLost) as err:
        q.submit(1, 0, 0, now=11.0)  # bob comes back too late
    assert err.value.status == 410
    with pytest.raises(NotYourTask):
        q.task(1, 0)
    q.submit(2, 0, 1, now=12.0)
    assert answers(store) == [(0, 2, 1, 0, 1.5)]


def test_takeover_respects_residency():
    people = (("ann", "FR"), ("bob", "TG"), ("eve", "FR"))
    store = make_store(allowed=[["FR"], None, None, None, None, None], people=people)
    store.begin_round(0, items=np.array([0]), workers=np.array([0]))
    q = TaskQueue(store)
    q.configure(lease_seconds=10)
    post_texts(q, [0])
    assert q.next_task(0, now=0.0).item == 0  # ann takes the France-only item and vanishes
    assert q.next_task(1, now=20.0) is None  # bob works from Togo: never offered
    assert q.next_task(2, now=20.0).item == 0  # eve works from France


def test_takeover_never_gives_a_hiter_a_second_copy_of_an_item():
    store = make_store()
    store.begin_round(0, items=np.array([2, 2]), workers=np.array([0, 1]))
    q = TaskQueue(store)
    q.configure(lease_seconds=10)
    post_texts(q, [2])
    assert q.next_task(0, now=0.0).item == 2  # ann's copy, then she vanishes
    assert q.next_task(1, now=1.0).item == 2  # bob's own copy
    q.submit(1, 2, 0, now=2.0)
    assert q.next_task(1, now=30.0) is None  # he answered item 2 already
    assert q.next_task(2, now=30.0).item == 2  # cid may


def test_share_after_offers_tasks_nobody_took():
    store = make_store()
    store.begin_round(0, items=np.array([0, 1]), workers=np.array([0, 0]))
    q = TaskQueue(store)
    post_texts(q, [0, 1])
    posted_at = store._db.execute("SELECT MAX(posted_at) FROM hq_items").fetchone()[0]
    assert q.next_task(1, now=posted_at + 1000) is None  # default: never share open tasks
    q.configure(share_after=60)
    assert q.next_task(1, now=posted_at + 30) is None
    t = q.next_task(1, now=posted_at + 61)
    assert (t.item, t.taken_from) == (0, 0)
    assert q.next_task(0, now=posted_at + 62).item == 1  # ann still has her other task


def test_submission_is_idempotent_and_a_replay_writes_nothing():
    store = make_store()
    store.begin_round(0, items=np.array([0]), workers=np.array([0]))
    q = TaskQueue(store)
    post_texts(q, [0])
    q.next_task(0, now=0.0)
    with pytest.raises(ValidationError):
        q.submit(0, 0, 3, now=1.0)  # only 3 classes
    with pytest.raises(ValidationError):
        q.submit(0, 0, True, now=1.0)
    assert answers(store) == []
    q.submit(0, 0, 2, now=2.0)
    before = (answers(store), store.n_answers(), store.events())
    for label in (2, 1):
        with pytest.raises(AlreadyAnswered) as err:
            q.submit(0, 0, label, now=3.0)
        assert err.value.status == 409
    after = (answers(store), store.n_answers(), store.events())
    assert after == before


def test_submit_needs_a_lease_and_an_assignment():
    store = make_store()
    store.begin_round(0, items=np.array([0, 1]), workers=np.array([0, 1]))
    q = TaskQueue(store)
    post_texts(q, [0, 1])
    with pytest.raises(NotTaken):
        q.submit(0, 0, 0)
    with pytest.raises(NotYourTask) as err:
        q.submit(0, 1, 0)  # bob's
    assert err.value.status == 403
    with pytest.raises(NotYourTask):
        q.submit(0, 5, 0)  # nobody's
    with pytest.raises(NotYourTask):
        q.content(0, 1)
    assert answers(store) == []


def test_time_on_task_is_capped_at_the_lease():
    store = make_store()
    store.begin_round(0, items=np.array([0]), workers=np.array([0]))
    q = TaskQueue(store)
    q.configure(lease_seconds=30)
    post_texts(q, [0])
    q.next_task(0, now=0.0)
    assert q.submit(0, 0, 1, now=500.0)["seconds"] == 30.0  # late, but nobody took it: accepted


def test_tokens_are_stored_hashed_and_checked():
    store = make_store()
    q = TaskQueue(store)
    tok = q.issue_token("bob")
    admin = q.issue_token(admin=True)
    who = q.verify_token(tok)
    assert (who.role, who.worker, who.hiter_id, who.country) == ("hiter", 1, "bob", "TG")
    assert q.verify_token(admin).role == "admin"
    rows = store._db.execute("SELECT id, salt, digest FROM hq_tokens").fetchall()
    secret = tok.split("_", 2)[2]
    assert all(secret.encode() not in bytes(r[1]) + bytes(r[2]) for r in rows)
    assert len({bytes(r[1]) for r in rows}) == 2  # one salt per token
    for bad in (tok[:-1] + ("A" if tok[-1] != "A" else "B"), tok.replace("hitl_", "xxxx_"), "", None, "x" * 5000,
                admin.split("_")[0] + "_" + tok.split("_")[1] + "_" + admin.split("_", 2)[2]):
        assert q.verify_token(bad) is None
    assert q.revoke_tokens("bob") == 1
    assert q.verify_token(tok) is None
    with pytest.raises(Exception):
        q.issue_token("nobody")


def test_concurrent_takeover_has_one_winner(tmp_path):
    path = tmp_path / "p.db"
    store = make_store(path, people=[(f"h{j}", "TG") for j in range(6)])
    store.begin_round(0, items=np.array([0]), workers=np.array([0]))
    TaskQueue(store).configure(lease_seconds=1)
    post_texts(TaskQueue(store), [0])
    TaskQueue(store).next_task(0, now=0.0)
    queues = [TaskQueue(path) for _ in range(5)]  # separate connections, as separate processes would have
    got, start = [None] * 5, threading.Barrier(5)

    def take(j):
        start.wait()
        got[j] = queues[j].next_task(j + 1, now=10.0)

    threads = [threading.Thread(target=take, args=(j,)) for j in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [g for g in got if g is not None]
    assert len(winners) == 1
    assert store._db.execute("SELECT worker FROM assignments").fetchall() == [(winners[0].worker,)]


def test_progress_counts_states():
    store = make_store()
    store.begin_round(0, items=np.array([0, 1, 2, 2]), workers=np.array([0, 0, 1, 2]))
    q = TaskQueue(store)
    q.configure(lease_seconds=10)
    post_texts(q, [0, 1, 2])
    q.next_task(0)
    q.submit(0, 0, 1)
    q.next_task(0)  # item 1 in progress
    q.next_task(1)  # bob's copy of item 2 in progress, cid's waiting
    p = q.progress()
    assert p["tasks"] == {"answered": 1, "in_progress": 2, "lease_expired": 0, "waiting": 1}
    assert p["items"] == {"answered": 1, "in_progress": 2, "waiting": 0}
    assert p["answers_total"] == 1 and p["answers_last_hour"] == 1 and sum(p["answers_per_hour_24h"]) == 1
    assert p["hiters_online"] == ["ann", "bob"]
    assert q.progress(now=p["at"] + 20)["tasks"]["lease_expired"] == 2


@pytest.mark.skipif("priors" not in inspect.signature(Store.begin_round).parameters,
                    reason="this store does not record the model's priors")
def test_suggestions_come_from_the_priors_and_skip_audits():
    store = make_store()
    proba = np.array([[0.1, 0.7, 0.2], [1 / 3, 1 / 3, 1 / 3], [0.05, 0.05, 0.9]])
    store.begin_round(0, items=np.array([0, 1, 2]), workers=np.array([0, 0, 0]), kind=["label", "label", "audit"],
                      priors=(np.array([0, 1, 2]), proba))
    q = TaskQueue(store)
    post_texts(q, [0, 1, 2])
    shown = []
    for step in range(3):
        t = q.next_task(0, now=float(step))
        shown.append((t.item, t.suggestion, None if t.score is None else round(t.score, 3)))
        q.submit(0, t.item, 0, now=step + 0.5)
    assert shown == [(0, 1, 0.7), (1, None, None), (2, None, None)]  # uniform prior: no model yet; audit: hidden
    q.configure(show_suggestions=False)
    assert q.task(0, 0).suggestion is None


def test_queue_tables_live_in_the_project_file(tmp_path):
    path = tmp_path / "p.db"
    make_store(path).close()
    TaskQueue(path).close()
    names = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"hq_items", "hq_leases", "hq_tokens", "hq_meta", "answers"} <= names
