"""Reading answer files: no silent column shifts, lines counted as an editor counts them, still fast."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from hitl.aggregation import read_answers_csv, read_gold_csv
from hitl.errors import DataFormatError


def write(tmp_path, text: str, name: str = "answers.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_a_row_with_one_extra_field_is_an_error_naming_file_and_line(tmp_path):
    # Item A: this used to come back as task 'w1', label 'EXTRA' (an inferred index column).
    path = write(tmp_path, "task,worker,label\nt1,w1,yes,EXTRA\nt2,w1,no,EXTRA\n")
    with pytest.raises(DataFormatError) as info:
        read_answers_csv(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "line 2: 4 fields, but the header has 3" in msg


def test_only_the_longer_row_is_refused_and_its_physical_line_named(tmp_path):
    text = (
        "task,worker,label\r\n"
        "\r\n"                              # line 2: blank, skipped
        't1,w1,"a label\nover\r\nthree lines"\r\n'   # lines 3-5: one record
        "t2,w2,no\r\n"                      # line 6
        "t3,w3,yes,oops\r\n"                # line 7: one field too many
    )
    with pytest.raises(DataFormatError, match=r"line 7: 4 fields"):
        read_answers_csv(write(tmp_path, text))
    ok = read_answers_csv(write(tmp_path, text.replace(",oops", "")))
    assert ok.index.name == "line" and ok.index.tolist() == [3, 6, 7]
    assert ok["label"].tolist() == ["a label\nover\r\nthree lines", "no", "yes"]


def test_old_mac_line_ends_count_as_lines(tmp_path):
    with pytest.raises(DataFormatError, match=r"line 4: 4 fields"):
        read_answers_csv(write(tmp_path, "task,worker,label\rt1,w1,a\r\rt2,w2,b,c\r"))


def test_extra_named_columns_are_dropped_and_order_does_not_matter(tmp_path):
    path = write(tmp_path, "label, when ,worker,task\nyes,monday,w1,t1\n\n  no ,tuesday,w2,t2\n")
    df = read_answers_csv(path)
    assert list(df.columns) == ["task", "worker", "label"]
    assert df.to_dict("records") == [{"task": "t1", "worker": "w1", "label": "yes"},
                                     {"task": "t2", "worker": "w2", "label": "no"}]
    assert df.index.tolist() == [2, 4]
    assert all(df[c].map(type).eq(str).all() for c in df.columns)


@pytest.mark.parametrize("text, message", [
    ("task,worker,label\nt1,w1\n", "line 2: task 't1' has no label"),
    ("task,worker,label\nt1,w1,yes\n ,w1,no\n", "line 3: column 'task' is empty"),
    ("task,worker,label\nt1,w1,yes\nt2\n", "line 3: task 't2' has no worker"),
    ("\n\n   \n", "file is empty"),
    ("task,worker,label\n\n\n", "no rows"),
    ("task,worker,label,task\nt1,w1,yes,t2\n", "column 'task' appears twice"),
    ("task,worker\nt1,w1\n", "missing column(s) label"),
])
def test_malformed_files(tmp_path, text, message):
    with pytest.raises(DataFormatError) as info:
        read_answers_csv(write(tmp_path, text))
    assert message in str(info.value)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_bytes(b"task,worker,label\nt1,w1,yes\nt2,w1,caf\xe9\n")
    with pytest.raises(DataFormatError, match="line 3: is not UTF-8"):
        read_answers_csv(path)


def test_gold_with_an_extra_field_and_gold_conflicts_name_lines(tmp_path):
    with pytest.raises(DataFormatError, match="line 3: 3 fields, but the header has 2"):
        read_gold_csv(write(tmp_path, "task,label\nt1,yes\nt2,no,x\n", "gold.csv"))
    with pytest.raises(DataFormatError, match=r"'yes' \(line 2\) and 'no' \(line 4\)"):
        read_gold_csv(write(tmp_path, "task,label\nt1,yes\nt1,yes\nt1,no\n", "gold.csv"))


def test_bom_and_quoted_commas(tmp_path):
    df = read_answers_csv(write(tmp_path, '\ufefftask,worker,label\n"t,1",w1,"a ""quoted"" label"\n'
                                          't2, "w,2" , no\n'))
    assert df.to_dict("records") == [{"task": "t,1", "worker": "w1", "label": 'a "quoted" label'},
                                     {"task": "t2", "worker": "w,2", "label": "no"}]


def test_reading_100k_rows_stays_fast(tmp_path):
    rng = np.random.default_rng(0)
    n = 100_000
    pd.DataFrame({"task": [f"task-{i}" for i in rng.integers(0, 30_000, n)],
                  "worker": [f"w{i}" for i in rng.integers(0, 800, n)],
                  "label": rng.choice(["yes", "no", "maybe"], n)}).to_csv(tmp_path / "a.csv", index=False)
    read_answers_csv(tmp_path / "a.csv")
    t0 = time.perf_counter()
    df = read_answers_csv(tmp_path / "a.csv")
    seconds = time.perf_counter() - t0
    assert len(df) == n and df.index[-1] == n + 1
    # about 0.2 s here; a per-row pandas step would take several seconds
    assert seconds < 1.5, seconds


def test_a_value_too_long_for_the_csv_parser_names_its_line(tmp_path):
    path = write(tmp_path, 'task,worker,label\nt1,w1,yes\nt2,w2,"' + "x\n" * 70_000 + '"\n')
    with pytest.raises(DataFormatError, match=r"line 3: cannot be parsed as CSV \(field larger"):
        read_answers_csv(path)


def test_not_utf8_after_old_mac_line_ends(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_bytes(b"task,worker,label\rt1,w1,yes\rt2,w1,caf\xe9\r")
    with pytest.raises(DataFormatError, match="line 3: is not UTF-8"):
        read_answers_csv(path)
