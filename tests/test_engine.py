import sqlite3

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import hitl
from hitl.errors import ConfigError, ValidationError
from hitl.models import SklearnModel


def _project(X, y, store=":memory:", **kw):
    crowd = kw.pop("crowd", None) or hitl.SimulatedCrowd.from_profile(
        "realistic", 15, truth=y, n_classes=3, countries=["TG", "KE", "FR"], random_state=0)
    pool = kw.pop("pool", None) or hitl.Pool(X)
    return hitl.LabelingProject(pool, SklearnModel(LogisticRegression(), n_classes=3), workforce=crowd, store=store,
                                progress=False, **kw)


def test_run_labels_the_whole_pool(blobs):
    X, y = blobs
    result = _project(X, y, budget=hitl.Budget(answers=90), y_true=y, eval_set=(X[:50], y[:50]),
                      router=hitl.Router(guarantee=False, answers_per_item=3)).run(batch_size=10)
    s = result.summary
    assert result.stop_reason == "budget" and s["human_answers"] == 90 and s["human_labeled"] == 30
    assert len(result.labels) == 300 and set(result.labels.source) == {"machine", "aggregated"}
    assert s["label_accuracy"] > 0.9 and s["model_accuracy"] >= 0.85
    assert s["auto_accepted"] > 0
    curve = result.curve.to_frame()
    assert curve.human_answers.tolist() == [0, 30, 60, 90]
    assert curve.label_accuracy.iloc[-1] == pytest.approx(s["label_accuracy"])
    ax = result.curve.plot()
    assert len(ax.lines) == 3


def test_budget_never_exceeded_with_odd_sizes(blobs):
    X, y = blobs
    result = _project(X, y, budget=hitl.Budget(answers=50), answers_per_item=3, target_accuracy=1.0).run(batch_size=7)
    assert result.summary["human_answers"] <= 50
    assert result.summary["human_answers"] >= 48  # it spends what it can in whole items


def test_pool_exhausted_stops(blobs):
    X, y = blobs
    result = _project(X[:30], y[:30], target_accuracy=1.0).run(batch_size=8)
    assert result.stop_reason == "complete"
    assert result.summary["human_labeled"] == 30 and (result.labels.source != "machine").all()


def test_residency_is_never_broken_during_a_run(blobs, tmp_path):
    X, y = blobs
    rng = np.random.default_rng(1)
    allowed = [None if r < 0.6 else ["FR"] if r < 0.9 else ["US"] for r in rng.random(300)]
    db = tmp_path / "p.db"
    result = _project(X, y, store=str(db), pool=hitl.Pool(X, allowed_countries=allowed), answers_per_item=2,
                      budget=hitl.Budget(answers=400), target_accuracy=1.0).run(batch_size=40)
    con = sqlite3.connect(db)
    rows = con.execute("SELECT i.allowed, w.country FROM assignments a JOIN items i ON a.item = i.idx "
                       "JOIN workers w ON a.worker = w.idx").fetchall()
    assert len(rows) > 100
    assert all(a is None or c in a.split(",") for a, c in rows)
    assert any(a == "FR" for a, _ in rows)
    # items only US HITers may see are reported, never sent anywhere
    assert result.summary["unroutable"] > 0
    assert not any(a == "US" for a, _ in rows)


def test_modal_style_strategy_function_is_accepted(blobs):
    X, y = blobs

    def most_uncertain(classifier, X_pool, n_instances=1, **kw):
        p = classifier.predict_proba(X_pool)
        return np.argsort(p.max(1))[:n_instances]

    result = _project(X, y, strategy=most_uncertain, budget=hitl.Budget(answers=40)).run(batch_size=10)
    assert result.summary["human_answers"] == 40


@pytest.mark.parametrize("kwargs, field", [
    (dict(pool=np.zeros((3, 2))), "pool"),
    (dict(model=object()), "model"),
    (dict(target_accuracy=1.5), "target_accuracy"),
    (dict(classes=["a", "a"]), "classes"),
    (dict(y_true=np.array([0, 1])), "y_true"),
    (dict(y_true=np.full(300, 9)), "y_true"),
])
def test_bad_project_settings(blobs, kwargs, field):
    X, y = blobs
    base = dict(pool=hitl.Pool(X), model=SklearnModel(LogisticRegression(), n_classes=3))
    base.update(kwargs)
    crowd = hitl.SimulatedCrowd.from_profile("realistic", 5, truth=y, n_classes=3)
    with pytest.raises(ValidationError) as err:
        hitl.LabelingProject(base.pop("pool"), base.pop("model"), workforce=crowd, progress=False, **base)
    assert err.value.field == field


def test_bad_batch_size(blobs):
    X, y = blobs
    with pytest.raises(ConfigError, match="batch_size"):
        _project(X, y).run(batch_size=0)


def test_futile_audits_stop_at_the_audit_size():
    # Features carry no signal: the model is right a third of the time even where it is
    # surest, so auditing past audit_size cannot make any threshold pass.
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 1000)
    X = rng.normal(size=(1000, 4)).astype(np.float32)
    kw = dict(y_true=y, router=hitl.Router(0.95, 0.95, audit_size=100, audit_max_share=0.3, random_state=0),
              budget=hitl.Budget(answers=2500))
    project = _project(X, y, **kw)
    project.run(batch_size=40)
    kinds = project.store.assignment_table()
    audited = len(np.unique(kinds["item"][kinds["kind"] == "audit"]))
    assert 100 <= audited <= 110  # audit_size, plus at most one round's share
    futile = project.store.events("audits_futile")
    assert futile and len(futile) == len({e["payload"]["audited"] for e in futile})


def test_more_audits_could_pass_follows_the_top_of_the_confidences():
    r = hitl.Router(0.95, 0.95)
    conf = np.linspace(0.4, 1.0, 200)
    # Wrong only below the median confidence: the top share the test would start from is clean.
    correct = (conf > 0.7) | (np.arange(200) % 2 == 0)
    assert r.more_audits_could_pass(conf, correct, pool_size=5000)
    # Wrong every fourth item all the way up: no region of the top can reach 0.95.
    assert not r.more_audits_could_pass(conf, np.arange(200) % 4 != 0, pool_size=5000)
    assert r.more_audits_could_pass(np.zeros(0), np.zeros(0, bool), pool_size=5000)
    # Not promising: no extension past audit_size; promising: up to audit_max_share of the pool.
    assert r.audits_wanted(150, 100, 5000, passed=False, promising=False) == 0
    assert r.audits_wanted(150, 100, 5000, passed=False, promising=True) == 25
    assert hitl.Router(guarantee=False).more_audits_could_pass(conf, correct, pool_size=5000)


@pytest.mark.parametrize("escalate", [True, False])
def test_reasks_go_to_the_more_reliable_half(blobs, escalate):
    X, y = blobs
    acc = np.r_[np.full(8, 0.97), np.full(8, 0.55)]
    crowd = hitl.SimulatedCrowd.from_accuracies(acc, 16, truth=y, n_classes=3, binary=False, countries=["TG"],
                                                random_state=3)
    project = _project(X, y, crowd=crowd, y_true=y,
                       router=hitl.Router(0.95, 0.95, guarantee=False, auto_accept=1.0, escalate=escalate))
    project.run(batch_size=30)
    ans = project.store.answers()
    true_acc = crowd.accuracy[project._wback[ans["worker"]]]
    # An item's first answer is its first row in commit order; every later one is a re-ask.
    first = np.zeros(len(ans["item"]), dtype=bool)
    first[np.unique(ans["item"], return_index=True)[1]] = True
    good_first, good_reask = (true_acc[first] > 0.9).mean(), (true_acc[~first] > 0.9).mean()
    assert (~first).sum() > 30
    if escalate:
        # Skills are estimated as the run goes, so a few re-asks reach the weaker half early on.
        assert good_reask > 0.85 and good_reask > good_first + 0.15
    else:
        assert good_reask < 0.75
