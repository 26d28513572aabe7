"""Two vocabularies: Celery's API reports Celery's states, the lifecycle keeps every state.

Seen through ``AsyncResult`` a task is PENDING until it runs, STARTED only with
``track_started``, RETRY while a retry's attempt runs, and its custom states with their meta,
on taskstore's backend exactly as on Celery's Redis backend (both run here with real prefork
workers). The recorded lifecycle, the REST document and the live push go through RECEIVED and
STARTED all the same.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from realtime.celery import app
from taskstore import addressing
from taskstore.models import TaskEvent
from tests.support.backends import Gates, Target
from tests.support.listener import LayerListener
from tests.support.markers import REAL_SERVICES
from tests.support.processes import wait_for

pytestmark = REAL_SERVICES


def _lifecycle(task_id: str) -> list[str]:
    return list(TaskEvent.objects.filter(task_id=task_id).order_by("version").values_list("state", flat=True))


@pytest.mark.parametrize(
    ("task", "while_running", "lifecycle"),
    [
        pytest.param("tests.gated", "PENDING", ["PENDING", "RECEIVED", "STARTED", "SUCCESS"], id="plain"),
        pytest.param(
            "tests.gated_tracked",
            "STARTED",
            ["PENDING", "RECEIVED", "STARTED", "SUCCESS"],
            id="track_started",
        ),
        pytest.param(
            "tests.gated_retry",
            "RETRY",
            ["PENDING", "RECEIVED", "STARTED", "RETRY", "RECEIVED", "STARTED", "SUCCESS"],
            id="retried",
        ),
        pytest.param(
            "tests.gated_retry_tracked",
            "STARTED",
            ["PENDING", "RECEIVED", "STARTED", "RETRY", "RECEIVED", "STARTED", "SUCCESS"],
            id="retried-track_started",
        ),
        pytest.param(
            "tests.gated_progress",
            "PROGRESS",
            ["PENDING", "RECEIVED", "STARTED", "PROGRESS", "SUCCESS"],
            id="custom-state",
        ),
    ],
)
def test_the_states_seen_through_asyncresult(
    target: Target, gates: Gates, task: str, while_running: str, lifecycle: list[str]
) -> None:
    gate = gates.new()
    result = target.send(task, gate, "value")
    running = gates.running(gate)

    def seen_while_running() -> tuple[str, Any] | None:
        # Celery publishes a retry's message before it stores RETRY (Task.retry, then the
        # tracer's handle_retry), on any backend: the next attempt may run a moment before it.
        seen = (result.status, result.info)
        return seen if seen[0] == while_running else None

    status, info = wait_for(seen_while_running, 10, f"Celery's status {while_running} while the task runs")
    gates.open(gate)
    assert result.get(timeout=30) == "value"
    assert [status, result.status] == [while_running, "SUCCESS"]
    assert running["retries"] == (1 if "retry" in task else 0)
    if while_running == "PENDING":
        assert info is None
    elif while_running == "STARTED":
        assert info["pid"] == running["pid"]
        assert "@" in info["hostname"]  # the worker's node name
    elif while_running == "RETRY":
        assert type(info) is RuntimeError
        assert info.args == ("first attempt fails on purpose",)
    else:
        assert info == {"step": 1}
    if target.name != "taskstore":
        # Without taskstore's backend, custom states never reach the lifecycle (docs/configuration.md).
        lifecycle = [state for state in lifecycle if state != "PROGRESS"]
    try:
        wait_for(lambda: _lifecycle(result.id) == lifecycle, 10, f"the lifecycle {lifecycle}")
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}; recorded: {_lifecycle(result.id)}") from None


def test_a_task_waiting_for_its_eta_is_pending(target: Target) -> None:
    result = target.send("realtime.tasks.add", 2, 3, countdown=2)
    # The worker has the message (the lifecycle says RECEIVED) but holds it until its ETA.
    wait_for(lambda: _lifecycle(result.id) == ["PENDING", "RECEIVED"], 30, "the worker to receive the task")
    assert result.status == "PENDING"
    assert result.get(timeout=30) == 5
    assert result.status == "SUCCESS"


def test_the_live_push_shows_received_and_started_while_celery_says_pending(
    worker: Any, redis_url: str, gates: Gates
) -> None:
    gate = gates.new()
    task_id = str(uuid4())
    with LayerListener(redis_url, [addressing.task_group(task_id)]) as listener:
        app.send_task("tests.gated", args=(gate, "value"), task_id=task_id)
        gates.running(gate)
        listener.wait(
            lambda docs: {"RECEIVED", "STARTED"} <= {d["state"] for d in docs},
            30,
            "RECEIVED and STARTED pushed",
        )
        assert app.AsyncResult(task_id).status == "PENDING"
        gates.open(gate)
        listener.wait(lambda docs: any(d["state"] == "SUCCESS" for d in docs), 30, "SUCCESS pushed")
        pushed = sorted(listener.documents("task_id", task_id), key=lambda d: d["version"])
    assert [d["state"] for d in pushed] == ["PENDING", "RECEIVED", "STARTED", "SUCCESS"]
    assert pushed[-1]["result"] == "value"
    assert app.AsyncResult(task_id).status == "SUCCESS"
