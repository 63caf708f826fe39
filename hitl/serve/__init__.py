"""``hitl serve``: the web app where HITers label the tasks of a project store.

:func:`create_app` builds the ASGI app (Starlette); ``hitl serve PROJECT.db`` runs it
with uvicorn, bound to 127.0.0.1 unless told otherwise. Starlette and uvicorn come
with the ``serve`` extra (``pip install 'hitl[serve]'``); importing this package
does not need them, only building the app does.
"""

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
