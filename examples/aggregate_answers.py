"""Turn several answers per item into one label, and see how good each annotator is.

Reads a ``task, worker, label`` CSV (and optionally a ``task, label`` gold CSV), compares
majority vote with Dawid-Skene and its one-coin form, and estimates every annotator's
accuracy from gold and the aggregation together. Without files it makes a small crowd.

    python examples/aggregate_answers.py answers.csv --gold gold.csv
    python examples/aggregate_answers.py                 # a simulated crowd
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

import hitl
from hitl.aggregation import (DawidSkene, MajorityVote, OneCoinDawidSkene, read_answers_csv, read_gold_csv,
                              worker_accuracy)


def simulated(n_tasks: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three answers per task from 30 simulated HITers; a tenth of the tasks are gold."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n_tasks)
    crowd = hitl.SimulatedCrowd.from_profile("realistic", 30, truth=truth, n_classes=3, random_state=seed)
    items = np.repeat(np.arange(n_tasks), 3)
    workers = np.argsort(rng.random((n_tasks, 30)), axis=1)[:, :3].ravel()
    ans = crowd.answer(items, workers)
    answers = pd.DataFrame({"task": items.astype(str), "worker": workers.astype(str), "label": ans.label.astype(str)})
    gold = pd.DataFrame({"task": np.arange(0, n_tasks, 10).astype(str), "label": truth[::10].astype(str)})
    return answers, gold


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("answers", nargs="?", help="CSV with columns task, worker, label")
    ap.add_argument("--gold", help="CSV with columns task, label")
    args = ap.parse_args(argv)
    if args.answers:
        answers = read_answers_csv(args.answers)
        gold = read_gold_csv(args.gold) if args.gold else pd.DataFrame(columns=["task", "label"])
    else:
        answers, gold = simulated()

    gold_of = gold.drop_duplicates("task").set_index("task")["label"]
    for method in (MajorityVote(), OneCoinDawidSkene(), DawidSkene()):
        labels = method.fit_predict(answers)          # a Series: task -> label
        scored = labels[labels.index.isin(gold_of.index)]
        acc = f"{np.mean(scored.to_numpy() == gold_of[scored.index].to_numpy()):.4f} on {len(scored)} gold tasks" \
            if len(scored) else "no gold to score"
        print(f"{type(method).__name__:>18}: {acc}")

    # Annotator accuracy: gold answers count as right or wrong, the others by their posterior.
    task_ids, task = np.unique(answers["task"], return_inverse=True)
    worker_ids, worker = np.unique(answers["worker"], return_inverse=True)
    class_ids, label = np.unique(answers["label"], return_inverse=True)
    known = pd.Series(task_ids).map(gold_of).map({c: i for i, c in enumerate(class_ids)})
    acc = worker_accuracy(task, worker, label, known.fillna(-1).astype(int).to_numpy())
    table = pd.DataFrame({"worker": worker_ids, "answers": np.bincount(worker, minlength=len(worker_ids)),
                          "accuracy": acc.accuracy, "lower": acc.lower, "upper": acc.upper}).sort_values("accuracy")
    print("\nleast accurate annotators (95% interval):")
    print(table.head(5).to_string(index=False, float_format="%.3f"))
    return table


if __name__ == "__main__":
    main()
