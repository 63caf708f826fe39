"""Reading crowd answer sets: ``answers.csv`` (task, worker, label) and ``gold.csv`` (task, label).

All ids and labels are kept as strings, exactly as written in the files (surrounding
whitespace stripped). Errors in a file are :class:`hitl.errors.DataFormatError` naming
the file, the line and the column. Lines are counted as a text editor counts them: a
line ends at ``\\n``, ``\\r\\n`` or ``\\r``, also inside a quoted value, and the first
line is 1. The frames returned are indexed by the line each row starts on (index name
``line``), so later errors (a conflicting repeat, say) can name lines too.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
import io
import os
import re
from operator import itemgetter
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataFormatError
from ._base import dedupe_answers

__all__ = ["CrowdDataset", "load_crowd_dataset", "read_answers_csv", "read_gold_csv", "crowd_data_root",
           "list_crowd_datasets"]

# Line breaks as an editor counts them (and as csv.reader over newline="" text splits).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

ANSWER_COLUMNS = ("task", "worker", "label")
GOLD_COLUMNS = ("task", "label")


@dataclass
class CrowdDataset:
    """One crowd answer set.

    Attributes
    ----------
    name : str
        The folder's name.
    answers : DataFrame
        Columns ``task, worker, label`` (strings), indexed by file line: one row per
        (task, worker) pair, as every aggregator counts them (one vote per pair).
        Identical repeats in the file are dropped; conflicting ones were refused or
        resolved when loading, as ``duplicates=`` of :func:`load_crowd_dataset` says.
    gold : DataFrame
        Columns ``task, label`` (strings): known answers, possibly for only some tasks
        and possibly for tasks with no answer.
    n_duplicates : int
        Rows of ``answers.csv`` dropped as repeats of a (task, worker) pair.
    """

    name: str
    answers: pd.DataFrame
    gold: pd.DataFrame
    n_duplicates: int = 0

    @property
    def gold_in_answers(self) -> pd.Series:
        """Gold labels of the tasks that have answers, as a Series indexed by task."""
        g = self.gold.drop_duplicates("task").set_index("task")["label"]
        return g[g.index.isin(self.answers["task"])]


def crowd_data_root() -> Path:
    """Folder of the real crowd data sets: ``$HITL_CROWD_DATA``, else ``../shared/data/crowd`` beside the repo."""
    env = os.environ.get("HITL_CROWD_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "crowd"


def list_crowd_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the sub-folders of ``root`` that hold an ``answers.csv`` (sorted); empty if absent."""
    root = Path(root) if root is not None else crowd_data_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "answers.csv").is_file())


def _read_records(path: Path, what: str) -> tuple[list[list[str]], np.ndarray]:
    """Every record of the file (one CSV parse) and the physical line each one starts on."""
    if not path.is_file():
        raise DataFormatError("file not found", item=str(path), field=what, expected="an existing CSV file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = len(_LINE_BREAK.findall(raw[: exc.start].decode("utf-8-sig"))) + 1
        raise DataFormatError(f"line {line}: is not UTF-8 text", item=str(path), field=what,
                              expected="a UTF-8 encoded CSV file") from None
    # newline="": line breaks inside quoted values stay as written, and reader.line_num
    # counts physical lines (a record spanning three lines advances it by three).
    # skipinitialspace: `a, "b, c"` is two values, as files written with ", " mean it.
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    records: list[list[str]] = []
    ends: list[int] = []
    add, add_end = records.append, ends.append
    try:
        for row in reader:
            add(row)
            add_end(reader.line_num)
    except csv.Error as exc:  # a value over csv.field_size_limit(), say
        line = (ends[-1] if ends else 0) + 1  # where the record that failed starts
        raise DataFormatError(f"line {line}: cannot be parsed as CSV ({exc})", item=str(path),
                              field=what, expected="a comma-separated file") from None
    starts = np.ones(len(ends), dtype=np.int64)
    if ends:
        starts[1:] = np.asarray(ends[:-1], dtype=np.int64) + 1
    return records, starts


def _blank(records: list[list[str]]) -> np.ndarray:
    """Records that are blank lines: no field, or one field of whitespace only."""
    lens = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
    blank = lens == 0
    ones = np.flatnonzero(lens == 1)  # rare in a file of several columns: check just those
    if ones.size:
        blank[ones] = [not records[i][0].strip() for i in ones]
    return blank


def _header(records: list[list[str]], blank: np.ndarray, columns: tuple[str, ...], path: Path,
            what: str) -> tuple[int, list[str]]:
    """Position of the header record and its stripped column names."""
    nonblank = np.flatnonzero(~blank)
    if nonblank.size == 0:
        raise DataFormatError("file is empty", item=str(path), field=what,
                              expected=f"a header line {','.join(columns)} and at least one row")
    h = int(nonblank[0])
    names = [str(c).strip() for c in records[h]]
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataFormatError(
            f"missing column(s) {', '.join(missing)} (found {', '.join(names) or 'none'})",
            item=str(path), field=what, expected=f"columns {','.join(columns)}",
        )
    twice = [c for c in columns if names.count(c) > 1]
    if twice:
        raise DataFormatError(f"column {twice[0]!r} appears twice in the header", item=str(path), field=what,
                              expected="each column named once")
    return h, names


def _missing_cell(values: dict[str, str], line: int, path: Path, what: str) -> DataFormatError:
    col = next(c for c, v in values.items() if not v)
    task = values.get("task", "")
    text = f"line {line}: task {task!r} has no {col}" if col != "task" and task else \
        f"line {line}: column {col!r} is empty"
    return DataFormatError(text, item=str(path), field=what, expected="a value in every column")


def _read_csv(path: Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """Read ``columns`` of a CSV file into a frame of strings indexed by line (see the module notes)."""
    path = Path(path)
    records, starts = _read_records(path, what)
    blank = _blank(records)
    h, names = _header(records, blank, columns, path, what)
    rows = np.flatnonzero(~blank[h + 1:]) + h + 1
    if rows.size == 0:
        raise DataFormatError("has a header but no rows", item=str(path), field=what, expected="at least one row")
    data = records[h + 1:] if rows.size == len(records) - h - 1 else [records[i] for i in rows]
    lines = starts[rows]
    lens = np.fromiter(map(len, data), dtype=np.int64, count=len(data))
    pos = {c: names.index(c) for c in columns}
    # The first row in file order that has more fields than the header, or lacks a column
    # the header names: values are only taken from the rows before it.
    bad = np.flatnonzero((lens > len(names)) | (lens <= max(pos.values())))
    stop = int(bad[0]) if bad.size else len(data)
    values = {c: list(map(str.strip, map(itemgetter(pos[c]), data[:stop]))) for c in columns}
    empty = np.zeros(stop, dtype=bool)
    for c in columns:
        empty |= np.asarray(values[c], dtype=object) == ""
    i = int(np.argmax(empty)) if empty.any() else stop
    if i < len(data):
        row = data[i]
        if len(row) > len(names):
            # More fields than the header is refused: a reader that guessed an index column
            # here would shift every value one column to the right without a word.
            raise DataFormatError(
                f"line {lines[i]}: {len(row)} fields, but the header has {len(names)} ({','.join(names)})",
                item=str(path), field=what,
                expected="at most one value per header column (quote a value holding a comma)",
            )
        cells = {c: row[pos[c]].strip() if pos[c] < len(row) else "" for c in columns}
        raise _missing_cell(cells, int(lines[i]), path, what)
    frame = pd.DataFrame({c: pd.Series(values[c], dtype=str) for c in columns})
    frame.index = pd.Index(lines, name="line")
    return frame


def read_answers_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read an answers file with columns ``task,worker,label`` (extra columns are dropped).

    Every row is returned, repeats of a (task, worker) pair included: the aggregators
    apply the one-vote rule (see :func:`hitl.aggregation.dedupe_answers`). Blank lines
    are skipped; values are stripped of surrounding whitespace.

    Returns
    -------
    DataFrame
        Columns ``task, worker, label`` (strings), indexed by the 1-based line each
        row starts on (index name ``line``).

    Raises
    ------
    hitl.errors.DataFormatError
        When the file is missing, empty, not UTF-8, lacks a column, has an empty cell, or
        has a row with more fields than the header; the message names the file and line.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(p, "w").write("task,worker,label\\nt1,w1,yes\\n")
    >>> read_answers_csv(p).to_dict("records")
    [{'task': 't1', 'worker': 'w1', 'label': 'yes'}]
    >>> _ = open(p, "w").write("task,worker,label\\nt1,w1,yes,EXTRA\\n")
    >>> read_answers_csv(p)
    Traceback (most recent call last):
    ...
    hitl.errors.DataFormatError: item '...a.csv', field 'answers': line 2: 4 fields, but the header has 3 ...
    """
    return _read_csv(Path(path), ANSWER_COLUMNS, "answers")


def read_gold_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a gold file with columns ``task,label``, one row per task, indexed by line.

    A task listed twice with the same label is kept once; with two labels it is a
    :class:`hitl.errors.DataFormatError` naming the task, the labels and their lines.
    """
    gold = _read_csv(Path(path), GOLD_COLUMNS, "gold")
    distinct = gold.drop_duplicates()
    dup = distinct.duplicated("task", keep=False).to_numpy()
    if dup.any():
        task = distinct["task"].to_numpy()[dup][0]
        rows = distinct[distinct["task"] == task]
        raise DataFormatError(
            f"task has two different gold labels: {rows['label'].iloc[0]!r} (line {rows.index[0]}) and "
            f"{rows['label'].iloc[1]!r} (line {rows.index[1]})",
            item=task, field="gold", expected="one label per gold task")
    return gold.drop_duplicates("task")


def load_crowd_dataset(folder: str | os.PathLike, *, duplicates: str = "refuse") -> CrowdDataset:
    """Load a folder holding ``answers.csv`` and (optionally) ``gold.csv``.

    A bare name (no folder of that name in the working directory) is looked up under
    :func:`crowd_data_root`. The answers are returned with one row per (task, worker),
    the rule every aggregator applies: identical repeats are dropped, and a worker who
    gave one task two different labels is refused (``duplicates="refuse"``, a
    :class:`hitl.errors.ConflictingAnswerError` naming the lines) or counted by their last
    answer in the file (``duplicates="last"``). Two of the public sets hold such
    conflicts, adult2 (149 pairs) and trec_rf10 (277 pairs): load them with
    ``duplicates="last"``.

    Examples
    --------
    >>> ds = load_crowd_dataset("rte")  # doctest: +SKIP
    >>> ds.answers.columns.tolist(), ds.gold.columns.tolist()  # doctest: +SKIP
    (['task', 'worker', 'label'], ['task', 'label'])
    """
    folder = Path(folder)
    if not folder.is_dir() and not folder.is_absolute() and (crowd_data_root() / folder).is_dir():
        folder = crowd_data_root() / folder
    if not folder.is_dir():
        raise DataFormatError("folder not found", item=str(folder), field="dataset",
                              expected="a folder with answers.csv (and gold.csv)")
    raw = read_answers_csv(folder / "answers.csv")
    answers = dedupe_answers(raw, duplicates)
    gold_path = folder / "gold.csv"
    gold = read_gold_csv(gold_path) if gold_path.is_file() else pd.DataFrame({"task": [], "label": []}, dtype=str)
    return CrowdDataset(name=folder.name, answers=answers, gold=gold, n_duplicates=len(raw) - len(answers))
