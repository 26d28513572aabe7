"""RECEIVED held in a real prefork worker's main process (TASKSTORE_RECEIVED_LINGER): a task that
ends sooner has all its states written by its pool child; one that waits for a pool process shows
RECEIVED meanwhile; and a task forgotten as soon as it ended is not brought back by the RECEIVED
that lingered. Each test stops its worker before it ends (a warm shutdown writes what lingers)."""

from __future__ import annotations

from typing import Any

from realtime import tasks
from taskstore.models import TaskEvent, TaskRecord
from tests.operations.support import queue_name, start_worker
from tests.support.markers import REAL_SERVICES
from tests.support.processes import wait_for

pytestmark = REAL_SERVICES

LIFECYCLE = [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED"), (4, "SUCCESS")]


def _events(task_id: str) -> list[tuple[int, str]]:
    return list(TaskEvent.objects.filter(task_id=task_id).order_by("version").values_list("version", "state"))


def test_a_task_forgotten_as_soon_as_it_ends_is_not_brought_back(service_env: dict[str, str]) -> None:
    queue = queue_name("linger-forget")
    proc = start_worker({**service_env, "TASKSTORE_RECEIVED_LINGER": "5"}, "ts-linger-forget", queue, 1)
    try:
        result = tasks.add.apply_async((1, 2), queue=queue)
        assert result.get(timeout=30) == 3
        # Its RECEIVED still lingers in the main process: the pool child wrote all of it.
        assert _events(result.id) == LIFECYCLE
        result.forget()
    finally:
        proc.stop()  # writes what lingers
    assert not TaskRecord.objects.filter(task_id=result.id).exists()


def test_a_task_waiting_for_a_pool_process_shows_received(service_env: dict[str, str]) -> None:
    queue = queue_name("linger-wait")
    proc = start_worker({**service_env, "TASKSTORE_RECEIVED_LINGER": "0.2"}, "ts-linger-wait", queue, 1)
    try:
        busy = tasks.sleep.apply_async((3,), queue=queue)
        wait_for(lambda: _state(busy.id) == "STARTED", 30, "the first task to start")
        waiting = tasks.add.apply_async((2, 2), queue=queue)
        # The only pool process is busy for 3 s: RECEIVED shows after its linger, from the main process.
        wait_for(lambda: _state(waiting.id) == "RECEIVED", 2.5, "RECEIVED while the task waits")
        assert _state(busy.id) == "STARTED"
        assert waiting.get(timeout=30) == 4
    finally:
        proc.stop()
    assert _events(waiting.id) == LIFECYCLE


def _state(task_id: str) -> Any:
    return TaskRecord.objects.filter(task_id=task_id).values_list("state", flat=True).first()
