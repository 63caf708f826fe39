"""Trust: no wrong label stored, no store bricked, nobody over- or under-paid.

Each test names the hole it closes (the numbered items of the trust issue). A
simulated crash is an exception raised in the middle of a change of state: the
process dies there as far as the store can tell (the real SIGKILLs are in
``test_crash_soak.py`` and ``test_resume.py``).
"""

import datetime as dt
import sqlite3

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import hitl
from hitl.cli import main as hitl_main
from hitl.errors import ConfigError, DataFormatError, HitlError, StoreError, ValidationError
from hitl.impact import Ledger
from hitl.models import SklearnModel
from hitl.queue import TaskQueue
from hitl.store import Store
from hitl.workforce import Answers, HITer
from test_resume import _state as _tables

START = dt.date(2026, 3, 2)


class Crash(BaseException):
    """Stands for a kill: not an Exception, so nothing on the way catches it."""


def _crowd(y, n=12, **kw):
    kw.setdefault("countries", ["TG", "KE", "FR"])
    return hitl.SimulatedCrowd.from_profile("realistic", n, truth=y, n_classes=3, random_state=0, **kw)


def _project(X, y, store=":memory:", **kw):
    crowd = kw.pop("crowd", None) or _crowd(y)
    kw.setdefault("start_date", START)
    kw.setdefault("progress", False)
    return hitl.LabelingProject(kw.pop("pool", None) or hitl.Pool(X), SklearnModel(LogisticRegression(), n_classes=3),
                                workforce=crowd, store=store, **kw)


# -- 2. out-of-range labels ---------------------------------------------------------------------------------
class _Liar(hitl.SimulatedCrowd):
    """A workforce that once answers label 7 in a 3-class project."""

    def answer(self, items, workers):
        out = super().answer(items, workers)
        if len(out) and not getattr(self, "lied", False):
            self.lied = True
            label = out.label.copy()
            label[-1] = 7
            return Answers(out.item, out.worker, label, out.seconds)
        return out


def test_an_out_of_range_answer_is_refused_and_the_store_still_resumes(blobs, tmp_path):
    X, y = blobs
    base = _crowd(y)
    liar = _Liar(base.hiters, base.accuracy, y, 3, seconds=base.seconds, random_state=0)
    db = tmp_path / "p.db"
    with pytest.raises(ValidationError) as err:
        _project(X, y, str(db), crowd=liar, budget=hitl.Budget(answers=60)).run(batch_size=10)
    assert err.value.field == "label" and "HITer 'hiter-" in str(err.value) and err.value.item is not None
    assert all(row[2] < 3 for row in _tables(db)["answers"])
    # The same store resumes with an honest workforce (it would have died in numpy on every resume before).
    result = _project(X, y, str(db), budget=hitl.Budget(answers=60)).run(batch_size=10)
    assert result.stop_reason == "budget" and result.summary["human_answers"] == 60


# -- 5. collect: the answers read and the count of what is left are one view --------------------------------------
class _WebAppCommitsBetween:
    """A connection that lets 'the web app' commit an answer just before the engine counts what is left."""

    def __init__(self, con, commit):
        self._con, self._commit = con, commit

    def execute(self, sql, *args):
        if "b.item IS NULL" in sql and self._commit is not None:
            commit, self._commit = self._commit, None
            commit()
        return self._con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)


def test_an_answer_committed_between_reading_and_counting_is_still_yielded(tmp_path):
    from hitl.human import HumanWorkforce
    from test_queue import PEOPLE, make_store

    db = tmp_path / "q.db"
    store = make_store(str(db))
    store.begin_round(0, items=np.array([0, 1]), workers=np.array([0, 1]))
    people = HumanWorkforce([HITer(h, c) for h, c in PEOPLE], texts=[f"text {i}" for i in range(6)], store=store,
                            timeout=2.0, poll_interval=0.05, progress=False)
    people.post(np.array([0, 1]))
    store.add_answers(0, np.array([0]), np.array([0]), np.array([1]), np.array([4.0]))

    def web_app_answers_item_1():
        other = Store(db)
        other.add_answers(0, np.array([1]), np.array([1]), np.array([2]), np.array([5.0]))
        other.close()

    store._db = _WebAppCommitsBetween(store._db, web_app_answers_item_1)
    got = [(int(i), int(w), int(lab)) for chunk in people.collect(np.array([0, 1]), np.array([0, 1]))
           for i, w, lab in zip(chunk.item, chunk.worker, chunk.label)]
    assert sorted(got) == [(0, 0, 1), (1, 1, 2)]


# -- 6. creating a project is one transaction ------------------------------------------------------------------
def test_a_crash_while_the_project_is_created_leaves_a_store_that_works(blobs, tmp_path, monkeypatch):
    X, y = blobs
    db = tmp_path / "p.db"

    def dies(*args, **kwargs):
        raise Crash()

    with monkeypatch.context() as m:
        m.setattr(Store, "add_items", dies)
        with pytest.raises(Crash):
            _project(X, y, str(db))
    project = _project(X, y, str(db), budget=hitl.Budget(answers=30))
    assert not project.resumed  # nothing of the first try was kept: the project is made anew
    assert project.run(batch_size=10).summary["human_answers"] == 30


# -- 7. a resumed run is the uninterrupted run ----------------------------------------------------------------------
def test_a_round_that_fails_to_open_leaves_no_unroutable_event(blobs, monkeypatch):
    X, y = blobs
    allowed = [["JP"] if i % 10 == 0 else None for i in range(len(y))]
    project = _project(X, y, pool=hitl.Pool(X, allowed_countries=allowed), budget=hitl.Budget(answers=200))

    def dies(*args, **kwargs):
        raise Crash()

    monkeypatch.setattr(Store, "begin_round", dies)
    with pytest.raises(Crash):
        project.run(batch_size=40)
    assert project.store.events("unroutable") == []


class _DiesOnceAfterAReAsk(hitl.SimulatedCrowd):
    """Killed while collecting, once a round has asked some items again (its first wave of re-asks is stored)."""

    store = None
    armed = True
    first: dict = {}

    def collect(self, items, workers, item_ids=None):
        r = self.store.open_round() if self.store is not None else None
        if r is not None:
            n = len(self.store.assignments(r)[0])
            if self.armed and n > self.first.setdefault(r, n):
                type(self).armed = False
                raise Crash()
        yield from super().collect(items, workers, item_ids)


def test_a_run_killed_after_a_wave_of_re_asks_resumes_to_the_same_result(blobs, tmp_path):
    X, y = blobs
    base = _crowd(y, n=15)

    def project(db, crowd_cls):
        crowd = crowd_cls(base.hiters, base.accuracy, y, 3, seconds=base.seconds, random_state=0)
        p = _project(X, y, str(db), crowd=crowd, budget=hitl.Budget(answers=260), y_true=y)
        crowd_cls.store = p.store
        return p

    straight = project(tmp_path / "a.db", hitl.SimulatedCrowd).run(batch_size=25)
    _DiesOnceAfterAReAsk.armed, _DiesOnceAfterAReAsk.first = True, {}
    with pytest.raises(Crash):
        project(tmp_path / "b.db", _DiesOnceAfterAReAsk).run(batch_size=25)
    assert not _DiesOnceAfterAReAsk.armed, "no round asked again: the test would prove nothing"
    resumed = project(tmp_path / "b.db", hitl.SimulatedCrowd).run(batch_size=25)
    assert _tables(tmp_path / "b.db") == _tables(tmp_path / "a.db")
    assert resumed.labels.equals(straight.labels)


# -- 8. a foreign store is refused ------------------------------------------------------------------------------
def test_resuming_with_other_features_strategy_or_seed_is_refused_unless_forced(blobs, tmp_path):
    X, y = blobs
    db = str(tmp_path / "p.db")
    _project(X, y, db, budget=hitl.Budget(answers=20)).run(batch_size=10)
    with pytest.raises(StoreError) as err:
        _project(X + 1.0, y, db)
    assert err.value.field == "features"
    with pytest.raises(StoreError, match="strategy"):
        _project(X, y, db, strategy="entropy")
    with pytest.raises(StoreError, match="random_state was 0, is now 1"):
        _project(X, y, db, random_state=1)
    with pytest.raises(StoreError, match="start_date"):
        _project(X, y, db, start_date=START + dt.timedelta(days=3))
    assert _project(X, y, db).resumed  # the same settings, start date left out: resumes
    forced = _project(X, y, db, strategy="entropy", force=True)
    assert forced.resumed and forced.store.config()["strategy"] == "entropy"
    assert forced.store.events("settings_changed")


@pytest.mark.parametrize("kind", ["empty", "foreign"])
def test_scorecard_on_an_empty_or_foreign_file_is_refused_and_writes_nothing(tmp_path, capsys, kind):
    path = tmp_path / "x.db"
    con = sqlite3.connect(path)
    if kind == "foreign":
        con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        con.commit()
    con.close()
    before = path.read_bytes()
    assert hitl_main(["scorecard", str(path), "--out", str(tmp_path / "card"), "--quiet"]) == 2
    assert "scorecard: error" in capsys.readouterr().err
    assert path.read_bytes() == before and not (tmp_path / "card").exists()


# -- 9. time on task is capped on every path ------------------------------------------------------------------------
def _import_one(store, lead_time):
    from hitl.labelstudio import export_tasks, import_annotations

    task = export_tasks(store)[0]
    export = [dict(task, id=1, annotations=[{"id": 1, "completed_by": 11, "lead_time": lead_time,
                                              "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                                          "value": {"choices": ["dog"]}}]}])]
    return import_annotations(store, export, {11: "ann"})


@pytest.mark.parametrize("lead_time", [259200, 1e308])
def test_a_tab_left_open_for_days_is_paid_as_one_lease(tmp_path, lead_time):
    from test_labelstudio import project_with_tasks

    store, _ = project_with_tasks(tmp_path / "p.db")
    report = _import_one(store, lead_time)
    (seconds,) = store.answers()["seconds"].tolist()
    assert seconds <= 600  # never three days
    limit = store.task_seconds()
    assert seconds == limit and report["recorded"] == 1 and report["capped"] == 1
    store.finish_round(0, {})
    ledger = Ledger.from_store(store)
    # The HITer is owed at most the floor over one lease, not three days of pay.
    wage = ledger.hiters()["hourly_settled"].iloc[0]
    assert ledger.totals()["topup_micros"] <= ledger.floor_multiple * wage * limit / 3600 * 1e6 + 1
    assert hitl_main(["scorecard", str(tmp_path / "p.db"), "--out", str(tmp_path / "card"), "--quiet"]) == 0


# -- 10. closing a round and settling it are one transaction ---------------------------------------------------------
def test_a_crash_between_closing_and_settling_the_last_round_still_pays_the_top_ups(blobs, tmp_path, monkeypatch):
    X, y = blobs
    kw = dict(budget=hitl.Budget(answers=120), y_true=y)
    straight = _project(X, y, str(tmp_path / "a.db"), **kw).run(batch_size=20)
    last = straight.summary["rounds"] - 1
    top_ups = [r for r in _tables(tmp_path / "a.db")["ledger"] if r[0] == "topup"]
    assert any(r[3] == last for r in top_ups), "no top-up in the last round: the test would prove nothing"
    calls = {"n": 0}
    settle = Ledger.settle

    def dies_on_the_last_round(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == last + 1:
            raise Crash()
        return settle(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Ledger, "settle", dies_on_the_last_round)
        with pytest.raises(Crash):
            _project(X, y, str(tmp_path / "b.db"), **kw).run(batch_size=20)
    resumed = _project(X, y, str(tmp_path / "b.db"), **kw).run(batch_size=20)
    assert _tables(tmp_path / "b.db") == _tables(tmp_path / "a.db")
    assert resumed.summary["paid"] == straight.summary["paid"]


# -- 11. a task handed to another HITer is priced for them ---------------------------------------------------------
def test_a_task_moved_to_another_hiter_is_re_priced_and_billed_once():
    from test_queue import make_store, post_texts

    store = make_store(people=(("ann", "FR"), ("bob", "TG")))
    store.begin_round(0, items=np.array([0]), workers=np.array([0]))
    ledger = Ledger(store)
    ann_pay, ann_price = ledger.quote(0, [0], [0])  # quoted when the task is assigned, as the engine does
    q = TaskQueue(store)
    q.configure(lease_seconds=60, share_after=0)
    post_texts(q, [0])
    assert q.next_task(0, now=1000.0).item == 0  # ann takes it and walks away
    assert q.next_task(1, now=1100.0).item == 0  # her lease ran out: bob gets it
    bob_pay, bob_price = ledger.quote(0, [0], [1], record=False)
    assert bob_pay[0] != ann_pay[0]  # minimum wages differ between France and Togo
    # Only bob's task counts toward the client's spending, at bob's price.
    assert ledger.spent_micros() == int(bob_price[0])
    q.submit(1, 0, 2, now=1110.0)
    lines = ledger.lines()
    assert lines[["hiter", "hiter_micros"]].values.tolist() == [["bob", int(bob_pay[0])]]


# -- 14. no silent outcomes ---------------------------------------------------------------------------------------
def test_a_budget_of_zero_answers_says_nothing_was_labeled(blobs, capsys):
    X, y = blobs
    result = _project(X, y, budget=hitl.Budget(answers=0), y_true=y, progress=True).run(batch_size=10)
    s = result.summary
    assert result.stop_reason == "budget" and s["unlabeled"] == len(y) and s["label_accuracy"] is None
    assert result.labels["label"].isna().all() and set(result.labels["source"]) == {"none"}
    out = capsys.readouterr().out
    assert "stopped at the budget" in out and f"{len(y)} item(s) have no label" in out
    assert any("no label" in m for m in s["messages"])


def test_items_nobody_may_see_are_reported_on_screen(blobs, capsys):
    X, y = blobs
    allowed = [["JP"] if i % 10 == 0 else None for i in range(len(y))]
    result = _project(X, y, pool=hitl.Pool(X, allowed_countries=allowed), budget=hitl.Budget(answers=80),
                      progress=True).run(batch_size=40)
    assert result.summary["unroutable"] > 0
    assert f"{result.summary['unroutable']} item(s) may go to no HITer" in capsys.readouterr().out


def test_a_run_with_nobody_eligible_says_why_it_stopped(blobs, capsys):
    X, y = blobs
    pool = hitl.Pool(X, item_types=["scan"] * len(y))
    result = _project(X, y, pool=pool, required_skills=True, progress=True).run(batch_size=10)
    assert result.stop_reason == "no_eligible_hiters"
    assert "no HITer of this workforce may take the items left" in capsys.readouterr().out


# -- 15. typed errors where a HitlError belongs ----------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [2.5, "10", None, 0, True])
def test_a_bad_batch_size_is_a_config_error(blobs, batch_size):
    X, y = blobs
    with pytest.raises(ConfigError, match="batch_size"):
        _project(X, y).run(batch_size=batch_size)


@pytest.mark.parametrize("money", ["ten", float("inf"), float("nan"), -1, True])
def test_a_bad_money_budget_is_a_config_error(money):
    with pytest.raises(ConfigError, match="money"):
        hitl.Budget(money=money)


@pytest.mark.parametrize("case", ["classes_vs_crowd", "classes_vs_model", "random_state", "pay", "skills",
                                  "eval_columns", "eval_length", "truth_short"])
def test_a_project_that_cannot_work_is_refused_when_it_is_built(blobs, case):
    X, y = blobs
    kw = {
        "classes_vs_crowd": dict(classes=["a", "b"]),
        "random_state": dict(random_state="x"),
        "pay": dict(pay={"bogus": 1}),
        "skills": dict(required_skills="x"),
        "eval_columns": dict(eval_set=(X[:10, :1], y[:10])),
        "eval_length": dict(eval_set=(X[:10], y[:9])),
        "truth_short": dict(crowd=_crowd(y[:-5])),
    }.get(case, {})
    with pytest.raises(HitlError) as err:
        if case == "classes_vs_model":
            hitl.LabelingProject(hitl.Pool(X), SklearnModel(LogisticRegression(), n_classes=4), workforce=_crowd(y))
        else:
            _project(X, y, **kw)
    assert isinstance(err.value, ConfigError)


def test_texts_shorter_than_the_pool_are_refused_when_the_project_is_built(blobs):
    from hitl.human import HumanWorkforce

    X, y = blobs
    people = HumanWorkforce([HITer("ann", "FR")], texts=["a text"] * (len(y) - 1), progress=False)
    with pytest.raises(ConfigError, match="texts|workforce"):
        _project(X, y, crowd=people, classes=["a", "b", "c"])


def test_a_deeply_nested_label_studio_export_is_a_format_error(tmp_path, capsys):
    from test_labelstudio import project_with_tasks

    project_with_tasks(tmp_path / "p.db")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert hitl_main(["labelstudio", "import", str(tmp_path / "p.db"), str(deep)]) == 2
    assert "nested too deeply" in capsys.readouterr().err
    with pytest.raises(DataFormatError):
        from hitl.labelstudio import read_annotations

        read_annotations(deep)


def test_a_model_that_does_not_know_every_class_is_a_typed_error(blobs):
    X, y = blobs
    model = SklearnModel(LogisticRegression())  # n_classes left out: it learns only the classes it has seen
    project = hitl.LabelingProject(hitl.Pool(X), model, workforce=_crowd(y), classes=["a", "b", "c"],
                                   gold={str(i): "a" if i % 2 else "b" for i in range(20)}, progress=False)
    with pytest.raises(ValidationError, match="n_classes=3"):
        project.run(batch_size=10, max_rounds=1)
