"""Fan-out per server process, end to end: real daphne processes, Redis, PostgreSQL, and clients
on the ``websockets`` library; transitions recorded by this process through the recorder.

A server joins a task's channel-layer group once however many of its sockets follow the task,
and every socket still receives every version once, in order: across two servers, on both
channels-redis layers, when the layer loses messages, and when one client stops reading (it is
closed at its send buffer's limit and resumes with ``since``).
"""

from __future__ import annotations

import asyncio
import json
import socket as sockets
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any
from uuid import uuid4

import pytest
import redis
from channels.layers import channel_layers
from django.test import override_settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from taskstore import addressing
from taskstore.consumers import codes
from taskstore.layers import redis_channel_layer, redis_pubsub_channel_layer
from taskstore.publisher import publisher
from taskstore.recorder import Transition, record
from taskstore.tokens import make_token
from tests.live.client import off_loop, websocket
from tests.support.processes import ManagedProcess, daphne, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

LAYERS = {"core": redis_channel_layer, "pubsub": redis_pubsub_channel_layer}


@pytest.fixture(scope="module", params=["core", "pubsub"])
def two_servers(
    request: pytest.FixtureRequest, service_env: dict[str, str]
) -> Iterator[tuple[str, int, int]]:
    """Two daphne processes on the same channel layer (core or pubsub): ``(layer, port, port)``."""
    env = {**service_env, "CHANNEL_LAYER": request.param}
    first, one = daphne(env)
    second, two = daphne(env)
    yield request.param, one, two
    first.stop()
    second.stop()


@pytest.fixture(scope="module")
def buffer_server(service_env: dict[str, str]) -> Iterator[tuple[ManagedProcess, int]]:
    """A daphne whose sockets may hold 32 KiB unsent (tests.live.buffer_settings)."""
    proc, port = daphne({**service_env, "DJANGO_SETTINGS_MODULE": "tests.live.buffer_settings"})
    yield proc, port
    proc.stop()


@pytest.fixture
def publishing_on(redis_url: str) -> Iterator[Any]:
    """Switch this process's channel layer (which the recorder publishes to) to core or pubsub."""
    overrides: list[Any] = []

    def use(layer: str) -> None:
        publisher.flush()
        override = override_settings(CHANNEL_LAYERS={"default": LAYERS[layer](redis_url)})
        override.enable()
        overrides.append(override)
        channel_layers.backends.clear()

    yield use
    publisher.flush()
    for override in overrides:
        override.disable()
    channel_layers.backends.clear()


def subscribe(task_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "subscribe", "task_id": task_id, "token": make_token(task_id), **extra}


def progress(task_id: str, steps: int, pad: int = 0) -> list[Transition]:
    """A task's transitions: PENDING, RECEIVED, STARTED, ``steps`` x PROGRESS, SUCCESS."""
    return [
        Transition(task_id=task_id, state="PENDING"),
        Transition(task_id=task_id, state="RECEIVED"),
        Transition(task_id=task_id, state="STARTED"),
        *(
            Transition(task_id=task_id, state="PROGRESS", progress={"current": i, "pad": "x" * pad})
            for i in range(1, steps + 1)
        ),
        Transition(task_id=task_id, state="SUCCESS", result=steps),
    ]


def record_all(transitions: list[Transition]) -> None:
    for transition in transitions:
        assert record(transition) is not None


def processes_in_group(connection: redis.Redis, layer: str, group: str) -> int:
    """How many channels (processes, with fan-out per process) the layer has in ``group``."""
    if layer == "core":
        return int(connection.zcard(f"asgi:group:{group}"))
    ((_, count),) = connection.pubsub_numsub(f"asgi__group__{group}")
    return int(count)


async def test_200_sockets_on_two_servers_each_receive_every_version_in_order_with_one_membership_each(
    redis_url: str, two_servers: tuple[str, int, int], publishing_on: Any
) -> None:
    layer, one, two = two_servers
    publishing_on(layer)
    task_id = str(uuid4())
    transitions = progress(task_id, 30)
    connection = redis.Redis.from_url(redis_url)
    async with AsyncExitStack() as stack:
        followers = [
            await stack.enter_async_context(websocket(port)) for port in (one, two) for _ in range(100)
        ]
        for follower in followers:
            await follower.send(subscribe(task_id))
        for follower in followers:
            assert (await follower.receive())["version"] == 0
        # One membership per server process, not one per socket.
        assert processes_in_group(connection, layer, addressing.task_group(task_id)) == 2
        await off_loop(record_all, transitions)
        received = await asyncio.gather(*(f.until_terminal(task_id) for f in followers))
    for frames in received:
        assert [f["version"] for f in frames] == list(range(1, len(transitions) + 1))
    assert received[0][-1]["result"] == 30


async def test_when_the_layer_loses_messages_every_socket_still_gets_every_version(
    monkeypatch: pytest.MonkeyPatch, two_servers: tuple[str, int, int], publishing_on: Any
) -> None:
    layer, one, two = two_servers
    publishing_on(layer)
    task_id = str(uuid4())
    transitions = progress(task_id, 12)
    real_publish = publisher.publish
    # Lost on the way: some versions in the middle, and the last one (only the periodic check,
    # every 5 s here, can deliver it).
    lost = {2, 5, 6, 9, len(transitions)}

    def lossy(messages: Any) -> None:
        real_publish([m for m in messages if m[1].get("document", {}).get("version") not in lost])

    monkeypatch.setattr(publisher, "publish", lossy)
    async with AsyncExitStack() as stack:
        followers = [
            await stack.enter_async_context(websocket(port)) for port in (one, two) for _ in range(20)
        ]
        for follower in followers:
            await follower.send(subscribe(task_id))
        for follower in followers:
            assert (await follower.receive())["version"] == 0
        await off_loop(record_all, transitions)
        received = await asyncio.gather(*(f.until_terminal(task_id, timeout=30) for f in followers))
    for frames in received:
        assert [f["version"] for f in frames] == list(range(1, len(transitions) + 1))


async def stalled_socket(port: int) -> Any:
    """A client that will stop reading: a tiny receive buffer, and at most one frame queued."""
    raw = sockets.socket()
    raw.setsockopt(sockets.SOL_SOCKET, sockets.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", port))
    return await connect(
        f"ws://127.0.0.1:{port}/ws/tasks/", sock=raw, proxy=None, max_queue=1, max_size=2**22
    )


async def test_a_client_that_stops_reading_is_closed_at_its_limit_and_resumes_with_since(
    buffer_server: tuple[ManagedProcess, int],
) -> None:
    proc, port = buffer_server
    task_id = str(uuid4())
    # About 8 MB of frames: far past the 32 KiB limit and what the kernel buffers (its send
    # buffer for one socket grows to 4 MiB on Linux by default, tcp_wmem).
    transitions = progress(task_id, 1000, pad=8000)
    stalled = await stalled_socket(port)
    async with websocket(port) as reader:
        await stalled.send(json.dumps(subscribe(task_id)))
        await reader.send(subscribe(task_id))
        assert (await reader.receive())["version"] == 0
        recording = asyncio.ensure_future(off_loop(record_all, transitions))
        # The reading client keeps up while the other one reads nothing.
        frames = await reader.until_terminal(task_id, timeout=120)
        await recording
    assert [f["version"] for f in frames] == list(range(1, len(transitions) + 1))
    await off_loop(
        wait_for, lambda: "client stopped reading" in proc.output(), 30, "the slow socket to be closed"
    )

    # The stalled client reads again: what the kernel held, then the end of the connection. The
    # close frame (4408) waits behind the frames the client did not read, so a client that stays
    # stalled past the close handshake's timeout sees the connection drop instead.
    before = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frame = json.loads(await asyncio.wait_for(stalled.recv(), 30))
            if frame.get("type") == "task.update" and frame["version"] > 0:
                before.append(frame)
    if closed.value.rcvd is not None:
        assert closed.value.rcvd.code == codes.CLOSE_TOO_SLOW
    held = before[-1]["version"]
    assert held < len(transitions), "the client was not cut short: nothing was tested"
    async with websocket(port) as resumed:
        await resumed.send(subscribe(task_id, since=held))
        after = await resumed.until_terminal(task_id, timeout=60)
    assert [f["version"] for f in before + after] == list(range(1, len(transitions) + 1))
