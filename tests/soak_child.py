"""The project the crash soak runs, kills and resumes (run as a script by tests/test_crash_soak.py).

Usage::

    python tests/soak_child.py STORE [--kill SPEC] [--log PATH] [--count PATH] [--seed N]

The project uses the library's defaults where they matter for resuming: dynamic
redundancy, audits (default Router), the default aggregator and prior, a money
budget, and a few items nobody may see. It runs to the end and prints its summary
as JSON on the last line of stdout.

Kill injection wraps ``Store.transaction``: every transaction entered gets a number
(1, 2, ... in this process, nested ones included) and a record of who opened it:
``opener`` (the innermost frame in hitl/engine.py or hitl/impact/ledger.py, as
``engine.<function>`` or ``ledger.<function>``; else the store method), ``store_fn``
(the Store method, as ``store.<method>``), ``chain`` (every engine and ledger frame,
outermost first), ``depth`` (0: top level), ``round`` (the engine's round, if any)
and ``t`` (seconds since the process started).

SPEC is ``SELECTOR:WHEN``. SELECTOR is ``N`` (the N-th transaction of this process)
or ``NAME#K`` (the K-th transaction whose opener, store_fn or chain names NAME, e.g.
``store.finish_round#2`` or ``ledger.settle#1``). WHEN is ``inside`` (SIGKILL after
the body ran, before the commit) or ``after`` (SIGKILL right after the commit that
makes it durable: for a nested transaction, right after the outermost one commits).
``--log`` appends each record to a JSON-lines file as the transaction is entered
(so a killed run leaves it behind); ``--count`` writes the whole list as JSON at the end.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

T0 = time.monotonic()  # each transaction records the seconds since (about) the process start

BATCH = 20
N_ITEMS = 500
N_HITERS = 15
MONEY = 8.0  # USD: the run stops on it after eight rounds
START = _dt.date(2026, 9, 1)
COUNTRIES = ["TG", "KE", "MG", "FR"]
_WATCHED = {"engine.py": "engine", "ledger.py": "ledger"}


def make_project(store: str, seed: int = 0):
    """The soak project on ``store`` (``seed``: the crowd's and the engine's random state)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import hitl
    from hitl.models import SklearnModel

    X, y = load_digits(return_X_y=True)
    X, y = X[:N_ITEMS].astype(np.float32), y[:N_ITEMS]
    allowed = [["JP"] if i % 33 == 7 else None for i in range(len(y))]  # ~3%: nobody is in JP
    crowd = hitl.SimulatedCrowd.from_profile("realistic", N_HITERS, truth=y, n_classes=10, countries=COUNTRIES,
                                             random_state=11 + seed, chunk_size=7)
    model = SklearnModel(make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)), n_classes=10)
    return hitl.LabelingProject(
        hitl.Pool(X, ids=[f"d{i}" for i in range(len(y))], allowed_countries=allowed), model,
        workforce=crowd, budget=hitl.Budget(money=MONEY), store=store, start_date=START,
        y_true=y, random_state=seed, progress=False, use_ray=False,
    )


def parse_spec(spec: str | None) -> tuple[int | None, str | None, int, str] | None:
    """``(n, name, k, when)`` from a kill spec, or None."""
    if not spec:
        return None
    selector, _, when = spec.rpartition(":")
    if when not in ("inside", "after") or not selector:
        raise SystemExit(f"bad kill spec {spec!r}: want SELECTOR:inside or SELECTOR:after")
    if "#" in selector:
        name, _, k = selector.partition("#")
        return None, name, int(k), when
    return int(selector), None, 0, when


def describe_caller() -> dict:
    """Who opened the transaction being entered: opener, store_fn, chain and round."""
    frame = sys._getframe(1)
    chain, store_fn, rnd = [], None, None
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        name = frame.f_code.co_name
        if path.parent.name in ("hitl", "impact") and path.name in _WATCHED:
            chain.append(f"{_WATCHED[path.name]}.{name}")
            if rnd is None:
                for var in ("r", "round_no"):
                    val = frame.f_locals.get(var)
                    if isinstance(val, (int, np.integer)) and not isinstance(val, bool):
                        rnd = int(val)
                        break
        elif path.name == "store.py" and path.parent.name == "hitl" and store_fn is None and name != "transaction":
            store_fn = f"store.{name}"
        frame = frame.f_back
    chain.reverse()
    opener = chain[-1] if chain else (store_fn or "?")
    return {"opener": opener, "store_fn": store_fn, "chain": chain, "round": rnd}


class Injector:
    """Wraps ``Store.transaction`` to record every transaction and SIGKILL this process at one of them."""

    def __init__(self, spec: str | None, log_path: str | None) -> None:
        self.spec = parse_spec(spec)
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None
        self.records: list[dict] = []
        self.depth = 0
        self.hits = 0
        self.pending = False  # an ``after`` kill waiting for the outermost commit
        self.target: dict | None = None  # the transaction the kill is aimed at

    def install(self) -> None:
        """Replace ``Store.transaction`` (for this process) by the recording, killing one."""
        from hitl.store import Store

        original = Store.transaction
        injector = self

        @contextmanager
        def transaction(store, *args, **kwargs):
            """The store's transaction, recorded; SIGKILL inside it or right after it when doomed."""
            doomed = injector.enter()
            injector.depth += 1
            try:
                with original(store, *args, **kwargs) as db:
                    yield db
                    if doomed == "inside":
                        injector.die("inside")
            except BaseException:
                injector.pending = injector.pending and injector.depth > 1  # rolled back: nothing to wait for
                raise
            finally:
                injector.depth -= 1
            injector.pending = injector.pending or doomed == "after"
            if injector.pending and injector.depth == 0:
                injector.die("after")

        Store.transaction = transaction

    def enter(self) -> str | None:
        """Record the transaction being entered; returns when to die in it (or None)."""
        rec = {"n": len(self.records) + 1, "depth": self.depth, **describe_caller(),
               "t": round(time.monotonic() - T0, 4)}
        self.records.append(rec)
        if self.log:
            self.log.write(json.dumps(rec) + "\n")
            self.log.flush()
        if self.spec is None:
            return None
        n, name, k, when = self.spec
        if name is not None and name in (rec["opener"], rec["store_fn"], *rec["chain"]):
            self.hits += 1
            hit = self.hits == k
        else:
            hit = rec["n"] == n
        if not hit:
            return None
        self.target = rec
        return when

    def die(self, when: str) -> None:
        """SIGKILL this process: no cleanup, no commit, no rollback (the log says where, first)."""
        if self.log:
            self.log.write(json.dumps({"kill": when, "target": self.target["n"]}) + "\n")
            self.log.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """Run the project to the end on STORE, maybe dying at the kill spec; print the summary as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument("--kill", default=None)
    p.add_argument("--log", default=None)
    p.add_argument("--count", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    injector = Injector(args.kill, args.log)
    injector.install()
    result = make_project(args.store, seed=args.seed).run(batch_size=BATCH)
    if args.count:
        Path(args.count).write_text(json.dumps(injector.records), encoding="utf-8")
    print(json.dumps({"stop_reason": result.stop_reason, "summary": result.summary}, default=str, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
