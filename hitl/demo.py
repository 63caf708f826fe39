"""``hitl demo``: the whole loop on scikit-learn's digits with a simulated crowd."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

COUNTRIES = ("TG", "MG", "CM", "KE", "FR")


def run_demo(out: str | Path = "hitl-demo", *, budget: int = 1200, batch_size: int = 40, answers_per_item: int | None = None,
             strategy: str = "margin", random_state: int = 0, progress: bool = True, verbose: bool = True) -> dict:
    """Label the 1,347 pool digits (450 held out) with a 40-HITer simulated crowd; write curve.png and summary.json.

    One item in ten is restricted to HITers in France (data residency). Returns the summary.

    Examples
    --------
    >>> summary = run_demo("hitl-demo", budget=120, progress=False, verbose=False)  # doctest: +SKIP
    """
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import hitl
    from hitl.models import SklearnModel

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(random_state)
    perm = rng.permutation(len(y))
    test, train = perm[:450], perm[450:]
    allowed = [["FR"] if r < 0.1 else None for r in rng.random(len(train))]
    pool = hitl.Pool(X[train].astype(np.float32), ids=[f"digit-{i:04d}" for i in train], allowed_countries=allowed)
    crowd = hitl.SimulatedCrowd.from_profile("realistic", 40, truth=y[train], n_classes=10, countries=COUNTRIES,
                                             random_state=random_state)
    store_path = out / "project.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(store_path) + suffix).unlink(missing_ok=True)
    project = hitl.LabelingProject(
        pool, SklearnModel(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), n_classes=10),
        workforce=crowd, classes=list(range(10)), strategy=strategy, answers_per_item=answers_per_item,
        budget=hitl.Budget(answers=budget), store=str(store_path), eval_set=(X[test], y[test]), y_true=y[train],
        random_state=random_state, progress=progress,
    )
    t0 = time.perf_counter()
    result = project.run(batch_size=batch_size)
    seconds = time.perf_counter() - t0
    table = result.curve.to_frame()
    result.curve.plot(path=str(out / "curve.png"))
    summary = dict(result.summary, seconds=round(seconds, 2), pool="digits (scikit-learn)", hiters=len(crowd.hiters),
                   answers_per_item=answers_per_item, strategy=strategy, store=str(store_path))
    card = project.scorecard(out / "scorecard")
    summary["scorecard"] = str(out / "scorecard" / "scorecard.html")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_plain))
    result.labels.to_csv(out / "labels.csv", index=False)
    if verbose:
        print(_table(table))
        print()
        print(f"{summary['items']} items: {summary['human_labeled']} labeled by humans "
              f"({summary['human_answers']} answers), {summary['auto_accepted']} auto-accepted, "
              f"{summary['machine_unaccepted']} machine-labeled below the threshold; "
              f"{summary['unroutable']} unroutable.")
        print(f"label accuracy {summary['label_accuracy']:.3f} (human + auto-accepted: {summary['accepted_accuracy']:.3f}), "
              f"model accuracy {summary['model_accuracy']:.3f}; paid to HITers: {summary['paid']}; {seconds:.1f} s.")
        print(card.summary())
        print(f"wrote {out / 'curve.png'}, {out / 'summary.json'}, {out / 'labels.csv'}, {summary['scorecard']}")
    return summary


def _table(df: Any) -> str:
    cols = ["round", "human_answers", "human_labeled", "auto_accepted", "model_accuracy", "label_accuracy",
            "accepted_accuracy", "threshold", "accuracy_bound"]
    head = (f"{'round':>5} {'answers':>8} {'human':>6} {'auto':>6} {'model':>7} {'labels':>7} {'accepted':>8} "
            f"{'threshold':>9} {'bound':>6}")
    lines = [head, "-" * len(head)]
    for row in df[cols].itertuples(index=False):
        r, a, h, au, m, la, ac, t, b = row
        lines.append(f"{r:>5} {a:>8} {h:>6} {au:>6} {_f(m):>7} {_f(la):>7} {_f(ac):>8} {_f(t):>9} {_f(b):>6}")
    return "\n".join(lines)


def _f(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def _plain(o: Any) -> Any:
    return o.item() if isinstance(o, np.generic) else str(o)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the labeling loop on scikit-learn's digits with a simulated crowd")
    p.add_argument("--out", default="hitl-demo", help="output folder (default: hitl-demo/)")
    p.add_argument("--budget", type=int, default=1200, help="human answers to buy (default 1200)")
    p.add_argument("--batch-size", type=int, default=40, help="items sent to humans per round (default 40)")
    p.add_argument("--answers-per-item", type=int, default=0,
                   help="HITers per item (default 0: as many as each item's posterior needs, 1 to 3)")
    p.add_argument("--strategy", default="margin", help="query strategy (default margin)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=lambda a: (run_demo(a.out, budget=a.budget, batch_size=a.batch_size,
                                            answers_per_item=a.answers_per_item or None, strategy=a.strategy,
                                            random_state=a.seed, progress=not a.no_progress), 0)[1])
