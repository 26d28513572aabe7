"""ASGI pieces a project wraps its application in (docs/install.md).

* :class:`OriginValidator` refuses WebSocket handshakes from foreign pages (taskstore.origin);
* :class:`SessionAuthMiddleware` puts the session's user on WebSocket scopes, as Channels'
  ``AuthMiddlewareStack`` does, keeping one copy of the scope per socket instead of four
  (taskstore.session_auth);
* :class:`BindPublisherLoop` tells the publisher which event loop the server runs, and starts
  the process's operations monitor (taskstore.operations.monitor) with the first request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from asgiref.sync import markcoroutinefunction

from taskstore.origin import OriginValidator
from taskstore.publisher import publisher
from taskstore.session_auth import SessionAuthMiddleware

__all__ = ["BindPublisherLoop", "OriginValidator", "SessionAuthMiddleware"]


class BindPublisherLoop:
    """Wraps an ASGI app so the publisher sends from the server's event loop.

    An in-memory channel layer only works from the loop its consumers run on, and with Redis
    it saves a second connection pool per process.
    """

    # Not ``async def``: it returns the wrapped application's coroutine for the server to await,
    # so no frame of its own stays alive for as long as each socket is open. Marked as a
    # coroutine function all the same: uvicorn tells ASGI 3 from ASGI 2 by that.
    _asgi_single_callable = True

    def __init__(self, app: Any) -> None:
        self.app = app
        self._bound: asyncio.AbstractEventLoop | None = None

    @markcoroutinefunction
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        loop = asyncio.get_running_loop()
        if loop is not self._bound:
            publisher.bind_loop(loop)
            self._bound = loop
            from taskstore.operations import monitor

            monitor.start()
        return self.app(scope, receive, send)
