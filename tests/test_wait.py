"""``await taskstore.wait(task_id)``: resolves with the terminal document by listening on the
channel layer (Redis), at once for a finished task, and raises TimeoutError."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import uuid4

import pytest

import taskstore
from realtime import tasks
from taskstore import waiting
from taskstore.recorder import Transition, record
from tests.live.client import off_loop

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]


@pytest.mark.slow
async def test_wait_resolves_when_a_task_finishes_later(worker: Any) -> None:
    result = await off_loop(tasks.sleep.apply_async, (0.5, "done"))
    document = await taskstore.wait(result.id, timeout=30)
    assert (document["task_id"], document["state"], document["result"]) == (result.id, "SUCCESS", "done")
    assert document["version"] == 4
    assert "owner_id" not in document


@pytest.mark.slow
async def test_wait_resolves_with_a_failure(worker: Any) -> None:
    result = await off_loop(tasks.fail.apply_async, ("boom",))
    document = await taskstore.wait(result.id, timeout=30)
    assert (document["state"], document["error"]) == ("FAILURE", {"type": "ValueError", "message": "boom"})
    assert "ValueError: boom" in document["traceback"]


@pytest.mark.slow
async def test_wait_resolves_at_once_for_a_finished_task(worker: Any) -> None:
    result = await off_loop(tasks.add.apply_async, (2, 3))
    assert await off_loop(result.get, timeout=30) == 5
    started = time.monotonic()
    document = await taskstore.wait(result.id, timeout=5)
    assert time.monotonic() - started < 1
    assert (document["state"], document["result"]) == ("SUCCESS", 5)


async def test_wait_hears_the_channel_layer_rather_than_polling(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.TASKSTORE_RECONCILE_INTERVAL = 60  # a database re-read would take a minute
    task_id = str(uuid4())
    read_once = asyncio.Event()
    real_read = waiting._terminal_document

    async def read_then_tell(task_id: str) -> Any:
        document = await real_read(task_id)
        read_once.set()
        return document

    monkeypatch.setattr(waiting, "_terminal_document", read_then_tell)
    waiter = asyncio.create_task(taskstore.wait(task_id, timeout=30))
    await asyncio.wait_for(read_once.wait(), 10)
    for state in ("PENDING", "STARTED", "SUCCESS"):
        await off_loop(record, Transition(task_id=task_id, state=state, result=42))
    recorded = time.monotonic()
    document = await asyncio.wait_for(waiter, 10)
    assert time.monotonic() - recorded < 2
    assert (document["state"], document["version"], document["result"]) == ("SUCCESS", 3, 42)


async def test_wait_raises_timeout_error() -> None:
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await taskstore.wait(str(uuid4()), timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2
