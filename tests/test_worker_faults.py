"""Faults end in a recorded final state: a killed pool child, a hard time limit, a result JSON
cannot encode, and database connections cut under a long-lived worker."""

from __future__ import annotations

import os
import signal
from typing import Any
from uuid import uuid4

import psycopg

from realtime import tasks
from realtime.celery import app
from taskstore.models import TaskEvent, TaskRecord
from tests.support.markers import REAL_SERVICES
from tests.support.processes import wait_for

pytestmark = REAL_SERVICES


def _state(task_id: str) -> str | None:
    return TaskRecord.objects.filter(task_id=task_id).values_list("state", flat=True).first()


def _final(task_id: str, timeout: float = 30) -> TaskRecord:
    wait_for(
        lambda: _state(task_id) in {"SUCCESS", "FAILURE", "REVOKED", "REJECTED"}, timeout, f"{task_id} to end"
    )
    return TaskRecord.objects.get(task_id=task_id)


def _states(task_id: str) -> list[str]:
    return list(TaskEvent.objects.filter(task_id=task_id).order_by("version").values_list("state", flat=True))


def _child_running(task_id: str) -> int | None:
    active = app.control.inspect(timeout=1.0).active() or {}
    for running in active.values():
        for task in running:
            if task["id"] == task_id:
                return int(task["worker_pid"])
    return None


def test_killed_pool_child_ends_in_failure(worker: Any) -> None:
    task_id = str(uuid4())
    tasks.sleep.apply_async((60,), task_id=task_id)
    wait_for(lambda: _state(task_id) == "STARTED", 30, "the task to start")
    pid = wait_for(lambda: _child_running(task_id), 30, "the worker to report the task's process")
    os.kill(pid, signal.SIGKILL)
    record = _final(task_id)
    assert record.state == "FAILURE"
    assert record.error["type"] == "WorkerLostError"
    assert _states(task_id) == ["PENDING", "RECEIVED", "STARTED", "FAILURE"]
    assert worker.alive()


def test_hard_time_limit_ends_in_failure(worker: Any) -> None:
    task_id = str(uuid4())
    tasks.sleep.apply_async((60,), task_id=task_id, time_limit=1)
    record = _final(task_id)
    assert record.state == "FAILURE"
    assert record.error["type"] == "TimeLimitExceeded"
    assert _states(task_id) == ["PENDING", "RECEIVED", "STARTED", "FAILURE"]


def test_unencodable_result_is_a_clear_failure(worker: Any) -> None:
    task_id = str(uuid4())
    app.send_task("tests.unencodable", task_id=task_id)
    record = _final(task_id)
    assert record.state == "FAILURE"
    assert record.error["type"] == "EncodeError"
    assert "JSON cannot encode" in record.error["message"]
    assert _states(task_id) == ["PENDING", "RECEIVED", "STARTED", "FAILURE"]
    # The worker is not stuck: the next task runs.
    follow = tasks.add.delay(1, 1)
    assert follow.get(timeout=20) == 2


def test_worker_survives_its_database_connections_being_cut(worker: Any, test_database_url: str) -> None:
    # Warm the worker's connections, then cut every one of them (a database restart or an idle
    # timeout does the same to a long-lived worker). Two tasks that overlap, so that each of the
    # two pool children holds a connection: whichever runs the next task meets a dead one.
    warm = [tasks.sleep.delay(0.5, value) for value in (1, 2)]
    assert [result.get(timeout=20) for result in warm] == [1, 2]
    from django.db import connection

    with psycopg.connect(test_database_url.replace("postgres://", "postgresql://"), autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() AND pid <> %s",
            [connection.settings_dict["NAME"], _my_backend_pid()],
        ).fetchone()[0]
    assert killed >= 1
    task_id = str(uuid4())
    tasks.add.apply_async((20, 22), task_id=task_id)
    record = _final(task_id)
    assert record.state == "SUCCESS"
    assert record.result == 42
    assert _states(task_id) == ["PENDING", "RECEIVED", "STARTED", "SUCCESS"]
    # The worker hit the dead connections and recorded anyway, on fresh ones.
    assert "retrying on a fresh connection" in worker.output()


def _my_backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])
