"""Reading crowd answer sets: ``answers.csv`` (task, worker, label) and ``gold.csv`` (task, label).

All ids and labels are kept as strings, exactly as written in the files. Errors in a
file are :class:`hitl.errors.DataFormatError` naming the file, the row and the column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import DataFormatError

__all__ = ["CrowdDataset", "load_crowd_dataset", "read_answers_csv", "read_gold_csv", "crowd_data_root",
           "list_crowd_datasets"]

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
        Columns ``task, worker, label`` (strings), one row per answer; repeated
        ``(task, worker)`` rows are kept as in the source.
    gold : DataFrame
        Columns ``task, label`` (strings): known answers, possibly for only some tasks
        and possibly for tasks with no answer.
    """

    name: str
    answers: pd.DataFrame
    gold: pd.DataFrame

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


def _read_csv(path: Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("file not found", item=str(path), field=what, expected="an existing CSV file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataFormatError("file is empty", item=str(path), field=what,
                              expected=f"a header line {','.join(columns)} and at least one row") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataFormatError(f"cannot be parsed as CSV ({first})", item=str(path), field=what,
                              expected="a comma-separated file") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataFormatError(
            f"missing column(s) {', '.join(missing)} (found {', '.join(df.columns) or 'none'})",
            item=str(path), field=what, expected=f"columns {','.join(columns)}",
        )
    if len(df) == 0:
        raise DataFormatError("has a header but no rows", item=str(path), field=what, expected="at least one row")
    df = df[list(columns)]
    for col in columns:
        bad = df[col].isna().to_numpy()
        if bad.any():
            i = int(bad.argmax())
            row = i + 2  # 1-based, after the header line
            task = df["task"].iloc[i]
            what_row = f"line {row}: task {task!r} has no {col}" if col != "task" and isinstance(task, str) \
                else f"line {row}: column {col!r} is empty"
            raise DataFormatError(what_row, item=str(path), field=what, expected="a value in every column")
        df[col] = df[col].str.strip()
    return df.reset_index(drop=True)


def read_answers_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read an answers file with columns ``task,worker,label`` (extra columns are dropped).

    Raises
    ------
    hitl.errors.DataFormatError
        When the file is missing, empty, lacks a column or has an empty cell.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(p, "w").write("task,worker,label\\nt1,w1,yes\\n")
    >>> read_answers_csv(p).to_dict("records")
    [{'task': 't1', 'worker': 'w1', 'label': 'yes'}]
    """
    return _read_csv(Path(path), ANSWER_COLUMNS, "answers")


def read_gold_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a gold file with columns ``task,label``; a task listed twice with two labels is an error."""
    gold = _read_csv(Path(path), GOLD_COLUMNS, "gold")
    dup = gold.drop_duplicates().duplicated("task", keep=False)
    if dup.any():
        task = gold.loc[dup.to_numpy(), "task"].iloc[0]
        raise DataFormatError("task has two different gold labels", item=task, field="gold",
                              expected="one label per gold task")
    return gold.drop_duplicates("task").reset_index(drop=True)


def load_crowd_dataset(folder: str | os.PathLike) -> CrowdDataset:
    """Load a folder holding ``answers.csv`` and (optionally) ``gold.csv``.

    A bare name (no folder of that name in the working directory) is looked up under
    :func:`crowd_data_root`.

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
    answers = read_answers_csv(folder / "answers.csv")
    gold_path = folder / "gold.csv"
    gold = read_gold_csv(gold_path) if gold_path.is_file() else pd.DataFrame({"task": [], "label": []}, dtype=str)
    return CrowdDataset(name=folder.name, answers=answers, gold=gold)
