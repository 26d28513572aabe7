"""Bad input and limits over a real daphne with the default settings: every bad frame gets its
answer and the socket keeps serving; oversize frames and floods close it with their codes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from django.contrib.auth.models import User
from websockets.exceptions import ConnectionClosed

from realtime import tasks
from taskstore.tokens import make_token
from tests.live.client import http, off_loop, session_cookie, websocket
from tests.support.markers import REAL_SERVICES
from tests.support.processes import daphne

pytestmark = REAL_SERVICES


@pytest.fixture(scope="module")
def port(service_env: dict[str, str]) -> Iterator[int]:
    proc, port = daphne(service_env)
    yield port
    proc.stop()


@pytest.fixture
def staff_cookie() -> str:
    return session_cookie(User.objects.create_user("staff", is_staff=True))


BAD_FRAMES = [
    ("not JSON", "{type: ping"),
    ("a JSON array", "[]"),
    ("no type", json.dumps({"task_id": "t"})),
    ("an unknown type", json.dumps({"type": "publish", "task_id": "t"})),
    ("no id", json.dumps({"type": "subscribe"})),
    ("two ids", json.dumps({"type": "subscribe", "task_id": "t", "group_id": "g"})),
    ("an empty id", json.dumps({"type": "subscribe", "task_id": ""})),
    ("a numeric id", json.dumps({"type": "subscribe", "task_id": 7})),
    ("an id with a newline", json.dumps({"type": "subscribe", "task_id": "a\nb"})),
    ("an id too long", json.dumps({"type": "subscribe", "task_id": "x" * 300})),
    ("since as a string", json.dumps({"type": "subscribe", "task_id": "t", "since": "2"})),
    ("since as a float", json.dumps({"type": "subscribe", "task_id": "t", "since": 2.5})),
    ("since negative", json.dumps({"type": "subscribe", "task_id": "t", "since": -3})),
    ("a token that is not a string", json.dumps({"type": "subscribe", "task_id": "t", "token": ["x"]})),
]


async def test_every_bad_frame_gets_bad_request_and_the_socket_keeps_serving(port: int) -> None:
    task_id = str(uuid4())
    async with websocket(port) as socket:
        for what, frame in BAD_FRAMES:
            await socket.send(frame)
            answer = await socket.receive()
            assert (answer["type"], answer["code"]) == ("error", "bad_request"), what
            assert isinstance(answer["detail"], str) and answer["detail"], what
        await socket.connection.send(b'{"type": "ping"}')  # binary
        assert (await socket.receive())["code"] == "bad_request"
        # Still a working socket: a real subscription after all that.
        await socket.send({"type": "subscribe", "task_id": task_id, "token": make_token(task_id)})
        assert (await socket.receive())["version"] == 0
        await socket.still_serving()


async def test_a_frame_over_16_kib_closes_with_4413(port: int) -> None:
    async with websocket(port) as socket:
        await socket.send({"type": "ping", "padding": "x" * (16 * 1024)})
        with pytest.raises(ConnectionClosed) as closed:
            await socket.receive()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4413


async def test_subscription_201_gets_too_many_subscriptions(port: int, staff_cookie: str) -> None:
    async with websocket(port, cookie=staff_cookie) as socket:
        for i in range(200):
            await socket.send({"type": "subscribe", "task_id": f"unknown-{i}"})
            if i >= 90:
                await asyncio.sleep(1 / 45)  # keep under the rate limit (50 a second after a burst of 100)
        answers = [await socket.receive() for _ in range(200)]
        assert {(a["type"], a["version"]) for a in answers} == {("task.update", 0)}
        await socket.send({"type": "subscribe", "group_id": "one-too-many"})
        refused = await socket.receive()
        assert (refused["code"], refused["group_id"]) == ("too_many_subscriptions", "one-too-many")
        await socket.send({"type": "unsubscribe", "task_id": "unknown-0"})
        await socket.send({"type": "subscribe", "group_id": "one-too-many"})
        assert (await socket.receive())["type"] == "group.update"


async def test_flooding_gets_rate_limited_then_closed_with_4429(port: int) -> None:
    answers: list[str] = []
    async with websocket(port) as socket:

        async def flood() -> None:
            with contextlib.suppress(ConnectionClosed):
                for _ in range(1000):
                    await socket.send({"type": "ping"})

        sender = asyncio.create_task(flood())
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frame = await socket.receive()
                answers.append(frame.get("code", frame["type"]))
        await sender
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    assert answers[:100] == ["pong"] * 100  # the burst
    assert "rate_limited" in answers
    assert set(answers) == {"pong", "rate_limited"}


async def test_a_result_over_the_push_limit_arrives_truncated_and_whole_over_rest(
    worker: Any, port: int
) -> None:
    big = "x" * (70 * 1024)
    task_id = str(uuid4())
    token = make_token(task_id)
    async with websocket(port) as socket:
        await socket.send({"type": "subscribe", "task_id": task_id, "token": token})
        await socket.receive()
        await off_loop(tasks.sleep.apply_async, (0, big), task_id=task_id)
        final = (await socket.until_terminal(task_id))[-1]
    assert (final["state"], final["result"], final["result_truncated"]) == ("SUCCESS", None, True)
    status, body = await off_loop(http, port, "GET", f"/api/tasks/{task_id}/?token={token}")
    assert (status, body["result"], body["result_truncated"]) == (200, big, False)
