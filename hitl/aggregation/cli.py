"""``hitl aggregate``: aggregate a crowd answer file, score the workers.

::

    hitl aggregate ANSWERS.csv --method ds [--gold GOLD.csv] [--out LABELS.csv] [--workers WORKERS.csv]
                               [--duplicates {refuse,last}]

ANSWERS may also be a folder holding ``answers.csv`` (and ``gold.csv``, used when
``--gold`` is not given). One vote per (task, worker): a repeated identical answer counts
once, and a worker who gave one task two different labels is an error naming the task,
the worker, the labels and their lines, unless ``--duplicates last`` keeps the last one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataFormatError
from ._base import DUPLICATE_RULES, BaseAggregator, check_fit_memory, dedupe_answers
from .dawid_skene import confusions_from_posteriors
from .io import read_answers_csv, read_gold_csv
from .quality import detect_spammers, spammer_scores, worker_accuracy_from_gold, worker_accuracy_from_posteriors

__all__ = ["register", "run", "aggregate_frames"]

METHOD_NAMES = ("mv", "wawa", "ds", "onecoin", "glad", "mace")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``aggregate`` sub-command to ``hitl``'s parser."""
    p = subparsers.add_parser(
        "aggregate",
        help="aggregate crowd answers (task,worker,label) into one label per task",
        description="Aggregate crowd answers into one label per task and score the workers.",
    )
    p.add_argument("answers", metavar="ANSWERS", help="CSV with columns task,worker,label, or a folder with answers.csv")
    p.add_argument("--method", choices=METHOD_NAMES, default="ds", help="aggregation method (default: ds)")
    p.add_argument("--gold", metavar="GOLD.csv", help="CSV with columns task,label: known answers")
    p.add_argument("--out", metavar="LABELS.csv", help="write task,label,confidence here (default: standard output)")
    p.add_argument("--workers", metavar="WORKERS.csv", help="write worker,accuracy,n_answers,spammer,... here")
    p.add_argument("--spammer-threshold", type=float, default=0.05,
                   help="spammer score below which a worker is flagged (default: 0.05)")
    p.add_argument("--min-answers", type=int, default=10,
                   help="answers a worker needs before being flagged as a spammer (default: 10)")
    p.add_argument("--duplicates", choices=DUPLICATE_RULES, default="refuse",
                   help="a worker who answered a task twice with different labels: refuse (the default, an "
                        "error naming the lines) or keep the last answer; identical repeats always count once")
    p.set_defaults(func=run)
    return p


def aggregate_frames(
    answers: pd.DataFrame,
    method: str = "ds",
    gold: pd.DataFrame | None = None,
    *,
    spammer_threshold: float = 0.05,
    min_answers: int = 10,
    duplicates: str = "refuse",
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Aggregate answers and score workers; the work behind ``hitl aggregate``.

    One vote per (task, worker) (:func:`hitl.aggregation.dedupe_answers`): the
    aggregation and every worker statistic use the de-duplicated answers.

    Parameters
    ----------
    answers : DataFrame
        Columns ``task, worker, label``.
    method : str
        A key of :data:`hitl.aggregation.METHODS`.
    gold : DataFrame, optional
        Columns ``task, label``.
    spammer_threshold, min_answers
        As in :func:`hitl.aggregation.detect_spammers`.
    duplicates : {"refuse", "last"}, default "refuse"
        A conflicting repeat is an error, or the worker's last answer counts.

    Returns
    -------
    labels : DataFrame
        ``task, label, confidence`` (confidence = the label's posterior probability).
    workers : DataFrame
        ``worker, accuracy, n_answers, spammer, accuracy_source, n_gold, accuracy_low,
        accuracy_high, spammer_score``. Accuracy comes from gold where the worker
        answered gold tasks, else from the posteriors.
    summary : dict
        ``n_tasks, n_workers, n_answers, n_duplicates, method`` (``n_answers`` after
        de-duplication) and, with gold, ``gold_accuracy`` and ``n_gold_tasks`` (gold
        tasks that have answers).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"task": ["a", "a", "a", "b"], "worker": ["x", "x", "y", "x"],
    ...                    "label": ["1", "1", "1", "0"]})
    >>> labels, workers, summary = aggregate_frames(df, "mv")
    >>> labels["label"].tolist(), workers["n_answers"].tolist(), summary["n_duplicates"]
    (['1', '0'], [2, 1], 1)
    """
    from . import METHODS

    n_given = len(answers)
    answers = dedupe_answers(answers, duplicates)
    # The spammer scores need every worker's k x k matrix, whatever the method: check
    # before fitting that they can be held at all.
    nw, k = int(answers["worker"].nunique()), int(answers["label"].nunique())
    check_fit_memory(3 * 8.0 * nw * k * k, k, f"{nw} workers' {k} x {k} confusion matrices (spammer scores)")
    agg = METHODS[method]()
    agg.fit(answers)
    task_ids, worker_ids, classes = agg.task_ids_, agg.worker_ids_, agg.classes_
    post = agg.posteriors_
    labels = pd.DataFrame({
        "task": np.asarray(task_ids),
        "label": np.asarray(classes.take(agg.labels_)),
        "confidence": post[np.arange(len(post)), agg.labels_],
    })
    t = task_ids.get_indexer(answers["task"])
    w = worker_ids.get_indexer(answers["worker"])
    y = classes.get_indexer(answers["label"])
    summary: dict = {"method": method, "n_tasks": len(task_ids), "n_workers": nw, "n_answers": len(answers),
                     "n_duplicates": n_given - len(answers)}
    workers = _worker_table(post, t, w, y, agg, labels, gold, summary, spammer_threshold, min_answers)
    return labels, workers, summary


def _worker_table(post: np.ndarray, t: np.ndarray, w: np.ndarray, y: np.ndarray, agg: BaseAggregator,
                  labels: pd.DataFrame, gold: pd.DataFrame | None, summary: dict, spammer_threshold: float,
                  min_answers: int) -> pd.DataFrame:
    """Each worker's accuracy (from gold where they answered gold tasks) and spammer score."""
    task_ids, worker_ids, classes = agg.task_ids_, agg.worker_ids_, agg.classes_
    nw = len(worker_ids)
    from_post = worker_accuracy_from_posteriors(post, t, w, y, n_workers=nw)
    n_answers = np.bincount(w, minlength=nw)
    # Judge spamming on each worker's answers against the posteriors, not on the method's own
    # parametrisation: a one-coin model cannot express "always answers yes".
    confusions = confusions_from_posteriors(post, t, w, y, nw)
    scores = spammer_scores(confusions)
    spam = detect_spammers(confusions, n_answers, threshold=spammer_threshold, min_answers=min_answers)
    acc, lo, hi = from_post.accuracy.copy(), from_post.lower.copy(), from_post.upper.copy()
    source = np.full(nw, "posterior", dtype=object)
    n_gold = np.zeros(nw, dtype=np.int64)
    if gold is not None:
        g = gold.drop_duplicates("task").set_index("task")["label"]
        g = g[g.index.isin(task_ids)]
        summary["n_gold_tasks"] = int(len(g))
        if len(g):
            pred = labels.set_index("task")["label"].reindex(g.index).astype(str)
            summary["gold_accuracy"] = float((pred.to_numpy() == g.astype(str).to_numpy()).mean())
            # A gold label never given by anyone is a class of its own: every answer on it is wrong.
            gold_codes = classes.get_indexer(g.to_numpy())
            gold_codes[gold_codes < 0] = len(classes)
            gold_arr = np.full(len(task_ids), -1, dtype=np.int64)
            gold_arr[task_ids.get_indexer(g.index)] = gold_codes
            from_gold = worker_accuracy_from_gold(t, w, y, gold_arr, n_workers=nw)
            has = from_gold.n > 0
            acc[has], lo[has], hi[has] = from_gold.accuracy[has], from_gold.lower[has], from_gold.upper[has]
            source[has] = "gold"
            n_gold = from_gold.n
    return pd.DataFrame({
        "worker": np.asarray(worker_ids),
        "accuracy": acc,
        "n_answers": n_answers,
        "spammer": spam,
        "accuracy_source": source,
        "n_gold": n_gold,
        "accuracy_low": lo,
        "accuracy_high": hi,
        "spammer_score": scores,
    })


def _check_output(value: str | None, flag: str) -> Path | None:
    """Fail before any work when an output file cannot be created where asked."""
    if not value:
        return None
    path = Path(value)
    if path.is_dir():
        raise ConfigError("is a folder", item=str(path), field=flag, expected="a file path")
    if not path.parent.is_dir():
        raise ConfigError(f"folder {str(path.parent)!r} does not exist", item=str(path), field=flag,
                          expected="a file in an existing folder")
    return path


def _write_csv(frame: pd.DataFrame, path: Path, flag: str) -> None:
    try:
        frame.to_csv(path, index=False)
    except OSError as exc:  # permissions, a full disk, a folder removed meanwhile
        raise ConfigError(f"cannot be written ({exc.strerror or exc})", item=str(path), field=flag,
                          expected="a writable file path") from None


def _resolve_inputs(answers_arg: str, gold_arg: str | None) -> tuple[Path, Path | None]:
    path = Path(answers_arg)
    gold = Path(gold_arg) if gold_arg else None
    if path.is_dir():
        folder = path
        path = folder / "answers.csv"
        if not path.is_file():
            raise DataFormatError("folder has no answers.csv", item=str(folder), field="answers",
                                  expected="a CSV file or a folder with answers.csv")
        if gold is None and (folder / "gold.csv").is_file():
            gold = folder / "gold.csv"
    return path, gold


def run(args: argparse.Namespace) -> int:
    """Run ``hitl aggregate``; returns the exit code."""
    out = _check_output(args.out, "--out")
    workers_out = _check_output(args.workers, "--workers")
    answers_path, gold_path = _resolve_inputs(args.answers, args.gold)
    answers = read_answers_csv(answers_path)
    gold = read_gold_csv(gold_path) if gold_path is not None else None
    labels, workers, summary = aggregate_frames(
        answers, args.method, gold, spammer_threshold=args.spammer_threshold, min_answers=args.min_answers,
        duplicates=args.duplicates,
    )
    if out is not None:
        _write_csv(labels, out, "--out")
    else:
        labels.to_csv(sys.stdout, index=False)
    if workers_out is not None:
        _write_csv(workers, workers_out, "--workers")
    line = (f"{summary['method']}: {summary['n_answers']} answers, {summary['n_tasks']} tasks, "
            f"{summary['n_workers']} workers, {int(workers['spammer'].sum())} flagged as spammers")
    if summary["n_duplicates"]:
        line += f"; {summary['n_duplicates']} repeated answer(s) of a (task, worker) pair dropped"
    if "gold_accuracy" in summary:
        line += f"; accuracy on {summary['n_gold_tasks']} gold tasks: {summary['gold_accuracy']:.4f}"
    elif gold is not None:
        line += "; no gold task has an answer"
    print(line, file=sys.stderr)
    return 0
