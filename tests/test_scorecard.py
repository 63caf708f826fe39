"""The ScoreCard: every total equals the sum of the ledger's lines; what is not recorded is said so."""

import datetime as dt
import json
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from hitl import HITer
from hitl.cli import main
from hitl.errors import ConfigError
from hitl.impact import Ledger, ScoreCard
from test_impact_ledger import make_store, projects


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=projects())
def test_scorecard_totals_are_the_sums_of_the_ledger(spec):
    store = make_store(**spec)
    card = ScoreCard.from_store(store)
    d = card.to_dict()
    lines = card.ledger.lines()
    task, top = lines[lines["kind"] == "task"], lines[lines["kind"] == "topup"]
    assert d["pay"]["total_paid_micros"] == lines["hiter_micros"].sum()
    assert d["pay"]["task_pay_micros"] == task["hiter_micros"].sum()
    assert d["pay"]["topup_micros"] == top["hiter_micros"].sum()
    assert d["pay"]["topup_lines"] == len(top)
    assert d["pay"]["hiters_topped_up"] == top["worker"].nunique()
    assert d["split"]["price_micros"] == lines["price_micros"].sum()
    for p in ("hiter", "platform", "programme"):
        assert d["split"][f"{p}_micros"] == lines[f"{p}_micros"].sum()
    assert sum(d["split"][f"{p}_micros"] for p in ("hiter", "platform", "programme")) == d["split"]["price_micros"]
    assert d["pay"]["paid_by_country_micros"] == {c: int(v) for c, v in lines.groupby("country")["hiter_micros"].sum().items()}
    assert sum(d["pay"]["paid_by_country_micros"].values()) == d["pay"]["total_paid_micros"]
    assert d["work"]["human_answers"] == len(task) == store.n_answers()
    assert d["work"]["hiters"] == task["worker"].nunique() == sum(d["work"]["hiters_by_country"].values())
    secs = store._db.execute("SELECT SUM(seconds) FROM answers").fetchone()[0]
    assert d["work"]["human_hours"] == pytest.approx(secs / 3600, abs=1e-4)
    # After top-ups, nobody is below the floor over the project either.
    assert d["wage_multiple"]["hiters_at_or_above_floor"] == d["work"]["hiters"]
    assert d["wage_multiple"]["min"] >= 2 - 1e-3
    # Savings: (3 x items labeled - answers) x mean client price per answer.
    labeled = len(set(task["item"]))  # no labels table rows here: items with answers
    sv = d["savings"]
    assert sv["baseline_answers"] == 3 * labeled
    exact = Fraction(int(task["price_micros"].sum()), len(task)) * (3 * labeled - len(task))
    assert abs(sv["cost_saved_micros"] - exact) <= Fraction(1, 2)


def _project_with_labels():
    store = make_store(
        n_items=10,
        hiters=[HITer("a", "TG", start_date=dt.date(2020, 1, 1)), HITer("b", "KE", start_date=dt.date(2025, 6, 1)),
                HITer("c", "FR", start_date=dt.date(2026, 1, 1))],
        rounds=[([0, 0, 1, 2, 3], [0, 1, 0, 2, 1], [8.0, 12.0, 30.0, 10.0, 10.0])],
        allowed=[None, None, ["FR"], ["FR", "TG"], None, None, None, None, None, None],
    )
    store.set_labels(0, np.array([0, 1, 2, 3]), np.array([1, 0, 1, 0]), ["aggregated", "human", "human", "human"],
                     np.ones(4))
    store.set_labels(1, np.arange(4, 10), np.zeros(6, np.int64), "machine", np.full(6, 0.9))
    return store


def test_card_reads_what_the_store_holds():
    store = _project_with_labels()
    store.log("finished", {"label_accuracy": 0.97, "accepted_accuracy": 0.99, "auto_accepted": 5, "machine_unaccepted": 1})
    card = ScoreCard.from_store(store, as_of=dt.date(2026, 6, 1))
    d = card.data
    assert d["items"] == {"total": 10, "labeled": 10, "human": 4, "human_single": 3, "aggregated": 1, "machine": 6,
                          "auto_accepted": 5, "machine_unaccepted": 1}
    assert d["accuracy"]["label_accuracy"] == 0.97 and d["accuracy"]["bound_text"] == "not computed"
    # Residency recomputed: item 2 (FR only) went to FR, item 3 (FR, TG) went to KE: one failure.
    rs = d["residency"]
    assert (rs["assignments"], rs["passed"], rs["restricted"], rs["failed"]) == (5, 4, 2, 1)
    assert rs["failures"] == [{"item": "i3", "country": "KE", "allowed": "FR,TG"}]
    # Tenure: a (2020-01-01) is past three years on 2026-06-01; b and c are within.
    assert (d["tenure"]["hiters"], d["tenure"]["within_window"]) == (3, 2)
    assert d["skills"] == {"gained": 0, "hiters": 0, "by_skill": {}, "recorded": False}
    assert d["savings"]["baseline_answers"] == 30 and d["savings"]["answers_saved"] == 25
    assert d["wages"]["TG"]["source"].startswith("Government of Togo") and d["wages"]["TG"]["currency"] == "XOF"
    assert set(d["work"]["hiters_by_country"]) == {"TG", "KE", "FR"}


def test_bound_and_skills_when_recorded():
    store = _project_with_labels()
    store.log("skill_gained", {"worker": 0, "hiter": "a", "skill": "bbox"})
    store.log("skill_gained", {"worker": 1, "hiter": "b", "skill": "bbox"})
    store.log("skill_gained", {"worker": 1, "hiter": "b", "skill": "ocr"})
    store.log("finished", {"label_accuracy": 0.97, "accuracy_bound": 0.9412, "confidence": 0.95, "audited": 50,
                           "rounds": 7, "stop_reason": "budget"})
    d = ScoreCard.from_store(store).data
    assert d["accuracy"]["accuracy_bound"] == 0.9412
    assert d["accuracy"]["bound_text"] == "at least 0.941 (95% confidence, 50 audits)"
    assert d["run"] == {"rounds": 7, "stop_reason": "budget"}
    assert d["skills"] == {"gained": 3, "hiters": 2, "by_skill": {"bbox": 2, "ocr": 1}, "recorded": True}


def test_outputs(tmp_path):
    store = _project_with_labels()
    card = ScoreCard.from_store(store)
    paths = card.write(tmp_path / "card")
    d = json.loads(paths["json"].read_text())
    assert d["pay"]["total_paid_micros"] == card.data["pay"]["total_paid_micros"]
    md = paths["markdown"].read_text()
    assert "## Fair pay" in md and "![" in md and "Government of Togo" in md
    for name in ("pay_multiple", "split", "labels", "hiters"):
        png = paths[name].read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
        assert f"charts/{name}.png" in md
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 4
    assert "http://" not in page and "https://" not in page  # self-contained
    assert "not computed" in page
    text = card.summary()
    assert "paid to HITers" in text and "USD" in text


def test_a_ledger_and_its_settings_are_not_both_given():
    store = _project_with_labels()
    with pytest.raises(ConfigError):
        ScoreCard.from_store(store, ledger=Ledger(store), fair_multiple=3)
    with pytest.raises(ConfigError):
        ScoreCard.from_store(store, baseline_answers_per_item=0)


def test_empty_project():
    card = ScoreCard.from_store(make_store())
    d = card.data
    assert d["work"]["human_answers"] == 0 and d["pay"]["total_paid_micros"] == 0
    assert d["wage_multiple"]["median"] is None and d["tenure"]["share_within_window"] is None
    assert "n/a" in card.to_markdown()
    card.to_html()


def test_cli_writes_the_card(tmp_path, capsys):
    db = tmp_path / "p.db"
    make_store(rounds=[([0, 1, 2], [0, 1, 2], [8.0, 50.0, 9.0])], path=str(db)).close()
    out = tmp_path / "out"
    assert main(["scorecard", str(db), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"scorecard.json", "scorecard.md", "scorecard.html", "charts"}
    first = json.loads((out / "scorecard.json").read_text())
    assert "paid to HITers" in capsys.readouterr().out
    # Run again: nothing re-priced, nothing topped up twice.
    assert main(["scorecard", str(db), "--out", str(out), "--quiet"]) == 0
    again = json.loads((out / "scorecard.json").read_text())
    assert again["pay"] == first["pay"] and again["split"] == first["split"]
    assert main(["scorecard", str(db), "--out", str(out), "--split", "70/25/5"]) == 2
    assert "split" in capsys.readouterr().err
    assert main(["scorecard", str(tmp_path / "missing.db"), "--out", str(out)]) == 2
    assert not (tmp_path / "missing.db").exists()
