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
    assert s.add_answers(0, *args) == 2
    assert s.add_answers(0, *args) == 0
    # Partly new chunk: only the new answer is written.
    assert s.add_answers(0, np.array([0, 0]), np.array([0, 1]), np.array([1, 1]), np.array([1.0, 2.0])) == 1
    # Committed: another connection sees it without any close or flush.
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 3
    other.close()
    assert s.assignments(0, pending=True)[0].tolist() == []


def test_conflicting_resubmission_writes_nothing():
    s = _store()
    s.add_answers(0, np.array([0]), np.array([0]), np.array([1]), np.array([3.0]))
    with pytest.raises(ConflictingAnswerError) as err:
        s.add_answers(0, np.array([1, 0]), np.array([0, 0]), np.array([0, 0]), np.array([1.0, 3.0]))
    assert err.value.item == "i0" and err.value.field == "label"  # the item id, not its position
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


# -- one vote per (item, HITer), labels in range, capped time: the chunk is stored whole or refused whole --
def _table(s):
    return s._db.execute("SELECT item, worker, label, round, seconds FROM answers ORDER BY item, worker").fetchall()


@pytest.mark.parametrize("label", [2, 7, -1])
def test_an_out_of_range_label_is_refused_naming_item_hiter_and_field(label):
    s = _store()  # classes a, b
    with pytest.raises(ValidationError) as err:
        s.add_answers(0, np.array([1, 0]), np.array([0, 0]), np.array([0, label]), np.array([1.0, 2.0]))
    assert err.value.item == "i0" and err.value.field == "label" and "'h0'" in str(err.value)
    assert _table(s) == []  # the valid answer of the chunk was not written either


@pytest.mark.parametrize("labels", [np.array([0.0, 1.5]), np.array(["0", "1"]), [0, None]])
def test_labels_that_are_not_whole_numbers_are_refused(labels):
    s = _store()
    with pytest.raises(ValidationError, match="label"):
        s.add_answers(0, np.array([0, 1]), np.array([0, 0]), labels, np.array([1.0, 2.0]))
    assert _table(s) == []


def test_a_repeat_in_one_chunk_counts_once_and_a_conflict_is_refused():
    s = _store()
    assert s.add_answers(0, np.array([0, 0, 1]), np.array([0, 0, 0]), np.array([1, 1, 0]), np.array([1.0, 1.0, 2.0])) == 2
    assert len(_table(s)) == 2
    s2 = _store()
    with pytest.raises(ConflictingAnswerError, match="twice"):
        s2.add_answers(0, np.array([0, 0]), np.array([0, 0]), np.array([1, 0]), np.array([1.0, 1.0]))
    assert _table(s2) == []


def test_time_on_task_is_capped_at_the_task_limit_and_the_cap_is_recorded():
    s = _store()
    s.set_task_seconds(300)
    s.add_answers(0, np.array([0, 1]), np.array([0, 0]), np.array([1, 0]), np.array([259200.0, 1e308]))
    assert [row[4] for row in _table(s)] == [300.0, 300.0]
    (event,) = s.events("time_capped")
    assert event["payload"]["answers"] == 2 and event["payload"]["limit"] == 300.0
    with pytest.raises(ValidationError, match="seconds"):
        s.add_answers(0, np.array([0]), np.array([1]), np.array([1]), np.array([float("inf")]))


def test_nested_transactions_commit_together_and_roll_back_together(tmp_path):
    s = _store(tmp_path / "s.db")
    with pytest.raises(RuntimeError):
        with s.transaction():
            s.add_answers(0, np.array([0]), np.array([0]), np.array([1]), np.array([3.0]))
            s.log("inner")
            raise RuntimeError("killed half way")
    assert _table(s) == [] and s.events("inner") == []
    with s.transaction():
        s.add_answers(0, np.array([0]), np.array([0]), np.array([1]), np.array([3.0]))
        with pytest.raises(ValidationError):
            with s.transaction():  # an inner failure undoes the inner part only
                s.add_answers(0, np.array([1]), np.array([0]), np.array([9]), np.array([1.0]))
    other = sqlite3.connect(tmp_path / "s.db")
    assert other.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 1
    other.close()


def test_readers_refuse_a_missing_empty_or_foreign_file_and_write_nothing(tmp_path):
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreError, match="does not exist"):
        hitl.Store(missing, create=False)
    assert not missing.exists()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(StoreError, match="no labeling project"):
        hitl.Store(empty, create=False)
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.commit()
    con.close()
    for create in (True, False):
        with pytest.raises(StoreError, match="another application"):
            hitl.Store(foreign, create=create)
    for path in (empty, foreign):
        con = sqlite3.connect(path)
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        con.close()
        assert tables <= {"customers"}, tables


def test_settings_that_change_results_must_match_unless_forced(tmp_path):
    path = tmp_path / "s.db"
    s = hitl.Store(path)
    s.ensure_project(fingerprint="f", classes=["a", "b"], config={"strategy": "margin", "seed": 0}, features="x1")
    with pytest.raises(StoreError, match="features"):
        s.ensure_project(fingerprint="f", classes=["a", "b"], config={"strategy": "margin", "seed": 0}, features="x2")
    with pytest.raises(StoreError, match="strategy was 'margin', is now 'entropy'"):
        s.ensure_project(fingerprint="f", classes=["a", "b"], config={"strategy": "entropy", "seed": 0}, features="x1")
    assert s.config()["strategy"] == "margin" and s.events("settings_changed") == []
    assert not s.ensure_project(fingerprint="f", classes=["a", "b"], config={"strategy": "entropy", "seed": 0},
                                features="x1", force=True)
    assert s.config()["strategy"] == "entropy"
    assert s.events("settings_changed")[0]["payload"]["config"] == {"strategy": ["margin", "entropy"]}
