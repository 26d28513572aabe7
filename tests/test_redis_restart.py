"""A Redis restart in the middle of a task loses no state and closes no socket: the worker keeps
recording, its publisher retries, each socket's periodic check reads what the layer cannot
deliver from the database, and every subscriber (task subscriptions and a staff feed) ends with
every version once, in order, through SUCCESS. A ``taskstore.wait`` listening across the
restart returns the final document.

The test runs its own redis-server, so restarting it disturbs nothing else."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
import websockets
from celery import Celery
from django.contrib.auth.models import User

import taskstore
from taskstore import compat
from taskstore.layers import redis_host
from taskstore.models import TaskRecord
from taskstore.tokens import make_token
from tests.live.client import off_loop, session_cookie, websocket
from tests.support.processes import (
    ManagedProcess,
    celery_worker,
    child_env,
    daphne,
    free_port,
    port_open,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

STEPS = 40


def _redis(port: int) -> ManagedProcess:
    args = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no"]  # fmt: skip
    return ManagedProcess(f"redis-{port}", args, {"PATH": "/usr/bin:/bin"}).start(
        ready=lambda: port_open(port)
    )


@pytest.fixture
def private_stack(test_database_url: str) -> Iterator[dict[str, Any]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    redis = _redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    env = child_env(test_database_url, url, DJANGO_SETTINGS_MODULE="tests.live.settings")
    worker = celery_worker(env, 1)
    web, web_port = daphne(env)
    stack = {"redis": redis, "redis_port": port, "url": url, "web": web, "web_port": web_port}
    yield stack
    web.stop()
    worker.stop()
    stack["redis"].stop()


async def _follow(port: int, task_id: str, frames: list[dict[str, Any]]) -> None:
    """Follow the task on one socket, from version 1 to SUCCESS, appending to ``frames``.

    A socket closing on the way fails the test: a layer outage must not close sockets.
    """
    async with (
        compat.timeout(90),
        websockets.connect(f"ws://127.0.0.1:{port}/ws/tasks/", open_timeout=5) as ws,
    ):
        subscribe = {"type": "subscribe", "task_id": task_id, "since": 0, "token": make_token(task_id)}
        await ws.send(json.dumps(subscribe))
        async for raw in ws:
            frame = json.loads(raw)
            assert frame["type"] == "task.update", frame
            frames.append(frame)
            if frame["state"] == "SUCCESS":
                return
    raise AssertionError(f"the socket closed after version {frames[-1]['version'] if frames else 0}")


async def _watch_feed(
    port: int, cookie: str, task_id: str, frames: list[dict[str, Any]], opened: asyncio.Event
) -> None:
    """A staff feed, open before the task is sent, collecting the task's updates to its end."""
    async with websocket(port, "/ws/feed/", cookie=cookie) as feed:
        await feed.still_serving(pushes_may_come_first=True)  # answered once the feed joined its group
        opened.set()
        frames.extend(await feed.until_terminal(task_id, timeout=90))


def _version(task_id: str) -> int:
    return TaskRecord.objects.get(task_id=task_id).version


async def test_a_redis_restart_mid_task_keeps_sockets_open_and_loses_nothing(
    private_stack: dict[str, Any], settings: Any
) -> None:
    # taskstore.wait, here in the test process, listens on the same private Redis.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_host(private_stack["url"])]},
        }
    }
    settings.TASKSTORE_RECONCILE_INTERVAL = 0.5
    task_id = str(uuid4())
    staff = await off_loop(lambda: User.objects.create_user("staff", is_staff=True))
    cookie = await off_loop(session_cookie, staff)
    fed: list[dict[str, Any]] = []
    opened = asyncio.Event()
    following = [asyncio.create_task(_watch_feed(private_stack["web_port"], cookie, task_id, fed, opened))]
    await asyncio.wait_for(opened.wait(), 30)
    # Not the current app: later tests must keep sending through the project's app.
    sender = Celery("sender", broker=private_stack["url"], set_as_current=False)
    sender.conf.update(task_serializer="json", accept_content=["json"])
    await off_loop(sender.send_task, "realtime.tasks.progress", args=(STEPS, 0.1), task_id=task_id)

    early: list[dict[str, Any]] = []
    following.append(asyncio.create_task(_follow(private_stack["web_port"], task_id, early)))

    def progressed() -> bool:
        state = TaskRecord.objects.filter(task_id=task_id).values_list("state", flat=True).first()
        return state == "PROGRESS"

    await off_loop(wait_for, progressed, 30, "the task to report progress")
    waiter = asyncio.create_task(taskstore.wait(task_id, timeout=90))
    private_stack["redis"].stop()

    # While Redis is down the task goes on, the database keeps recording, and the open socket
    # still gets those versions: its periodic check reads them from the database.
    version = await off_loop(_version, task_id)
    await off_loop(wait_for, lambda: _version(task_id) >= version + 3, 30, "progress while Redis is down")
    await off_loop(
        wait_for,
        lambda: early and early[-1]["version"] >= version + 3,
        30,
        "versions recorded while Redis is down to reach the open socket",
    )
    # A socket opened while Redis is down subscribes from the database alone.
    late: list[dict[str, Any]] = []
    following.append(asyncio.create_task(_follow(private_stack["web_port"], task_id, late)))
    await off_loop(wait_for, lambda: len(late) >= version, 30, "a subscription opened while Redis is down")
    assert private_stack["redis"].alive() is False

    private_stack["redis"] = _redis(private_stack["redis_port"])
    await asyncio.gather(*following)
    waited = await waiter

    final = await off_loop(lambda: TaskRecord.objects.get(task_id=task_id))
    assert final.state == "SUCCESS"
    for frames in (early, late, fed):
        versions = [f["version"] for f in frames]
        assert versions == list(range(1, final.version + 1)), versions
        assert frames[-1]["result"] == STEPS
    # And a wait() that was listening when Redis went away still returns the final document.
    assert (waited["state"], waited["version"], waited["result"]) == ("SUCCESS", final.version, STEPS)
    web_log = private_stack["web"].output()
    assert "Exception inside application" not in web_log, web_log[-3000:]
