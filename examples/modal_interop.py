"""hitl's strategies as modAL query strategies, and a modAL-style function in a hitl project.

A hitl strategy is a plain function with modAL's signature, so it drops into
``modAL.models.ActiveLearner``; and any function of that signature, yours or modAL's,
drops into ``hitl.LabelingProject(strategy=...)``.

    python examples/modal_interop.py
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import hitl
from hitl.models import SklearnModel
from hitl.strategies import margin


def confident_disagreement(classifier, X, n_instances=1, **kwargs):
    """A strategy of your own: the smallest gap between the two most likely classes, tie to the lower index."""
    proba = classifier.predict_proba(X)
    top2 = np.sort(proba, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    idx = np.argsort(gap, kind="stable")[:n_instances]
    return idx, -gap[idx]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=10, help="rounds of 10 queries in the modAL loop")
    args = ap.parse_args(argv)
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    seed = rng.choice(len(y), 30, replace=False)
    make = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))  # noqa: E731

    out = {}
    try:
        from modAL.models import ActiveLearner
    except ImportError:
        print("modAL is not installed: pip install modAL-python (skipping the modAL half)")
    else:
        learner = ActiveLearner(estimator=make(), query_strategy=margin, X_training=X[seed], y_training=y[seed])
        pool = np.setdiff1d(np.arange(len(y)), seed)
        for _ in range(args.queries):
            idx, _scores = learner.query(X[pool], n_instances=10)
            learner.teach(X[pool[idx]], y[pool[idx]])
            pool = np.delete(pool, idx)
        out["modal_accuracy"] = float(learner.score(X, y))
        print(f"modAL ActiveLearner with hitl's margin: {30 + 10 * args.queries} labels, "
              f"accuracy {out['modal_accuracy']:.3f}")

    crowd = hitl.SimulatedCrowd.from_profile("realistic", 20, truth=y, n_classes=10, random_state=0)
    project = hitl.LabelingProject(hitl.Pool(X), SklearnModel(make(), n_classes=10), workforce=crowd,
                                   strategy=confident_disagreement, budget=hitl.Budget(answers=300),
                                   y_true=y, progress=False)
    s = project.run(batch_size=30).summary
    out["project_accuracy"] = s["label_accuracy"]
    print(f"hitl project with your own strategy: {s['human_answers']} answers, label accuracy {s['label_accuracy']:.3f}")
    return out


if __name__ == "__main__":
    main()
