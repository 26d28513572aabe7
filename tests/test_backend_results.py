"""What else an adopter's code leans on, the same through taskstore's backend as through Redis:
``ignore_result`` in its three forms, children and ``collect()``, a task that replaced itself,
chords whose header fails, ``forget()``, joins and ``get_many``; and what only the database
backend needs proving: ``result_extended`` fields, ``date_done`` and ``result_expires``."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from celery import chord, group
from celery.exceptions import ChordError
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import ResultSet
from django.utils import timezone

from realtime.celery import app
from taskstore.backend import DatabaseBackend
from taskstore.models import TaskEvent, TaskRecord
from taskstore.recorder import Transition, record
from tests.support.backends import Gates, Target
from tests.support.markers import REAL_SERVICES
from tests.support.processes import ManagedProcess, wait_for
from tests.support.worker_tasks import PaymentDeclined

pytestmark = REAL_SERVICES

IGNORING_QUEUE = f"ignore-result-{uuid4().hex[:8]}"


def _row(task_id: str) -> TaskRecord | None:
    return TaskRecord.objects.filter(task_id=task_id).first()


def _finished(task_id: str, timeout: float = 30) -> TaskRecord:
    wait_for(
        lambda: getattr(_row(task_id), "state", None) in {"SUCCESS", "FAILURE"},
        timeout,
        f"{task_id} to finish",
    )
    return TaskRecord.objects.get(task_id=task_id)


def _lifecycle(task_id: str) -> list[tuple[str, Any]]:
    events = TaskEvent.objects.filter(task_id=task_id).order_by("version")
    return [(e.state, e.document["result"]) for e in events]


@pytest.fixture(scope="module")
def ignoring_worker(service_env: dict[str, str]) -> Iterator[ManagedProcess]:
    """A worker whose settings turn Celery's ``task_ignore_result`` on, on a queue of its own."""
    args = [
        str(Path(sys.executable).parent / "celery"), "-A", "realtime", "worker", "--pool=prefork",
        "--concurrency=1", "--loglevel=INFO", "--without-mingle", "--without-gossip", "-Q", IGNORING_QUEUE,
        "-n", f"{IGNORING_QUEUE}@%h",
    ]  # fmt: skip
    env = {**service_env, "DJANGO_SETTINGS_MODULE": "tests.support.ignore_result_settings"}
    proc = ManagedProcess("celery-ignore-result", args, env).start(ready=r"@\S+ ready\.")
    yield proc
    proc.stop()


@pytest.mark.parametrize(
    ("task", "args", "options", "final"),
    [
        pytest.param("tests.ignored", (2, 3), {}, "SUCCESS", id="task-option"),
        pytest.param(
            "realtime.tasks.add", (2, 3), {"ignore_result": True}, "SUCCESS", id="apply_async-option"
        ),
        pytest.param("tests.fail_ignored", (), {}, "FAILURE", id="failure"),
    ],
)
def test_ignore_result_stores_nothing_celery_can_read(
    target: Target, task: str, args: tuple[Any, ...], options: dict[str, Any], final: str
) -> None:
    result = target.send(task, *args, **options)
    row = _finished(result.id)
    # The lifecycle is recorded, without the return value; Celery reports what it stored: nothing.
    assert [state for state, _ in _lifecycle(result.id)] == ["PENDING", "RECEIVED", "STARTED", final]
    assert all(value is None for _, value in _lifecycle(result.id))
    assert row.result is None
    assert (target.result(result.id).state, target.result(result.id).result) == ("PENDING", None)


def test_task_ignore_result_setting_stores_nothing_celery_can_read(ignoring_worker: ManagedProcess) -> None:
    # send_task leaves ignore_result to the worker's task, which takes it from task_ignore_result.
    result = app.send_task("realtime.tasks.add", args=(2, 3), queue=IGNORING_QUEUE)
    row = _finished(result.id)
    assert _lifecycle(result.id) == [
        ("PENDING", None),
        ("RECEIVED", None),
        ("STARTED", None),
        ("SUCCESS", None),
    ]
    assert row.result is None
    assert (app.AsyncResult(result.id).state, app.AsyncResult(result.id).result) == ("PENDING", None)


def test_children_and_collect(target: Target) -> None:
    result = target.send("tests.spawn", 2)
    assert result.get(timeout=30) == "spawned"
    children = result.children
    assert [type(child).__name__ for child in children] == ["AsyncResult", "AsyncResult", "GroupResult"]
    for child in children:
        child.get(timeout=30)
    assert [value for _, value in result.collect(timeout=30)] == ["spawned", 0, 2, [11, 12], 11, 12]
    # The same relations the lifecycle records as each child's parent_id.
    recorded = set(TaskRecord.objects.filter(parent_id=result.id).values_list("task_id", flat=True))
    assert recorded == {children[0].id, children[1].id, *(r.id for r in children[2].results)}


def test_a_task_that_replaced_itself_with_a_group(target: Target) -> None:
    result = target.send("tests.replace_with_group", 3)
    assert result.get(timeout=30) == [0, 2, 4]
    assert result.status == "SUCCESS"
    # Celery gives the id to the chord body that gathers the group's results; it has no children.
    assert result.children == []
    # The lifecycle records the group's members as children of the task that replaced itself.
    members = TaskRecord.objects.filter(parent_id=result.id, task_name="realtime.tasks.add")
    assert sorted(members.values_list("result", flat=True)) == [0, 2, 4]


def test_a_chord_whose_header_fails(target: Target) -> None:
    header = [
        target.signature("realtime.tasks.add", 1, 1),
        target.signature("tests.raise_payment_declined", "card expired", 42),
    ]
    result = chord(header, app=target.app)(target.signature("tests.total"))
    # Knowing its parent, the body's result raises the header's error first, as Celery does.
    with pytest.raises(PaymentDeclined):
        result.get(timeout=30)
    # The body itself failed with a ChordError naming the member that failed.
    with pytest.raises(ChordError) as caught:
        target.result(result.id).get(timeout=30)
    failed = result.parent.results[1]
    assert str(caught.value) == f"Dependency {failed.id} raised PaymentDeclined('card expired', 42)"
    values = result.parent.join(propagate=False, timeout=30)
    assert values[0] == 2
    assert type(values[1]) is PaymentDeclined
    assert values[1].args == ("card expired", 42)
    with pytest.raises(PaymentDeclined):
        result.parent.get(timeout=30)


def test_forget(target: Target) -> None:
    result = target.send("realtime.tasks.add", 1, 2)
    assert result.get(timeout=30) == 3
    result.forget()
    assert target.result(result.id).state == "PENDING"


def test_forget_deletes_the_task_as_django_celery_results_does(worker: Any) -> None:
    result = app.send_task("realtime.tasks.add", args=(1, 2))
    assert result.get(timeout=30) == 3
    result.forget()
    assert _row(result.id) is None
    assert not TaskEvent.objects.filter(task_id=result.id).exists()


def test_join_and_get_many(target: Target, gates: Gates) -> None:
    members = group(target.signature("realtime.tasks.add", i, i) for i in range(5)).apply_async()
    assert members.join_native(timeout=30) == [0, 2, 4, 6, 8]
    assert members.join(timeout=30) == [0, 2, 4, 6, 8]
    metas = dict(target.app.backend.get_many([r.id for r in members.results], timeout=30))
    assert {task_id: (m["status"], m["result"]) for task_id, m in metas.items()} == {
        r.id: ("SUCCESS", 2 * i) for i, r in enumerate(members.results)
    }
    # timeout=0 reads once: what is ready comes back, then Celery's TimeoutError at once.
    started = time.monotonic()
    with pytest.raises(CeleryTimeoutError):
        ResultSet([members.results[0], target.result(str(uuid4()))], app=target.app).join_native(
            timeout=0, interval=30
        )
    assert time.monotonic() - started < 30
    gate = gates.new()
    waiting = target.send("tests.gated", gate, "late")
    with pytest.raises(CeleryTimeoutError):
        list(target.app.backend.get_many([waiting.id], timeout=0.5, interval=0.1))
    gates.open(gate)
    assert waiting.get(timeout=30) == "late"


def test_result_extended_fields_and_date_done(worker: Any) -> None:
    before = timezone.now()
    result = app.send_task("realtime.tasks.add", args=(2, 3))
    assert result.get(timeout=30) == 5
    extended = app.conf.result_extended
    app.conf.result_extended = True
    try:
        fresh = app.AsyncResult(result.id)
        assert (fresh.name, fresh.args, fresh.kwargs, fresh.retries, fresh.queue) == (
            "realtime.tasks.add",
            [2, 3],
            {},
            0,
            "celery",
        )
        assert fresh.worker.startswith("celery@")
    finally:
        app.conf.result_extended = extended
    assert isinstance(result.date_done, datetime)
    assert before <= result.date_done <= timezone.now()
    assert app.AsyncResult(result.id).name is None  # without result_extended, as Celery


def test_cleanup_deletes_tasks_finished_result_expires_ago(transactional_db: Any) -> None:
    old, recent, running = (str(uuid4()) for _ in range(3))
    for task_id in (old, recent):
        record(Transition(task_id=task_id, state="SUCCESS", result=1))
    record(Transition(task_id=running, state="STARTED"))
    TaskRecord.objects.filter(task_id=old).update(date_done=timezone.now() - timedelta(hours=2))
    backend = DatabaseBackend(app=app, expires=3600)
    backend.cleanup()
    assert set(
        TaskRecord.objects.filter(task_id__in=[old, recent, running]).values_list("task_id", flat=True)
    ) == {
        recent,
        running,
    }
