"""Refusing WebSocket handshakes from foreign pages (cross-site WebSocket hijacking).

Browsers always send ``Origin`` on a WebSocket handshake and attach the site's cookies, so a
foreign page could otherwise open a socket with the visitor's session. A handshake whose
``Origin`` names a host outside ``ALLOWED_HOSTS`` is refused before it is accepted (daphne
answers HTTP 403). A handshake with no ``Origin`` comes from a non-browser client, which has
no visitor's cookies to abuse, and is let through: Channels' AllowedHostsOriginValidator
refuses those, which is why this module exists.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import markcoroutinefunction
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import validate_host

logger = logging.getLogger(__name__)

# What Django itself allows when DEBUG is on and ALLOWED_HOSTS is empty.
DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]


def allowed_hosts() -> list[str]:
    """ALLOWED_HOSTS as Django applies it, read now so settings overrides apply."""
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        return DEBUG_HOSTS
    return hosts


def origin_allowed(origin: str) -> bool:
    """Whether the ``Origin`` header value names a host in ALLOWED_HOSTS."""
    try:
        parts = urlsplit(origin.strip())
        host = parts.hostname
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        return False
    if not host or parts.scheme not in ("http", "https"):
        # "null" (sandboxed frames, file: pages) and other schemes name no host of ours.
        return False
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal, written as in ALLOWED_HOSTS
    return validate_host(host, allowed_hosts())


class OriginValidator:
    """ASGI middleware: refuse a WebSocket whose ``Origin`` is foreign; allow none at all."""

    # Not ``async def``: it returns the wrapped application's coroutine for the server to await,
    # so no frame of its own stays alive for as long as each socket is open. Marked as a
    # coroutine function all the same: uvicorn tells ASGI 3 from ASGI 2 by that.
    _asgi_single_callable = True

    def __init__(self, app: Any) -> None:
        self.app = app

    @markcoroutinefunction
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        if scope["type"] == "websocket":
            origin = header(scope, b"origin")
            if origin is not None and not origin_allowed(origin):
                logger.info("Refused a WebSocket handshake from Origin %r", origin)
                return WebsocketDenier()(scope, receive, send)
        return self.app(scope, receive, send)


def header(scope: dict[str, Any], name: bytes) -> str | None:
    """The value of header ``name`` (lower case) in an ASGI scope, or None."""
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None
