"""`hitl scorecard` on a project killed with SIGKILL and resumed gives the totals of one run straight through."""

import datetime as dt
import json
import sqlite3

import pytest

from hitl.cli import main
from resume_child import BATCH, make_project, run_and_kill

AS_OF = dt.date(2026, 6, 1)


def _card(db, out):
    assert main(["scorecard", str(db), "--out", str(out), "--quiet"]) == 0
    d = json.loads((out / "scorecard.json").read_text())
    for key in ("generated_at", "store"):
        d.pop(key)
    d["tenure"].pop("as_of")
    return d


def _lines(db):
    con = sqlite3.connect(db)
    try:
        # The lines that count: answered tasks and top-ups (a quote left by the kill, never answered, does not).
        return sorted(con.execute(
            "SELECT kind, item, worker, round, period, seq, base_micros, price_micros, hiter_micros, platform_micros, "
            "programme_micros FROM ledger_lines l WHERE kind = 'topup' OR EXISTS "
            "(SELECT 1 FROM answers a WHERE a.item = l.item AND a.worker = l.worker)").fetchall(), key=repr)
    finally:
        con.close()


@pytest.mark.slow
def test_killed_and_resumed_project_has_the_same_scorecard(tmp_path):
    db = tmp_path / "killed.db"
    killed_at, child = run_and_kill(db, lambda n: n > 150)  # a few rounds in, most likely inside one
    assert killed_at is not None, child.stderr.read()
    # A card of the half-done project can be made; it does not stop the project from resuming.
    half = _card(db, tmp_path / "half")
    assert 0 < half["work"]["human_answers"] < 600
    make_project(str(db)).run(batch_size=BATCH)
    make_project(str(tmp_path / "straight.db")).run(batch_size=BATCH)

    resumed = _card(db, tmp_path / "resumed")
    straight = _card(tmp_path / "straight.db", tmp_path / "straight")
    assert resumed["work"]["human_answers"] == straight["work"]["human_answers"] > half["work"]["human_answers"]
    for section in ("pay", "split", "savings", "wage_multiple", "work", "residency", "items", "rates", "wages"):
        assert resumed[section] == straight[section], section
    assert resumed == straight
    assert _lines(db) == _lines(tmp_path / "straight.db")
