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
from hitl.errors import ConfigError, HitlError  # noqa: E402
from hitl.human import png_bytes  # noqa: E402
from hitl.queue import TaskQueue  # noqa: E402
from hitl.serve.app import SignInThrottle, create_app, label_keys  # noqa: E402
from hitl.serve.cli import write_tokens  # noqa: E402
from test_queue import CLASSES, make_store  # noqa: E402

BASE = "http://127.0.0.1:8000"


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
    """Every row of every table (whatever tables this store's schema has)."""
    db = store._db
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                       "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {t: sorted(db.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}


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
    # Bob's two tasks are still pending, but that is none of ann's business: only her own count.
    assert r.status_code == 204 and r.headers["x-hitl-pending"] == "0"


def test_wrong_token_is_401_and_writes_nothing(served):
    _, tokens, store = served
    # Many wrong tokens in a row: a throttle that never backs off, to see every 401.
    client = TestClient(create_app(store.path, throttle=SignInThrottle(free=10**6)), base_url=BASE)
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
    client.close()
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
    assert len(before["answers"]) == 1


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



# -- keys that pick labels --------------------------------------------------------------------
def test_label_keys_are_the_names_when_every_name_is_one_character():
    digits = [str(d) for d in range(10)]
    assert label_keys(digits) == digits  # label "0" is typed 0, not 1
    assert label_keys(["A", "a", "?"]) == ["A", "a", "?"]  # case tells A from a
    assert label_keys(CLASSES) == ["1", "2", "3"]
    assert label_keys(["a", "bb"]) == ["1", "2"]  # one longer name: every label is numbered
    assert label_keys([" ", "x"]) == ["1", "2"]  # whitespace is no key
    assert label_keys(["x", "x"]) == ["1", "2"]  # names that are not distinct
    assert label_keys([]) == []
    many = label_keys([f"c{i}" for i in range(40)])
    assert many[:11] == list("1234567890q") and len(set(many[:36])) == 36 and many[36:] == [""] * 4


def test_a_digit_project_shows_each_digit_as_its_own_key(tmp_path):
    from hitl.store import Store
    from hitl.workforce import HITer

    path = tmp_path / "digits.db"
    digits = [str(d) for d in range(10)]
    store = Store(path)
    store.ensure_project(fingerprint="f", classes=digits, config={})
    store.add_items(["x"], ["default"], [None])
    store.add_workers([HITer("ann", "FR")])
    store.begin_round(0, items=np.array([0]), workers=np.array([0]))
    q = TaskQueue(store)
    q.post(np.array([0]), [("text", "text/plain", b"7")])
    token = q.issue_token("ann")
    with TestClient(create_app(path), base_url=BASE) as client:
        t = take(client, token)
    assert (t["labels"], t["keys"]) == (digits, digits)
    store.close()


# -- the tokens file ----------------------------------------------------------------------------
def _token_rows(path):
    return TaskQueue(path).store._db.execute("SELECT COUNT(*) FROM hq_tokens").fetchone()[0]


@pytest.mark.parametrize("where", ["no-such-folder/tokens.csv", "a-folder"])
def test_unwritable_tokens_file_is_a_typed_error_and_stores_no_token(tmp_path, capsys, where):
    path = tmp_path / "p.db"
    make_store(path).close()
    (tmp_path / "a-folder").mkdir()
    out = tmp_path / where
    with pytest.raises(ConfigError) as err:
        write_tokens(path, out)
    assert str(out) in str(err.value) and "--issue-tokens" in str(err.value)
    assert _token_rows(path) == 0  # nobody is locked out by a token only its digest knows
    # The command says so and starts no server.
    assert main(["serve", str(path), "--issue-tokens", str(out)]) == 2
    assert str(out) in capsys.readouterr().err
    assert _token_rows(path) == 0


def test_tokens_file_with_a_loose_mode_ends_private_and_every_token_verifies(tmp_path):
    path = tmp_path / "p.db"
    make_store(path).close()
    out = tmp_path / "tokens.csv"
    out.write_text("hiter,token\nold,hitl_0_0\n")
    os.chmod(out, 0o644)
    assert write_tokens(path, out) == 4
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    lines = out.read_text().splitlines()
    assert lines[:2] == ["hiter,token", "old,hitl_0_0"]  # appended to, header not repeated
    q = TaskQueue(path)
    who = [(h, q.verify_token(t)) for h, t in (line.split(",") for line in lines[2:])]
    assert [(h, w.role, w.hiter_id) for h, w in who] == [("ann", "hiter", "ann"), ("bob", "hiter", "bob"),
                                                         ("cid", "hiter", "cid"), ("admin", "admin", None)]
    assert _token_rows(path) == 4


def test_minted_tokens_are_stored_together_or_not_at_all(tmp_path):
    path = tmp_path / "p.db"
    make_store(path).close()
    q = TaskQueue(path)
    minted = [q.mint_token("ann"), q.mint_token(admin=True)]
    assert _token_rows(path) == 0 and q.verify_token(minted[0][0]) is None  # minting stores nothing
    with pytest.raises(Exception):  # the same row twice: the whole batch is rolled back
        q.commit_tokens([minted[0][1], minted[1][1], minted[1][1]])
    assert _token_rows(path) == 0
    assert q.commit_tokens([row for _, row in minted]) == 2
    assert q.verify_token(minted[0][0]).hiter_id == "ann" and q.verify_token(minted[1][0]).role == "admin"
    with pytest.raises(HitlError):
        q.mint_token()


# -- sign-in back-off, sign-out, what a HITer may learn -------------------------------------
class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_failed_sign_ins_back_off_per_address(served):
    _, tokens, store = served
    clock = Clock()
    app = create_app(store.path, throttle=SignInThrottle(free=5, base=1, cap=8, clock=clock))
    client = TestClient(app, base_url=BASE)
    neighbour = TestClient(app, base_url=BASE, client=("10.0.0.2", 50000))
    guess = {"token": "hitl_0123456789ab_wrong"}
    for _ in range(5):
        assert client.post("/signin", data=guess).status_code == 401
    r = client.post("/signin", data={"token": tokens["ann"]}, follow_redirects=False)
    assert r.status_code == 429 and r.headers["retry-after"] == "1"  # held back: not even the right token is checked
    assert "try again" in r.text and "set-cookie" not in r.headers
    assert neighbour.post("/signin", data=guess).status_code == 401  # another address is not held back
    waits = []
    for _ in range(5):
        r = client.post("/signin", data=guess)
        assert r.status_code == 429
        waits.append(int(r.headers["retry-after"]))
        clock.now += waits[-1]
        assert client.post("/signin", data=guess).status_code == 401  # one more guess after the wait...
    assert waits == [1, 2, 4, 8, 8]  # ...doubles the next wait, up to the cap
    clock.now += 8
    r = client.post("/signin", data={"token": tokens["ann"]}, follow_redirects=False)
    assert r.status_code == 303
    client.cookies.clear()
    for _ in range(5):  # a success forgot the address's failures
        assert client.post("/signin", data=guess).status_code == 401
    assert client.post("/signin", data=guess).status_code == 429
    client.close()
    neighbour.close()


def test_wrong_bearer_and_cookie_tokens_back_off_too(served):
    _, tokens, store = served
    clock = Clock()
    client = TestClient(create_app(store.path, throttle=SignInThrottle(free=5, clock=clock)), base_url=BASE)
    before = state(store)
    for _ in range(20):  # no token at all is no guess
        assert client.post("/api/next").status_code == 401
    for _ in range(5):
        assert client.post("/api/next", headers=bearer("hitl_0123456789ab_wrong")).status_code == 401
    for call in (lambda: client.post("/api/next", headers=bearer(tokens["ann"])),
                 lambda: client.get("/api/tasks/0", headers=bearer(tokens["ann"]))):
        r = call()
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and "try again" in r.json()["error"]
    assert state(store) == before
    clock.now += 1
    assert client.post("/api/next", headers=bearer(tokens["ann"])).status_code == 200  # and resets the address
    client.cookies.set("hitl_token", "hitl_0123456789ab_wrong")
    for _ in range(5):
        assert client.post("/api/next").status_code == 401
    assert client.post("/api/next").status_code == 429
    assert client.get("/").status_code == 429  # the page says so too, instead of a sign-in form that cannot work
    client.close()


def fail(throttle, address):
    assert throttle.begin(address) == 0
    throttle.end(address, ok=False)


def test_throttle_forgets_old_failures_and_bounds_its_memory():
    clock = Clock()
    t = SignInThrottle(free=2, window=10, base=1, cap=4, clock=clock)
    fail(t, "a")
    fail(t, "a")
    assert t.wait("a") == 1 and t.begin("a") == 1
    clock.now += 1 + 10.5  # quiet for longer than the window after the wait
    fail(t, "a")
    assert t.wait("a") == 0  # counted afresh: one failure
    t.begin("a")
    t.end("a", ok=None)  # a check that did not finish (the store was busy) is no failure
    assert t.wait("a") == 0
    small = SignInThrottle(free=1, clock=clock, max_addresses=2)
    for who in ("a", "b", "c"):
        fail(small, who)
    assert small.wait("a") == 0 and small.wait("b") > 0 and small.wait("c") > 0


def test_a_burst_of_concurrent_guesses_is_not_all_checked():
    t = SignInThrottle(free=5, base=1, clock=Clock())
    assert [t.begin("a") for _ in range(8)] == [0] * 8  # no failure yet: many HITers may share an address
    for _ in range(8):
        t.end("a", ok=True)
    fail(t, "a")
    # With a failure on record, no more checks in flight than tries left (4): a fifth must wait.
    assert [t.begin("a") for _ in range(5)] == [0, 0, 0, 0, 1]
    for _ in range(4):
        t.end("a", ok=False)
    assert t.begin("a") == 1  # five failures: held back


def test_cross_site_sign_out_is_refused(served):
    client, tokens, store = served
    assert client.post("/signin", data={"token": tokens["ann"]}, follow_redirects=False).status_code == 303
    r = client.post("/signout", headers={"origin": "http://evil.example"}, follow_redirects=False)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    assert client.post("/api/next").status_code == 200  # still signed in
    r = client.post("/signout", headers={"origin": BASE}, follow_redirects=False)
    assert r.status_code == 303 and "hitl_token" in r.headers["set-cookie"]
    assert client.post("/api/next").status_code == 401


def test_pending_counts_a_hiters_own_tasks(served):
    client, tokens, store = served
    q = TaskQueue(store)
    assert (q.pending(), q.pending(worker=0), q.pending(worker=1), q.pending(worker=2)) == (4, 2, 2, 0)
    take(client, tokens["ann"])
    assert client.post("/api/tasks/0/answer", headers=bearer(tokens["ann"]), json={"label": "cat"}).status_code == 200
    assert (q.pending(), q.pending(worker=0), q.pending(worker=1)) == (3, 1, 2)
    assert q.pending(np.array([0, 1, 2]), worker=1) == 1


def _png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    assert len(zlib.decompress(idat)) == h * (w + 1)
    return w, h
