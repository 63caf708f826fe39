"""Label a whole pool four ways and compare human answers, cost and label accuracy.

(a) 3 HITers per item + majority vote; (b) 1 HITer per item; (c) the same loop as
hitl's but auto-accepting every machine label at confidence >= 0.95, with no bound;
(d) hitl's router: audited auto-accept threshold with a Clopper-Pearson bound
(target 0.95 at 95% confidence), dynamic redundancy, model as prior.

Simulated HITers draw their accuracies from the per-worker accuracies measured on
the real RTE and TEMP crowd data (Snow et al., 2008), carried from two classes to k
classes by keeping each worker's skill above chance.

Usage::

    python benchmarks/end_to_end.py --datasets digits mnist --seeds 10
    python benchmarks/end_to_end.py --guarantee 20 --guarantee-dataset digits   # realised accuracy of auto-accepted labels
    python benchmarks/end_to_end.py --ablation 5 --ablation-dataset tweets2000  # what each part of (d) buys
    python benchmarks/end_to_end.py --report                # merge results into JSON, markdown and plots

Writes ``benchmarks/results/end_to_end_<dataset>.json`` (one per dataset),
``end_to_end_guarantee_<dataset>.json``, ``end_to_end_ablation_<dataset>.json``, ``end_to_end.md``
and ``end_to_end.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache"
sys.path.insert(0, str(ROOT))

import hitl  # noqa: E402
from hitl.aggregation import MajorityVote  # noqa: E402
from hitl.models import SklearnModel  # noqa: E402

METHODS = {
    "a": "3 HITers per item + majority vote",
    "b": "1 HITer per item",
    "c": "fixed 0.95 threshold, no bound",
    "d": "hitl router (bound 0.95 @ 95%)",
}


#: Variants of (d) for the ablation: (redundancy rule, model prior).
ABLATION = {
    "item rule, 0.1 flat prior": ("item", 0.1),
    "item rule, prior calibrated on audits": ("item", "audits"),
    "set rule, 0.1 flat prior": ("set", 0.1),
    "set rule, prior calibrated on audits (default)": ("set", "audits"),
}

#: The model every method with a model uses (c and d), per data set.
MODELS = {
    "digits": "SVC (RBF, Platt-scaled probabilities) on the 64 pixels",
    "mnist": "SVC (RBF, Platt-scaled probabilities) on 50 PCA components",
    "tweets": "LogisticRegression (C=10) on all-MiniLM-L6-v2 sentence embeddings",
}


def model_of(name: str) -> str:
    return MODELS["tweets" if name.startswith("tweets") else name]


def crowd_accuracies() -> np.ndarray:
    """Per-worker accuracies on gold of the real RTE and TEMP answer sets (workers with 10+ answers)."""
    import pandas as pd

    base = Path(os.environ.get("HITL_CROWD_DATA", ROOT.parent / "shared" / "data" / "crowd"))
    out = []
    for name in ("rte", "temp"):
        answers = pd.read_csv(base / name / "answers.csv", dtype=str)
        gold = pd.read_csv(base / name / "gold.csv", dtype=str)
        merged = answers.merge(gold, on="task", suffixes=("", "_gold"))
        per = (merged["label"] == merged["label_gold"]).groupby(merged["worker"]).agg(["mean", "count"])
        out.append(per.loc[per["count"] >= 10, "mean"].to_numpy())
    return np.concatenate(out)


def load(name: str):
    """(X, y, k, model factory, batch size) for a data set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    from hitl import datasets

    if name == "digits":
        ds = datasets.load_digits()
        X = ds.X.astype(np.float32)

        def model():
            # The same model as on MNIST: an RBF SVM with Platt-scaled probabilities
            # (on digits it is surer and more often right than logistic regression).
            return SklearnModel(SVC(gamma="scale", probability=True, random_state=0), n_classes=10)

        return X, ds.y, 10, model, 20
    if name == "mnist":
        from sklearn.decomposition import PCA

        ds = datasets.load_mnist()
        # PCA is fitted once on the unlabeled pool (no labels involved): a 50-d pool
        # makes each round's refit cheap.
        X = PCA(50, random_state=0).fit_transform(ds.X / 255.0).astype(np.float32)

        def model():
            return SklearnModel(SVC(gamma="scale", probability=True, random_state=0), n_classes=10)

        return X, ds.y, 10, model, 100
    if name.startswith("tweets"):
        ds = datasets.load_tweets()
        X, y = tweet_embeddings(ds), ds.y
        if name != "tweets":  # e.g. "tweets10000": a fixed random subset of that many tweets
            keep = np.sort(np.random.default_rng(0).choice(len(y), size=int(name[6:]), replace=False))
            X, y = X[keep], y[keep]

        def model():
            # C=10: a lightly regularised model, sure of itself more often than it is right.
            return SklearnModel(LogisticRegression(max_iter=2000, C=10.0), n_classes=3)

        return X, y, 3, model, max(100, len(y) // 40)
    raise SystemExit(f"unknown data set {name!r}")


def tweet_embeddings(ds) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings of the tweets, computed once and cached on disk."""
    CACHE.mkdir(parents=True, exist_ok=True)
    from hitl.models import TextEncoder

    # The encoder's own cache file: a second run embeds nothing.
    enc = TextEncoder(batch_size=128, n_threads=2, cache_path=CACHE / "tweets_minilm.npz")
    t0 = time.perf_counter()
    X = enc.encode(ds.texts, ids=ds.ids).astype(np.float32)
    print(f"tweet embeddings ready in {time.perf_counter() - t0:.0f} s", flush=True)
    return X


def baseline(name: str, method: str, seed: int, data, crowd) -> dict:
    """(a) and (b): every item to ``per_item`` distinct HITers drawn at random, majority vote."""
    y = data[1]
    per_item = 3 if method == "a" else 1
    rng = np.random.default_rng([seed, per_item])
    n, W = len(y), len(crowd.hiters)
    workers = np.argsort(rng.random((n, W)), axis=1)[:, :per_item].ravel()
    items = np.repeat(np.arange(n), per_item)
    t0 = time.perf_counter()
    ans = crowd.answer(items, workers)
    mv = MajorityVote().fit(items, workers, ans.label, n_tasks=n, n_workers=W, n_classes=data[2])
    return {
        "dataset": name, "method": method, "seed": seed, "seconds": round(time.perf_counter() - t0, 2),
        "human_answers": int(len(items)), "cost": None, "label_accuracy": float(np.mean(mv.labels_ == y)),
        "auto_accepted": 0, "auto_accepted_accuracy": None, "accuracy_bound": None, "threshold": None,
        "human_labeled": int(n), "stop_reason": "complete", "rounds": 1,
    }


def run_one(name: str, method: str, seed: int, data, variant: str | None = None) -> dict:
    X, y, k, make_model, batch = data
    crowd = hitl.SimulatedCrowd.from_accuracies(ACCURACIES, 40, truth=y, n_classes=k,
                                                countries=["TG", "MG", "CM", "KE", "UG"], random_state=seed,
                                                chunk_size=1000)
    if method in ("a", "b"):
        return baseline(name, method, seed, data, crowd)
    pool = hitl.Pool(X)
    common = dict(workforce=crowd, classes=list(range(k)), y_true=y, random_state=seed, progress=False)
    if method == "c":
        project = hitl.LabelingProject(pool, make_model(), strategy="margin",
                                       router=hitl.Router(guarantee=False, auto_accept=0.95), **common)
        size = batch
    else:
        redundancy, prior_mix = ABLATION[variant] if variant else ("set", "audits")
        project = hitl.LabelingProject(pool, make_model(), strategy="margin", prior_mix=prior_mix,
                                       router=hitl.Router(0.95, 0.95, redundancy=redundancy), **common)
        size = batch
    t0 = time.perf_counter()
    result = project.run(batch_size=size)
    s = result.summary
    PRICE_PER_ANSWER.setdefault((name, seed), []).append(s["spent"] / max(s["human_answers"], 1))
    return {
        "dataset": name, "method": method, "seed": seed, "seconds": round(time.perf_counter() - t0, 2),
        **({"variant": variant} if variant else {}), "human_answers": s["human_answers"], "cost": s["spent"], "label_accuracy": s["label_accuracy"],
        "auto_accepted": s["auto_accepted"], "auto_accepted_accuracy": s["auto_accepted_accuracy"],
        "accuracy_bound": s["accuracy_bound"], "threshold": s["threshold"], "human_labeled": s["human_labeled"],
        "stop_reason": s["stop_reason"], "rounds": s["rounds"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist", "tweets"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seed-start", type=int, default=0)
    ap.add_argument("--guarantee", type=int, default=0, help="seeds for the guarantee check (methods c and d)")
    ap.add_argument("--guarantee-dataset", default="mnist")
    ap.add_argument("--ablation", type=int, default=0, help="seeds for the ablation of (d)'s redundancy rule and prior")
    ap.add_argument("--ablation-dataset", default="tweets2000")
    ap.add_argument("--report", action="store_true", help="only merge existing results into markdown and plots")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.report:
        global ACCURACIES
        ACCURACIES = crowd_accuracies()
        for name in args.datasets if not (args.guarantee or args.ablation) else []:
            data = load(name)
            rows = []
            for seed in range(args.seed_start, args.seed_start + args.seeds):
                for m in sorted(args.methods, key=lambda m: m in ("a", "b")):
                    row = run_one(name, m, seed, data)
                    if row["cost"] is None and PRICE_PER_ANSWER.get((name, seed)):
                        # Baselines are priced at the mean client price per answer of hitl's runs
                        # on the same crowd (same HITers, same wages).
                        row["cost"] = round(row["human_answers"] * float(np.mean(PRICE_PER_ANSWER[(name, seed)])), 2)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            rows.sort(key=lambda r: (r["seed"], r["method"]))
            (RESULTS / f"end_to_end_{name}.json").write_text(json.dumps(
                {"dataset": name, "n_items": int(len(data[1])), "hiters": 40, "model": model_of(name),
                 "crowd": "accuracies drawn from RTE and TEMP per-worker accuracies (10+ answers)",
                 "methods": METHODS, "runs": rows}, indent=1))
        if args.guarantee:
            data = load(args.guarantee_dataset)
            rows = []
            for seed in range(100, 100 + args.guarantee):
                for m in ("c", "d"):
                    row = run_one(args.guarantee_dataset, m, seed, data)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            (RESULTS / f"end_to_end_guarantee_{args.guarantee_dataset}.json").write_text(json.dumps(
                {"dataset": args.guarantee_dataset, "model": model_of(args.guarantee_dataset), "target": 0.95,
                 "confidence": 0.95, "runs": rows}, indent=1))
        if args.ablation:
            data = load(args.ablation_dataset)
            rows = []
            for seed in range(200, 200 + args.ablation):
                for variant in ABLATION:
                    row = run_one(args.ablation_dataset, "d", seed, data, variant=variant)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                rows.append(run_one(args.ablation_dataset, "a", seed, data))
            (RESULTS / f"end_to_end_ablation_{args.ablation_dataset}.json").write_text(json.dumps(
                {"dataset": args.ablation_dataset, "model": model_of(args.ablation_dataset), "target": 0.95,
                 "runs": rows}, indent=1))
    report()


def report() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["| data set | method | human answers (median) | vs (a) | cost (median) | label accuracy (median) "
             "| auto-accepted | bound |", "|---|---|---|---|---|---|---|---|"]
    files = sorted(RESULTS.glob("end_to_end_*.json"))
    sets = [f for f in files if "guarantee" not in f.name and "ablation" not in f.name]
    fig, axes = plt.subplots(1, max(1, len(sets)), figsize=(4.6 * max(1, len(sets)), 3.8), dpi=110, squeeze=False)
    for ax, f in zip(axes[0], sets):
        data = json.loads(f.read_text())
        runs = data["runs"]
        base = np.median([r["human_answers"] for r in runs if r["method"] == "a"]) if any(r["method"] == "a" for r in runs) else None
        for m, label in METHODS.items():
            rs = [r for r in runs if r["method"] == m]
            if not rs:
                continue
            ans = np.median([r["human_answers"] for r in rs])
            acc = np.median([r["label_accuracy"] for r in rs])
            costs = [r["cost"] for r in rs if r["cost"] is not None]
            cost = np.median(costs) if costs else float("nan")
            auto = np.median([r["auto_accepted"] for r in rs])
            bounds = [r["accuracy_bound"] for r in rs if r["accuracy_bound"] is not None and r["threshold"] is not None]
            bound = f"{np.median(bounds):.3f}" if (m == "d" and bounds) else "–"
            ratio = f"{ans / base:.0%}" if base else "–"
            lines.append(f"| {data['dataset']} ({data['n_items']}) | ({m}) {label} | {ans:.0f} | {ratio} | {cost:.2f} "
                         f"| {acc:.4f} | {auto:.0f} | {bound} |")
            ax.scatter([r["human_answers"] for r in rs], [r["label_accuracy"] for r in rs], s=14, alpha=0.7,
                       label=f"({m}) {label}")
        ax.axhline(0.95, color="grey", lw=0.8, ls="--")
        n_seeds = len(set(r["seed"] for r in runs))
        ax.set_title(f"{data['dataset']} ({data['n_items']} items, {n_seeds} seed{'s' if n_seeds != 1 else ''})")
        ax.set_xlabel("human answers")
        ax.set_ylabel("label accuracy (whole pool)")
        ax.grid(alpha=0.3)
    lines += ["", "Models: " + "; ".join(
        f"{json.loads(f.read_text())['dataset']}: {model_of(json.loads(f.read_text())['dataset'])}" for f in sets) + "."]
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(RESULTS / "end_to_end.png")
    plt.close(fig)
    guarantee = sorted(RESULTS.glob("end_to_end_guarantee_*.json"))
    if guarantee:
        lines += ["", "Guarantee check: realised accuracy of the auto-accepted labels against the 0.95 target, "
                      "one run per seed (seeds 100 on). A run that accepts nothing cannot miss the target.", "",
                  "| data set | method | seeds | runs at or above 0.95 | runs below | min | median | auto-accepted "
                  "(median) | runs with nothing accepted |", "|---|---|---|---|---|---|---|---|---|"]
    for g in guarantee:
        data = json.loads(g.read_text())
        for m in ("c", "d"):
            rs = [r for r in data["runs"] if r["method"] == m]
            if not rs:
                continue
            accs = [r["auto_accepted_accuracy"] for r in rs if r["auto_accepted_accuracy"] is not None]
            none = sum(r["auto_accepted_accuracy"] is None for r in rs)
            below = sum(a < 0.95 for a in accs)
            lo = f"{min(accs):.4f}" if accs else "–"
            mid = f"{np.median(accs):.4f}" if accs else "–"
            auto = np.median([r["auto_accepted"] for r in rs])
            lines.append(f"| {data['dataset']} | ({m}) {METHODS[m]} | {len(rs)} | {len(rs) - below} | {below} | {lo} "
                         f"| {mid} | {auto:.0f} | {none} |")
    for f in sorted(RESULTS.glob("end_to_end_ablation_*.json")):
        data = json.loads(f.read_text())
        runs = data["runs"]
        seeds = sorted({r["seed"] for r in runs})
        base = {r["seed"]: r["human_answers"] for r in runs if r["method"] == "a"}
        base_acc = np.median([r["label_accuracy"] for r in runs if r["method"] == "a"])
        lines += ["", f"Ablation of (d) on {data['dataset']} ({len(seeds)} seeds, {seeds[0]} on; {data['model']}): "
                      f"what the redundancy rule and the calibrated prior each buy. (a) needs "
                      f"{np.median(list(base.values())):.0f} answers for {base_acc:.4f}.", "",
                  "| (d) variant | human answers (median) | vs (a) (median) | label accuracy (median) | min |",
                  "|---|---|---|---|---|"]
        for variant in ABLATION:
            rs = [r for r in runs if r.get("variant") == variant]
            if rs:
                lines.append(f"| {variant} | {np.median([r['human_answers'] for r in rs]):.0f} "
                             f"| {np.median([r['human_answers'] / base[r['seed']] for r in rs]):.0%} "
                             f"| {np.median([r['label_accuracy'] for r in rs]):.4f} "
                             f"| {min(r['label_accuracy'] for r in rs):.4f} |")
    (RESULTS / "end_to_end.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


ACCURACIES = np.zeros(0)
PRICE_PER_ANSWER: dict = {}

if __name__ == "__main__":
    main()
