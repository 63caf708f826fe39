"""Copy the benchmark tables into README.md between their markers.

Each ``<!-- BEGIN benchmarks/results/NAME.md -->`` ... ``<!-- END benchmarks/results/NAME.md -->``
block of the README is replaced by the current content of that generated file, so the
README shows what the scripts measured, never numbers typed by hand.

Usage: ``python benchmarks/update_readme.py``
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()

    def fill(match: re.Match) -> str:
        name = match.group(1)
        path = ROOT / name
        body = path.read_text().strip() if path.exists() else f"_{name} has not been generated yet._"
        # Images in the results files are relative to benchmarks/results/.
        body = re.sub(r"\]\((?!http)([^)/]+\.png)\)", r"](benchmarks/results/\1)", body)
        return f"<!-- BEGIN {name} -->\n{body}\n<!-- END {name} -->"

    new = re.sub(r"<!-- BEGIN (\S+) -->.*?<!-- END \1 -->", fill, text, flags=re.S)
    readme.write_text(new)
    print(f"README.md: {len(re.findall(r'<!-- BEGIN ', new))} generated blocks refreshed")


if __name__ == "__main__":
    main()
