"""Each example task, run by a real prefork worker on PostgreSQL and Redis, leaves the exact
sequence of states and versions in its event rows, and the same sequence on the channel layer."""

from __future__ import annotations

from typing import Any

import pytest

from realtime import tasks
from taskstore import addressing
from taskstore.models import TaskEvent, TaskRecord
from tests.support.listener import LayerListener
from tests.support.markers import REAL_SERVICES

pytestmark = REAL_SERVICES

TERMINAL = {"SUCCESS", "FAILURE", "REVOKED", "REJECTED"}


def _run(redis_url: str, send: Any, timeout: float = 30) -> tuple[str, list[dict[str, Any]]]:
    """Send a task while listening to its group; return its id and the documents pushed."""
    from uuid import uuid4

    task_id = str(uuid4())
    with LayerListener(redis_url, [addressing.task_group(task_id)]) as listener:
        send(task_id)
        # Transitions are published by several processes (the sender, the worker's main process,
        # its pool children), so they may arrive in any order: wait until every version is in.
        listener.wait(
            lambda docs: _complete([d for d in docs if d["task_id"] == task_id]),
            timeout,
            f"every version of task {task_id} up to its terminal state",
        )
        pushed = listener.documents("task_id", task_id)
    return task_id, pushed


def _complete(docs: list[dict[str, Any]]) -> bool:
    final = [d["version"] for d in docs if d["state"] in TERMINAL]
    return bool(final) and sorted(d["version"] for d in docs) == list(range(1, final[0] + 1))


def _events(task_id: str) -> list[tuple[int, str]]:
    return list(TaskEvent.objects.filter(task_id=task_id).order_by("version").values_list("version", "state"))


def _assert_pushed_matches_events(task_id: str, pushed: list[dict[str, Any]]) -> None:
    events = _events(task_id)
    assert sorted((d["version"], d["state"]) for d in pushed) == events
    assert [v for v, _ in events] == list(range(1, len(events) + 1))


def test_add_records_and_publishes_every_state(worker: Any, redis_url: str) -> None:
    task_id, pushed = _run(redis_url, lambda tid: tasks.add.apply_async((2, 3), task_id=tid))
    assert _events(task_id) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED"), (4, "SUCCESS")]
    _assert_pushed_matches_events(task_id, pushed)
    final = max(pushed, key=lambda d: d["version"])
    assert final["result"] == 5
    assert final["task_name"] == "realtime.tasks.add"
    assert final["worker"].startswith("celery@")
    assert final["date_started"] and final["date_done"]
    assert tasks.add.AsyncResult(task_id).get(timeout=5) == 5


def test_progress_records_each_update_as_its_own_version(worker: Any, redis_url: str) -> None:
    task_id, pushed = _run(redis_url, lambda tid: tasks.progress.apply_async((5, 0), task_id=tid))
    states = [s for _, s in _events(task_id)]
    assert states == ["PENDING", "RECEIVED", "STARTED"] + ["PROGRESS"] * 5 + ["SUCCESS"]
    _assert_pushed_matches_events(task_id, pushed)
    assert [
        d["progress"] for d in sorted(pushed, key=lambda d: d["version"]) if d["state"] == "PROGRESS"
    ] == [{"current": i, "total": 5} for i in range(1, 6)]
    assert max(pushed, key=lambda d: d["version"])["result"] == 5


def test_fail_records_the_error_type_and_message(worker: Any, redis_url: str) -> None:
    task_id, pushed = _run(redis_url, lambda tid: tasks.fail.apply_async(("boom",), task_id=tid))
    assert _events(task_id) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED"), (4, "FAILURE")]
    _assert_pushed_matches_events(task_id, pushed)
    assert max(pushed, key=lambda d: d["version"])["error"] == {"type": "ValueError", "message": "boom"}
    record = TaskRecord.objects.get(task_id=task_id)
    assert "ValueError: boom" in record.traceback
    with pytest.raises(ValueError, match="boom"):
        tasks.fail.AsyncResult(task_id).get(timeout=5)


def test_sleep_returns_its_value(worker: Any, redis_url: str) -> None:
    task_id, pushed = _run(redis_url, lambda tid: tasks.sleep.apply_async((0.1, "hi"), task_id=tid))
    assert [s for _, s in _events(task_id)] == ["PENDING", "RECEIVED", "STARTED", "SUCCESS"]
    _assert_pushed_matches_events(task_id, pushed)
    assert max(pushed, key=lambda d: d["version"])["result"] == "hi"


def test_flaky_shows_each_retry_as_a_new_attempt(worker: Any, redis_url: str) -> None:
    task_id, pushed = _run(redis_url, lambda tid: tasks.flaky.apply_async((2,), task_id=tid))
    events = TaskEvent.objects.filter(task_id=task_id).order_by("version")
    assert [(e.state, e.document["retries"]) for e in events] == [
        ("PENDING", 0), ("RECEIVED", 0), ("STARTED", 0),
        ("RETRY", 1), ("RECEIVED", 1), ("STARTED", 1),
        ("RETRY", 2), ("RECEIVED", 2), ("STARTED", 2),
        ("SUCCESS", 2),
    ]  # fmt: skip
    _assert_pushed_matches_events(task_id, pushed)
    retry = next(e for e in events if e.state == "RETRY")
    assert retry.document["error"]["type"] == "RuntimeError"
    assert max(pushed, key=lambda d: d["version"])["result"] == "ok"
