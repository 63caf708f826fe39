"""Label a whole pool to a stated accuracy, with a bound on the machine labels.

The router audits a random sample of machine labels with people, auto-accepts only above
the lowest confidence whose Clopper-Pearson lower bound meets the target, and buys human
answers for the rest, as few as the posteriors need. At the end it prints what was
bought, what was accepted and the bound behind it, next to what 3 HITers per item would
have cost, and writes the impact ScoreCard.

    python examples/guaranteed_labels.py --out guaranteed-labels
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.svm import SVC

import hitl
from hitl.models import SklearnModel


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="guaranteed-labels", help="folder for the store and the ScoreCard")
    ap.add_argument("--target", type=float, default=0.95, help="accuracy the labels must reach")
    ap.add_argument("--items", type=int, default=None, help="label only the first N digits (default: all 1,797)")
    args = ap.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X, y = X[: args.items], y[: args.items]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    crowd = hitl.SimulatedCrowd.from_profile("realistic", 40, truth=y, n_classes=10,
                                             countries=["TG", "MG", "CM", "KE"], random_state=0)
    model = SklearnModel(SVC(gamma="scale", probability=True, random_state=0), n_classes=10)
    project = hitl.LabelingProject(
        hitl.Pool(X), model, workforce=crowd,
        router=hitl.Router(target_accuracy=args.target, confidence=0.95, random_state=0),
        store=str(out / "project.db"), y_true=y, random_state=0)
    result = project.run(batch_size=20)   # rerun on the same store to resume
    s = result.summary

    print(f"labeled {len(result.labels)} items with {s['human_answers']} human answers "
          f"({s['human_answers'] / (3 * len(y)):.0%} of 3 per item)")
    if s["threshold"] is None:
        print("no threshold met the target: every label was bought from people")
    else:
        print(f"auto-accepted {s['auto_accepted']} machine labels at confidence >= {s['threshold']:.3f}; "
              f"lower bound of their accuracy {s['accuracy_bound']:.3f} at 95% confidence")
    print(f"label accuracy against the truth (a simulation knows it): {s['label_accuracy']:.4f}")
    card = project.scorecard(out=out / "scorecard")
    print(card.summary())
    print(f"ScoreCard written to {out / 'scorecard'} (scorecard.html, .md, .json, charts/)")
    return s


if __name__ == "__main__":
    main()
