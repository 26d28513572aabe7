"""The session's user on a WebSocket, in one step instead of Channels' three.

Channels' ``AuthMiddlewareStack`` is three middlewares (cookies, session, auth), and with
``BaseMiddleware`` four coroutines: each copies the scope and keeps its frame for as long as the
socket is open, and the session one wraps ``send`` to save a modified session on HTTP responses,
which a WebSocket never sends. On a server holding thousands of idle sockets that is about 3 KiB
a socket (docs/benchmarks.md, "Where the memory per socket goes").

:class:`SessionAuthMiddleware` fills the same scope keys, with the same functions, from one
copy of the scope and one frame: ``cookies`` (Django's ``parse_cookie``), ``session`` (the
configured ``SESSION_ENGINE``'s store for the session cookie) and ``user`` (Channels'
``get_user``, which checks the session's auth hash as Django's does). Any other scope type
(HTTP routed through Channels) goes through ``AuthMiddlewareStack`` itself, which saves
sessions on responses.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.auth import AuthMiddlewareStack, get_user
from django.conf import settings
from django.http.cookie import parse_cookie

__all__ = ["SessionAuthMiddleware"]


class SessionAuthMiddleware:
    """Wraps an ASGI application so WebSocket scopes carry ``cookies``, ``session`` and ``user``,
    as under Channels' ``AuthMiddlewareStack``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.stack = AuthMiddlewareStack(inner)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        """Resolve the handshake's session and user, then run the application.

        Keys an outer middleware already set (a ``user`` from a token, say) are kept.
        """
        if scope["type"] != "websocket":
            return await self.stack(scope, receive, send)
        scope = dict(scope)
        if "cookies" not in scope:
            scope["cookies"] = cookies_of(scope)
        if "session" not in scope:
            store = import_module(settings.SESSION_ENGINE).SessionStore
            scope["session"] = store(scope["cookies"].get(settings.SESSION_COOKIE_NAME))
        if "user" not in scope:
            scope["user"] = await get_user(scope)
        return await self.inner(scope, receive, send)


def cookies_of(scope: dict[str, Any]) -> dict[str, str]:
    """The cookies of a handshake's ``Cookie`` header (none without one)."""
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            return parse_cookie(value.decode("latin1"))
    return {}
