"""End to end: a project labels with three HITers through `hitl serve` running in a subprocess.

One HITer takes a task and vanishes for a while; after its lease runs out the task
is offered again and answered by someone else, and the HITer, back, goes on with
other tasks. Every answer acknowledged over HTTP is in the
store exactly once, and nothing else is.
"""

import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import hitl  # noqa: E402
from hitl.human import HumanWorkforce  # noqa: E402
from hitl.models import SklearnModel  # noqa: E402

CLASSES = ["zero", "one", "two"]
LEASE = 1.5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db, port, timeout=30.0):
    proc = subprocess.Popen([sys.executable, "-m", "hitl", "serve", str(db), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"hitl serve exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1.0).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("hitl serve did not start in time")


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Hiter(threading.Thread):
    """A simulated person driving the HTTP API: take, answer (the truth), next.

    With ``away`` set, the first task taken is abandoned and the HITer comes back ``away`` seconds later.
    """

    def __init__(self, base, name, token, truth, stop, away=None, deadline=50.0):
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10.0)
        self.name, self.truth, self.stop, self.away = name, truth, stop, away
        self.deadline = time.monotonic() + deadline
        self.acknowledged = []  # (item, label) answered with 200
        self.abandoned = None  # (item, time taken)
        self.taken = threading.Event()
        self.errors = []

    def run(self):
        try:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                r = self.http.post("/api/next")
                if r.status_code == 204:
                    time.sleep(0.05)
                    continue
                assert r.status_code == 200, r.text
                task = r.json()
                if self.away is not None and self.abandoned is None:
                    self.abandoned = (task["task"], time.time())
                    self.taken.set()
                    self.stop.wait(self.away)  # gone, without a word
                    continue
                label = CLASSES[self.truth[task["task"]]]
                a = self.http.post(f"/api/tasks/{task['task']}/answer", json={"label": label})
                if a.status_code == 200:
                    self.acknowledged.append((task["task"], CLASSES.index(label)))
                else:  # 410 when a lease was lost to someone else; never expected here
                    self.errors.append((task["task"], a.status_code, a.text))
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))
        finally:
            self.http.close()


@pytest.mark.slow
def test_three_hiters_over_http_complete_a_project(tmp_path):
    t0 = time.monotonic()
    X, y = load_digits(n_class=3, return_X_y=True)
    X, y = X[:90], y[:90]
    hiters = [hitl.HITer("ann", "FR"), hitl.HITer("bob", "TG"), hitl.HITer("cid", "TG")]
    people = HumanWorkforce(hiters, images=X, image_shape=(8, 8), lease_seconds=LEASE,
                            poll_interval=0.05, timeout=45.0, progress=False)
    db = tmp_path / "project.db"
    project = hitl.LabelingProject(hitl.Pool(X, ids=[f"img-{i}" for i in range(len(y))]),
                                   SklearnModel(LogisticRegression(max_iter=500), n_classes=3), workforce=people,
                                   classes=CLASSES, store=str(db), budget=hitl.Budget(answers=24), progress=False)
    people.bind(project)
    tokens = people.issue_tokens()
    port = free_port()
    server = start_server(db, port)
    stop = threading.Event()
    base = f"http://127.0.0.1:{port}"
    try:
        cid = Hiter(base, "cid", tokens["cid"], y, stop, away=3 * LEASE)
        ann = Hiter(base, "ann", tokens["ann"], y, stop)
        bob = Hiter(base, "bob", tokens["bob"], y, stop)
        cid.start()

        def others_after_cid():
            cid.taken.wait(40)
            ann.start()
            bob.start()

        starter = threading.Thread(target=others_after_cid, daemon=True)
        starter.start()
        result = project.run(batch_size=6)  # the engine, in this process, waits for people
        stop.set()
        starter.join(10)
        for h in (cid, ann, bob):
            h.join(15)
    finally:
        stop.set()
        stop_server(server)

    assert not (ann.errors or bob.errors or cid.errors), (ann.errors, bob.errors, cid.errors)
    store = project.store
    assert result.stop_reason == "budget"
    assert store.open_round() is None and all(r["status"] == "done" for r in store.rounds())
    rows = store._db.execute("SELECT item, worker, label FROM answers").fetchall()
    names = {w["idx"]: w["id"] for w in store.workers()}
    in_store = sorted((names[w], i, lab) for i, w, lab in rows)
    acked = sorted((h.name, i, lab) for h in (ann, bob, cid) for i, lab in h.acknowledged)
    assert in_store == acked  # every acknowledged answer once, nothing else
    assert len(rows) == 24 == result.summary["human_answers"]
    assert store._db.execute("SELECT COUNT(*) FROM assignments a LEFT JOIN answers b "
                             "ON a.item = b.item AND a.worker = b.worker WHERE b.item IS NULL").fetchone()[0] == 0
    # The abandoned task: re-offered only after its lease ran out, then answered by someone else.
    item, taken_at = cid.abandoned
    moves = [e for e in store.events("reassigned") if e["payload"]["item"] == item]
    # (a later wave may ask cid about the same item again, and that copy may move too)
    assert moves and names[moves[0]["payload"]["from"]] == "cid"
    assert moves[0]["at"] >= taken_at + LEASE - 0.05
    assert names[moves[0]["payload"]["to"]] in ("ann", "bob")
    assert (names[moves[0]["payload"]["to"]], item) in {(n, i) for n, i, _ in in_store}
    assert {n for n, _, _ in in_store} == {"ann", "bob", "cid"}  # cid came back and worked on
    seconds = store.answers()["seconds"]
    assert (seconds >= 0).all() and (seconds <= LEASE).all()  # measured by the server, within a lease
    assert time.monotonic() - t0 < 60
