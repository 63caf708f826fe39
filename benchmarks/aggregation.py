"""Aggregation benchmark: hitl's methods against crowd-kit's, side by side in one process.

For each real crowd data set (a folder with answers.csv and gold.csv; see
``hitl.aggregation.crowd_data_root``): every method of ours and the same method of
crowd-kit, accuracy on the gold tasks and seconds. Then a synthetic large case,
1,000,000 tasks x 3 answers from 2,000 workers with 5 classes: Dawid-Skene with the
same fixed number of EM iterations, and majority vote, both from the same DataFrame.

One vote per (task, worker) on both sides: each data set is loaded de-duplicated (adult2
and trec_rf10 hold workers who gave a task two different labels: their last answer in
the file counts, ``duplicates="last"``), and crowd-kit gets the very same frame.

Writes ``benchmarks/results/aggregation.json`` and ``benchmarks/results/aggregation.md``.
Pin the BLAS threads so that timings do not depend on the machine's thread pool:

    export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
    python benchmarks/aggregation.py                  # everything (crowd-kit's GLAD and MACE take a while)
    python benchmarks/aggregation.py --skip-real      # only the synthetic case
    python benchmarks/aggregation.py --skip-synthetic --methods ds,mv
    python benchmarks/aggregation.py --datasets adult2,trec_rf10 --merge   # redo two sets, keep the rest
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import hitl.aggregation as ours
from hitl.aggregation import crowd_data_root, list_crowd_datasets, load_crowd_dataset

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / ".cache" / "aggregation_crowdkit.json"
METHODS = ["mv", "wawa", "ds", "onecoin", "glad", "mace"]
# Sets with conflicting repeats (a worker, a task, two labels): loaded keeping the last answer.
CONFLICTING = {"adult2", "trec_rf10"}
NAMES = {"mv": "MajorityVote", "wawa": "Wawa", "ds": "DawidSkene", "onecoin": "OneCoinDawidSkene", "glad": "GLAD",
         "mace": "MACE"}


def crowdkit_method(key: str, **kwargs):
    import crowdkit.aggregation as ck

    return getattr(ck, NAMES[key])(**kwargs)


def our_method(key: str, **kwargs):
    return ours.METHODS[key](**kwargs)


def gold_accuracy(labels: pd.Series, gold: pd.Series) -> float:
    pred = labels.reindex(gold.index)
    return float((pred.astype(str).to_numpy() == gold.astype(str).to_numpy()).mean())


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def warm_up() -> None:
    """Compile (or load from cache) our kernels before any timing."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"task": rng.integers(0, 50, 400), "worker": rng.integers(0, 9, 400),
                       "label": rng.integers(0, 3, 400)})
    for key in METHODS:  # random pairs repeat: keep the last, which compiles the one-vote check too
        our_method(key).fit_predict(df, duplicates="last")
        our_method(key, **({} if key in ("mv", "wawa") else {"dtype": "float32"})).fit_predict(df, duplicates="last")
    our_method("mv").fit_predict(df.sort_values("worker"), duplicates="last")  # the counting-sort path


def run_real(names: list[str], methods: list[str], repeats: int, reuse_reference: bool) -> list[dict]:
    cache = json.loads(CACHE.read_text()) if (reuse_reference and CACHE.is_file()) else {}
    import crowdkit

    rows = []
    for name in names:
        # Both sides get these de-duplicated answers (one row per task and worker).
        data = load_crowd_dataset(crowd_data_root() / name, duplicates="last" if name in CONFLICTING else "refuse")
        gold = data.gold_in_answers
        answers = data.answers
        row = {
            "name": name,
            "n_tasks": int(answers["task"].nunique()),
            "n_workers": int(answers["worker"].nunique()),
            "n_answers": int(len(answers)),
            "n_repeats_dropped": int(data.n_duplicates),
            "n_classes": int(answers["label"].nunique()),
            "n_gold_tasks": int(len(gold)),
            "methods": {},
        }
        for key in methods:
            times, acc = [], None
            for _ in range(repeats):
                labels, sec = timed(lambda: our_method(key).fit_predict(answers))
                times.append(sec)
                acc = gold_accuracy(labels, gold)
            entry = {"ours": {"accuracy": acc, "seconds": statistics.median(times)}}
            cache_key = f"{name}/{key}/{crowdkit.__version__}/{len(answers)}"
            if cache_key in cache:
                entry["crowdkit"] = dict(cache[cache_key], reused_from_earlier_run=True)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    labels, sec = timed(lambda: crowdkit_method(key).fit_predict(answers))
                entry["crowdkit"] = {"accuracy": gold_accuracy(labels, gold), "seconds": sec}
                cache[cache_key] = entry["crowdkit"]
            row["methods"][key] = entry
            print(f"{name:15s} {key:8s} ours {entry['ours']['accuracy']:.4f} ({entry['ours']['seconds']:.2f}s)"
                  f"  crowd-kit {entry['crowdkit']['accuracy']:.4f} ({entry['crowdkit']['seconds']:.2f}s)", flush=True)
        rows.append(row)
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        CACHE.write_text(json.dumps(cache, indent=1))
    return rows


def synthetic_answers(n_tasks: int, per_task: int, n_workers: int, k: int, seed: int = 0):
    """Each task gets ``per_task`` answers from distinct random workers (one vote per task and
    worker); worker accuracy U(0.5, 0.95), errors uniform over the other classes."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_tasks)
    task = np.repeat(np.arange(n_tasks), per_task)
    worker = rng.integers(0, n_workers, (n_tasks, per_task))
    while True:  # redraw the (few) tasks that got a worker twice
        s = np.sort(worker, axis=1)
        again = (s[:, 1:] == s[:, :-1]).any(axis=1)
        if not again.any():
            break
        worker[again] = rng.integers(0, n_workers, (int(again.sum()), per_task))
    worker = worker.ravel()
    acc = rng.uniform(0.5, 0.95, n_workers)
    right = rng.random(task.size) < acc[worker]
    label = np.where(right, truth[task], (truth[task] + rng.integers(1, k, task.size)) % k)
    return pd.DataFrame({"task": task, "worker": worker, "label": label}), truth


def time_one_vote_check(df: pd.DataFrame, repeats: int) -> dict:
    """Seconds of the one-vote-per-(task, worker) check every fit runs: on the answers as
    given (grouped by task, so no sort) and shuffled (a counting sort by task first)."""
    from hitl.aggregation._kernels import pair_repeats

    t, w, y = (df[c].to_numpy(np.int64) for c in ("task", "worker", "label"))
    nt, nw = int(t.max()) + 1, int(w.max()) + 1
    perm = np.random.default_rng(1).permutation(len(t))
    res = {}
    for name, (tt, ww, yy) in {"grouped": (t, w, y), "shuffled": (t[perm], w[perm], y[perm])}.items():
        times = [timed(lambda: pair_repeats(tt, ww, yy, nt, nw))[1] for _ in range(max(repeats, 3))]
        res[f"{name}_seconds"] = times
    return res


def run_synthetic(n_tasks: int, per_task: int, n_workers: int, k: int, n_iter: int, repeats: int,
                  reference_repeats: int) -> dict:
    df, truth = synthetic_answers(n_tasks, per_task, n_workers, k)
    out: dict = {"n_tasks": n_tasks, "answers_per_task": per_task, "n_workers": n_workers, "n_classes": k,
                 "n_answers": int(len(df)), "ids": "integers in a DataFrame (task, worker, label)"}
    out["one_vote_check"] = time_one_vote_check(df, repeats)

    def acc(labels: pd.Series) -> float:
        return float((labels.reindex(np.arange(n_tasks)).to_numpy() == truth).mean())

    # Majority vote
    ours_t, ck_t = [], []
    for _ in range(repeats):
        labels, sec = timed(lambda: ours.MajorityVote().fit_predict(df))
        ours_t.append(sec)
    ours_acc = acc(labels)
    for _ in range(reference_repeats):
        labels, sec = timed(lambda: crowdkit_method("mv").fit_predict(df))
        ck_t.append(sec)
    out["mv"] = {"ours_seconds": ours_t, "crowdkit_seconds": ck_t, "ours_accuracy": ours_acc,
                 "crowdkit_accuracy": acc(labels),
                 "speedup_median": statistics.median(ck_t) / statistics.median(ours_t)}
    print(f"synthetic mv: ours {statistics.median(ours_t):.3f}s crowd-kit {statistics.median(ck_t):.3f}s", flush=True)

    # Dawid-Skene, the same fixed number of EM iterations on both sides (no early stop)
    res = {"n_iter": n_iter}
    for dtype in ("float64", "float32"):
        times = []
        for _ in range(repeats):
            model = ours.DawidSkene(n_iter=n_iter, tol=-1.0, dtype=dtype)
            labels, sec = timed(lambda: model.fit_predict(df))
            times.append(sec)
        res[f"ours_{dtype}_seconds"] = times
        res[f"ours_{dtype}_accuracy"] = acc(labels)
        res[f"ours_{dtype}_iterations"] = model.n_iter_
        print(f"synthetic ds ours {dtype}: {statistics.median(times):.3f}s", flush=True)
    ck_t = []
    for _ in range(reference_repeats):
        model = crowdkit_method("ds", n_iter=n_iter, tol=-1e300)
        labels, sec = timed(lambda: model.fit_predict(df))
        ck_t.append(sec)
    res["crowdkit_seconds"] = ck_t
    res["crowdkit_accuracy"] = acc(labels)
    res["crowdkit_iterations"] = len(model.loss_history_)
    res["speedup_median_float64"] = statistics.median(ck_t) / statistics.median(res["ours_float64_seconds"])
    res["speedup_median_float32"] = statistics.median(ck_t) / statistics.median(res["ours_float32_seconds"])
    print(f"synthetic ds crowd-kit: {statistics.median(ck_t):.3f}s", flush=True)
    out["ds"] = res
    return out


def summarise(rows: list[dict], methods: list[str]) -> dict:
    summary: dict = {"mean_accuracy": {"ours": {}, "crowdkit": {}}}
    for side in ("ours", "crowdkit"):
        for key in methods:
            vals = [r["methods"][key][side]["accuracy"] for r in rows if key in r["methods"]]
            summary["mean_accuracy"][side][key] = float(np.mean(vals))
    for side in ("ours", "crowdkit"):
        best = max(summary["mean_accuracy"][side], key=summary["mean_accuracy"][side].get)
        summary[f"best_{side}"] = {"method": best, "mean_accuracy": summary["mean_accuracy"][side][best]}
    if "ds" in methods:
        gaps = {r["name"]: 100 * (r["methods"]["ds"]["ours"]["accuracy"] - r["methods"]["ds"]["crowdkit"]["accuracy"])
                for r in rows}
        summary["ds_gap_points"] = gaps
        summary["ds_within_0.3_points_everywhere"] = bool(all(g >= -0.3 for g in gaps.values()))
    summary["best_mean_ours_at_least_crowdkit"] = bool(
        summary["best_ours"]["mean_accuracy"] >= summary["best_crowdkit"]["mean_accuracy"])
    return summary


def markdown(result: dict) -> str:
    lines = ["# Aggregation: hitl vs crowd-kit", ""]
    rows, methods = result.get("datasets", []), result.get("methods", [])
    if rows:
        lines += ["Accuracy on the gold tasks (%), ours / crowd-kit; best of each row in bold.", ""]
        dropped = [f"{r['name']} {r['n_repeats_dropped']}" for r in rows if r.get("n_repeats_dropped")]
        if dropped:
            lines[-1:] = [f"Both sides get the same answers, one per (task, worker): repeated answers dropped, "
                          f"the last one kept ({', '.join(dropped)}).", ""]
        lines.append("| data set | tasks | answers | gold | " + " | ".join(NAMES[m] for m in methods) + " |")
        lines.append("|---|---:|---:|---:|" + "---:|" * len(methods))
        for r in rows:
            cells = []
            top = max(max(r["methods"][m]["ours"]["accuracy"], r["methods"][m]["crowdkit"]["accuracy"]) for m in methods)
            for m in methods:
                o, c = r["methods"][m]["ours"]["accuracy"], r["methods"][m]["crowdkit"]["accuracy"]
                fo = f"**{100 * o:.2f}**" if o == top else f"{100 * o:.2f}"
                fc = f"**{100 * c:.2f}**" if c == top else f"{100 * c:.2f}"
                cells.append(f"{fo} / {fc}")
            lines.append(f"| {r['name']} | {r['n_tasks']} | {r['n_answers']} | {r['n_gold_tasks']} | "
                         + " | ".join(cells) + " |")
        s = result["summary"]
        mean = " | ".join(f"{100 * s['mean_accuracy']['ours'][m]:.2f} / {100 * s['mean_accuracy']['crowdkit'][m]:.2f}"
                          for m in methods)
        lines.append(f"| **mean** | | | | {mean} |")
        lines += ["", "Seconds per data set summed over the ten, ours / crowd-kit:", ""]
        lines.append("| " + " | ".join(NAMES[m] for m in methods) + " |")
        lines.append("|" + "---:|" * len(methods))
        lines.append("| " + " | ".join(
            f"{sum(r['methods'][m]['ours']['seconds'] for r in rows):.2f} / "
            f"{sum(r['methods'][m]['crowdkit']['seconds'] for r in rows):.1f}" for m in methods) + " |")
        lines += ["", f"Best mean accuracy: ours {NAMES[s['best_ours']['method']]} "
                      f"{100 * s['best_ours']['mean_accuracy']:.2f}%, crowd-kit {NAMES[s['best_crowdkit']['method']]} "
                      f"{100 * s['best_crowdkit']['mean_accuracy']:.2f}%."]
        if "ds_gap_points" in s:
            worst = min(s["ds_gap_points"], key=s["ds_gap_points"].get)
            lines.append(f"DawidSkene, ours minus crowd-kit: worst {s['ds_gap_points'][worst]:+.2f} points ({worst}).")
    syn = result.get("synthetic")
    if syn:
        ds, mv = syn["ds"], syn["mv"]
        med = statistics.median
        lines += ["", f"## Synthetic: {syn['n_tasks']:,} tasks x {syn['answers_per_task']} answers, "
                      f"{syn['n_workers']:,} workers, {syn['n_classes']} classes", "",
                  "Median seconds from the same DataFrame, same process; Dawid-Skene with "
                  f"{ds['n_iter']} EM iterations on both sides (no early stop).", "",
                  "| method | ours | crowd-kit | speed-up | accuracy ours / crowd-kit |", "|---|---:|---:|---:|---:|",
                  f"| MajorityVote | {med(mv['ours_seconds']):.3f} | {med(mv['crowdkit_seconds']):.2f} | "
                  f"{mv['speedup_median']:.1f}x | {100 * mv['ours_accuracy']:.2f} / {100 * mv['crowdkit_accuracy']:.2f} |",
                  f"| DawidSkene (float64) | {med(ds['ours_float64_seconds']):.2f} | {med(ds['crowdkit_seconds']):.1f} | "
                  f"{ds['speedup_median_float64']:.1f}x | {100 * ds['ours_float64_accuracy']:.2f} / "
                  f"{100 * ds['crowdkit_accuracy']:.2f} |",
                  f"| DawidSkene (float32) | {med(ds['ours_float32_seconds']):.2f} | {med(ds['crowdkit_seconds']):.1f} | "
                  f"{ds['speedup_median_float32']:.1f}x | {100 * ds['ours_float32_accuracy']:.2f} / "
                  f"{100 * ds['crowdkit_accuracy']:.2f} |"]
    check = (syn or {}).get("one_vote_check")
    if check:
        lines += ["", f"One vote per (task, worker), the check inside every fit above: "
                      f"{statistics.median(check['grouped_seconds']):.3f} s on the {syn['n_answers']:,} answers as "
                      f"given (grouped by task), {statistics.median(check['shuffled_seconds']):.3f} s shuffled."]
    env = result["environment"]
    lines += ["", f"Python {env['python']}, numpy {env['numpy']}, numba {env['numba']}, pandas {env['pandas']}, "
                  f"crowd-kit {env['crowdkit']}; {env['cpu_count']} CPU cores."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--datasets", default="", help="comma-separated names (default: every folder found)")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of our methods (median reported)")
    ap.add_argument("--reference-repeats", type=int, default=1, help="timed runs of crowd-kit on the synthetic case")
    ap.add_argument("--synthetic-tasks", type=int, default=1_000_000)
    ap.add_argument("--n-iter", type=int, default=20, help="EM iterations of both Dawid-Skenes on the synthetic case")
    ap.add_argument("--reuse-reference", action="store_true",
                    help="reuse crowd-kit's real-data results from an earlier run (marked in the JSON)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the sections of an existing result file that this run skips")
    ap.add_argument("--out", default=str(RESULTS / "aggregation.json"))
    args = ap.parse_args(argv)
    import crowdkit
    import numba

    methods = [m for m in args.methods.split(",") if m]
    result: dict = {
        "environment": {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
                        "pandas": pd.__version__, "crowdkit": crowdkit.__version__, "cpu_count": os.cpu_count(),
                        "platform": platform.platform()},
        "methods": methods,
    }
    warm_up()
    if not args.skip_real:
        names = [n for n in args.datasets.split(",") if n] or list_crowd_datasets()
        if not names:
            print("no crowd data sets found; set HITL_CROWD_DATA", file=sys.stderr)
        else:
            result["datasets"] = run_real(names, methods, args.repeats, args.reuse_reference)
            result["summary"] = summarise(result["datasets"], methods)
    if not args.skip_synthetic:
        result["synthetic"] = run_synthetic(args.synthetic_tasks, 3, 2000, 5, args.n_iter, args.repeats,
                                            args.reference_repeats)
    out = Path(args.out)
    if args.merge and out.is_file():
        old = json.loads(out.read_text())
        if "datasets" in result and "datasets" in old and old.get("methods") == methods:
            # Data sets of the earlier run that this run did not redo are kept (and marked).
            fresh = {r["name"] for r in result["datasets"]}
            kept = [r for r in old["datasets"] if r["name"] not in fresh]
            if kept:
                result["datasets"] = sorted(kept + result["datasets"], key=lambda r: r["name"])
                result["summary"] = summarise(result["datasets"], methods)
                result["datasets_kept_from_earlier_run"] = [r["name"] for r in kept]
        for key in ("datasets", "summary", "synthetic"):
            if key not in result and key in old:
                result[key] = old[key]
                result.setdefault("kept_from_earlier_run", []).append(key)
        if "datasets" in result and "datasets" in old and result["datasets"] is old["datasets"]:
            result["methods"] = old.get("methods", result["methods"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
