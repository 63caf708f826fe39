"""The web app for HITers (and a progress page for the ML engineer), on Starlette.

Everything it needs is in the project's store: the label set, the tasks and what
each item looks like (posted by :class:`hitl.HumanWorkforce`), and the sign-in
tokens (hashed). Routes:

==========================================  ====================================================
``GET /``                                   the labeling page (or the sign-in form)
``POST /signin``, ``POST /signout``         form ``token=...``: sets / clears an HttpOnly cookie
``GET /admin``                              progress page (admin token)
``GET /api/me``                             who is signed in
``POST /api/next``                          lease the next task allowed to the HITer (204: none)
``GET /api/tasks/{task}``                   a task of the HITer (403 for anybody else's)
``GET /api/tasks/{task}/content``           its image bytes
``POST /api/tasks/{task}/answer``           ``{"label": "<name>"}``; 200 once committed
``GET /api/progress``                       tasks by state, answers per hour, HITers online (admin)
==========================================  ====================================================

API calls authenticate with ``Authorization: Bearer <token>`` or the cookie. Status
codes: 401 no or wrong token, 403 not your task (or not an admin, or a cross-site
post), 409 answered already (a replay; nothing written) or never taken, 410 lease ran
out and the task went to someone else, 413 body too large, 415 not JSON, 422 label
outside the label set or malformed answer, 429 too many wrong tokens from this address
lately (``Retry-After`` says for how many seconds; see :class:`SignInThrottle`).
"""

from __future__ import annotations

import html
import json
import math
import string
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import HitlError, ValidationError
from ..queue import Identity, TaskError, TaskQueue

HERE = Path(__file__).parent
COOKIE = "hitl_token"
MAX_BODY = 16 * 1024
# Numbered keys, for label sets whose names are not single characters: digits, then letters.
KEYS = list("1234567890") + list("qwertyuiopasdfghjklzxcvbnm")

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form posts.
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"cache-control", b"no-store"),
]


def label_keys(classes: Sequence[str]) -> list[str]:
    """The key that picks each label on the labeling page.

    When every name is a single non-whitespace character and the names are distinct, a
    label's key is its name (a HITer types the digit she sees); otherwise labels are
    numbered 1-9, 0, then letters, and labels past the 36th get no key (``""``).

    Parameters
    ----------
    classes : sequence of str
        The label names, in class-index order.

    Returns
    -------
    list of str, one key per label

    Examples
    --------
    >>> label_keys([str(d) for d in range(10)])[:3]
    ['0', '1', '2']
    >>> label_keys(["cat", "dog"])
    ['1', '2']
    """
    names = [str(c) for c in classes]
    if names and len(set(names)) == len(names) and all(len(n) == 1 and not n.isspace() for n in names):
        return names
    return [KEYS[i] if i < len(KEYS) else "" for i in range(len(names))]


class SignInThrottle:
    """Back-off on failed sign-ins, per client address, kept in memory.

    The first ``free`` failures within ``window`` seconds of each other are answered
    normally; the next attempt must wait ``base`` seconds, and each further failure
    doubles the wait, up to ``cap``. While an address waits its tokens are not even
    checked (429), so guessing gains nothing. A success forgets the address's failures.

    Parameters
    ----------
    free : int, default 5
        Failures allowed before the first wait.
    window : float, default 300
        Seconds after the last failure (or the end of the last wait) when failures are forgotten.
    base, cap : float, default 1 and 300
        First and longest wait, in seconds.
    clock : callable, default time.monotonic
        Seconds now (a test passes its own).
    max_addresses : int, default 10000
        Addresses remembered at most (the oldest are forgotten first).

    Examples
    --------
    >>> t = SignInThrottle(free=1, clock=lambda: 0.0)
    >>> t.begin("10.0.0.7")
    0.0
    >>> t.end("10.0.0.7", ok=False)
    >>> t.begin("10.0.0.7")
    1.0
    """

    def __init__(self, *, free: int = 5, window: float = 300.0, base: float = 1.0, cap: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, max_addresses: int = 10_000) -> None:
        self.free, self.window, self.base, self.cap = max(1, int(free)), float(window), float(base), float(cap)
        self.clock = clock
        self.max_addresses = int(max_addresses)
        self._lock = threading.Lock()
        # address -> [failures, last failure, blocked until, checks in flight]
        self._state: OrderedDict[str, list[float]] = OrderedDict()

    def wait(self, address: str) -> float:
        """Seconds ``address`` must still wait before a token of theirs is checked (0: none)."""
        with self._lock:
            st = self._state.get(address)
            return 0.0 if st is None else max(0.0, st[2] - self.clock())

    def begin(self, address: str) -> float:
        """Before checking a token from ``address``: 0 to go ahead (then call :meth:`end`), else seconds to wait."""
        with self._lock:
            now = self.clock()
            st = self._current(address, now)
            if st[2] > now:
                return st[2] - now
            # Checks run concurrently: once an address has failed, it may not have more
            # checks in flight than tries left, or a burst would all be checked before the first failure counts.
            if st[0] > 0 and st[3] >= max(1.0, self.free - st[0]):
                return self.base
            st[3] += 1
            return 0.0

    def end(self, address: str, ok: bool | None) -> None:
        """After a check that :meth:`begin` let through: ``ok`` is whether the token was valid
        (None: the check did not finish, which is no failure)."""
        with self._lock:
            now = self.clock()
            st = self._current(address, now)
            st[3] = max(0.0, st[3] - 1)
            if ok:
                st[0] = 0.0
            elif ok is not None:
                st[0] += 1
                st[1] = now
                if st[0] >= self.free:
                    st[2] = now + min(self.cap, self.base * 2.0 ** min(st[0] - self.free, 64))
            if st[0] == 0 and st[3] == 0:
                del self._state[address]

    def _current(self, address: str, now: float) -> list[float]:
        st = self._state.pop(address, None)
        if st is None:
            st = [0.0, now, now, 0.0]
        elif st[0] > 0 and now - max(st[1], st[2]) > self.window:
            st[0] = 0.0  # quiet for a window: the old failures are forgotten
        self._state[address] = st  # most recently used last: the oldest are forgotten first
        while len(self._state) > self.max_addresses:
            self._state.popitem(last=False)
        return st


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        self.status = status
        self.message = message
        self.headers = headers


class _SecurityHeaders:
    """ASGI middleware adding the same security headers to every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(k, v) for k, v in _SECURITY_HEADERS if k not in names]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(store_path: str | Path, *, max_body: int = MAX_BODY, secure_cookie: bool = False,
               throttle: SignInThrottle | None = None) -> Any:
    """The ASGI app serving the project store at ``store_path``.

    Parameters
    ----------
    store_path : path of the project's SQLite file
    max_body : int, default 16 KiB
        Largest request body accepted (413 above).
    secure_cookie : bool, default False
        Mark the sign-in cookie ``Secure`` (set it when served behind HTTPS).
    throttle : SignInThrottle, optional
        Back-off on wrong tokens (default: a :class:`SignInThrottle` with its defaults).

    Examples
    --------
    >>> from starlette.testclient import TestClient     # doctest: +SKIP
    >>> client = TestClient(create_app("labels.db"))      # doctest: +SKIP
    >>> client.post("/api/next", headers={"Authorization": "Bearer " + token}).json()  # doctest: +SKIP
    """
    site = _Site(TaskQueue(store_path), max_body=max_body, secure_cookie=secure_cookie,
                 throttle=SignInThrottle() if throttle is None else throttle)
    app = Starlette(routes=site.routes(), exception_handlers={
        _Refused: _refused, TaskError: _task_error, ValidationError: _invalid, HitlError: _hitl_error})
    app.state.queue = site.queue
    return _SecurityHeaders(app)


class _Site:
    """The pages and API of one project store (what :func:`create_app` serves)."""

    def __init__(self, queue: TaskQueue, *, max_body: int, secure_cookie: bool, throttle: SignInThrottle) -> None:
        self.queue = queue
        self.classes = queue.classes()
        self.keys = label_keys(self.classes)
        self.max_body = max_body
        self.secure_cookie = secure_cookie
        self.throttle = throttle
        self.templates = {name: string.Template((HERE / "templates" / f"{name}.html").read_text(encoding="utf-8"))
                          for name in ("signin", "label", "admin")}

    def routes(self) -> list:
        return [
            Route("/", self.index),
            Route("/favicon.ico", _favicon),
            Route("/signin", self.signin, methods=["GET", "POST"]),
            Route("/signout", self.signout, methods=["POST"]),
            Route("/admin", self.admin),
            Route("/api/me", self.me),
            Route("/api/next", self.next_task, methods=["POST"]),
            Route("/api/tasks/{task:int}", self.get_task),
            Route("/api/tasks/{task:int}/content", self.content),
            Route("/api/tasks/{task:int}/answer", self.answer, methods=["POST"]),
            Route("/api/progress", self.progress),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    # -- helpers ---------------------------------------------------------------------------------
    def page(self, name: str, status: int = 200, **values: str) -> HTMLResponse:
        safe = {k: html.escape(v) for k, v in values.items()}
        return HTMLResponse(self.templates[name].safe_substitute(safe), status_code=status)

    def refused_page(self, exc: _Refused) -> HTMLResponse:
        resp = self.page("signin", status=exc.status, error=exc.message[:1].upper() + exc.message[1:] + ".")
        resp.headers.update(exc.headers or {})
        return resp

    async def check_token(self, request: Request, token: str) -> Identity | None:
        """The token's identity; a wrong one counts against the client's address."""
        address = request.client.host if request.client else ""
        wait = self.throttle.begin(address)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise _Refused(429, f"too many wrong tokens from your address; try again in {seconds} s",
                           headers={"retry-after": str(seconds)})
        try:
            who = await run_in_threadpool(self.queue.verify_token, token)
        except BaseException:
            self.throttle.end(address, ok=None)
            raise
        self.throttle.end(address, ok=who is not None)
        return who

    async def identify(self, request: Request) -> Identity | None:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else request.cookies.get(COOKIE)
        if not token:
            return None
        return await self.check_token(request, token)

    async def hiter(self, request: Request, *, write: bool = False) -> Identity:
        who = await self.identify(request)
        if who is None:
            raise _Refused(401, "sign in with your token")
        if who.role != "hiter":
            raise _Refused(403, "this token is not a HITer's")
        if write and not _same_origin(request):
            raise _Refused(403, "cross-site request refused")
        return who

    async def read_body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and not length.isdigit():
            raise _Refused(400, "malformed Content-Length")
        if length is not None and int(length) > self.max_body:
            raise _Refused(413, f"request body over {self.max_body} bytes")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > self.max_body:
                raise _Refused(413, f"request body over {self.max_body} bytes")
        return bytes(body)

    def task_json(self, task: Any) -> dict:
        classes = self.classes
        out = {
            "task": task.item, "item_id": task.item_id, "round": task.round, "kind": task.kind,
            "labels": classes, "keys": self.keys,
            "suggestion": None if task.suggestion is None else classes[task.suggestion],
            "score": None if task.score is None else round(float(task.score), 4),
            "expires_at": task.expires_at,
        }
        if task.kind == "text":
            out["text"] = task.text
        else:
            out["content_url"] = f"/api/tasks/{task.item}/content"
        return out

    # -- pages -------------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        try:
            who = await self.identify(request)
        except _Refused as exc:
            return self.refused_page(exc)
        if who is None:
            return self.page("signin", error="")
        if who.role == "admin":
            return RedirectResponse("/admin", status_code=303)
        return self.page("label", hiter=who.hiter_id or "")

    async def signin(self, request: Request) -> Response:
        if request.method == "GET":
            return self.page("signin", error="")
        if not _same_origin(request):
            return self.page("signin", status=403, error="Cross-site sign-in refused.")
        try:
            body = await self.read_body(request)
            token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
            who = await self.check_token(request, token) if token else None
        except _Refused as exc:
            return self.refused_page(exc)
        if who is None:
            return self.page("signin", status=401, error="This token is not valid.")
        if who.worker is not None:
            await run_in_threadpool(self.queue.touch, who.worker)
        resp = RedirectResponse("/admin" if who.role == "admin" else "/", status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=self.secure_cookie,
                        max_age=7 * 86400)
        return resp

    async def signout(self, request: Request) -> Response:
        # Clearing the cookie needs no cookie, so SameSite alone does not stop a foreign page.
        if not _same_origin(request):
            return PlainTextResponse("Cross-site sign-out refused.", status_code=403)
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    async def admin(self, request: Request) -> Response:
        try:
            who = await self.identify(request)
        except _Refused as exc:
            return self.refused_page(exc)
        if who is None:
            return self.page("signin", status=401, error="Sign in with the project's admin token.")
        if who.role != "admin":
            return self.page("signin", status=403, error="This page is for the project's admin.")
        return self.page("admin")

    # -- API -------------------------------------------------------------------------------------
    async def me(self, request: Request) -> Response:
        who = await self.identify(request)
        if who is None:
            raise _Refused(401, "sign in with your token")
        return JSONResponse({"role": who.role, "hiter": who.hiter_id, "country": who.country,
                             "labels": self.classes})

    async def next_task(self, request: Request) -> Response:
        who = await self.hiter(request, write=True)
        await self.read_body(request)
        task = await run_in_threadpool(self.queue.next_task, who.worker)
        if task is None:
            # Only the HITer's own count: the global queue size is the project's business.
            left = await run_in_threadpool(lambda: self.queue.pending(worker=who.worker))
            return Response(status_code=204, headers={"x-hitl-pending": str(left)})
        return JSONResponse(self.task_json(task))

    async def get_task(self, request: Request) -> Response:
        who = await self.hiter(request)
        task = await run_in_threadpool(self.queue.task, who.worker, request.path_params["task"])
        return JSONResponse(self.task_json(task))

    async def content(self, request: Request) -> Response:
        who = await self.hiter(request)
        mime, body = await run_in_threadpool(self.queue.content, who.worker, request.path_params["task"])
        return Response(body, media_type=mime, headers={"cache-control": "private, no-store"})

    async def answer(self, request: Request) -> Response:
        who = await self.hiter(request, write=True)
        body = await self.read_body(request)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _Refused(415, "send the answer as application/json")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _Refused(422, "the body is not valid JSON") from None
        if not isinstance(data, dict) or set(data) != {"label"} or not isinstance(data["label"], str):
            raise _Refused(422, 'expected {"label": "<one of the labels>"}')
        if data["label"] not in self.classes:
            raise _Refused(422, f"label {data['label'][:64]!r} is not in the label set")
        done = await run_in_threadpool(self.queue.submit, who.worker, request.path_params["task"],
                                       self.classes.index(data["label"]))
        return JSONResponse({"recorded": True, "task": done["item"], "label": self.classes[done["label"]],
                             "seconds": round(done["seconds"], 3)})

    async def progress(self, request: Request) -> Response:
        who = await self.identify(request)
        if who is None:
            raise _Refused(401, "sign in with the admin token")
        if who.role != "admin":
            raise _Refused(403, "the progress page is for the project's admin")
        return JSONResponse(await run_in_threadpool(self.queue.progress))


def _same_origin(request: Request) -> bool:
    # A cookie-borne request that changes state must come from this site's own pages.
    origin = request.headers.get("origin")
    if origin is None or "authorization" in request.headers:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _refused(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)


async def _task_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def _invalid(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=422)


async def _hitl_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=400)


async def _favicon(request: Request) -> Response:
    return Response(status_code=204)
