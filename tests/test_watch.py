"""The periodic check of task subscriptions runs once per task and process, not per socket
(taskstore.consumers.watch), and still delivers what the layer lost to every socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any
from uuid import uuid4

import pytest
from django.contrib.auth.models import User

from taskstore.consumers import queries, watch
from tests.test_ws_protocol import (
    frames_until,
    losing_its_end,
    memory_layer,
    record_async,
    socket,
    staff,
    transitions,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

__all__ = ["memory_layer", "staff"]  # fixtures used here

SOCKETS = 20


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait, without blocking the event loop, until ``check()`` holds; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_one_version_query_per_round_fills_every_socket_the_layer_left_behind(
    monkeypatch: pytest.MonkeyPatch, settings: Any, staff: User
) -> None:
    task_id, steps = losing_its_end(monkeypatch, settings)
    asked: list[set[str]] = []
    real_fetch = queries.fetch_versions

    async def counted_fetch(task_ids: set[str]) -> dict[str, int]:
        asked.append(set(task_ids))
        return await real_fetch(task_ids)

    monkeypatch.setattr(queries, "fetch_versions", counted_fetch)
    checks = watch.of_loop(watch.TaskWatch)
    async with AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(socket(staff)) for _ in range(SOCKETS)]
        for ws in sockets:
            await ws.send_json_to({"type": "subscribe", "task_id": task_id})
            assert (await ws.receive_json_from())["version"] == 0
        rounds_before = checks.rounds
        for step in steps:
            await record_async(step)
        received = await asyncio.gather(
            *(frames_until(ws, lambda f: f["state"] == "SUCCESS", timeout=5) for ws in sockets)
        )
        rounds = checks.rounds - rounds_before
    assert all([f["version"] for f in frames] == [1, 2, 3, 4, 5] for frames in received)
    # Every socket was filled, yet each round asked the database once for the task, where a
    # check per socket would have asked once per socket and interval.
    assert rounds >= 2
    assert all(ids == {task_id} for ids in asked)
    assert len(asked) <= rounds + 1
    # Closed sockets are no longer followed: nothing is left to check.
    await until(lambda: task_id not in checks.followers, 2, "the closed sockets to be unfollowed")


async def test_a_finished_or_unsubscribed_stream_is_no_longer_checked(settings: Any, staff: User) -> None:
    settings.TASKSTORE_RECONCILE_INTERVAL = 0.1
    running, finishing = str(uuid4()), str(uuid4())
    for step in transitions(finishing, steps=1)[:-1]:
        await record_async(step)
    checks = watch.of_loop(watch.TaskWatch)
    async with socket(staff) as ws:
        for task_id in (running, finishing):
            await ws.send_json_to({"type": "subscribe", "task_id": task_id})
            await ws.receive_json_from()
        assert {running, finishing} <= set(checks.followers)
        await record_async(transitions(finishing, steps=1)[-1])
        await frames_until(ws, lambda f: f["state"] == "SUCCESS")
        # The socket's own check leaves a finished task's group and stops its checks.
        await until(lambda: finishing not in checks.followers, 2, "the finished task to be unfollowed")
        await ws.send_json_to({"type": "unsubscribe", "task_id": running})
        await until(lambda: running not in checks.followers, 2, "the unsubscribed task to be unfollowed")
