"""With a result backend other than taskstore's, the signal handlers alone still record every
state (SUCCESS and FAILURE from task_success/task_failure) and publish each once."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from realtime.celery import app
from taskstore import addressing
from taskstore.models import TaskEvent
from tests.support.listener import LayerListener
from tests.support.markers import REAL_SERVICES
from tests.support.processes import ManagedProcess

pytestmark = REAL_SERVICES

QUEUE = f"other-backend-{uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def redis_backend_worker(service_env: dict[str, str], redis_url: str) -> Iterator[ManagedProcess]:
    """A prefork worker storing results in Redis, on a queue of its own."""
    args = [
        str(Path(sys.executable).parent / "celery"), "-A", "realtime", "--result-backend", redis_url,
        "worker", "--pool=prefork", "--concurrency=1", "--loglevel=INFO", "--without-mingle",
        "--without-gossip", "-Q", QUEUE,
    ]  # fmt: skip
    proc = ManagedProcess("celery-redis-backend", args, service_env).start(ready=r"celery@\S+ ready\.")
    assert "results:     redis://" in proc.output()
    yield proc
    proc.stop()


def _run(
    redis_url: str, name: str, args: tuple[Any, ...]
) -> tuple[list[tuple[int, str]], list[dict[str, Any]]]:
    task_id = str(uuid4())
    with LayerListener(redis_url, [addressing.task_group(task_id)]) as listener:
        app.send_task(name, args, task_id=task_id, queue=QUEUE)
        listener.wait(lambda docs: len(docs) >= 4, 30, f"four states of {task_id}")
        pushed = listener.documents("task_id", task_id)
    events = list(
        TaskEvent.objects.filter(task_id=task_id).order_by("version").values_list("version", "state")
    )
    return events, pushed


def test_success_is_recorded_by_the_signal_handlers(
    redis_backend_worker: ManagedProcess, redis_url: str
) -> None:
    events, pushed = _run(redis_url, "realtime.tasks.add", (2, 3))
    assert events == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED"), (4, "SUCCESS")]
    assert sorted((d["version"], d["state"]) for d in pushed) == events
    assert max(pushed, key=lambda d: d["version"])["result"] == 5


def test_failure_is_recorded_by_the_signal_handlers(
    redis_backend_worker: ManagedProcess, redis_url: str
) -> None:
    events, pushed = _run(redis_url, "realtime.tasks.fail", ("boom",))
    assert events == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED"), (4, "FAILURE")]
    assert sorted((d["version"], d["state"]) for d in pushed) == events
    assert max(pushed, key=lambda d: d["version"])["error"] == {"type": "ValueError", "message": "boom"}
