"""Real clients for a real daphne: a WebSocket client (the ``websockets`` library) and JSON over HTTP."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect

from taskstore import compat

T = TypeVar("T")
TERMINAL = {"SUCCESS", "FAILURE", "REVOKED", "REJECTED"}
# What a server pushes unasked (docs/protocol.md): a staff feed carries the operations frames too.
PUSHES = {"task.update", "group.update", "worker.update", "queue.update", "action.recorded"}


class Socket:
    """One WebSocket connection, reading JSON frames."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send(self, frame: dict[str, Any] | str) -> None:
        """Send a frame (a dict as JSON, a str as it is)."""
        await self.connection.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        """The next frame."""
        return json.loads(await asyncio.wait_for(self.connection.recv(), timeout))

    async def until(
        self, done: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> list[dict[str, Any]]:
        """Frames up to and including the first that satisfies ``done``."""
        frames = []
        async with compat.timeout(timeout):
            while True:
                frames.append(await self.receive(timeout=timeout))
                if done(frames[-1]):
                    return frames

    async def until_terminal(self, task_id: str, timeout: float = 30) -> list[dict[str, Any]]:
        """The task's updates up to its terminal state (frames of other tasks are skipped)."""
        frames = await self.until(
            lambda f: (
                f.get("task_id") == task_id and f.get("type") == "task.update" and f["state"] in TERMINAL
            ),
            timeout,
        )
        return [f for f in frames if f.get("task_id") == task_id and f.get("type") == "task.update"]

    async def still_serving(self, pushes_may_come_first: bool = False) -> None:
        """Assert the socket answers a ping (after any pushes, when they may come first: a staff
        feed open while tasks run, workers come online or queues are sampled)."""
        await self.send({"type": "ping"})
        frame = await self.receive()
        while pushes_may_come_first and frame.get("type") in PUSHES:
            frame = await self.receive()
        assert frame == {"type": "pong"}


@asynccontextmanager
async def websocket(
    port: int, path: str = "/ws/tasks/", cookie: str | None = None, origin: str | None = None
) -> AsyncIterator[Socket]:
    """A WebSocket to daphne on ``port``; ``cookie`` is a session id, ``origin`` an Origin header."""
    headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"} if cookie else {}
    async with connect(
        f"ws://127.0.0.1:{port}{path}",
        origin=origin,  # type: ignore[arg-type]
        additional_headers=headers,
        proxy=None,
        open_timeout=10,
        max_size=2**22,
    ) as ws:
        yield Socket(ws)


def session_cookie(user: Any) -> str:
    """A session id for ``user``, saved in the database daphne reads."""
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def http(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """``(status, JSON body)`` of one request to daphne."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if cookies:
        request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


async def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking code (the ORM, sending a task) in a thread, closing its connection after."""

    def call() -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return await asyncio.to_thread(call)
