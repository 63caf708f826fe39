import sqlite3

import numpy as np
import pytest

import hitl
from hitl.errors import ConflictingAnswerError, StoreError, ValidationError


def _store(path=":memory:"):
    s = hitl.Store(path)
    s.ensure_project(fingerprint="f1", classes=["a", "b"], config={})
    s.add_items(["i0", "i1", "i2"], ["default"] * 3, [None, ["FR"], None])
    s.add_workers([hitl.HITer("h0", "FR"), hitl.HITer("h1", "TG")])
    s.begin_round(0, items=np.array([0, 1, 0]), workers=np.array([0, 0, 1]))
    return s


def test_answers_are_idempotent_and_durable(tmp_path):
    path = tmp_path / "s.db"
    s = _store(path)
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    args = (np.array([0, 1]), np.array([0, 0]), np.array([1, 0]), np.array([3.0, 4.0]))
    assert s.add_answers(0, *args, pay_cents=np.array([5, 6])) == 2
    assert s.add_answers(0, *args, pay_cents=np.array([5, 6])) == 0
    # Partly new chunk: only the new answer is written.
    assert s.add_answers(0, np.array([0, 0]), np.array([0, 1]), np.array([1, 1]), np.array([1.0, 2.0])) == 1
    # Committed: another connection sees it without any close or flush.
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 3
    assert other.execute("SELECT SUM(amount_cents) FROM payments").fetchone()[0] == 11
    other.close()
    assert s.assignments(0, pending=True)[0].tolist() == []


def test_conflicting_resubmission_writes_nothing():
    s = _store()
    s.add_answers(0, np.array([0]), np.array([0]), np.array([1]), np.array([3.0]))
    with pytest.raises(ConflictingAnswerError) as err:
        s.add_answers(0, np.array([1, 0]), np.array([0, 0]), np.array([0, 0]), np.array([1.0, 3.0]))
    assert err.value.item == 0 and err.value.field == "label"
    assert s.n_answers() == 1  # the valid answer in the same chunk was rolled back too


def test_answer_without_assignment_is_refused():
    s = _store()
    with pytest.raises(ValidationError, match="assignment"):
        s.add_answers(0, np.array([2]), np.array([1]), np.array([0]), np.array([1.0]))
    assert s.n_answers() == 0


def test_bad_seconds_and_sources():
    s = _store()
    with pytest.raises(ValidationError, match="seconds"):
        s.add_answers(0, np.array([0]), np.array([0]), np.array([0]), np.array([-1.0]))
    with pytest.raises(ValidationError, match="source"):
        s.set_labels(0, np.array([0]), np.array([1]), "oracle", np.array([0.9]))


def test_labels_upsert_and_rounds():
    s = _store()
    s.set_labels(0, np.array([0, 1]), np.array([1, 0]), ["human", "machine"], np.array([0.9, 0.6]))
    s.set_labels(1, np.array([1]), np.array([1]), "aggregated", np.array([0.99]))
    lab = s.labels()
    assert lab["label"].tolist() == [1, 1] and lab["source"].tolist() == ["human", "aggregated"]
    assert s.open_round() == 0
    s.finish_round(0, {"x": np.int64(3)})
    assert s.open_round() is None and s.rounds()[0]["stats"] == {"x": 3}
    with pytest.raises(StoreError):
        s.finish_round(7, {})


def test_another_projects_file_is_refused(tmp_path):
    path = tmp_path / "s.db"
    _store(path).close()
    with pytest.raises(StoreError, match="another project"):
        hitl.Store(path).ensure_project(fingerprint="other", classes=["a", "b"], config={})
    with pytest.raises(StoreError, match="classes"):
        hitl.Store(path).ensure_project(fingerprint="f1", classes=["a", "c"], config={})


def test_not_a_database(tmp_path):
    bad = tmp_path / "x.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        hitl.Store(bad)


def test_reassign_moves_only_unanswered_assignments():
    s = _store()
    s.add_answers(0, np.array([0]), np.array([0]), np.array([1]), np.array([3.0]))
    assert not s.reassign(0, 0, 1)  # answered already
    assert not s.reassign(0, 1, 0)  # HITer 0 already holds item 0
    assert s.reassign(1, 0, 1)
    items, workers = s.assignments(0, pending=True)
    assert sorted(zip(items.tolist(), workers.tolist())) == [(0, 1), (1, 1)]
    assert s.events("reassigned")[0]["payload"] == {"item": 1, "from": 0, "to": 1}
