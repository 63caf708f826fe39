"""The HITers' web app: every refusal has the right status and writes nothing."""

import os
import stat
import struct
import time
import zlib

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from hitl.cli import build_parser, main  # noqa: E402
from hitl.human import png_bytes  # noqa: E402
from hitl.queue import TaskQueue  # noqa: E402
from hitl.serve.app import create_app  # noqa: E402
from hitl.serve.cli import write_tokens  # noqa: E402
from test_queue import CLASSES, make_store  # noqa: E402


@pytest.fixture
def served(tmp_path):
    """ann holds items 0 (an image) and 1 (a text); bob holds 2 and 3."""
    path = tmp_path / "project.db"
    store = make_store(path)
    store.begin_round(0, items=np.array([0, 1, 2, 3]), workers=np.array([0, 0, 1, 1]))
    q = TaskQueue(store)
    img = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    q.post(np.array([0, 1, 2, 3]), [("image", "image/png", png_bytes(img))]
           + [("text", "text/plain", f"text {i}".encode()) for i in (1, 2, 3)])
    tokens = {h: q.issue_token(h) for h in ("ann", "bob")}
    tokens["admin"] = q.issue_token(admin=True)
    client = TestClient(create_app(path), base_url="http://127.0.0.1:8000")
    yield client, tokens, store
    client.close()
    store.close()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def state(store):
    db = store._db
    return (db.execute("SELECT * FROM answers ORDER BY item, worker").fetchall(),
            db.execute("SELECT * FROM payments ORDER BY item, worker").fetchall(),
            db.execute("SELECT worker, item FROM assignments ORDER BY item, worker").fetchall(),
            db.execute("SELECT COUNT(*) FROM events").fetchone())


def take(client, token):
    r = client.post("/api/next", headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


def test_a_hiter_takes_labels_and_moves_on(served):
    client, tokens, store = served
    t = take(client, tokens["ann"])
    assert (t["task"], t["kind"], t["labels"], t["keys"]) == (0, "image", CLASSES, ["1", "2", "3"])
    img = client.get(t["content_url"], headers=bearer(tokens["ann"]))
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert img.headers["x-content-type-options"] == "nosniff"
    assert _png_size(img.content) == (4, 3)
    r = client.post("/api/tasks/0/answer", headers=bearer(tokens["ann"]), json={"label": "dog"})
    assert r.status_code == 200 and r.json()["recorded"] is True
    # The answer is committed when the response arrives: a fresh connection sees it.
    assert TaskQueue(store.path).store._db.execute("SELECT item, worker, label FROM answers").fetchall() == [(0, 0, 1)]
    t = take(client, tokens["ann"])
    assert (t["task"], t["text"]) == (1, "text 1")
    client.post("/api/tasks/1/answer", headers=bearer(tokens["ann"]), json={"label": "cow"})
    r = client.post("/api/next", headers=bearer(tokens["ann"]))
    assert r.status_code == 204 and r.headers["x-hitl-pending"] == "2"


def test_wrong_token_is_401_and_writes_nothing(served):
    client, tokens, store = served
    before = state(store)
    wrong = tokens["ann"][:-2] + ("xy" if not tokens["ann"].endswith("xy") else "zz")
    for headers in ({}, bearer(wrong), bearer("hitl_0_0"), {"Authorization": "Basic abc"}, bearer("x" * 300)):
        assert client.post("/api/next", headers=headers).status_code == 401
        assert client.get("/api/tasks/0", headers=headers).status_code == 401
        assert client.get("/api/tasks/0/content", headers=headers).status_code == 401
        assert client.post("/api/tasks/0/answer", headers=headers, json={"label": "cat"}).status_code == 401
        assert client.get("/api/progress", headers=headers).status_code == 401
    client.cookies.set("hitl_token", wrong)
    assert client.post("/api/next").status_code == 401
    client.cookies.clear()
    assert state(store) == before


def test_another_hiters_task_is_403_and_writes_nothing(served):
    client, tokens, store = served
    take(client, tokens["bob"])  # bob leases item 2
    before = state(store)
    ann = bearer(tokens["ann"])
    for task in (2, 3, 99, 10**30):
        assert client.get(f"/api/tasks/{task}", headers=ann).status_code == 403
        assert client.get(f"/api/tasks/{task}/content", headers=ann).status_code == 403
        assert client.post(f"/api/tasks/{task}/answer", headers=ann, json={"label": "cat"}).status_code == 403
    # The admin token is not a HITer's and cannot answer either.
    assert client.post("/api/tasks/2/answer", headers=bearer(tokens["admin"]), json={"label": "cat"}).status_code == 403
    assert client.get("/api/progress", headers=ann).status_code == 403
    assert state(store) == before


def test_bad_answers_are_refused_and_write_nothing(served):
    client, tokens, store = served
    ann = bearer(tokens["ann"])
    take(client, tokens["ann"])
    before = state(store)
    cases = [
        ({"json": {"label": "horse"}}, 422),  # outside the label set
        ({"json": {"label": 1}}, 422),
        ({"json": {"label": "cat", "seconds": 0.1}}, 422),  # time on task is the server's to measure
        ({"json": ["cat"]}, 422),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
        ({"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 422),
        ({"content": b"label=cat", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415),
    ]
    for kwargs, status in cases:
        headers = dict(ann, **kwargs.pop("headers", {}))
        r = client.post("/api/tasks/0/answer", headers=headers, **kwargs)
        assert r.status_code == status, (kwargs, r.text)
        assert "error" in r.json()
    assert state(store) == before


def test_oversized_body_is_413_and_writes_nothing(served):
    client, tokens, store = served
    ann = bearer(tokens["ann"])
    take(client, tokens["ann"])
    before = state(store)
    big = b'{"label": "cat", "pad": "' + b"x" * 20_000 + b'"}'
    r = client.post("/api/tasks/0/answer", headers=dict(ann, **{"content-type": "application/json"}), content=big)
    assert r.status_code == 413

    def chunks():  # no Content-Length: the limit holds on the stream too
        for _ in range(40):
            yield b"x" * 1024

    r = client.post("/api/tasks/0/answer", headers=dict(ann, **{"content-type": "application/json"}), content=chunks())
    assert r.status_code == 413
    r = client.post("/signin", content=b"token=" + b"a" * 20_000,
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    assert state(store) == before


def test_replayed_submission_is_409_and_writes_nothing(served):
    client, tokens, store = served
    ann = bearer(tokens["ann"])
    take(client, tokens["ann"])
    assert client.post("/api/tasks/0/answer", headers=ann, json={"label": "cat"}).status_code == 200
    before = state(store)
    for label in ("cat", "dog"):
        r = client.post("/api/tasks/0/answer", headers=ann, json={"label": label})
        assert r.status_code == 409 and "already answered" in r.json()["error"]
    assert state(store) == before
    assert len(before[0]) == 1


def test_answer_without_taking_the_task_is_409(served):
    client, tokens, store = served
    before = state(store)
    r = client.post("/api/tasks/1/answer", headers=bearer(tokens["ann"]), json={"label": "cat"})
    assert r.status_code == 409
    assert state(store) == before


def test_lease_lost_is_410(served):
    client, tokens, store = served
    TaskQueue(store).configure(lease_seconds=0.2)
    take(client, tokens["bob"])  # bob takes item 2 and vanishes
    time.sleep(0.3)
    t = take(client, tokens["ann"])  # ann's own tasks come first
    assert t["task"] == 0
    client.post("/api/tasks/0/answer", headers=bearer(tokens["ann"]), json={"label": "cat"})
    take(client, tokens["ann"])
    client.post("/api/tasks/1/answer", headers=bearer(tokens["ann"]), json={"label": "cat"})
    t = take(client, tokens["ann"])
    assert t["task"] == 2  # bob's lease ran out: item 2 is ann's now
    before = state(store)
    r = client.post("/api/tasks/2/answer", headers=bearer(tokens["bob"]), json={"label": "dog"})
    assert r.status_code == 410
    assert state(store) == before


def test_sign_in_sets_an_http_only_cookie_and_cross_site_writes_are_refused(served):
    client, tokens, store = served
    r = client.post("/signin", data={"token": "hitl_bad_token"}, follow_redirects=False)
    assert r.status_code == 401 and "not valid" in r.text
    r = client.post("/signin", data={"token": tokens["ann"]}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = client.get("/")
    assert page.status_code == 200 and 'id="labels"' in page.text and "ann" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    before = state(store)
    r = client.post("/api/next", headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    assert state(store) == before
    assert client.post("/api/next", headers={"origin": "http://127.0.0.1:8000"}).status_code == 200
    client.post("/signout")
    assert client.post("/api/next").status_code == 401


def test_admin_sees_progress(served):
    client, tokens, store = served
    take(client, tokens["ann"])
    client.post("/api/tasks/0/answer", headers=bearer(tokens["ann"]), json={"label": "cat"})
    p = client.get("/api/progress", headers=bearer(tokens["admin"])).json()
    assert p["tasks"] == {"answered": 1, "in_progress": 0, "lease_expired": 0, "waiting": 3}
    assert p["answers_last_hour"] == 1 and p["hiters_online"] == ["ann"]
    r = client.post("/signin", data={"token": tokens["admin"]}, follow_redirects=False)
    assert r.headers["location"] == "/admin"
    assert "Answers per hour" in client.get("/admin").text
    assert client.post("/api/next").status_code == 403  # an admin does not label


def test_serve_command_defaults_to_loopback_and_refuses_a_missing_store(tmp_path, capsys):
    args = build_parser().parse_args(["serve", "labels.db"])
    assert (args.host, args.port, args.func.__module__) == ("127.0.0.1", 8000, "hitl.serve.cli")
    assert main(["serve", str(tmp_path / "nothing.db")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_issue_tokens_file(tmp_path):
    path = tmp_path / "p.db"
    make_store(path).close()
    out = tmp_path / "tokens.csv"
    assert write_tokens(path, out) == 4  # three HITers and the admin
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    rows = [line.split(",") for line in out.read_text().split()[1:]]
    q = TaskQueue(path)
    assert [(h, q.verify_token(t).hiter_id) for h, t in rows] == [("ann", "ann"), ("bob", "bob"), ("cid", "cid"),
                                                                 ("admin", None)]
    assert write_tokens(path, out) == 0  # nobody lacks one


def _png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    assert len(zlib.decompress(idat)) == h * (w + 1)
    return w, h
