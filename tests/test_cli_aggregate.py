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
    # adult2 and trec_rf10 hold workers who answered a task twice with different labels
    rule = "last" if name in ("adult2", "trec_rf10") else "refuse"
    assert main(["aggregate", str(folder), "--method", "ds", "--out", str(out), "--workers", str(workers),
                 "--duplicates", rule]) == 0
    ds = load_crowd_dataset(folder, duplicates=rule)
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


def test_a_row_with_an_extra_field_stops_the_command(tmp_path, capsys):
    # Item A: exit 0 with tasks 'w1' and labels 'EXTRA' before; now an error naming file and line.
    answers = tmp_path / "answers.csv"
    answers.write_text("task,worker,label\nt1,w1,yes\nt2,w1,yes,EXTRA\n")
    assert main(["aggregate", str(answers), "--method", "mv"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hitl aggregate: error:")
    assert str(answers) in err and "line 3: 4 fields, but the header has 3" in err


def test_repeats_count_once_and_conflicts_need_a_rule(tmp_path, capsys):
    # Item B through the command: ten identical rows are one vote and one answer of w_evil.
    rows = ["task,worker,label"] + ["t1,w_evil,yes"] * 10 + ["t1,h1,no", "t1,h2,no", "t1,h3,no", "t2,h1,yes"]
    answers = tmp_path / "answers.csv"
    answers.write_text("\n".join(rows) + "\n")
    out, workers = tmp_path / "l.csv", tmp_path / "w.csv"
    for method in ("mv", "wawa", "ds", "onecoin", "glad", "mace"):
        assert main(["aggregate", str(answers), "--method", method, "--out", str(out), "--workers", str(workers)]) == 0
        assert pd.read_csv(out).set_index("task").loc["t1", "label"] == "no", method
        w = pd.read_csv(workers).set_index("worker")
        assert w.loc["w_evil", "n_answers"] == 1 and w["n_answers"].sum() == 5
    assert "9 repeated answer(s)" in capsys.readouterr().err
    # w_evil changes their mind on line 12: refused by default, the last answer counts with --duplicates last
    rows[11] = "t1,w_evil,no"
    answers.write_text("\n".join(rows) + "\n")
    assert main(["aggregate", str(answers), "--method", "mv"]) == 2
    err = capsys.readouterr().err
    assert "worker 'w_evil' answered task 't1' twice with different labels: 'yes' (line 11) and 'no' (line 12)" in err
    assert main(["aggregate", str(answers), "--method", "mv", "--duplicates", "last", "--workers", str(workers)]) == 0
    assert pd.read_csv(workers).set_index("worker").loc["w_evil", "n_answers"] == 1


@pytest.mark.parametrize("flag", ["--out", "--workers"])
def test_output_into_a_missing_folder_is_a_clear_error(small_crowd, tmp_path, flag, capsys):
    # Item C2: a traceback (OSError) before.
    answers, _, _ = small_crowd
    target = tmp_path / "no" / "such" / "dir" / "x.csv"
    assert main(["aggregate", str(answers), "--method", "mv", flag, str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hitl aggregate: error:") and "Traceback" not in err
    assert str(target) in err and flag in err and "does not exist" in err
    assert main(["aggregate", str(answers), "--method", "mv", flag, str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_an_unwritable_output_is_a_clear_error(small_crowd, tmp_path, capsys, monkeypatch):
    answers, _, _ = small_crowd

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pd.DataFrame, "to_csv", refuse)
    assert main(["aggregate", str(answers), "--method", "mv", "--out", str(tmp_path / "l.csv")]) == 2
    err = capsys.readouterr().err
    assert "cannot be written (Permission denied)" in err and str(tmp_path / "l.csv") in err


def test_too_many_labels_for_the_spammer_matrices_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import hitl.aggregation._base as base

    # 5 tasks, 50 workers, 10 labels: the vote needs ~1.6 kB, the workers' 10 x 10 matrices ~120 kB
    rows = [(f"t{i % 5}", f"w{i}", f"l{i % 10}") for i in range(50)]
    answers = tmp_path / "answers.csv"
    pd.DataFrame(rows, columns=["task", "worker", "label"]).to_csv(answers, index=False)
    monkeypatch.setattr(base, "memory_limit_bytes", lambda: 200_000)
    assert main(["aggregate", str(answers), "--method", "mv"]) == 0
    monkeypatch.setattr(base, "memory_limit_bytes", lambda: 10_000)
    capsys.readouterr()
    assert main(["aggregate", str(answers), "--method", "mv"]) == 2
    assert "field 'n_classes': is 10: 50 workers' 10 x 10 confusion matrices" in capsys.readouterr().err
