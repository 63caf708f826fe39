"""``hitl serve PROJECT.db``: run the web app for HITers on a project store."""

from __future__ import annotations

import argparse
import csv
import ipaddress
import os
import stat
import sys
from pathlib import Path

from ..errors import ConfigError, StoreError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the labeling web app for HITers on a project store",
        description="Serve the web app where HITers sign in with their token and label the tasks a "
                    "HumanWorkforce posted to PROJECT.db. Binds to 127.0.0.1 unless --host says otherwise.",
    )
    p.add_argument("store", metavar="PROJECT.db", help="the project's store (SQLite file)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--issue-tokens", metavar="FILE", default=None,
                   help="first write a sign-in token for every registered HITer who has none, and one admin "
                        "token, to FILE (CSV: hiter,token; readable by you only); tokens are stored hashed")
    p.add_argument("--secure-cookie", action="store_true", help="mark the sign-in cookie Secure (behind HTTPS)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.store)
    if not path.is_file():
        raise StoreError("does not exist", item=str(path), field="store", expected="a project store made by a LabelingProject")
    if not 0 < args.port < 65536:
        raise ConfigError(f"is {args.port}", field="--port", expected="a port in 1..65535")
    try:
        import uvicorn

        from .app import create_app
    except ModuleNotFoundError as exc:
        raise ConfigError(f"needs {exc.name}", field="serve", expected="pip install 'hitl[serve]'") from None
    if args.issue_tokens:
        n = write_tokens(path, Path(args.issue_tokens))
        print(f"hitl serve: wrote {n} new token(s) to {args.issue_tokens}")
    app = create_app(path, secure_cookie=args.secure_cookie)
    if not _is_loopback(args.host):
        print(f"hitl serve: listening on {args.host}, reachable from other machines; put HTTPS in front of it "
              "and use --secure-cookie", file=sys.stderr)
    print(f"hitl serve: http://{args.host}:{args.port}/  (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def write_tokens(store_path: Path, out: Path) -> int:
    """Issue a token for each registered HITer without one (and an admin token if none); append them to ``out``.

    The file is written (mode 0600, synced to disk) before any token is stored, so a file that
    cannot be written leaves nobody with a token only its digest knows.

    Parameters
    ----------
    store_path : Path
        The project's store.
    out : Path
        CSV file ``hiter,token`` (created, or appended to).

    Returns
    -------
    int : how many tokens were issued

    Raises
    ------
    ConfigError
        ``out`` cannot be written; no token is stored then.
    """
    from ..queue import TaskQueue

    q = TaskQueue(store_path)
    try:
        db = q.store._db
        without = [r[0] for r in db.execute(
            "SELECT w.id FROM workers w WHERE NOT EXISTS "
            "(SELECT 1 FROM hq_tokens t WHERE t.worker = w.idx AND t.revoked_at IS NULL) ORDER BY w.idx")]
        minted = [(h, *q.mint_token(h)) for h in without]
        if db.execute("SELECT 1 FROM hq_tokens WHERE role = 'admin' AND revoked_at IS NULL").fetchone() is None:
            minted.append(("admin", *q.mint_token(admin=True)))
        if not minted:
            return 0
        _append_private(out, [(h, token) for h, token, _ in minted])
        return q.commit_tokens([row for _, _, row in minted])
    finally:
        q.close()


def _append_private(out: Path, rows: list[tuple[str, str]]) -> None:
    """Append ``rows`` to the CSV ``out``, readable by its owner only, and sync it to disk."""
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "w", newline="") as f:
            st = os.fstat(fd)
            # O_CREAT's mode only applies to a new file: an old one may be group/world readable.
            if stat.S_IMODE(st.st_mode) != 0o600:
                os.fchmod(fd, 0o600)
            w = csv.writer(f)
            if st.st_size == 0:
                w.writerow(["hiter", "token"])
            w.writerows(rows)
            f.flush()
            os.fsync(fd)
    except OSError as exc:
        raise ConfigError(f"cannot be written ({exc.strerror or exc})", item=str(out), field="--issue-tokens",
                          expected="a file you may create or write") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
