"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    blocks = re.findall(r"<!-- the test suite runs this block as written -->\n```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 22
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    result = namespace["result"]
    assert result.summary["human_answers"] == 900
    assert result.summary["label_accuracy"] > 0.9
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    assert (tmp_path / "labels.db").exists()
    assert len(namespace["labels"]) == 1797
