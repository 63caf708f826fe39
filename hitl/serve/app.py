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
codes: 401 no or wrong token, 403 not your task (or not an admin), 409 answered
already (a replay; nothing written) or never taken, 410 lease ran out and the task
went to someone else, 413 body too large, 415 not JSON, 422 label outside the label set
or malformed answer.
"""

from __future__ import annotations

import html
import json
import string
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import HitlError, ValidationError
from ..queue import Identity, TaskError, TaskQueue

HERE = Path(__file__).parent
COOKIE = "hitl_token"
MAX_BODY = 16 * 1024
# Keys shown next to labels: digits first, then letters (36 labels have a key).
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


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


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


def create_app(store_path: str | Path, *, max_body: int = MAX_BODY, secure_cookie: bool = False) -> Any:
    """The ASGI app serving the project store at ``store_path``.

    Parameters
    ----------
    store_path : path of the project's SQLite file
    max_body : int, default 16 KiB
        Largest request body accepted (413 above).
    secure_cookie : bool, default False
        Mark the sign-in cookie ``Secure`` (set it when served behind HTTPS).

    Examples
    --------
    >>> from starlette.testclient import TestClient     # doctest: +SKIP
    >>> client = TestClient(create_app("labels.db"))      # doctest: +SKIP
    >>> client.post("/api/next", headers={"Authorization": "Bearer " + token}).json()  # doctest: +SKIP
    """
    queue = TaskQueue(store_path)
    classes = queue.classes()
    templates = {name: string.Template((HERE / "templates" / f"{name}.html").read_text(encoding="utf-8"))
                 for name in ("signin", "label", "admin")}

    def page(name: str, status: int = 200, **values: str) -> HTMLResponse:
        safe = {k: html.escape(v) for k, v in values.items()}
        return HTMLResponse(templates[name].safe_substitute(safe), status_code=status)

    async def identify(request: Request) -> Identity | None:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else request.cookies.get(COOKIE)
        if not token:
            return None
        return await run_in_threadpool(queue.verify_token, token)

    def same_origin(request: Request) -> bool:
        # A cookie-borne request that changes state must come from this site's own pages.
        origin = request.headers.get("origin")
        if origin is None or "authorization" in request.headers:
            return True
        return urlsplit(origin).netloc == request.headers.get("host", "")

    async def hiter(request: Request, *, write: bool = False) -> Identity:
        who = await identify(request)
        if who is None:
            raise _Refused(401, "sign in with your token")
        if who.role != "hiter":
            raise _Refused(403, "this token is not a HITer's")
        if write and not same_origin(request):
            raise _Refused(403, "cross-site request refused")
        return who

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and not length.isdigit():
            raise _Refused(400, "malformed Content-Length")
        if length is not None and int(length) > max_body:
            raise _Refused(413, f"request body over {max_body} bytes")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > max_body:
                raise _Refused(413, f"request body over {max_body} bytes")
        return bytes(body)

    def task_json(task: Any) -> dict:
        out = {
            "task": task.item, "item_id": task.item_id, "round": task.round, "kind": task.kind,
            "labels": classes, "keys": KEYS[: len(classes)],
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
    async def index(request: Request) -> Response:
        who = await identify(request)
        if who is None:
            return page("signin", error="")
        if who.role == "admin":
            return RedirectResponse("/admin", status_code=303)
        return page("label", hiter=who.hiter_id or "")

    async def signin(request: Request) -> Response:
        if request.method == "GET":
            return page("signin", error="")
        if not same_origin(request):
            return page("signin", status=403, error="Cross-site sign-in refused.")
        try:
            body = await read_body(request)
        except _Refused as exc:
            return page("signin", status=exc.status, error=exc.message)
        token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
        who = await run_in_threadpool(queue.verify_token, token) if token else None
        if who is None:
            return page("signin", status=401, error="This token is not valid.")
        if who.worker is not None:
            await run_in_threadpool(queue.touch, who.worker)
        resp = RedirectResponse("/admin" if who.role == "admin" else "/", status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie, max_age=7 * 86400)
        return resp

    async def signout(request: Request) -> Response:
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    async def admin(request: Request) -> Response:
        who = await identify(request)
        if who is None:
            return page("signin", status=401, error="Sign in with the project's admin token.")
        if who.role != "admin":
            return page("signin", status=403, error="This page is for the project's admin.")
        return page("admin")

    # -- API -------------------------------------------------------------------------------------
    async def me(request: Request) -> Response:
        who = await identify(request)
        if who is None:
            raise _Refused(401, "sign in with your token")
        return JSONResponse({"role": who.role, "hiter": who.hiter_id, "country": who.country, "labels": classes})

    async def next_task(request: Request) -> Response:
        who = await hiter(request, write=True)
        await read_body(request)
        task = await run_in_threadpool(queue.next_task, who.worker)
        if task is None:
            left = await run_in_threadpool(queue.pending)
            return Response(status_code=204, headers={"x-hitl-pending": str(left)})
        return JSONResponse(task_json(task))

    async def get_task(request: Request) -> Response:
        who = await hiter(request)
        task = await run_in_threadpool(queue.task, who.worker, request.path_params["task"])
        return JSONResponse(task_json(task))

    async def content(request: Request) -> Response:
        who = await hiter(request)
        mime, body = await run_in_threadpool(queue.content, who.worker, request.path_params["task"])
        return Response(body, media_type=mime, headers={"cache-control": "private, no-store"})

    async def answer(request: Request) -> Response:
        who = await hiter(request, write=True)
        body = await read_body(request)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _Refused(415, "send the answer as application/json")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _Refused(422, "the body is not valid JSON") from None
        if not isinstance(data, dict) or set(data) != {"label"} or not isinstance(data["label"], str):
            raise _Refused(422, 'expected {"label": "<one of the labels>"}')
        if data["label"] not in classes:
            raise _Refused(422, f"label {data['label'][:64]!r} is not in the label set")
        done = await run_in_threadpool(queue.submit, who.worker, request.path_params["task"], classes.index(data["label"]))
        return JSONResponse({"recorded": True, "task": done["item"], "label": classes[done["label"]],
                             "seconds": round(done["seconds"], 3)})

    async def progress(request: Request) -> Response:
        who = await identify(request)
        if who is None:
            raise _Refused(401, "sign in with the admin token")
        if who.role != "admin":
            raise _Refused(403, "the progress page is for the project's admin")
        return JSONResponse(await run_in_threadpool(queue.progress))

    async def refused(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    async def task_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def invalid(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=422)

    async def hitl_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [
        Route("/", index),
        Route("/favicon.ico", favicon),
        Route("/signin", signin, methods=["GET", "POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/admin", admin),
        Route("/api/me", me),
        Route("/api/next", next_task, methods=["POST"]),
        Route("/api/tasks/{task:int}", get_task),
        Route("/api/tasks/{task:int}/content", content),
        Route("/api/tasks/{task:int}/answer", answer, methods=["POST"]),
        Route("/api/progress", progress),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={_Refused: refused, TaskError: task_error, ValidationError: invalid, HitlError: hitl_error},
    )
    app.state.queue = queue
    return _SecurityHeaders(app)
