"""``hitl aggregate``: outputs, every method, real data folders, and clear errors on malformed files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hitl.aggregation import list_crowd_datasets
from hitl.aggregation.io import crowd_data_root, load_crowd_dataset, read_answers_csv
from hitl.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "aggregation"
REPO = Path(__file__).resolve().parents[1]
REAL = list_crowd_datasets()
needs_real = pytest.mark.skipif(not REAL, reason="crowd data folder absent (set HITL_CROWD_DATA)")


@pytest.fixture
def small_crowd(tmp_path):
    """A small answer set with string ids, a gold file, and one worker who always says 'yes'."""
    rows = []
    truth = {f"item-{i}": ("yes" if i % 3 else "no") for i in range(60)}
    for i, (task, y) in enumerate(truth.items()):
        rows.append((task, "alice", y))
        rows.append((task, "bob", y if i % 5 else ("no" if y == "yes" else "yes")))
        rows.append((task, "carol", y if i % 4 else ("no" if y == "yes" else "yes")))
        rows.append((task, "lazy", "yes"))
    answers = tmp_path / "answers.csv"
    pd.DataFrame(rows, columns=["task", "worker", "label"]).to_csv(answers, index=False)
    gold = tmp_path / "gold.csv"
    pd.DataFrame({"task": list(truth)[:30], "label": list(truth.values())[:30]}).to_csv(gold, index=False)
    return answers, gold, truth


@pytest.mark.parametrize("method", ["mv", "wawa", "ds", "onecoin", "glad", "mace"])
def test_every_method_writes_labels_and_workers(small_crowd, tmp_path, method, capsys):
    answers, gold, truth = small_crowd
    out, workers = tmp_path / "labels.csv", tmp_path / "workers.csv"
    rc = main(["aggregate", str(answers), "--method", method, "--gold", str(gold), "--out", str(out),
               "--workers", str(workers)])
    assert rc == 0
    labels = pd.read_csv(out, dtype={"task": str, "label": str})
    assert list(labels.columns) == ["task", "label", "confidence"]
    assert set(labels["task"]) == set(truth)
    assert labels["confidence"].between(0, 1).all()
    truth = pd.Series(truth)
    acc = (labels.set_index("task")["label"].reindex(truth.index) == truth).mean()
    # majority vote is misled by the worker who always says "yes"; the others learn to ignore them
    assert acc >= (0.85 if method in ("mv", "wawa") else 0.95)
    w = pd.read_csv(workers).set_index("worker")
    assert list(w.columns[:3]) == ["accuracy", "n_answers", "spammer"]
    assert w.loc["alice", "accuracy"] == 1.0  # from gold: alice is always right
    assert w.loc["alice", "n_answers"] == 60
    assert not w.loc["alice", "spammer"]
    assert w.loc["lazy", "spammer"]  # always the same answer: a rank-one confusion matrix
    assert "gold tasks" in capsys.readouterr().err


def test_labels_to_stdout_without_out(small_crowd, capsys):
    answers, _, truth = small_crowd
    assert main(["aggregate", str(answers), "--method", "mv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "task,label,confidence"
    assert len(out) == 1 + len(truth)


def test_folder_argument_uses_its_gold(small_crowd, tmp_path, capsys):
    answers, gold, _ = small_crowd
    assert main(["aggregate", str(answers.parent), "--out", str(tmp_path / "l.csv")]) == 0
    assert "accuracy on 30 gold tasks: 1.0000" in capsys.readouterr().err


@pytest.mark.parametrize(
    "answers, gold, message",
    [
        ("missing_label_column.csv", None, "missing column(s) label"),
        ("empty.csv", None, "file is empty"),
        ("header_only.csv", None, "no rows"),
        ("task_without_answer.csv", None, "line 4: task 't3' has no worker"),
        ("does_not_exist.csv", None, "file not found"),
        ("answers_ok.csv", "gold_missing_label.csv", "missing column(s) label"),
        ("answers_ok.csv", "gold_conflict.csv", "two different gold labels"),
        ("answers_ok.csv", "empty.csv", "file is empty"),
    ],
)
def test_malformed_files_get_a_clear_message(answers, gold, message, capsys):
    argv = ["aggregate", str(FIXTURES / answers)]
    if gold:
        argv += ["--gold", str(FIXTURES / gold)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert err.startswith("hitl aggregate: error:")


def test_fixture_ok_files_are_fine(capsys):
    assert main(["aggregate", str(FIXTURES / "answers_ok.csv"), "--gold", str(FIXTURES / "gold_ok.csv")]) == 0


def test_console_script_in_a_subprocess(small_crowd, tmp_path):
    answers, gold, _ = small_crowd
    exe = Path(sys.executable).with_name("hitl")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "hitl"]
    ok = subprocess.run(cmd + ["aggregate", str(answers), "--method", "ds", "--out", str(tmp_path / "l.csv")],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "l.csv").read_text().startswith("task,label,confidence")
    bad = subprocess.run(cmd + ["aggregate", str(FIXTURES / "missing_label_column.csv")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "missing column(s) label" in bad.stderr and "Traceback" not in bad.stderr


@needs_real
@pytest.mark.parametrize("name", REAL)
def test_every_real_data_folder(name, tmp_path, capsys):
    folder = crowd_data_root() / name
    out, workers = tmp_path / "l.csv", tmp_path / "w.csv"
    assert main(["aggregate", str(folder), "--method", "ds", "--out", str(out), "--workers", str(workers)]) == 0
    ds = load_crowd_dataset(folder)
    labels = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert set(labels["task"]) == set(ds.answers["task"])
    w = pd.read_csv(workers, dtype={"worker": str}, keep_default_na=False)
    assert len(w) == ds.answers["worker"].nunique()
    assert w["n_answers"].sum() == len(ds.answers)
    err = capsys.readouterr().err
    assert "gold tasks" in err
    accuracy = float(err.rsplit(":", 1)[1])
    assert accuracy > 0.45


@needs_real
def test_real_folders_keep_ids_as_strings():
    for name in REAL:
        answers = read_answers_csv(crowd_data_root() / name / "answers.csv")
        assert all(answers[c].map(type).eq(str).all() for c in answers.columns)
