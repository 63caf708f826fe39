"""A project killed with SIGKILL in the middle of a round resumes without losing or duplicating an answer."""

import signal
import sqlite3

from resume_child import BATCH, BUDGET, PER_ITEM, make_project, run_and_kill

def _rows(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT item, worker, label, round, seconds FROM answers ORDER BY item, worker").fetchall()
    finally:
        con.close()


def test_sigkill_mid_round_then_resume(tmp_path):
    db = tmp_path / "project.db"
    per_round = BATCH * PER_ITEM
    # Past the first two rounds and strictly inside a round.
    killed_at, child = run_and_kill(db, lambda n: n > 2 * per_round and n % per_round != 0)
    assert killed_at is not None, f"the child finished or stalled before it could be killed: {child.stderr.read()!r}"
    assert child.returncode == -signal.SIGKILL
    before = _rows(db)
    assert len(before) >= killed_at and len(before) % per_round != 0

    project = make_project(str(db))
    assert project.resumed
    result = project.run(batch_size=BATCH)
    assert result.stop_reason == "budget"
    after = _rows(db)
    # Nothing committed before the kill was lost or changed.
    assert set(before) <= set(after)
    # Every assignment answered exactly once, and the budget spent exactly.
    assert len(after) == len({(i, w) for i, w, *_ in after}) == BUDGET
    con = sqlite3.connect(db)
    n_assign = con.execute("SELECT COUNT(*) FROM assignments").fetchone()[0]
    n_done = con.execute("SELECT COUNT(*) FROM rounds WHERE status = 'done'").fetchone()[0]
    # The ledger is the one record of money: one task line per answer.
    n_pay = con.execute("SELECT COUNT(*) FROM ledger_lines l JOIN answers a ON a.item = l.item AND a.worker = l.worker "
                        "WHERE l.kind = 'task'").fetchone()[0]
    con.close()
    assert n_assign == BUDGET == n_pay
    assert n_done == BUDGET // per_round

    # The interrupted run ends exactly where an uninterrupted one does.
    straight = make_project(str(tmp_path / "straight.db")).run(batch_size=BATCH)
    assert _rows(tmp_path / "straight.db") == after
    assert straight.labels.equals(result.labels)
    assert straight.summary["label_accuracy"] == result.summary["label_accuracy"]


def test_raising_the_budget_resumes(tmp_path):
    db = str(tmp_path / "p.db")
    first = make_project(db, budget=120).run(batch_size=BATCH)
    assert first.stop_reason == "budget" and first.summary["human_answers"] == 120
    again = make_project(db, budget=120).run(batch_size=BATCH)
    assert again.summary["human_answers"] == 120  # nothing more bought at the same budget
    more = make_project(db, budget=240).run(batch_size=BATCH)
    assert more.summary["human_answers"] == 240
    assert more.summary["rounds"] == 4


def _state(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {
            "answers": con.execute("SELECT item, worker, label, round, seconds FROM answers ORDER BY item, worker").fetchall(),
            "assignments": con.execute("SELECT item, worker, round, kind FROM assignments ORDER BY item, worker").fetchall(),
            "labels": con.execute("SELECT item, label, source, round FROM labels ORDER BY item").fetchall(),
            "ledger": con.execute("SELECT kind, item, worker, round, period, seq, hiter_micros, price_micros "
                                  "FROM ledger_lines ORDER BY kind, item, worker, period, seq").fetchall(),
        }
    finally:
        con.close()


def test_sigkill_with_the_default_settings_resumes_to_the_uninterrupted_result(tmp_path):
    """Dynamic redundancy (re-asks in waves), audits and the set rule: the resumed run asks the same HITers."""
    db = tmp_path / "project.db"
    killed_at, child = run_and_kill(db, lambda n: n > 150, redundancy="dynamic")
    assert killed_at is not None, f"the child finished or stalled before it could be killed: {child.stderr.read()!r}"
    result = make_project(str(db), answers_per_item=None).run(batch_size=BATCH)
    straight = make_project(str(tmp_path / "straight.db"), answers_per_item=None).run(batch_size=BATCH)
    assert _state(db) == _state(tmp_path / "straight.db")
    assert straight.labels.equals(result.labels)
    assert straight.summary["human_answers"] == result.summary["human_answers"]
