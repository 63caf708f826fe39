"""``hitl aggregate``: aggregate a crowd answer file, score the workers.

::

    hitl aggregate ANSWERS.csv --method ds [--gold GOLD.csv] [--out LABELS.csv] [--workers WORKERS.csv]

ANSWERS may also be a folder holding ``answers.csv`` (and ``gold.csv``, used when
``--gold`` is not given).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataFormatError
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
    p.set_defaults(func=run)
    return p


def aggregate_frames(
    answers: pd.DataFrame,
    method: str = "ds",
    gold: pd.DataFrame | None = None,
    *,
    spammer_threshold: float = 0.05,
    min_answers: int = 10,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Aggregate answers and score workers; the work behind ``hitl aggregate``.

    Returns
    -------
    labels : DataFrame
        ``task, label, confidence`` (confidence = the label's posterior probability).
    workers : DataFrame
        ``worker, accuracy, n_answers, spammer, accuracy_source, n_gold, accuracy_low,
        accuracy_high, spammer_score``. Accuracy comes from gold where the worker
        answered gold tasks, else from the posteriors.
    summary : dict
        ``n_tasks, n_workers, n_answers, method`` and, with gold, ``gold_accuracy`` and
        ``n_gold_tasks`` (gold tasks that have answers).
    """
    from . import METHODS

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
    summary: dict = {"method": method, "n_tasks": len(task_ids), "n_workers": nw, "n_answers": len(answers)}
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
    workers = pd.DataFrame({
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
    return labels, workers, summary


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
    answers_path, gold_path = _resolve_inputs(args.answers, args.gold)
    answers = read_answers_csv(answers_path)
    gold = read_gold_csv(gold_path) if gold_path is not None else None
    labels, workers, summary = aggregate_frames(
        answers, args.method, gold, spammer_threshold=args.spammer_threshold, min_answers=args.min_answers
    )
    if args.out:
        labels.to_csv(args.out, index=False)
    else:
        labels.to_csv(sys.stdout, index=False)
    if args.workers:
        workers.to_csv(args.workers, index=False)
    line = (f"{summary['method']}: {summary['n_answers']} answers, {summary['n_tasks']} tasks, "
            f"{summary['n_workers']} workers, {int(workers['spammer'].sum())} flagged as spammers")
    if "gold_accuracy" in summary:
        line += f"; accuracy on {summary['n_gold_tasks']} gold tasks: {summary['gold_accuracy']:.4f}"
    elif gold is not None:
        line += "; no gold task has an answer"
    print(line, file=sys.stderr)
    return 0
