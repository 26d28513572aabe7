"""A pool child's STARTED, held for TASKSTORE_STARTED_LINGER: written with the final state in one
statement when the task ends sooner, on its own when it does not, and never out of order (the
worker itself: tests/test_worker_sequences.py, tests/test_worker_faults.py)."""

from __future__ import annotations

import math
import threading
import time
from datetime import timedelta
from types import SimpleNamespace
from unittest import mock
from uuid import uuid4

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from taskstore import addressing, signals
from taskstore.linger import HeldStarts, held
from taskstore.models import GroupRecord, TaskEvent, TaskRecord
from taskstore.publisher import publisher
from taskstore.recorder import Transition, record, record_many

pytestmark = pytest.mark.django_db(transaction=True)


def _tid() -> str:
    return f"t-{uuid4()}"


def _events(task_id: str) -> list[tuple[int, str]]:
    return list(TaskEvent.objects.filter(task_id=task_id).order_by("version").values_list("version", "state"))


def _received_task(group_id: str | None = None) -> str:
    task_id = _tid()
    record(Transition(task_id=task_id, state="PENDING", task_name="t.add", args=[2, 3], group_id=group_id))
    record(Transition(task_id=task_id, state="RECEIVED", worker="celery@main"))
    return task_id


def _prerun(task_id: str, retries: int = 0, group_id: str | None = None) -> None:
    """The pool child's ``task_prerun`` for a task taken off a queue."""
    request = SimpleNamespace(
        id=task_id, retries=retries, is_eager=False, hostname="celery@child", group=group_id, parent_id=None
    )
    signals.on_prerun(task_id=task_id, task=SimpleNamespace(request=request, name="t.add"))


def _expect_received_in() -> None:
    """Let the recorder's next guess be that RECEIVED is recorded (what it learns from one task
    whose RECEIVED was)."""
    task_id = _received_task()
    _prerun(task_id)
    record(Transition(task_id=task_id, state="SUCCESS", result=0))


def _wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@override_settings(TASKSTORE_STARTED_LINGER=30)
def test_a_task_that_ends_within_the_linger_writes_started_and_its_end_in_one_statement() -> None:
    _expect_received_in()
    task_id = _received_task()
    task_group = addressing.task_group(task_id)
    _prerun(task_id)
    assert _events(task_id) == [(1, "PENDING"), (2, "RECEIVED")]
    with CaptureQueriesContext(connection) as queries, mock.patch.object(publisher, "publish") as publish:
        final = record(Transition(task_id=task_id, state="SUCCESS", result=5))

    assert len(queries.captured_queries) == 1
    assert final is not None and (final["state"], final["version"], final["result"]) == ("SUCCESS", 4, 5)
    assert _events(task_id) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED"), (4, "SUCCESS")]
    # Both pushed after the commit, in order, in one hand-over to the publisher.
    [(messages,)] = [c.args for c in publish.call_args_list]
    assert [
        (m["document"]["version"], m["document"]["state"]) for group, m in messages if group == task_group
    ] == [
        (3, "STARTED"),
        (4, "SUCCESS"),
    ]
    started = TaskEvent.objects.get(task_id=task_id, version=3).document
    # STARTED's document is the task as it was between the two: no result, no end.
    assert started == {
        **final,
        "state": "STARTED",
        "version": 3,
        "result": None,
        "error": None,
        "traceback": None,
        "date_done": None,
    }
    assert started["worker"] == "celery@child" and started["date_started"] < final["date_done"]
    row = TaskRecord.objects.get(task_id=task_id)
    assert (row.state, row.version, row.date_started is not None) == ("SUCCESS", 4, True)


@override_settings(TASKSTORE_STARTED_LINGER=0.1)
def test_a_task_still_running_after_the_linger_shows_started_then_its_end() -> None:
    task_id = _received_task()
    _prerun(task_id)
    _wait_for(lambda: _events(task_id)[-1] == (3, "STARTED"))
    # date_started is when the task started; date_updated is when STARTED was written (what
    # feeds that missed messages read changes by), the linger later.
    row = TaskRecord.objects.get(task_id=task_id)
    assert row.date_updated - row.date_started >= timedelta(seconds=0.09)
    record(Transition(task_id=task_id, state="FAILURE", error={"type": "ValueError", "message": "x"}))
    assert _events(task_id) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED"), (4, "FAILURE")]


@override_settings(TASKSTORE_STARTED_LINGER=30)
def test_progress_within_the_linger_comes_after_started() -> None:
    task_id = _received_task()
    _prerun(task_id)
    record(Transition(task_id=task_id, state="PROGRESS", progress={"current": 1}))
    record(Transition(task_id=task_id, state="SUCCESS", result=1))
    assert [s for _, s in _events(task_id)] == ["PENDING", "RECEIVED", "STARTED", "PROGRESS", "SUCCESS"]


@override_settings(TASKSTORE_STARTED_LINGER=30)
def test_a_retry_within_the_linger_comes_after_started_and_opens_the_next_attempt() -> None:
    task_id = _received_task()
    _prerun(task_id)
    record(Transition(task_id=task_id, state="RETRY", attempt=1))
    _prerun(task_id, retries=1)
    record(Transition(task_id=task_id, state="SUCCESS", attempt=1, result=1))
    assert [s for _, s in _events(task_id)] == [
        "PENDING",
        "RECEIVED",
        "STARTED",
        "RETRY",
        "RECEIVED",
        "STARTED",
        "SUCCESS",
    ]


@override_settings(TASKSTORE_STARTED_LINGER=30)
def test_an_end_before_received_is_recorded_records_all_three_in_order() -> None:
    task_id = _tid()
    record(Transition(task_id=task_id, state="PENDING"))
    _prerun(task_id)
    record(Transition(task_id=task_id, state="SUCCESS", result=1))
    assert _events(task_id) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED"), (4, "SUCCESS")]


@override_settings(TASKSTORE_STARTED_LINGER=30)
def test_a_group_member_moves_its_group_once_for_the_pair() -> None:
    group_id = f"g-{uuid4()}"
    task_id = _received_task(group_id)
    version = GroupRecord.objects.get(group_id=group_id).version
    _prerun(task_id, group_id=group_id)
    record(Transition(task_id=task_id, state="SUCCESS", result=1))
    group = GroupRecord.objects.get(group_id=group_id)
    assert group.version == version + 1


@override_settings(TASKSTORE_STARTED_LINGER=30)
def test_a_pool_process_that_exits_writes_what_it_holds() -> None:
    task_id = _received_task()
    _prerun(task_id)
    signals.on_process_shutdown()
    assert _events(task_id)[-1] == (3, "STARTED")
    assert held.take(task_id) is None


@override_settings(TASKSTORE_STARTED_LINGER=0)
def test_no_linger_writes_started_at_once() -> None:
    task_id = _received_task()
    _prerun(task_id)
    assert _events(task_id)[-1] == (3, "STARTED")


@override_settings(TASKSTORE_STARTED_LINGER=30)
def test_an_end_before_the_main_process_recorded_received_writes_all_three_in_one_statement() -> None:
    """RECEIVED lingers in the worker's main process (taskstore.received): the pool child writes
    it with STARTED and the end, and the main process's copy is then a duplicate."""
    for _ in range(2):  # the first may teach the recorder the shape, the second must use it
        task_id = _tid()
        task_group = addressing.task_group(task_id)
        record(Transition(task_id=task_id, state="PENDING", task_name="t.add"))
        _prerun(task_id)
        with CaptureQueriesContext(connection) as queries, mock.patch.object(publisher, "publish") as publish:
            final = record(Transition(task_id=task_id, state="SUCCESS", result=5))
    assert len(queries.captured_queries) == 1
    assert final is not None and (final["state"], final["version"]) == ("SUCCESS", 4)
    assert _events(task_id) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED"), (4, "SUCCESS")]
    [(messages,)] = [c.args for c in publish.call_args_list]
    assert [(m["document"]["version"], m["document"]["state"]) for g, m in messages if g == task_group] == [
        (2, "RECEIVED"),
        (3, "STARTED"),
        (4, "SUCCESS"),
    ]
    received = TaskEvent.objects.get(task_id=task_id, version=2).document
    assert received == {
        **final,
        "state": "RECEIVED",
        "version": 2,
        "result": None,
        "error": None,
        "traceback": None,
        "date_started": None,
        "date_done": None,
    }
    assert record_many([Transition(task_id=task_id, state="RECEIVED", worker="celery@main")]) == []
    assert _events(task_id)[-1] == (4, "SUCCESS")


@override_settings(TASKSTORE_STARTED_LINGER=30)
def test_the_three_states_open_from_the_attempts_retry_and_never_pass_an_end() -> None:
    task_id = _tid()
    record(Transition(task_id=task_id, state="PENDING"))
    record(Transition(task_id=task_id, state="RETRY", attempt=1))
    _prerun(task_id, retries=1)
    final = record(Transition(task_id=task_id, state="SUCCESS", attempt=1, result=2))
    assert final is not None and final["retries"] == 1
    expected = [(1, "PENDING"), (2, "RETRY"), (3, "RECEIVED"), (4, "STARTED"), (5, "SUCCESS")]
    assert _events(task_id) == expected
    # The same end again (a redelivered message run twice): nothing more.
    _prerun(task_id, retries=1)
    assert record(Transition(task_id=task_id, state="SUCCESS", attempt=1, result=2)) is None
    assert _events(task_id) == expected


@override_settings(TASKSTORE_STARTED_LINGER=0.05)
def test_an_end_while_the_background_thread_writes_started_waits_for_it() -> None:
    """The background thread has taken STARTED out of the held list and not yet written it when
    the task ends: the end must not go first (the lifecycle would then refuse STARTED, and a
    retried task's second attempt would lose its RECEIVED and STARTED)."""
    task_id = _received_task()
    writing, go_on = threading.Event(), threading.Event()
    write = held._write

    def paused_write(due: list[Transition]) -> None:
        writing.set()
        assert go_on.wait(10), "the test never let the write go on"
        write(due)

    def end() -> None:
        try:
            record(Transition(task_id=task_id, state="SUCCESS", result=5))
        finally:
            connection.close()

    with mock.patch.object(held, "_write", paused_write):
        _prerun(task_id)
        assert writing.wait(10), "the linger's background write did not begin"
        ender = threading.Thread(target=end)
        ender.start()
        # A negative can only be waited for so long: the end, if it does not wait, is done at once.
        ender.join(timeout=0.5)
        ended_first = not ender.is_alive()
        go_on.set()
        ender.join(timeout=10)
    assert not ended_first, "the end was written while STARTED was on its way"
    assert _events(task_id) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED"), (4, "SUCCESS")]


def test_holds_taken_back_within_the_linger_leave_the_background_thread_asleep() -> None:
    """A busy pool process holds a STARTED for every task and takes most back within the linger:
    that must not wake the background thread each time. One falling due before the thread would
    look again still wakes it, and is written on time."""
    starts = HeldStarts()
    notified: list[float] = []
    written: list[str] = []
    notify = starts._changed.notify_all

    def counted() -> None:
        notified.append(time.monotonic())
        notify()

    starts._changed.notify_all = counted  # type: ignore[method-assign]
    starts._write = lambda due: written.extend(t.task_id for t in due)  # type: ignore[method-assign]
    starts.hold(Transition(task_id="first", state="STARTED"), 1.0)
    assert starts.take("first") is not None
    _wait_for(lambda: starts._wakes_at != math.inf)  # looking again within a linger by itself
    notified.clear()
    for index in range(200):
        starts.hold(Transition(task_id=f"t{index}", state="STARTED"), 1.0)
        assert starts.take(f"t{index}") is not None
    assert notified == [] and written == []

    starts.hold(Transition(task_id="sooner", state="STARTED"), 0.05)
    assert len(notified) == 1
    _wait_for(lambda: written == ["sooner"], timeout=0.9)  # its deadline, not the thread's next look
