"""Item D: any CSV text through ``read_answers_csv`` + ``aggregate_frames`` gives exactly the file's
rows (after the one-vote rule) or a HitlError: never another exception, never shifted columns."""

from __future__ import annotations

import csv
import io
import re

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitl.aggregation import read_answers_csv
from hitl.aggregation.cli import aggregate_frames
from hitl.errors import ConflictingAnswerError, DataFormatError, HitlError

REQUIRED = ("task", "worker", "label")
# Characters that break naive CSV handling, whitespace that gets stripped, and odd unicode
# (no lone surrogates: a file cannot hold them; no BOM: it is dropped from the file's start).
TRICKY = list(',"\n\r \t') + ["\u00a0", "\u2028", "\x85", "\x1c", "\x00", "é", "中", "😀", "\u0301"]
cells = st.text(alphabet=st.sampled_from(TRICKY) | st.characters(codec="utf-8", exclude_characters="\ufeff"),
                max_size=5)
ids = st.sampled_from(["t1", "t2", " t1 ", "w1", "w2", "yes", "no", "é", "x,y", 'q"q'])
any_row = st.lists(cells | ids, max_size=5)
blank_row = st.sampled_from([[], [""], ["  "]])
header = st.permutations(list(REQUIRED)).flatmap(
    lambda cols: st.lists(st.sampled_from(["note", " when ", ""]), max_size=2).map(
        lambda extra: cols[:1] + extra + cols[1:]))
LINE_BREAK = re.compile(r"\r\n|\r|\n")


@st.composite
def csv_files(draw):
    """Records, the text csv.writer makes of them, and the physical line each record starts on."""
    head = draw(any_row) if draw(st.integers(0, 4)) == 0 else draw(header)
    # rows as wide as the header; half the files are otherwise clean, so that many get as far as aggregating
    good_row = st.lists(ids, min_size=len(head), max_size=len(head))
    row = st.one_of(good_row, blank_row) if draw(st.booleans()) else st.one_of(good_row, good_row, any_row, blank_row)
    rows = draw(st.lists(row, min_size=1, max_size=12))
    if draw(st.booleans()):  # a repeat or a revision of an earlier (task, worker)
        rows += [r[:2] + [draw(ids)] for r in rows[:4] if len(r) >= 2]
    end = draw(st.sampled_from(["\n", "\r\n"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    records = [head] + rows
    text, starts = "", []
    for rec in records:
        starts.append(len(LINE_BREAK.findall(text)) + 1)
        buf = io.StringIO()
        csv.writer(buf, lineterminator=end, quoting=quoting).writerow(rec)
        text += buf.getvalue()
    return records, text, starts


def expected(records: list[list[str]], starts: list[int]):
    """What the documented rules say the file holds: a frame indexed by line, or the line of the error."""
    keep = [i for i, r in enumerate(records) if not (len(r) == 0 or (len(r) == 1 and not r[0].strip()))]
    if not keep:
        return "file is empty"
    names = [c.strip() for c in records[keep[0]]]
    if any(c not in names or names.count(c) > 1 for c in REQUIRED):
        return "column"
    body = keep[1:]
    if not body:
        return "no rows"
    pos = [names.index(c) for c in REQUIRED]
    out = []
    for i in body:
        r = records[i]
        values = [r[p].strip() if p < len(r) else "" for p in pos]
        if len(r) > len(names) or not all(values):
            return f"line {starts[i]}:"
        out.append(values)
    frame = pd.DataFrame(out, columns=list(REQUIRED))
    frame.index = pd.Index([starts[i] for i in body], name="line")
    return frame


def check_aggregate(frame: pd.DataFrame, duplicates: str) -> None:
    pairs = frame.groupby(["task", "worker"], sort=False)["label"]
    if duplicates == "refuse" and (pairs.nunique() > 1).any():
        with pytest.raises(ConflictingAnswerError) as info:
            aggregate_frames(frame, "mv", duplicates=duplicates)
        assert re.search(r"\(line \d+\) and .* \(line \d+\)", str(info.value))
        return
    once = frame.drop_duplicates(["task", "worker"], keep="last")
    labels, workers, summary = aggregate_frames(frame, "mv", duplicates=duplicates)
    assert summary["n_answers"] == len(once) and summary["n_duplicates"] == len(frame) - len(once)
    assert sorted(labels["task"]) == sorted(once["task"].unique())
    counts = workers.set_index("worker")["n_answers"]
    assert counts.to_dict() == once["worker"].value_counts().to_dict()
    single = once.groupby("task").filter(lambda g: len(g) == 1).set_index("task")["label"]
    got = labels.set_index("task")["label"]
    assert (got.reindex(single.index) == single).all()  # a lone answer is its task's label: nothing shifted


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=csv_files(), duplicates=st.sampled_from(["refuse", "last"]))
def test_written_csv_gives_its_rows_or_a_hitl_error(tmp_path, data, duplicates):
    records, text, starts = data
    path = tmp_path / "answers.csv"
    path.write_bytes(text.encode("utf-8"))
    want = expected(records, starts)
    if isinstance(want, str):
        with pytest.raises(DataFormatError) as info:
            read_answers_csv(path)
        assert want in str(info.value) and str(path) in str(info.value)
        return
    got = read_answers_csv(path)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    check_aggregate(got, duplicates)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from(["", "task,worker,label\n", "worker,label,task\r\n"]),
       body=st.text(alphabet=st.sampled_from(TRICKY + ["a", "b", "t", "w"]) | st.characters(codec="utf-8"),
                    max_size=60))
def test_arbitrary_text_gives_the_parsed_rows_or_a_hitl_error(tmp_path, prefix, body):
    path = tmp_path / "answers.csv"
    path.write_bytes((prefix + body).encode("utf-8"))
    try:
        got = read_answers_csv(path)
    except HitlError:
        return
    # it read something: it must be what a CSV parser finds in the file, column by column
    text = (prefix + body).removeprefix("\ufeff")
    records = list(csv.reader(io.StringIO(text, newline=""), skipinitialspace=True))
    want = expected(records, [0] * len(records))
    assert isinstance(want, pd.DataFrame)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)
    try:
        check_aggregate(got, "last")
    except HitlError:  # pragma: no cover - a frame read from a file has no empty id left
        pytest.fail("aggregating a frame that read_answers_csv accepted raised")
