"""Selection speed: hitl's strategies against modAL's and against one plain pass over the matrix.

Measured side by side in one process, round-robin (each repetition times every
contender once, in turn), medians reported with ratios:

1. Top 1,000 from 1,000,000 x 10 and 10,000,000 x 10 float64 probability
   matrices (softmax of Gaussian logits): ``hitl.strategies.select`` with
   least-confident / margin / entropy, modAL's ``uncertainty_sampling`` /
   ``margin_sampling`` / ``entropy_sampling`` given a classifier whose
   ``predict_proba`` returns the same matrix, and ``P.sum()`` (one plain
   single-threaded pass: the memory floor). Picks are checked to be the same
   indices as modAL's.
2. A 10,000,000 x 10 float64 pool in a ``numpy.memmap`` file, scored in a fresh
   process: peak resident memory (``ru_maxrss``) and time.
3. Ranked batch: 100 picks from 50,000 x 64 features with 1,000 labeled items,
   against ``modAL.batch.uncertainty_batch_sampling``; same order checked.

Writes ``benchmarks/results/selection_speed.json``, ``selection_speed.md`` and
``selection_speed.png``.

Usage::

    python benchmarks/selection_speed.py            # full run (several minutes)
    python benchmarks/selection_speed.py --quick    # smaller pools, fewer repetitions
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
TOP = 1000


def softmax_pool(n: int, k: int, seed: int, chunk: int = 1_000_000, out: np.ndarray | None = None) -> np.ndarray:
    """Softmax of N(0, 2.5^2) logits, built in chunks (so a memmap can be filled too)."""
    rng = np.random.default_rng(seed)
    P = np.empty((n, k)) if out is None else out
    for lo in range(0, n, chunk):
        z = rng.normal(size=(min(chunk, n - lo), k)) * 2.5
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        P[lo : lo + z.shape[0]] = z
    return P


def round_robin(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def uncertainty_section(n: int, k: int, repeats: int, modal_repeats: int) -> dict:
    from modAL.uncertainty import entropy_sampling, margin_sampling, uncertainty_sampling

    from hitl.strategies import ProbaProxy, select

    P = softmax_pool(n, k, seed=n)
    X = np.zeros((n, 1))  # modAL only needs X.shape[0]; the proxy returns P
    proxy = ProbaProxy(P)
    pairs = {
        "least_confident": uncertainty_sampling,
        "margin": margin_sampling,
        "entropy": entropy_sampling,
    }
    ours = {name: (lambda name=name: select(name, TOP, proba=P)) for name in pairs}
    theirs = {name: (lambda fn=fn: fn(proxy, X, n_instances=TOP)) for name, fn in pairs.items()}
    same = {}
    for name in pairs:  # warm-up (compiles or loads the kernels) and the correctness check
        a = ours[name]()
        b, _ = theirs[name]()
        same[name] = bool(set(a.indices.tolist()) == set(np.asarray(b).tolist()))
    P.sum()
    fast = {"plain pass (P.sum())": lambda: P.sum()}
    fast.update({f"hitl {name}": fn for name, fn in ours.items()})
    t_fast = round_robin(fast, repeats)
    slow = {f"modAL {name}": fn for name, fn in theirs.items()}
    # modAL is timed interleaved with the plain pass as well, so both see the same machine load.
    slow["plain pass (P.sum())"] = lambda: P.sum()
    t_slow = round_robin(slow, modal_repeats)
    med = {k: float(np.median(v)) for k, v in t_fast.items()}
    med.update({k: float(np.median(v)) for k, v in t_slow.items() if k.startswith("modAL")})
    floor = med["plain pass (P.sum())"]
    floor_slow = float(np.median(t_slow["plain pass (P.sum())"]))
    rows = []
    for name in pairs:
        ours_s = med[f"hitl {name}"]
        modal_s = med[f"modAL {name}"]
        rows.append({
            "strategy": name,
            "hitl_s": ours_s,
            "modal_s": modal_s,
            "plain_pass_s": floor,
            "hitl_vs_plain_pass": ours_s / floor,
            "speedup_vs_modal": modal_s / ours_s,
            "same_indices_as_modal": same[name],
        })
    return {
        "pool": f"{n:,} x {k} float64",
        "top": TOP,
        "repeats": repeats,
        "modal_repeats": modal_repeats,
        "plain_pass_s": floor,
        "plain_pass_s_during_modal_runs": floor_slow,
        "rows": rows,
        "all_times_s": {**{k: v for k, v in t_fast.items()}, **{k: v for k, v in t_slow.items() if k.startswith("modAL")}},
    }


_PEAK_RSS = """
def peak_rss_bytes():
    # VmHWM belongs to this process's address space (ru_maxrss can carry the parent's over fork).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
"""

_MEMMAP_CHILD = _PEAK_RSS + r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from hitl.strategies import select
path, n, k = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
P = np.memmap(path, dtype=np.float64, mode="r", shape=(n, k))
out = {}
for name in ("least_confident", "margin", "entropy"):
    select(name, 1000, proba=P[:100_000])  # loads (or compiles) the kernels for read-only input
    t0 = time.perf_counter()
    sel = select(name, 1000, proba=P)
    out[name] = {"seconds": time.perf_counter() - t0, "n_picked": int(sel.indices.shape[0])}
out["peak_rss_bytes"] = peak_rss_bytes()
print(json.dumps(out))
"""

_IMPORT_CHILD = _PEAK_RSS + r"""
import sys
sys.path.insert(0, sys.argv[1])
import numpy, hitl.strategies
print(peak_rss_bytes())
"""


def memmap_section(n: int, k: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "proba.f64")
        mm = np.memmap(path, dtype=np.float64, mode="w+", shape=(n, k))
        softmax_pool(n, k, seed=7, out=mm)
        mm.flush()
        del mm
        # A fresh process, so its peak resident memory is the scoring alone (plus the interpreter).
        proc = subprocess.run(
            [sys.executable, "-c", _MEMMAP_CHILD, str(ROOT), path, str(n), str(k)],
            capture_output=True, text=True, check=True,
        )
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        base = subprocess.run(
            [sys.executable, "-c", _IMPORT_CHILD, str(ROOT)], capture_output=True, text=True, check=True
        )
    return {
        "pool": f"{n:,} x {k} float64 memmap ({n * k * 8 / 1e9:.1f} GB file)",
        "peak_rss_bytes": res.pop("peak_rss_bytes"),
        "import_only_rss_bytes": int(base.stdout.strip()),
        "limit_bytes": 2 * 1024**3,
        "per_strategy": res,
    }


def ranked_batch_section(n: int, d: int, n_labeled: int, picks: int, repeats: int, modal_repeats: int) -> dict:
    from modAL.batch import uncertainty_batch_sampling

    from hitl.strategies import ProbaProxy, select

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    XL = rng.normal(size=(n_labeled, d))
    P = softmax_pool(n, 10, seed=1)
    proxy = ProbaProxy(P, X_training=XL)
    ours = lambda: select("ranked_batch", picks, proba=P, X=X, X_labeled=XL)  # noqa: E731
    theirs = lambda: uncertainty_batch_sampling(proxy, X, n_instances=picks)  # noqa: E731
    a = ours()
    b, _ = theirs()
    same = bool(np.array_equal(a.indices, np.asarray(b)))
    t = round_robin({"hitl ranked_batch": ours}, repeats)
    t.update(round_robin({"modAL uncertainty_batch_sampling": theirs}, modal_repeats))
    med = {k: float(np.median(v)) for k, v in t.items()}
    return {
        "setup": f"{picks} picks from {n:,} x {d} features, {n_labeled:,} labeled",
        "hitl_s": med["hitl ranked_batch"],
        "modal_s": med["modAL uncertainty_batch_sampling"],
        "speedup_vs_modal": med["modAL uncertainty_batch_sampling"] / med["hitl ranked_batch"],
        "same_order_as_modal": same,
        "all_times_s": t,
    }


def markdown(res: dict) -> str:
    lines = [
        "<!-- generated by benchmarks/selection_speed.py; do not edit by hand -->",
        "### Selection speed",
        "",
        f"{res['machine']['cpus']} CPU cores, numba threads {res['machine']['numba_threads']}; "
        "medians of round-robin repetitions in one process. Plain pass = `P.sum()` on one thread "
        "(reading the whole matrix once).",
        "",
        "| pool, top 1,000 | strategy | hitl | modAL | plain pass | hitl / plain pass | modAL / hitl | same picks |",
        "|---|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for sec in res["uncertainty"]:
        for r in sec["rows"]:
            lines.append(
                f"| {sec['pool']} | {r['strategy']} | {r['hitl_s'] * 1e3:.1f} ms | {r['modal_s'] * 1e3:.0f} ms | "
                f"{r['plain_pass_s'] * 1e3:.1f} ms | {r['hitl_vs_plain_pass']:.2f}x | "
                f"{r['speedup_vs_modal']:.0f}x | {'yes' if r['same_indices_as_modal'] else 'NO'} |"
            )
    rb = res["ranked_batch"]
    mm = res["memmap"]
    lines += [
        "",
        f"Ranked batch ({rb['setup']}): hitl {rb['hitl_s']:.2f} s, modAL `uncertainty_batch_sampling` "
        f"{rb['modal_s']:.1f} s: **{rb['speedup_vs_modal']:.0f}x**, same order: "
        f"{'yes' if rb['same_order_as_modal'] else 'NO'}.",
        "",
        f"Memory-mapped pool ({mm['pool']}): least-confident, margin and entropy top 1,000 in "
        + ", ".join(f"{v['seconds']:.2f} s" for v in mm["per_strategy"].values())
        + f"; peak resident memory {mm['peak_rss_bytes'] / 2**20:.0f} MiB "
        f"(interpreter and imports alone {mm['import_only_rss_bytes'] / 2**20:.0f} MiB; limit 2,048 MiB).",
        "",
        "![selection speed](selection_speed.png)",
    ]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(res["uncertainty"]), figsize=(5 * len(res["uncertainty"]), 3.6), squeeze=False)
    for ax, sec in zip(axes[0], res["uncertainty"]):
        names = [r["strategy"] for r in sec["rows"]]
        x = np.arange(len(names))
        ax.bar(x - 0.2, [r["hitl_s"] * 1e3 for r in sec["rows"]], 0.4, label="hitl")
        ax.bar(x + 0.2, [r["modal_s"] * 1e3 for r in sec["rows"]], 0.4, label="modAL")
        ax.axhline(sec["plain_pass_s"] * 1e3, color="k", ls="--", lw=1, label="plain pass P.sum()")
        ax.set_yscale("log")
        ax.set_xticks(x, names)
        ax.set_ylabel("ms (median)")
        ax.set_title(f"top 1,000 of {sec['pool']}", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small pools, few repetitions, no files written")
    args = ap.parse_args(argv)
    import numba

    if args.quick:
        sizes = [(200_000, 10, 5, 2)]
        mem_n, rb = 1_000_000, (5_000, 16, 100, 20, 2, 1)
    else:
        sizes = [(1_000_000, 10, 31, 7), (10_000_000, 10, 9, 3)]
        mem_n, rb = 10_000_000, (50_000, 64, 1000, 100, 7, 3)
    res = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "numba_threads": numba.get_num_threads(),
            "numpy": np.__version__,
            "numba": numba.__version__,
            "load_average_at_start": os.getloadavg(),
        },
        "uncertainty": [],
    }
    for n, k, reps, modal_reps in sizes:
        print(f"uncertainty top {TOP} of {n:,} x {k} ...", flush=True)
        res["uncertainty"].append(uncertainty_section(n, k, reps, modal_reps))
        for r in res["uncertainty"][-1]["rows"]:
            print(f"  {r['strategy']:16s} hitl {r['hitl_s'] * 1e3:8.2f} ms  modAL {r['modal_s'] * 1e3:8.1f} ms  "
                  f"plain {r['plain_pass_s'] * 1e3:6.2f} ms  x plain {r['hitl_vs_plain_pass']:.2f}  "
                  f"modAL/hitl {r['speedup_vs_modal']:.1f}  same {r['same_indices_as_modal']}", flush=True)
    print("ranked batch ...", flush=True)
    res["ranked_batch"] = ranked_batch_section(*rb)
    print(f"  hitl {res['ranked_batch']['hitl_s']:.3f} s  modAL {res['ranked_batch']['modal_s']:.2f} s  "
          f"same {res['ranked_batch']['same_order_as_modal']}", flush=True)
    print("memmap ...", flush=True)
    res["memmap"] = memmap_section(mem_n, 10)
    print(f"  peak RSS {res['memmap']['peak_rss_bytes'] / 2**20:.0f} MiB  {res['memmap']['per_strategy']}", flush=True)
    res["machine"]["load_average_at_end"] = os.getloadavg()
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "selection_speed.json").write_text(json.dumps(res, indent=1))
        (RESULTS / "selection_speed.md").write_text(markdown(res) + "\n")
        plot(res, RESULTS / "selection_speed.png")
    else:
        print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
