"""The delivery promise end to end: real daphne processes, a real prefork worker, Redis as channel
layer and broker, PostgreSQL, and clients on the ``websockets`` library.

Each subscription receives each version of its task once, in order, with no gaps: with many
clients, when the channel layer drops messages, across two servers, after a reconnect with
``since``, and when the final message never comes through the layer at all.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any
from uuid import uuid4

import pytest
import redis

from realtime import tasks
from taskstore import addressing
from taskstore.models import TaskRecord
from taskstore.publisher import publisher
from taskstore.recorder import Transition, record
from taskstore.tokens import make_token
from tests.live.client import off_loop, websocket
from tests.support.processes import ManagedProcess, celery_worker, daphne, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

# progress(50, 0): PENDING, RECEIVED, STARTED, 50 x PROGRESS, SUCCESS.
PROGRESS_50_VERSIONS = 54
SMALL_LAYER_QUEUE = "small-layer"


def _server(env: dict[str, str], **extra: str) -> Iterator[tuple[ManagedProcess, int]]:
    proc, port = daphne({**env, **extra})
    yield proc, port
    proc.stop()


@pytest.fixture(scope="module")
def server(service_env: dict[str, str]) -> Iterator[tuple[ManagedProcess, int]]:
    """daphne serving realtime.asgi:application with the default channel layer capacity."""
    yield from _server(service_env)


@pytest.fixture(scope="module")
def second_server(service_env: dict[str, str]) -> Iterator[tuple[ManagedProcess, int]]:
    """Another daphne on another port, sharing the database and Redis."""
    yield from _server(service_env)


@pytest.fixture(scope="module")
def small_layer(service_env: dict[str, str]) -> Iterator[tuple[ManagedProcess, int, ManagedProcess]]:
    """A daphne and a worker (on a queue of its own) whose channel layer holds 5 messages per
    channel. channels-redis checks the capacity where a message is sent, so the worker, which
    sends, needs the small capacity as much as the server."""
    env = {**service_env, "CHANNEL_LAYER_CAPACITY": "5"}
    small_worker = celery_worker(env, 1, "-Q", SMALL_LAYER_QUEUE, "-n", "celery@small-layer.%h")
    proc, port = daphne(env)
    yield proc, port, small_worker
    proc.stop()
    small_worker.stop()


@pytest.fixture(scope="module")
def checking_server(service_env: dict[str, str]) -> Iterator[tuple[ManagedProcess, int]]:
    """A daphne whose periodic subscription check runs every half second."""
    yield from _server(service_env, DJANGO_SETTINGS_MODULE="tests.live.settings")


def recorded_version(task_id: str) -> int:
    return TaskRecord.objects.filter(task_id=task_id).values_list("version", flat=True).first() or 0


def subscribe(task_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "subscribe", "task_id": task_id, "token": make_token(task_id), **extra}


def assert_every_version_once(frames: list[dict[str, Any]], first: int, last: int) -> None:
    assert [f["version"] for f in frames] == list(range(first, last + 1))


async def test_twenty_clients_each_receive_every_version_in_order(
    worker: Any, server: tuple[ManagedProcess, int]
) -> None:
    _, port = server
    task_id = str(uuid4())
    async with AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(websocket(port)) for _ in range(20)]
        early, late = sockets[:10], sockets[10:]
        for socket in early:
            await socket.send(subscribe(task_id))
        for socket in early:
            assert (await socket.receive())["version"] == 0  # nothing recorded yet: PENDING v0
        await off_loop(tasks.progress.apply_async, (50, 0), task_id=task_id)
        # The other ten subscribe while the task runs.
        head = await early[0].until(lambda f: f["version"] >= 10)
        for socket in late:
            await socket.send(subscribe(task_id))
        received = await asyncio.gather(*(s.until_terminal(task_id) for s in sockets))
        received[0] = head + received[0]
    for frames in received[:10]:
        assert_every_version_once(frames, 1, PROGRESS_50_VERSIONS)
    for frames in received[10:]:
        assert frames[0]["version"] >= 10
        assert_every_version_once(frames, frames[0]["version"], PROGRESS_50_VERSIONS)
    for frames in received:
        assert (frames[-1]["state"], frames[-1]["result"]) == ("SUCCESS", 50)


async def test_when_the_layer_drops_messages_the_gaps_are_filled_from_the_database(
    small_layer: tuple[ManagedProcess, int, ManagedProcess],
) -> None:
    proc, port, small_worker = small_layer
    task_id = str(uuid4())
    async with AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(websocket(port)) for _ in range(20)]
        for socket in sockets:
            await socket.send(subscribe(task_id))
        for socket in sockets:
            assert (await socket.receive())["version"] == 0
        # The server stalls (CPU starvation, a long GC pause) while the task runs: its channel
        # fills up and the layer drops what does not fit.
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            await off_loop(tasks.progress.apply_async, (50, 0), task_id=task_id, queue=SMALL_LAYER_QUEUE)
            await off_loop(
                wait_for, lambda: recorded_version(task_id) >= 30, 30, "the task to pass version 30"
            )
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        received = await asyncio.gather(*(s.until_terminal(task_id) for s in sockets))
    for frames in received:
        assert_every_version_once(frames, 1, PROGRESS_50_VERSIONS)
        assert (frames[-1]["state"], frames[-1]["result"]) == ("SUCCESS", 50)
    # The publisher said it dropped messages for this task's subscribers (in channels-redis' words)...
    assert f"channels over capacity in group {addressing.task_group(task_id)}" in small_worker.output()
    # ...and the server read the missing versions from the database.
    log = proc.output()
    assert (
        f"of task {task_id} from the database" in log
        or f"of task {task_id} found by the periodic check" in log
    )


async def test_subscribing_after_the_end_gets_the_final_state_or_every_version_since(
    worker: Any, server: tuple[ManagedProcess, int]
) -> None:
    _, port = server
    task_id = str(uuid4())
    result = await off_loop(tasks.progress.apply_async, (3, 0), task_id=task_id)
    assert await off_loop(result.get, timeout=30) == 3
    async with websocket(port) as socket:
        await socket.send(subscribe(task_id))
        final = await socket.receive()
        assert (final["type"], final["state"], final["version"], final["result"]) == (
            "task.update",
            "SUCCESS",
            7,
            3,
        )
        with pytest.raises(asyncio.TimeoutError):
            await socket.receive(timeout=0.3)
    async with websocket(port) as socket:
        await socket.send(subscribe(task_id, since=2))
        frames = await socket.until_terminal(task_id)
    assert [(f["version"], f["state"]) for f in frames] == [
        (3, "STARTED"),
        (4, "PROGRESS"),
        (5, "PROGRESS"),
        (6, "PROGRESS"),
        (7, "SUCCESS"),
    ]
    assert [f["progress"] for f in frames[1:4]] == [{"current": i, "total": 3} for i in (1, 2, 3)]


async def test_subscribers_on_two_servers_both_receive_every_version(
    worker: Any, server: tuple[ManagedProcess, int], second_server: tuple[ManagedProcess, int]
) -> None:
    task_id = str(uuid4())
    async with websocket(server[1]) as one, websocket(second_server[1]) as two:
        for socket in (one, two):
            await socket.send(subscribe(task_id))
            assert (await socket.receive())["version"] == 0
        await off_loop(tasks.progress.apply_async, (20, 0), task_id=task_id)
        first, second = await asyncio.gather(one.until_terminal(task_id), two.until_terminal(task_id))
    assert_every_version_once(first, 1, 24)
    assert second == first


async def test_a_client_that_reconnects_with_since_misses_and_repeats_nothing(
    worker: Any, server: tuple[ManagedProcess, int]
) -> None:
    _, port = server
    task_id = str(uuid4())
    async with websocket(port) as socket:
        await socket.send(subscribe(task_id))
        await socket.receive()
        await off_loop(tasks.progress.apply_async, (30, 0.03), task_id=task_id)
        before = await socket.until(lambda f: f["version"] >= 8)
        socket.connection.transport.abort()  # the network goes away mid-task
    held = before[-1]["version"]
    async with websocket(port) as socket:
        await socket.send(subscribe(task_id, since=held))
        after = await socket.until_terminal(task_id)
    assert after[0]["version"] == held + 1, "the task ended before the reconnect: nothing was tested"
    assert_every_version_once(before + after, 1, 34)


async def test_versions_the_layer_never_delivered_come_from_the_periodic_check(
    monkeypatch: pytest.MonkeyPatch, checking_server: tuple[ManagedProcess, int]
) -> None:
    proc, port = checking_server
    task_id = str(uuid4())
    # Nothing this process records reaches the channel layer: only the check can deliver it.
    monkeypatch.setattr(publisher, "publish", lambda messages: None)
    async with websocket(port) as socket:
        await socket.send(subscribe(task_id))
        assert (await socket.receive())["version"] == 0
        for state in ("PENDING", "RECEIVED", "STARTED", "SUCCESS"):
            await off_loop(record, Transition(task_id=task_id, state=state, result=7))
        frames = await socket.until_terminal(task_id, timeout=10)
    assert [(f["version"], f["state"]) for f in frames] == [
        (1, "PENDING"),
        (2, "RECEIVED"),
        (3, "STARTED"),
        (4, "SUCCESS"),
    ]
    assert frames[-1]["result"] == 7
    assert f"versions of task {task_id} found by the periodic check" in proc.output()


async def test_a_group_membership_redis_lost_is_restored_by_the_periodic_check(
    redis_url: str, checking_server: tuple[ManagedProcess, int]
) -> None:
    _, port = checking_server
    task_id = str(uuid4())
    key = f"asgi:group:{addressing.task_group(task_id)}"
    connection = redis.Redis.from_url(redis_url)
    async with websocket(port) as socket:
        await socket.send(subscribe(task_id))
        assert (await socket.receive())["version"] == 0
        connection.delete(key)  # as after a Redis restart, or past group_expiry
        await off_loop(wait_for, lambda: connection.zcard(key) == 1, 5, "the membership to come back")
        await off_loop(record, Transition(task_id=task_id, state="PENDING"))
        frame = await socket.receive(timeout=5)
    assert (frame["version"], frame["state"]) == (1, "PENDING")
