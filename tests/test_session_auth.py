"""SessionAuthMiddleware: the scope a socket's application sees, as Channels' AuthMiddlewareStack
would give it, from one scope copy. The live tests (test_live_access, test_session_end) run the
example project's daphne with it; these check each case on its own."""

from __future__ import annotations

from typing import Any

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async as sync
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from taskstore.asgi import SessionAuthMiddleware
from tests.live.client import session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


class ScopeRecorder:
    """An application that keeps the scope it was called with and accepts (or answers)."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        await receive()
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            await receive()
        else:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})


async def handshake(app: Any, cookie: str | None, **scope: Any) -> None:
    headers = [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode())] if cookie else []
    communicator = WebsocketCommunicator(app, "/ws/", headers=headers)
    communicator.scope.update(scope)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()


def user(name: str, **extra: Any) -> Any:
    return get_user_model().objects.create_user(name, f"{name}@example.com", "pw", **extra)


async def test_a_logged_in_session_gives_its_user_and_session() -> None:
    alice = await sync(user)("alice")
    cookie = await sync(session_cookie)(alice)
    recorder = ScopeRecorder()
    await handshake(SessionAuthMiddleware(recorder), cookie)
    assert recorder.scope["user"].pk == alice.pk
    assert recorder.scope["session"].session_key == cookie
    assert recorder.scope["cookies"] == {settings.SESSION_COOKIE_NAME: cookie}


async def test_no_cookie_an_unknown_session_or_a_changed_password_is_anonymous() -> None:
    recorder = ScopeRecorder()
    app = SessionAuthMiddleware(recorder)
    await handshake(app, None)
    assert isinstance(recorder.scope["user"], AnonymousUser) and recorder.scope["cookies"] == {}
    await handshake(app, "no-such-session-key")
    assert isinstance(recorder.scope["user"], AnonymousUser)

    bob = await sync(user)("bob")
    cookie = await sync(session_cookie)(bob)
    bob.set_password("changed")
    await sync(bob.save)()
    await handshake(app, cookie)
    assert isinstance(recorder.scope["user"], AnonymousUser)


async def test_it_fills_the_same_keys_as_channels_stack() -> None:
    carol = await sync(user)("carol", is_staff=True)
    cookie = await sync(session_cookie)(carol)
    ours, theirs = ScopeRecorder(), ScopeRecorder()
    await handshake(SessionAuthMiddleware(ours), cookie)
    await handshake(AuthMiddlewareStack(theirs), cookie)
    assert ours.scope.keys() == theirs.scope.keys()
    assert ours.scope["user"].pk == theirs.scope["user"].pk == carol.pk
    assert ours.scope["session"].session_key == theirs.scope["session"].session_key


async def test_a_user_an_outer_middleware_set_is_kept() -> None:
    dave = await sync(user)("dave")
    recorder = ScopeRecorder()
    await handshake(SessionAuthMiddleware(recorder), None, user=dave)
    assert recorder.scope["user"] is dave


async def test_http_goes_through_channels_stack() -> None:
    recorder = ScopeRecorder()
    response = await HttpCommunicator(SessionAuthMiddleware(recorder), "GET", "/").get_response()
    assert response["status"] == 204
    assert isinstance(recorder.scope["user"]._wrapped, AnonymousUser)  # Channels' lazy user
