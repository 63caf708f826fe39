"""A small project that the crash test runs, kills and resumes (also importable)."""

import datetime
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import hitl
from hitl.models import SklearnModel

BUDGET = 600
BATCH = 20
PER_ITEM = 3


def make_project(store: str, latency: float = 0.0, budget: int = BUDGET,
                 answers_per_item: int | None = PER_ITEM) -> hitl.LabelingProject:
    """Fixed redundancy by default; ``answers_per_item=None``: the library's defaults (dynamic, the set rule)."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:600].astype(np.float32), y[:600]
    allowed = [["FR"] if i % 7 == 0 else None for i in range(len(y))]
    crowd = hitl.SimulatedCrowd.from_profile("realistic", 12, truth=y, n_classes=10,
                                             countries=["TG", "KE", "FR"], random_state=3,
                                             latency=latency, chunk_size=4)
    return hitl.LabelingProject(
        hitl.Pool(X, ids=[f"d{i}" for i in range(len(y))], allowed_countries=allowed),
        SklearnModel(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), n_classes=10),
        workforce=crowd, answers_per_item=answers_per_item, budget=hitl.Budget(answers=budget), store=store,
        y_true=y, random_state=5, progress=False, start_date=datetime.date(2026, 1, 5),
    )


def answers_committed(db) -> int:
    """Answers in the store, read from a separate read-only connection (0 before the file exists)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def run_and_kill(db, kill_when, latency: float = 0.01, timeout: float = 120.0, redundancy: str = "fixed"):
    """Run this project in a child process and SIGKILL it once ``kill_when(answers)`` holds.

    Returns ``(answers at the kill or None, child)``; the child has been reaped.
    """
    child = subprocess.Popen([sys.executable, str(Path(__file__)), str(db), str(latency), redundancy],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed_at = None
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and child.poll() is None:
            n = answers_committed(db)
            if kill_when(n):
                os.kill(child.pid, signal.SIGKILL)
                killed_at = n
                break
            time.sleep(0.002)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    return killed_at, child


if __name__ == "__main__":
    per_item = PER_ITEM if len(sys.argv) < 4 or sys.argv[3] == "fixed" else None
    make_project(sys.argv[1], latency=float(sys.argv[2]), answers_per_item=per_item).run(batch_size=BATCH)
