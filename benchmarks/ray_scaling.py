"""Ray scaling of hitl: pre-labeling, text embedding and Dawid-Skene, in-process vs Ray actors.

Measures, side by side in one run (repeats interleaved, medians reported):

1. Pre-labeling throughput (rows/s) of a scikit-learn model on a pool of
   2,000,000 x 64 float32 rows: in-process single-threaded (BLAS limited to one
   thread), Ray with 1 actor, Ray with 2 actors (one BLAS thread each), and the
   automatic choice of :class:`hitl.distributed.Prelabeler` on pools of 1,000 and
   2,000,000 rows. Two models: an MLP (the heavier, typical pre-labeler) and a
   logistic regression (so cheap that copying the pool costs as much as predicting).
2. Text embedding throughput (texts/s) of :class:`hitl.models.TextEncoder`
   (all-MiniLM-L6-v2, one thread per process) on tweets, in-process vs 1 and 2 actors.
3. Dawid-Skene on 1,000,000 tasks x 3 answers: :class:`hitl.aggregation.DawidSkene`
   in-process vs :func:`hitl.distributed.fit_dawid_skene` on 2 actors (E-step per
   shard of tasks, M-step sums added), with the largest posterior difference.

Ray's start and an actor pool's start are timed on their own. Ray jobs are timed
with Ray running and the actors started (what every round after the first pays);
each pre-labeling job still copies its pool to the object store.

Writes ``benchmarks/results/ray_scaling.json``, ``ray_scaling.png`` and ``ray_scaling.md``.

Usage::

    python benchmarks/ray_scaling.py                # full run (~15-25 min on 2 busy cores)
    python benchmarks/ray_scaling.py --quick        # small sizes, to check it runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from threadpoolctl import threadpool_limits  # noqa: E402

from hitl import distributed  # noqa: E402
from hitl.aggregation import DawidSkene  # noqa: E402
from hitl.models import SklearnModel  # noqa: E402


def _autogroup() -> str | None:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip()
    except OSError:
        return None


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def make_pool(n: int, d: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, k)).astype(np.float32)
    X = np.empty((n, d), dtype=np.float32)
    step = 1 << 18
    for i in range(0, n, step):  # in chunks: never a float64 copy of the whole pool
        X[i:i + step] = rng.standard_normal((min(step, n - i), d), dtype=np.float32)
    n_train = 20_000
    y = (X[:n_train] @ W + rng.normal(0, 1.0, (n_train, k)).astype(np.float32)).argmax(1)
    return X, y, n_train


def fit_models(X, y, n_train, k):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    models = {
        "mlp": SklearnModel(MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=30, random_state=0), n_classes=k),
        "logreg": SklearnModel(LogisticRegression(max_iter=500), n_classes=k),
    }
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in models.values():
            m.fit(X[:n_train], y)
    return models


def warm_pool(n_actors: int, model, X) -> float:
    """Start (or keep) a pool of n_actors and load scikit-learn in it; returns the seconds it took."""
    t, _ = timed(lambda: distributed.prelabel(model, X[:64], use_ray=True, n_actors=n_actors, shard_rows=32))
    return t


def bench_prelabel(args, out: dict) -> None:
    X, y, n_train = make_pool(args.rows, args.dim, args.classes)
    models = fit_models(X, y, n_train, args.classes)
    small = X[: args.small_rows]
    res: dict = {"rows": args.rows, "dim": args.dim, "classes": args.classes, "small_rows": args.small_rows,
                 "shard_rows": distributed.settings.shard_rows, "threshold_rows": distributed.settings.threshold_rows,
                 "models": {}, "load_before": load()}

    # Cold automatic choice: Ray not running yet, so "auto" must weigh its start too.
    cold = {}
    for name, model in models.items():
        distributed.shutdown()
        p = distributed.Prelabeler()
        t, P = timed(lambda: p.predict_proba(model, X))
        cold[name] = {"seconds": t, "backend": p.backend_, "estimates": dict(p.timings_)}
        print(f"cold auto {name}: {t:.2f}s via {p.backend_} {p.timings_}", flush=True)
        del P
    distributed.shutdown()
    t_start, info = timed(lambda: distributed.connect(num_cpus=args.num_cpus))
    res["ray_start_seconds"] = t_start
    res["ray_cpus"] = info.num_cpus
    res["actor_pool_start_seconds"] = {str(n): warm_pool(n, models["mlp"], X) for n in (1, 2)}
    print(f"ray start {t_start:.2f}s, pools {res['actor_pool_start_seconds']}", flush=True)

    # The pool goes to the object store once, as a project does for all its rounds; the
    # copy is timed here and reported with the results. The model is copied every job.
    X_shared = distributed.share(X)
    res["put_pool_seconds"], _ = timed(lambda: X_shared.ref)
    reference = {name: None for name in models}
    for name, model in models.items():
        runs: dict[str, list[float]] = {"in_process": [], "ray_1": [], "ray_2": [], "auto": [],
                                        "small_in_process": [], "small_ray_2": [], "small_auto": []}
        backends: dict[str, list[str]] = {"auto": [], "small_auto": []}
        same = True
        for r in range(args.repeats):
            t, P = timed(lambda: distributed.prelabel(model, X, use_ray=False))
            runs["in_process"].append(t)
            if reference[name] is None:
                reference[name] = P
            del P
            for n_act in (1, 2):
                warm_pool(n_act, model, X)
                p = distributed.Prelabeler(use_ray=True, n_actors=n_act)
                t, P = timed(lambda: p.predict_proba(model, X_shared))
                runs[f"ray_{n_act}"].append(t)
                same &= bool(np.array_equal(P, reference[name]))
                del P
            p = distributed.Prelabeler()
            t, P = timed(lambda: p.predict_proba(model, X_shared))
            runs["auto"].append(t)
            backends["auto"].append(p.backend_)
            same &= bool(np.array_equal(P, reference[name]))
            del P
            # A small pool takes milliseconds: the median of many calls, interleaved.
            inner: dict[str, list[float]] = {"small_in_process": [], "small_ray_2": [], "small_auto": []}
            for _ in range(args.small_calls):
                inner["small_in_process"].append(timed(lambda: distributed.prelabel(model, small, use_ray=False))[0])
                p = distributed.Prelabeler()
                inner["small_auto"].append(timed(lambda: p.predict_proba(model, small))[0])
                inner["small_ray_2"].append(timed(lambda: distributed.prelabel(model, small, use_ray=True))[0])
            for key, values in inner.items():
                runs[key].append(statistics.median(values))
            backends["small_auto"].append(p.backend_)
            print(f"{name} repeat {r}: " + ", ".join(f"{k}={v[-1]:.2f}s" for k, v in runs.items())
                  + f" load={load()}", flush=True)
        med = {k: statistics.median(v) for k, v in runs.items()}
        best_big = min(med["in_process"], med["ray_2"])
        best_small = min(med["small_in_process"], med["small_ray_2"])
        res["models"][name] = {
            "seconds": runs,
            "median_seconds": med,
            "rows_per_second": {k: (args.rows if not k.startswith("small") else args.small_rows) / v
                                for k, v in med.items()},
            "speedup_ray_2_vs_in_process": med["in_process"] / med["ray_2"],
            "speedup_ray_2_vs_in_process_counting_the_put": med["in_process"] / (med["ray_2"] + res["put_pool_seconds"]),
            "speedup_ray_1_vs_in_process": med["in_process"] / med["ray_1"],
            "speedup_ray_2_per_repeat": [a / b for a, b in zip(runs["in_process"], runs["ray_2"])],
            "auto_vs_best": {"big": med["auto"] / best_big, "small": med["small_auto"] / best_small},
            "auto_backends": backends,
            "cold_auto": cold[name],
            "cold_auto_vs_in_process": cold[name]["seconds"] / med["in_process"],
            "ray_equals_in_process": same,
        }
    res["load_after"] = load()
    out["prelabel"] = res
    distributed.release()
    del X, X_shared, reference


def bench_text(args, out: dict) -> None:
    try:
        from hitl.datasets import load_tweets
        from hitl.models import TextEncoder
    except Exception as exc:  # pragma: no cover - depends on optional parts
        out["text"] = {"skipped": f"{type(exc).__name__}: {exc}"}
        return
    texts = list(dict.fromkeys(load_tweets().texts))[: args.texts]
    texts_arr = np.empty(len(texts), dtype=object)
    texts_arr[:] = texts
    local = TextEncoder(device="cpu", n_threads=1, cache=False)
    local.encode(texts[:64])  # load the weights outside the timing
    # Actors run with one thread each (Ray sets OMP_NUM_THREADS=1); the encoder is shared once.
    shared = distributed.share(TextEncoder(device="cpu", n_threads=1, cache=False))
    res: dict = {"texts": len(texts), "model": "all-MiniLM-L6-v2", "batch_size": local.batch_size,
                 "load_before": load(), "seconds": {"in_process": [], "ray_1": [], "ray_2": []},
                 "actor_load_seconds": {}}
    shard = 256
    ref = None
    max_diff = 0.0
    for r in range(args.repeats):
        t, E = timed(lambda: local.encode(texts))
        res["seconds"]["in_process"].append(t)
        ref = E if ref is None else ref
        for n_act in (1, 2):
            # Start the pool and have each actor load the encoder, outside the timing.
            t_load, _ = timed(lambda: distributed.prelabel(shared, texts_arr[: 8 * n_act], use_ray=True, n_actors=n_act,
                                                          method="encode", shard_rows=8))
            res["actor_load_seconds"].setdefault(str(n_act), []).append(t_load)
            p = distributed.Prelabeler(use_ray=True, n_actors=n_act, method="encode", shard_rows=shard)
            t, E = timed(lambda: p.predict_proba(shared, texts_arr))
            res["seconds"][f"ray_{n_act}"].append(t)
            max_diff = max(max_diff, float(np.abs(E - ref).max()))
        print(f"text repeat {r}: " + ", ".join(f"{k}={v[-1]:.2f}s" for k, v in res["seconds"].items())
              + f" load={load()}", flush=True)
    med = {k: statistics.median(v) for k, v in res["seconds"].items()}
    res["median_seconds"] = med
    res["texts_per_second"] = {k: len(texts) / v for k, v in med.items()}
    res["speedup_ray_2_vs_in_process"] = med["in_process"] / med["ray_2"]
    res["max_abs_diff_vs_in_process"] = max_diff
    res["load_after"] = load()
    out["text"] = res


def bench_dawid_skene(args, out: dict) -> None:
    rng = np.random.default_rng(0)
    nt, nw, k = args.tasks, args.workers, 2
    truth = rng.integers(0, k, nt)
    task = np.repeat(np.arange(nt), 3)
    # Three distinct workers per task (one vote per task and worker): offsets 0 < d1 != d2 < nw.
    w0 = rng.integers(0, nw, nt)
    d1 = rng.integers(1, nw, nt)
    d2 = rng.integers(1, nw - 1, nt)
    d2 += d2 >= d1
    worker = (np.stack([w0, w0 + d1, w0 + d2], axis=1) % nw).ravel()
    acc = rng.uniform(0.55, 0.95, nw)
    label = np.where(rng.random(len(task)) < acc[worker], truth[task], rng.integers(0, k, len(task)))
    perm = rng.permutation(len(task))
    task, worker, label = task[perm], worker[perm], label[perm]
    res: dict = {"tasks": nt, "answers": len(task), "workers": nw, "classes": k, "load_before": load(),
                 "seconds": {"in_process": [], "ray_2": []}}
    distributed.connect(num_cpus=args.num_cpus)
    # The actors and the numba kernels compile/load outside the timing.
    distributed.fit_dawid_skene(task[:3000], worker[:3000], label[:3000], n_workers=nw, n_classes=k, use_ray=True)
    DawidSkene().fit(task[:3000], worker[:3000], label[:3000], n_workers=nw, n_classes=k)
    max_diff = 0.0
    for r in range(args.repeats):
        t, ref = timed(lambda: DawidSkene().fit(task, worker, label, n_tasks=nt, n_workers=nw, n_classes=k))
        res["seconds"]["in_process"].append(t)
        t, got = timed(lambda: distributed.fit_dawid_skene(task, worker, label, n_tasks=nt, n_workers=nw,
                                                           n_classes=k, use_ray=True))
        res["seconds"]["ray_2"].append(t)
        max_diff = max(max_diff, float(np.abs(got.posteriors_ - ref.posteriors_).max()))
        res["n_iter"] = [ref.n_iter_, got.n_iter_]
        print(f"dawid-skene repeat {r}: " + ", ".join(f"{k_}={v[-1]:.2f}s" for k_, v in res["seconds"].items())
              + f" load={load()}", flush=True)
    med = {k_: statistics.median(v) for k_, v in res["seconds"].items()}
    res["median_seconds"] = med
    res["answers_per_second"] = {k_: len(task) / v for k_, v in med.items()}
    res["speedup_ray_2_vs_in_process"] = med["in_process"] / med["ray_2"]
    res["max_abs_posterior_diff"] = max_diff
    res["load_after"] = load()
    out["dawid_skene"] = res


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    pre = out.get("prelabel", {})
    for name in pre.get("models", {}):
        rps = pre["models"][name]["rows_per_second"]
        panels.append((f"pre-label, {name}\n{pre['rows']:,} x {pre['dim']} rows", "rows/s",
                       {"in-process\n1 thread": rps["in_process"], "Ray\n1 actor": rps["ray_1"],
                        "Ray\n2 actors": rps["ray_2"], "auto": rps["auto"]}))
    txt = out.get("text", {})
    if "texts_per_second" in txt:
        tps = txt["texts_per_second"]
        panels.append((f"TextEncoder, {txt['texts']:,} tweets", "texts/s",
                       {"in-process\n1 thread": tps["in_process"], "Ray\n1 actor": tps["ray_1"],
                        "Ray\n2 actors": tps["ray_2"]}))
    ds = out.get("dawid_skene", {})
    if "answers_per_second" in ds:
        aps = ds["answers_per_second"]
        panels.append((f"Dawid-Skene, {ds['tasks']:,} tasks x 3", "answers/s",
                       {"in-process": aps["in_process"], "Ray\n2 shards": aps["ray_2"]}))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), dpi=110)
    axes = np.atleast_1d(axes)
    for ax, (title, unit, values) in zip(axes, panels):
        names = list(values)
        ax.bar(names, [values[n] for n in names], color=["#888888", "#6fa8dc", "#1f77b4", "#2ca02c"][: len(names)])
        base = values[names[0]]
        for i, n in enumerate(names):
            ax.text(i, values[n], f"{values[n] / base:.2f}x", ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"hitl on Ray, {out['machine']['cpus']} cores (medians; ratios vs the first bar)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(out: dict) -> str:
    m = out["machine"]
    lines = ["## Scaling with Ray", "",
             f"Measured by `benchmarks/ray_scaling.py` on {m['cpus']} cores ({m['platform']}), "
             f"Ray {m['ray']}, scikit-learn {m['sklearn']}; medians of {out['repeats']} interleaved repeats. "
             f"The machine was shared with other jobs: load average {m['load_start']} at the start, "
             f"{m['load_end']} at the end, so absolute rates are lower than on an idle machine; "
             "the ratios compare runs made side by side."
             + (" Linux shares CPU time fairly between sessions here (autogroup scheduling): while other "
                "sessions are busy, all the processes of one job (driver and actors) share one session's "
                "slice, so parallel speedups show only when the machine is otherwise quiet."
                if m.get("sched_autogroup") == "1" else ""), "",
             "![Ray scaling](results/ray_scaling.png)", ""]
    pre = out.get("prelabel")
    if pre:
        lines += [f"**Pre-labeling** {pre['rows']:,} × {pre['dim']} float32 rows, {pre['classes']} classes "
                  "(rows/s; in-process and each actor use one BLAS thread; the pool was copied to the object "
                  f"store once beforehand, in {pre['put_pool_seconds']:.2f} s, as a project does for all its rounds; "
                  "the model is copied every job; Ray's start is not counted; load average "
                  f"{pre['load_before']} before, {pre['load_after']} after):", "",
                  "| model | in-process | Ray, 1 actor | Ray, 2 actors | 2 actors vs in-process | auto | "
                  f"auto vs best ({pre['rows']:,}) | auto vs best ({pre['small_rows']:,}) | Ray = in-process |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|:---:|"]
        for name, r in pre["models"].items():
            rps = r["rows_per_second"]
            lines.append(f"| {name} | {rps['in_process']:,.0f} | {rps['ray_1']:,.0f} | {rps['ray_2']:,.0f} | "
                         f"{r['speedup_ray_2_vs_in_process']:.2f}× | {rps['auto']:,.0f} ({r['auto_backends']['auto'][0]}) | "
                         f"{r['auto_vs_best']['big']:.2f}× | {r['auto_vs_best']['small']:.2f}× | "
                         f"{'bit-identical' if r['ray_equals_in_process'] else 'NO'} |")
        lines += ["", "Counting the copy of the pool as well, 2 actors were "
                  + ", ".join(f"{r['speedup_ray_2_vs_in_process_counting_the_put']:.2f}× ({n})"
                              for n, r in pre["models"].items())
                  + f" as fast as in-process. Ray's local start took {pre['ray_start_seconds']:.1f} s and a pool of 2 actors "
                  f"{pre['actor_pool_start_seconds']['2']:.1f} s. "
                  "With Ray not running yet, the automatic choice (which then has to start it) took "
                  + ", ".join(f"{c['seconds']:.1f} s for {n} via {c['backend']} "
                              f"({pre['models'][n]['cold_auto_vs_in_process']:.2f}× in-process)"
                              for n, c in ((n, pre['models'][n]['cold_auto']) for n in pre["models"])) + ".", ""]
    txt = out.get("text")
    if txt and "texts_per_second" in txt:
        tps = txt["texts_per_second"]
        lines += [f"**Text embedding** with `TextEncoder` (all-MiniLM-L6-v2), {txt['texts']:,} tweets, one thread "
                  f"per process: in-process {tps['in_process']:,.0f} texts/s, Ray 1 actor {tps['ray_1']:,.0f}, "
                  f"2 actors {tps['ray_2']:,.0f} ({txt['speedup_ray_2_vs_in_process']:.2f}×); largest difference "
                  f"to the in-process embeddings {txt['max_abs_diff_vs_in_process']:.1e} (load average "
                  f"{txt['load_before']} before, {txt['load_after']} after).", ""]
    elif txt:
        lines += [f"**Text embedding**: skipped ({txt.get('skipped')}).", ""]
    ds = out.get("dawid_skene")
    if ds:
        med = ds["median_seconds"]
        lines += [f"**Dawid-Skene** on {ds['tasks']:,} tasks × 3 answers ({ds['workers']:,} workers): in-process "
                  f"{med['in_process']:.2f} s, Ray with the E-step on 2 shards {med['ray_2']:.2f} s "
                  f"({ds['speedup_ray_2_vs_in_process']:.2f}×); largest posterior difference "
                  f"{ds['max_abs_posterior_diff']:.1e} (load average {ds['load_before']} before, "
                  f"{ds['load_after']} after).", ""]
    lines += CLUSTER_TEXT.splitlines()
    return "\n".join(lines) + "\n"


CLUSTER_TEXT = """\
### How hitl uses Ray

- **Where.** `hitl.distributed.connect()` joins the cluster named by `RAY_ADDRESS` (Ray's own
  convention), or starts a private local Ray sized by `HITL_RAY_NUM_CPUS` (default: all cores). A
  local start sends nothing off the machine: usage statistics off, no dashboard, loopback addresses
  only, and Ray's processes get a private `HOME` holding an empty `ray_bootstrap_config.yaml`, so
  they never probe cloud-metadata addresses (a test traces every `connect` of every Ray process).
- **When.** Pre-labeling picks in-process or Ray by itself (`use_ray="auto"`): pools under
  `HITL_RAY_THRESHOLD_ROWS` (100,000) never touch Ray; above, the first two shards run in-process
  and are timed, and Ray takes the rest only if the measured cost says it finishes sooner, counting
  whatever Ray has not paid yet (its start, the actors' start, copying the pool). `HITL_USE_RAY=1`
  or `0` forces the choice. Aggregation and selection use Ray only when it is already up.
- **How.** The model goes to the object store once per job (`hitl.distributed.share()` keeps it
  there across jobs); the pool too, once, and actors read zero-copy slices of it (a memory-mapped
  pool is opened from its file instead). Shards go to a pool of actors, one per CPU; results come
  back in pool order and are bit-identical to the in-process run. An actor that dies mid-job is
  replaced and its shards run again: no row is lost or computed twice into the result.
  Dawid-Skene keeps each shard of tasks on one actor and adds up the M-step sums on the driver.

### Running on a Ray cluster

```bash
pip install 'hitl[ray]'                          # on the driver and on every node of the cluster
RAY_ADDRESS=ray://head-node:10001 hitl demo      # Ray Client; or RAY_ADDRESS=head-node:6379 on a node
RAY_ADDRESS=head-node:6379 HITL_USE_RAY=1 hitl demo    # use the cluster even for a small pool
```

In Python, `hitl.distributed.connect()` is called for you the first time a job goes to Ray;
call it yourself (`connect(runtime_env={"pip": ["hitl"]})`) to ship hitl to a cluster that lacks it.

### GPUs

When the cluster has GPUs and the model is a torch-backed one (`device="auto"` or `"cuda"`: e.g.
`TextEncoder`, `TransformerClassifier`, `TorchClassifier`), pre-labeling and embedding run on one
actor per GPU, each reserving `num_gpus=1`; Ray sets `CUDA_VISIBLE_DEVICES`, so inside the actor
`device="auto"` is that GPU. A model not loaded yet (a `TextEncoder` before its first call) loads
straight onto the actor's GPU; a fitted model is moved there by its `to_device("cuda")` method when
it has one. `num_gpus=0` keeps actors on CPUs; scikit-learn models always use CPU actors.
"""


def render_only(out_dir: Path, stem: str) -> None:
    out = json.loads((out_dir / f"{stem}.json").read_text())
    plot(out, out_dir / f"{stem}.png")
    (out_dir / f"{stem}.md").write_text(markdown(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--small-rows", type=int, default=1_000)
    ap.add_argument("--texts", type=int, default=2_000)
    ap.add_argument("--tasks", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=1_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--small-calls", type=int, default=51, help="calls per repeat on the small pool")
    ap.add_argument("--num-cpus", type=int, default=None)
    ap.add_argument("--only", choices=["prelabel", "text", "dawid_skene"], action="append")
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--render-only", action="store_true", help="rewrite the markdown and plot from the JSON")
    args = ap.parse_args()
    if args.render_only:
        render_only(args.out, "ray_scaling")
        return
    if args.quick:
        args.rows, args.texts, args.tasks, args.repeats = 300_000, 300, 100_000, 1
    import ray
    import sklearn

    # "In-process single-threaded": the driver's BLAS gets one thread, like each actor.
    limits = threadpool_limits(limits=1)  # noqa: F841 - held for the whole run
    out: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                             "ray": ray.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__,
                             "load_start": load(), "sched_autogroup": _autogroup()},
                 "repeats": args.repeats, "quick": args.quick}
    parts = args.only or ["prelabel", "text", "dawid_skene"]
    try:
        for part in parts:
            {"prelabel": bench_prelabel, "text": bench_text, "dawid_skene": bench_dawid_skene}[part](args, out)
    finally:
        distributed.shutdown()
    out["machine"]["load_end"] = load()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "ray_scaling_quick" if args.quick else "ray_scaling"
    previous = args.out / f"{stem}.json"
    if args.only and previous.exists():
        # A partial run replaces its own parts and keeps the others (each part records its load).
        old = json.loads(previous.read_text())
        for part in ("prelabel", "text", "dawid_skene"):
            if part not in out and part in old:
                out[part] = old[part]
        out["machine"]["load_start"] = old.get("machine", {}).get("load_start", out["machine"]["load_start"])
    (args.out / f"{stem}.json").write_text(json.dumps(out, indent=2, default=float))
    plot(out, args.out / f"{stem}.png")
    (args.out / f"{stem}.md").write_text(markdown(out))
    print((args.out / f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
