import json

from hitl.cli import main


def test_demo_writes_curve_and_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--budget", "360", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "round" in printed and "label accuracy" in printed
    summary = json.loads((out / "summary.json").read_text())
    for key in ("human_answers", "label_accuracy", "model_accuracy", "auto_accepted"):
        assert key in summary
    assert summary["human_answers"] == 360
    assert 0.5 < summary["label_accuracy"] <= 1.0
    png = (out / "curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out
