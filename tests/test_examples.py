"""The scripts in examples/ run and print what they promise."""

import runpy
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _main(name):
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="example")["main"]


def test_guaranteed_labels(tmp_path, capsys):
    s = _main("guaranteed_labels")(["--out", str(tmp_path / "out"), "--items", "600"])
    printed = capsys.readouterr().out
    assert s["label_accuracy"] >= 0.95 and s["human_answers"] < 3 * 600
    assert "human answers" in printed and "ScoreCard" in printed
    assert (tmp_path / "out" / "scorecard" / "scorecard.html").stat().st_size > 1000
    assert (tmp_path / "out" / "project.db").exists()


def test_aggregate_answers_simulated(capsys):
    table = _main("aggregate_answers")([])
    printed = capsys.readouterr().out
    assert "DawidSkene" in printed and "MajorityVote" in printed
    assert len(table) == 30 and np.all((table.lower <= table.accuracy) & (table.accuracy <= table.upper))


def test_aggregate_answers_from_files(tmp_path, capsys):
    (tmp_path / "answers.csv").write_text("task,worker,label\na,x,cat\na,y,cat\na,z,dog\nb,x,dog\nb,y,dog\n")
    (tmp_path / "gold.csv").write_text("task,label\na,cat\n")
    table = _main("aggregate_answers")([str(tmp_path / "answers.csv"), "--gold", str(tmp_path / "gold.csv")])
    assert "1.0000 on 1 gold tasks" in capsys.readouterr().out
    assert sorted(table.worker) == ["x", "y", "z"]


def test_modal_interop(capsys):
    pytest.importorskip("modAL")
    out = _main("modal_interop")(["--queries", "3"])
    assert out["modal_accuracy"] > 0.8 and out["project_accuracy"] > 0.8
    assert "modAL ActiveLearner" in capsys.readouterr().out
