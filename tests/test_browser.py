"""A real browser (headless Chromium, driven by Playwright) signs in and labels with the keyboard."""

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def wait_until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sign_in_label_three_items_with_the_keyboard(tmp_path):
    from test_serve_e2e import free_port, start_server, stop_server

    from hitl.human import HumanWorkforce
    from hitl.models import SklearnModel
    from hitl.queue import TaskQueue
    import hitl
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    t0 = time.monotonic()
    X, y = load_digits(n_class=3, return_X_y=True)
    X, y = X[:60], y[:60]
    classes = ["zero", "one", "two"]
    people = HumanWorkforce([hitl.HITer("ann", "FR"), hitl.HITer("bob", "TG")], images=X, image_shape=(8, 8),
                            timeout=0, progress=False)
    db = tmp_path / "project.db"
    project = hitl.LabelingProject(hitl.Pool(X), SklearnModel(LogisticRegression(max_iter=300), n_classes=3),
                                   workforce=people, classes=classes, store=str(db), progress=False)
    people.bind(project)
    assert project.step(batch_size=8) == "waiting"  # posts a round's tasks; nobody has answered yet
    tokens = people.issue_tokens()
    q = TaskQueue(project.store)
    items, workers = project.store.assignments(pending=True)
    wpos = dict(zip(project.store.worker_positions(["ann", "bob"]).tolist(), ["ann", "bob"]))
    ann_items = items[[wpos[w] == "ann" for w in workers.tolist()]]
    bob_items = items[[wpos[w] == "bob" for w in workers.tolist()]]
    assert len(ann_items) >= 3 and len(bob_items) >= 1

    port = free_port()
    server = start_server(db, port)
    base = f"http://127.0.0.1:{port}"
    user_data = tmp_path / "chromium-profile"
    try:
        with sync_api.sync_playwright() as pw:
            # A fresh profile, the system's Chromium (no browser download).
            context = pw.chromium.launch_persistent_context(str(user_data), executable_path=CHROMIUM, headless=True,
                                                            args=FLAGS)
            context.set_default_timeout(10_000)
            page = context.new_page()
            page.goto(base + "/")
            page.fill("#token", tokens["ann"])
            page.click("#signin-button")
            labeled = []
            for _ in range(3):
                page.wait_for_selector("#task:not([hidden])")
                # Wait for the next task to replace the one just answered (item ids are positions here).
                wait_until(lambda: page.text_content("#item-id") not in {str(i) for i, _ in labeled})
                item = int(page.text_content("#item-id"))
                # The page's CSP forbids eval: wait with locators, not string predicates.
                wait_until(lambda: page.locator("#image").evaluate(
                    "el => el.complete && el.naturalWidth === 8 && el.src.endsWith('/api/tasks/' + %d + '/content')" % item))
                truth = int(y[item])
                page.keyboard.press(str(truth + 1))  # keys 1, 2, 3 pick zero, one, two
                assert page.get_attribute(f"#labels button[data-index='{truth}']", "aria-checked") == "true"
                page.keyboard.press("Enter")
                sync_api.expect(page.locator("#done")).to_have_text(str(len(labeled) + 1))
                labeled.append((item, truth))
            # Ann cannot see Bob's task, through the API or by opening its image.
            other = int(bob_items[0])
            assert page.request.get(f"{base}/api/tasks/{other}").status == 403
            assert page.request.get(f"{base}/api/tasks/{other}/content").status == 403
            resp = page.goto(f"{base}/api/tasks/{other}/content")
            assert resp.status == 403
            context.close()
    finally:
        stop_server(server)

    ann = int(project.store.worker_positions(["ann"])[0])
    rows = project.store._db.execute("SELECT item, label FROM answers WHERE worker = ? ORDER BY item", (ann,)).fetchall()
    assert rows == sorted(labeled)
    assert set(i for i, _ in labeled) <= set(ann_items.tolist())
    assert project.store._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 3
    assert q.progress()["tasks"]["answered"] == 3
    assert time.monotonic() - t0 < 60


def _one_hiter_project(path, classes):
    """A project whose only HITer, ann, holds one text task per class (item i is "it-i")."""
    from hitl.queue import TaskQueue
    from hitl.store import Store
    from hitl.workforce import HITer

    n = len(classes)
    store = Store(path)
    store.ensure_project(fingerprint="keys", classes=classes, config={})
    store.add_items([f"it-{i}" for i in range(n)], ["default"] * n, [None] * n)
    store.add_workers([HITer("ann", "FR")])
    store.begin_round(0, items=np.arange(n), workers=np.zeros(n, dtype=np.int64))
    q = TaskQueue(store)
    q.post(np.arange(n), [("text", "text/plain", f"item number {i}".encode()) for i in range(n)])
    token = q.issue_token("ann")
    store.close()
    return token


@pytest.mark.parametrize("classes, typed", [
    ([str(d) for d in range(10)], [str(d) for d in range(10)]),  # a digit is typed as it is seen
    (["zero", "one", "two"], ["1", "2", "3"]),  # longer names: the number shown on the button
    (["A", "a", "B"], ["A", "a", "b"]),  # exact case first; "b" is B, the only label equal to it ignoring case
], ids=["digits", "words", "case"])
def test_the_key_typed_is_the_label_stored(tmp_path, classes, typed):
    from test_serve_e2e import free_port, start_server, stop_server

    from hitl.store import Store

    t0 = time.monotonic()
    db = tmp_path / "project.db"
    token = _one_hiter_project(db, classes)
    named = all(len(c) == 1 for c in classes)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The server starts (mostly imports) while Chromium does: each takes a second or two.
    starting = ThreadPoolExecutor(1).submit(start_server, db, port)
    try:
        with sync_api.sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(str(tmp_path / "chromium-profile"),
                                                            executable_path=CHROMIUM, headless=True, args=FLAGS)
            context.set_default_timeout(10_000)
            page = context.new_page()
            starting.result()
            page.goto(base + "/")
            page.fill("#token", token)
            page.click("#signin-button")
            seen = set()
            for n in range(len(classes)):
                page.wait_for_selector("#task:not([hidden])")
                wait_until(lambda: page.text_content("#item-id") not in seen)
                item_id = page.text_content("#item-id")
                seen.add(item_id)
                i = int(item_id.split("-")[1])  # type the key of class i on item i
                if not named:  # the number or letter to type is shown on the button
                    assert page.text_content(f"#labels button[data-index='{i}'] kbd") == typed[i]
                page.keyboard.press(typed[i])
                assert page.is_enabled("#submit")  # the key picked a label (which one: see the store below)
                page.keyboard.press("Enter")
                sync_api.expect(page.locator("#done")).to_have_text(str(n + 1))
            sync_api.expect(page.locator("#empty")).to_be_visible()
            context.close()
    finally:
        if starting.exception() is None:
            stop_server(starting.result())

    with Store(db) as store:
        rows = store._db.execute("SELECT item, label FROM answers ORDER BY item").fetchall()
    assert [(item, classes[label]) for item, label in rows] == [(i, classes[i]) for i in range(len(classes))]
    assert time.monotonic() - t0 < 30
