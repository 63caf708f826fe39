"""Crash soak: SIGKILL the soak project (tests/soak_child.py) again and again, resume it, compare with a straight run.

A run killed at any transaction, inside it or right after its commit, or at a random
moment, and resumed until it completes, must leave the store exactly as one
uninterrupted run does: labels, answers, assignments, rounds, events, ledger lines,
ScoreCard totals and the final summary.

The short version runs with the normal suite (8 kills, aimed at project creation,
at closing a round and at random). The long one (60+ kills over four seeds) is
marked ``soak`` and skipped unless HITL_SOAK is set::

    HITL_SOAK=1 .venv/bin/python -m pytest -m soak tests/test_crash_soak.py -s

``HITL_SOAK_SEEDS=0,1,2,3`` picks the seeds; ``HITL_SOAK_REPORT=DIR`` keeps the
report (kills, where each landed, differences per chain) in DIR. A sweep that kills
once inside and once right after every transaction of a straight run (about 300
runs, several minutes) maps which kill points break what::

    HITL_SOAK_SWEEP=1 .venv/bin/python -m pytest -m soak tests/test_crash_soak.py -k sweep -s
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("soak_child.py")
REPO = CHILD.parent.parent
TIMEOUT = 240.0
SHOW = 3  # differing rows shown per table
SHORT_SEED = 1  # its straight run has six rounds, and top-ups owed in the last one

#: table: (SQL, number of leading key columns)
TABLES = {
    "labels": ("SELECT item, label, source, confidence, round FROM labels ORDER BY item", 1),
    "answers": ("SELECT item, worker, label, round, seconds FROM answers ORDER BY item, worker", 2),
    "assignments": ("SELECT item, worker, round, kind FROM assignments ORDER BY item, worker", 2),
    "rounds": ("SELECT round, status FROM rounds ORDER BY round", 1),
    "ledger": ("SELECT l.kind, l.item, l.worker, l.period, l.seq, l.round, l.base_micros, l.price_micros, "
               "l.hiter_micros, l.platform_micros, l.programme_micros, l.currency FROM ledger_lines l "
               "WHERE l.kind = 'topup' OR EXISTS "
               "(SELECT 1 FROM answers a WHERE a.item = l.item AND a.worker = l.worker)", 5),
}
CARD_SECTIONS = ("items", "work", "pay", "split", "savings", "residency", "skills")


# ---------------------------------------------------------------------- running the child
@dataclass
class Run:
    """One child process: what was planned, how it ended, and the transactions it entered."""

    plan: str
    returncode: int
    wall: float
    stdout: str
    stderr: str
    records: list = field(default_factory=list)
    timed_out: bool = False

    @property
    def killed(self) -> bool:
        """Killed as planned (by its kill spec or the parent's timer), not for hanging."""
        return self.returncode == -signal.SIGKILL and not self.timed_out

    @property
    def result(self) -> dict | None:
        """The JSON the child printed last (stop reason and summary), if any."""
        lines = self.stdout.strip().splitlines()
        try:
            return json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            return None

    def where(self) -> str:
        """Where the process died: the transaction its kill spec aimed at, else the last one it entered."""
        txs = [r for r in self.records if "n" in r]
        kill = next((r for r in self.records if "kill" in r), None)
        if kill is not None:
            r = txs[kill["target"] - 1]
            how = "inside" if kill["kill"] == "inside" else "right after the commit of"
            nested = f" (nested, depth {r['depth']})" if r["depth"] else ""
            return f"{how} tx #{r['n']}{nested} {_name(r)}"
        return f"at tx #{txs[-1]['n']} (the last entered) {_name(txs[-1])}" if txs else "before its first transaction"

    def line(self) -> str:
        """One line for the report."""
        if self.timed_out:
            return f"{self.plan}: TIMED OUT after {self.wall:.0f} s, {self.where()}"
        if self.killed:
            return f"{self.plan}: killed {self.where()} ({self.wall:.1f} s)"
        if self.returncode == 0:
            stop = (self.result or {}).get("stop_reason")
            return f"{self.plan}: ran to the end ({stop}, {len(self.records)} tx, {self.wall:.1f} s)"
        return f"{self.plan}: FAILED rc={self.returncode}, {self.where()}: {_tail(self.stderr)}"


def _name(r: dict) -> str:
    return f"{r['store_fn'] or r['opener']} via {r['opener']}, round {r['round']}"


def _tail(text: str, n: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


def _wait_for_first_transaction(proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline and not (log.exists() and log.stat().st_size):
        time.sleep(0.005)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = "1"
    env["MPLBACKEND"] = "Agg"
    return env


def run_child(store: Path, *, kill: str | None = None, delay: float | None = None, seed: int = 0,
              count: Path | None = None) -> Run:
    """Run the soak child on ``store``; ``kill`` is a spec for the child, ``delay`` a SIGKILL from here.

    The parent's SIGKILL comes ``delay`` seconds after the child entered its first
    transaction (so that it lands in the project's work, not in its imports).
    """
    log = store.with_name(f"{store.stem}.{time.monotonic_ns()}.jsonl")
    cmd = [sys.executable, str(CHILD), str(store), "--seed", str(seed), "--log", str(log)]
    cmd += ["--kill", kill] if kill else []
    cmd += ["--count", str(count)] if count else []
    plan = f"kill {kill}" if kill else (f"SIGKILL {delay:.2f} s into it" if delay is not None else "resume")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hung = False
    try:
        if delay is not None:
            _wait_for_first_transaction(proc, log)
        out, err = proc.communicate(timeout=delay if delay is not None else TIMEOUT)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=TIMEOUT)
        hung = delay is None
    wall = time.monotonic() - t0
    records = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.exists() else []
    return Run(plan, proc.returncode, wall, out, err, records, timed_out=hung)


# ---------------------------------------------------------------------- reading a store
def read_tables(db: Path) -> dict[str, list[tuple]]:
    """The compared tables of a store, read-only; confidences rounded to 1e-9."""
    if not db.exists():
        return {**{name: [] for name in TABLES}, "events": [], "ledger_quotes": []}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        out = {}
        for name, (sql, _) in TABLES.items():
            try:
                rows = con.execute(sql).fetchall()
            except sqlite3.OperationalError as exc:  # a table the run never created
                rows = [("<missing>", str(exc))]
            if name == "labels":
                rows = [r if len(r) < 5 else (r[0], r[1], r[2], round(r[3], 9), r[4]) for r in rows]
            out[name] = sorted(rows, key=lambda r: tuple((x is None, x) for x in r))
        out["events"] = _events(con)
        out["ledger_quotes"] = _orphan_quotes(con)
        return out
    finally:
        con.close()


def _events(con: sqlite3.Connection) -> list[tuple]:
    """Events in log order, without times; ``finished`` is left out (every completed run writes one)."""
    try:
        rows = con.execute("SELECT round, kind, payload FROM events WHERE kind != 'finished' ORDER BY id").fetchall()
    except sqlite3.OperationalError as exc:  # killed while the schema was being created
        return [("<missing>", str(exc), {})]
    return [(r, k, json.loads(p or "{}")) for r, k, p in rows]


def _orphan_quotes(con: sqlite3.Connection) -> list[tuple]:
    """Task lines of the ledger that no answer matches (quotes a kill left behind)."""
    try:
        return con.execute("SELECT item, worker, round, price_micros FROM ledger_lines l WHERE kind = 'task' AND NOT "
                           "EXISTS (SELECT 1 FROM answers a WHERE a.item = l.item AND a.worker = l.worker) "
                           "ORDER BY item, worker").fetchall()
    except sqlite3.OperationalError:
        return []


def card_totals(db: Path, as_of) -> dict:
    """The ScoreCard's totals, flattened to ``section.key`` paths (built on a copy: settling writes)."""
    from hitl.impact import ScoreCard

    copy = db.with_name(f"{db.stem}.card.{time.monotonic_ns()}.db")
    src, dst = sqlite3.connect(f"file:{db}?mode=ro", uri=True), sqlite3.connect(copy)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    try:
        data = ScoreCard.from_store(str(copy), as_of=as_of).data
    except Exception as exc:  # a store too broken for a card: that is a finding too
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {k: v for s in CARD_SECTIONS for k, v in _flatten(data.get(s), s).items()}


def _flatten(value, prefix: str) -> dict:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in _flatten(sub, f"{prefix}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, sub in enumerate(value) for k, v in _flatten(sub, f"{prefix}[{i}]").items()}
    return {prefix: round(value, 9) if isinstance(value, float) else value}


# ---------------------------------------------------------------------- comparing
def diff_rows(name: str, a: list[tuple], b: list[tuple], key_len: int) -> str | None:
    """How two keyed tables differ: rows only in A, only in B, same key with other values."""
    if a == b:
        return None
    ka = {r[:key_len]: r for r in a}
    kb = {r[:key_len]: r for r in b}
    only_a = [ka[k] for k in ka if k not in kb]
    only_b = [kb[k] for k in kb if k not in ka]
    changed = [(ka[k], kb[k]) for k in ka if k in kb and ka[k] != kb[k]]
    parts = [f"{name}: reference {len(a)} rows, resumed {len(b)} rows"]
    if only_a:
        parts.append(f"  {len(only_a)} only in the reference, first {only_a[:SHOW]}")
    if only_b:
        parts.append(f"  {len(only_b)} only in the resumed store, first {only_b[:SHOW]}")
    if changed:
        parts.append(f"  {len(changed)} changed, first " + "; ".join(f"{x} -> {y}" for x, y in changed[:SHOW]))
    if not (only_a or only_b or changed):
        parts.append("  same rows, repeated keys or other order")
    return "\n".join(parts)


def first_round(a: list[tuple], b: list[tuple]) -> str | None:
    """The first round whose assignments differ (where the resumed run left the straight one's path)."""
    for rnd in sorted({r[2] for r in a + b if len(r) > 2 and isinstance(r[2], int)}):
        if {r for r in a if r[2] == rnd} != {r for r in b if r[2] == rnd}:
            return f"diverges: the assignments first differ in round {rnd}"
    return None


def diff_sequence(name: str, a: list, b: list) -> str | None:
    """Where two sequences first part."""
    if a == b:
        return None
    i = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    at = lambda s: s[i] if i < len(s) else "<end>"  # noqa: E731
    return f"{name}: reference {len(a)}, resumed {len(b)}; first difference at #{i}: {at(a)!r} vs {at(b)!r}"


def diff_mapping(name: str, a: dict, b: dict) -> str | None:
    """Keys whose values differ between two flat mappings."""
    pairs = [(k, a.get(k, "<absent>"), b.get(k, "<absent>")) for k in sorted(set(a) | set(b))]
    bad = [(k, x, y) for k, x, y in pairs if x != y]
    if not bad:
        return None
    return f"{name}: {len(bad)} values differ: " + "; ".join(f"{k}: {x!r} vs {y!r}" for k, x, y in bad[:8])


def compare(ref: dict, db: Path, final: Run, as_of) -> list[str]:
    """Every difference between a resumed store (and its last run) and the reference."""
    diffs = []
    if final.returncode != 0:
        diffs.append(f"last run did not complete: {final.line()}")
    tables = read_tables(db)
    diffs.append(first_round(ref["tables"]["assignments"], tables["assignments"]))
    for name, (_, key_len) in TABLES.items():
        diffs.append(diff_rows(name, ref["tables"][name], tables[name], key_len))
    diffs.append(diff_sequence("events", ref["tables"]["events"], tables["events"]))
    diffs.append(diff_mapping("scorecard", ref["card"], card_totals(db, as_of)))
    if final.returncode == 0:
        got = _flatten((final.result or {}).get("summary"), "summary")
        diffs.append(diff_mapping("summary", ref["summary"], got))
    return [d for d in diffs if d]


# ---------------------------------------------------------------------- chains of kills
@dataclass
class Chain:
    """Kills in a row on one store, then resumes until a run completes.

    A step is a kill spec for the child (``store.finish_round#2:inside``, ``17:after``),
    ``random:inside``, ``random:after`` or ``random:any`` (a transaction number drawn
    when the step runs, among those the resumed process still has ahead), or ``delay``
    (a SIGKILL from the parent, a drawn time after the child entered its first transaction).
    """

    name: str
    steps: list
    seed: int = 0
    runs: list = field(default_factory=list)
    diffs: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def kills(self) -> int:
        """Runs of this chain that died by a planned SIGKILL."""
        return sum(r.killed for r in self.runs)

    @property
    def differing(self) -> list[str]:
        """Names of what differs (tables, scorecard, summary, ``last run``)."""
        return [d.split(":", 1)[0] for d in self.diffs]

    def report(self) -> str:
        """The chain's runs, notes and differences."""
        verdict = "DIFFERENT: " + ", ".join(self.differing) if self.diffs else "same"
        lines = [f"chain {self.name} (seed {self.seed}): {self.kills} kills, {verdict}"]
        lines += [f"  {r.line()}" for r in self.runs] + [f"  note: {n}" for n in self.notes]
        return "\n".join(lines + ["  " + d.replace("\n", "\n  ") for d in self.diffs])


def make_reference(workdir: Path, seed: int, as_of) -> dict:
    """One uninterrupted run: its tables, card, summary, transaction list and wall time."""
    db, count = workdir / f"reference-{seed}.db", workdir / f"reference-{seed}.json"
    run = run_child(db, seed=seed, count=count)
    assert run.returncode == 0, f"the reference run failed:\n{run.stderr}"
    return {"tables": read_tables(db), "card": card_totals(db, as_of), "records": json.loads(count.read_text()),
            "summary": _flatten(run.result["summary"], "summary"), "wall": run.wall, "run": run}


def ahead(db: Path, records: list[dict]) -> int:
    """Where in the reference's transactions a store stands: the index of the first one of its next round."""
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        done = con.execute("SELECT COUNT(*) FROM rounds WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()
    return next((j for j, r in enumerate(records) if r["round"] is not None and r["round"] >= done), len(records) - 1)


def resolve(step: str, db: Path, ref: dict, rng: random.Random) -> dict:
    """The keyword arguments of :func:`run_child` for one step (random ones drawn now, from the store's state)."""
    records = ref["records"]
    start = ahead(db, records)
    if step == "delay":  # within most of the work the child has left
        return {"delay": round(rng.uniform(0.0, 0.8 * (records[-1]["t"] - records[start]["t"])), 2)}
    if step.startswith("random:"):
        when = step.split(":", 1)[1]
        when = rng.choice(["inside", "after"]) if when == "any" else when
        return {"kill": f"{rng.randint(1, max(1, int(0.9 * (len(records) - start))))}:{when}"}
    return {"kill": step}


def run_chain(chain: Chain, workdir: Path, ref: dict, as_of) -> Chain:
    """Play the chain's kills on a fresh store, resume to completion, compare with the reference."""
    db = workdir / f"{chain.name}.db"
    rng = random.Random(f"{chain.seed}/{chain.name}")
    final = None
    for step in chain.steps:  # a step whose kill is not reached completes the run; the next ones go on re-running it
        final = run_child(db, seed=chain.seed, **resolve(step, db, ref, rng))
        chain.runs.append(final)
        if final.returncode == 0:
            chain.notes.append(f"{final.plan}: the kill was not reached, the run completed")
        elif not final.killed:
            break
    for _ in range(2):  # a failing resume is retried once (a transient error would pass the second time)
        if final is not None and final.returncode == 0:
            break
        final = run_child(db, seed=chain.seed)
        chain.runs.append(final)
    quotes = read_tables(db)["ledger_quotes"]
    if quotes != ref["tables"]["ledger_quotes"]:
        chain.notes.append(f"{len(quotes)} unanswered quotes left in the ledger (not counted), first {quotes[:SHOW]}")
    chain.diffs = compare(ref, db, final, as_of)
    return chain


def play(chains: list[Chain], workdir: Path, refs: dict, as_of) -> list[Chain]:
    """Run chains side by side (one process each at a time)."""
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda c: run_chain(c, workdir, refs[c.seed], as_of), chains))


def summarize(chains: list[Chain]) -> str:
    """The number of kills and of differing chains, then every chain's report."""
    kills = sum(c.kills for c in chains)
    bad = [c for c in chains if c.diffs]
    head = f"{kills} kills in {len(chains)} chains; {len(bad)} chains end different from the straight run"
    return "\n\n".join([head] + [c.report() for c in chains])


# ---------------------------------------------------------------------- choosing kill points
AIMED = ["store.finish_round", "ledger.settle", "store.begin_round", "store.add_assignments", "store.log",
         "store.add_answers", "engine._finish", "ledger._quote"]


def short_chains(ref: dict, seed: int) -> list[Chain]:
    """Eight kills: project creation, inside and right after closing a round, settling, the last round, random."""
    n_rounds = ref["summary"]["summary.rounds"]
    return [
        Chain("creation", ["store.ensure_project#1:after"], seed),
        Chain("close-round", ["store.finish_round#2:inside", "store.finish_round#1:after", "ledger.settle#1:inside"],
              seed),
        Chain("last-round", [f"store.finish_round#{n_rounds}:after"], seed),
        Chain("random", ["random:any", "delay", "random:any"], seed),
    ]


def long_chains(ref: dict, seed: int) -> list[Chain]:
    """About sixteen kills per seed: creation, aimed by name, at random transactions, and timed from outside."""
    rng = random.Random(1000 + seed)
    creating = [r["n"] for r in ref["records"] if "engine.__init__" in r["chain"]] or [1]
    chains = [Chain(f"s{seed}-creation", [f"{rng.choice(creating)}:{rng.choice(['inside', 'after'])}", "random:any"],
                    seed)]
    for j in range(4):
        steps = []
        for _ in range(rng.randint(3, 5)):
            kind = rng.random()
            if kind < 0.4:
                steps.append(f"{rng.choice(AIMED)}#{rng.randint(1, 3)}:{rng.choice(['inside', 'after'])}")
            else:
                steps.append("random:any" if kind < 0.8 else "delay")
        chains.append(Chain(f"s{seed}-chain{j}", steps, seed))
    return chains


def sweep_chains(ref: dict, seed: int) -> list[Chain]:
    """One kill per chain, at every transaction of the straight run, inside it and right after it."""
    return [Chain(f"s{seed}-tx{r['n']}-{when}", [f"{r['n']}:{when}"], seed)
            for r in ref["records"] for when in ("inside", "after")]


def sweep_table(chains: list[Chain], ref: dict) -> str:
    """Per kill point of the straight run: where it lands and what differs after the resume."""
    by_n = {r["n"]: r for r in ref["records"]}
    lines = []
    for c in chains:
        n, when = c.steps[0].split(":")
        r = by_n[int(n)]
        what = ", ".join(c.differing) if c.diffs else "same"
        lines.append(f"{n:>4} {when:<6} depth {r['depth']} round {r['round']!s:<4} "
                     f"{r['store_fn'] or r['opener']:<22} {r['opener']:<28} -> {what}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- the tests
def _as_of():
    import datetime as dt

    from soak_child import START

    return START + dt.timedelta(days=30)


def _keep(tmp_path: Path, name: str, record: dict) -> None:
    """Write a report to ``tmp_path`` and, if HITL_SOAK_REPORT names a folder, there too."""
    text = json.dumps(record, indent=2)
    (tmp_path / name).write_text(text)
    if os.environ.get("HITL_SOAK_REPORT"):
        out = Path(os.environ["HITL_SOAK_REPORT"])
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)


def test_kill_and_resume_matches_a_straight_run(tmp_path):
    """Eight kills (creation, closing a round, settling, the last round, random, from outside) end like no kill."""
    as_of = _as_of()
    ref = make_reference(tmp_path, SHORT_SEED, as_of)
    assert len(ref["records"]) > 50 and ref["summary"]["summary.stop_reason"] == "budget"
    assert 6 <= ref["summary"]["summary.rounds"] <= 10, ref["summary"]
    chains = play(short_chains(ref, SHORT_SEED), tmp_path, {SHORT_SEED: ref}, as_of)
    report = summarize(chains)
    print(report)
    assert sum(c.kills for c in chains) >= 6, report
    assert not any(c.diffs for c in chains), report


def _seeds() -> list[int]:
    return [int(s) for s in os.environ.get("HITL_SOAK_SEEDS", "0,1,2,3").split(",") if s.strip()]


@pytest.mark.soak
@pytest.mark.skipif(not os.environ.get("HITL_SOAK"), reason="long crash soak: set HITL_SOAK=1 and run with -m soak")
def test_crash_soak_long(tmp_path):
    """Sixty-odd kills over several seeds; every chain must end exactly like its straight run."""
    as_of, seeds = _as_of(), _seeds()
    refs = {s: make_reference(tmp_path, s, as_of) for s in seeds}
    chains = play([c for s in seeds for c in long_chains(refs[s], s)], tmp_path, refs, as_of)
    report = summarize(chains)
    print(report)
    kills = sum(c.kills for c in chains)
    _keep(tmp_path, "soak-report.json", {"kills": kills, "chains": len(chains),
                                          "differing": {c.name: c.differing for c in chains if c.diffs},
                                          "report": report})
    assert kills >= 50, report
    assert not any(c.diffs for c in chains), report


@pytest.mark.soak
@pytest.mark.skipif(not os.environ.get("HITL_SOAK_SWEEP"), reason="kill at every transaction: set HITL_SOAK_SWEEP=1")
def test_crash_sweep_every_transaction(tmp_path):
    """A kill inside and right after each transaction of a straight run, one per store, resumed and compared."""
    as_of = _as_of()
    seed = _seeds()[0]
    ref = make_reference(tmp_path, seed, as_of)
    chains = play(sweep_chains(ref, seed), tmp_path, {seed: ref}, as_of)
    table = sweep_table(chains, ref)
    print(table)
    _keep(tmp_path, "sweep-report.json", {"kills": sum(c.kills for c in chains), "table": table,
                                           "report": summarize(chains)})
    assert not any(c.diffs for c in chains), table + "\n\n" + summarize([c for c in chains if c.diffs][:5])
