"""RECEIVED off the worker's main loop: the batch write, the background writer, and the STARTED
that never skips RECEIVED (the worker itself: tests/test_worker_sequences.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from unittest import mock
from uuid import uuid4

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from taskstore import recorder
from taskstore.models import TaskEvent, TaskRecord
from taskstore.publisher import publisher
from taskstore.received import ReceivedWriter
from taskstore.recorder import Transition, forget, record, record_many, record_started

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _writers_let_go_of_their_connections_soon() -> Iterator[None]:
    """The writers these tests start close their database connections 0.1 s after their last
    write instead of 5 s, so none is open when the test database is dropped."""
    with mock.patch("taskstore.received.IDLE_CLOSE_SECONDS", 0.1):
        yield


@pytest.fixture(autouse=True)
def _started_order_as_in_a_new_process() -> Iterator[None]:
    """Each test starts with a pool child's first guess: STARTED alone, after the writer's RECEIVED."""
    with mock.patch.object(recorder, "_started_order", [False, True]):
        yield


def _tid() -> str:
    return f"t-{uuid4()}"


def _states(task_id: str) -> list[tuple[int, str]]:
    return list(TaskEvent.objects.filter(task_id=task_id).order_by("version").values_list("version", "state"))


def _received(task_id: str, attempt: int = 0) -> Transition:
    return Transition(task_id=task_id, state="RECEIVED", attempt=attempt, worker="celery@test")


def test_a_batch_is_one_statement_and_refuses_what_each_write_would() -> None:
    pending = [_tid() for _ in range(3)]
    ahead = _tid()
    for task_id in pending:
        record(Transition(task_id=task_id, state="PENDING", task_name="t.add"))
    record(Transition(task_id=ahead, state="STARTED"))
    with CaptureQueriesContext(connection) as queries, mock.patch.object(publisher, "publish") as publish:
        documents = record_many([_received(t) for t in [*pending, ahead, pending[0]]])

    assert len(queries.captured_queries) == 1
    assert sorted(d["task_id"] for d in documents) == sorted(pending)
    assert {(d["state"], d["version"], d["worker"]) for d in documents} == {("RECEIVED", 2, "celery@test")}
    for task_id in pending:
        assert _states(task_id) == [(1, "PENDING"), (2, "RECEIVED")]
        assert TaskRecord.objects.get(task_id=task_id).task_name == "t.add"
    assert _states(ahead) == [(1, "STARTED")]
    # Pushed after the commit, in one hand-over: each written task to its group (and the feeds).
    [(messages,)] = [c.args for c in publish.call_args_list]
    pushed = [m["document"]["task_id"] for group, m in messages if group.startswith("taskstore.task.")]
    assert sorted(pushed) == sorted(pending)


def test_a_batch_takes_neither_terminal_nor_conditional_transitions() -> None:
    with pytest.raises(ValueError, match="non-terminal"):
        record_many([Transition(task_id=_tid(), state="SUCCESS")])
    with pytest.raises(ValueError, match="non-terminal"):
        record_many([Transition(task_id=_tid(), state="STARTED", requires="RECEIVED")])
    assert record_many([]) == []


def test_started_that_requires_received_waits_for_it_in_its_attempt() -> None:
    task_id = _tid()
    record(Transition(task_id=task_id, state="PENDING"))
    started = Transition(task_id=task_id, state="STARTED", requires="RECEIVED")
    assert record(started) is None
    record(_received(task_id))
    assert record(started) is not None

    # A retry opens attempt 1: its RECEIVED is required again, the first attempt's does not count.
    record(Transition(task_id=task_id, state="RETRY", attempt=1))
    again = Transition(task_id=task_id, state="STARTED", attempt=1, requires="RECEIVED")
    assert record(again) is None
    record(_received(task_id, attempt=1))
    assert record(again) is not None
    assert [s for _, s in _states(task_id)] == [
        "PENDING",
        "RECEIVED",
        "STARTED",
        "RETRY",
        "RECEIVED",
        "STARTED",
    ]


def _started(task_id: str) -> Transition:
    return Transition(task_id=task_id, state="STARTED", task_name="t.add", worker="celery@child")


def test_a_batch_the_children_wrote_ahead_of_is_read_and_not_sent() -> None:
    ahead, behind, forgotten = _tid(), _tid(), _tid()
    for task_id in (ahead, behind):
        record(Transition(task_id=task_id, state="PENDING"))
    record_started(_started(ahead))  # the pool child got there first
    with CaptureQueriesContext(connection) as queries:
        assert record_many([replace(_received(ahead), expects_row=True)]) == []
    assert len(queries.captured_queries) == 1  # the check alone: no upsert
    with CaptureQueriesContext(connection) as queries:
        documents = record_many([replace(_received(t), expects_row=True) for t in (ahead, behind, forgotten)])
    assert len(queries.captured_queries) == 2
    assert [(d["task_id"], d["state"], d["version"]) for d in documents] == [(behind, "RECEIVED", 2)]
    assert _states(ahead) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED")]
    assert not TaskRecord.objects.filter(task_id=forgotten).exists()


def test_a_child_ahead_of_the_writer_records_received_itself() -> None:
    task_id = _tid()
    record(Transition(task_id=task_id, state="PENDING"))
    with CaptureQueriesContext(connection) as queries:
        record_started(_started(task_id))
    # The conditional STARTED, refused; then RECEIVED and STARTED in one statement.
    assert len(queries.captured_queries) == 2
    assert _states(task_id) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED")]
    assert TaskRecord.objects.get(task_id=task_id).worker == "celery@child"
    received = TaskEvent.objects.get(task_id=task_id, version=2).document
    assert (received["state"], received["date_started"], received["worker"]) == (
        "RECEIVED",
        None,
        "celery@child",
    )
    # The writer's copy, late, is a duplicate.
    assert record_many([_received(task_id)]) == []
    assert _states(task_id) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED")]


def test_a_child_ahead_of_the_writer_tries_received_with_started_first_next_time() -> None:
    first, second = _tid(), _tid()
    for task_id in (first, second):
        record(Transition(task_id=task_id, state="PENDING"))
    record_started(_started(first))
    with CaptureQueriesContext(connection) as queries:
        record_started(_started(second))
    assert len(queries.captured_queries) == 1
    assert _states(second) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED")]
    # And back, once the writer is ahead again.
    third = _tid()
    record(Transition(task_id=third, state="PENDING"))
    record_many([_received(third)])
    record_started(_started(third))
    assert _states(third) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED")]
    assert recorder._started_order[0] is False


def test_a_child_behind_the_writer_records_started_alone() -> None:
    task_id = _tid()
    record(Transition(task_id=task_id, state="PENDING"))
    record_many([_received(task_id)])
    with CaptureQueriesContext(connection) as queries:
        record_started(_started(task_id))
    assert len(queries.captured_queries) == 1
    assert _states(task_id) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED")]


def test_the_writer_records_in_the_background_and_goes_on_after_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = ReceivedWriter()
    tasks = [_tid() for _ in range(20)]
    for task_id in tasks:
        record(Transition(task_id=task_id, state="PENDING"))
    # task_name is a varchar(255): the database refuses this one's batch, and the writer goes on.
    writer.put(Transition(task_id=_tid(), state="RECEIVED", task_name="x" * 300))
    with caplog.at_level(logging.ERROR, logger="taskstore.received"):
        assert writer.flush(timeout=10)
    assert "Could not record RECEIVED" in caplog.text

    for task_id in tasks:
        writer.put(_received(task_id))
    assert writer.flush(timeout=10)
    assert all(_states(t) == [(1, "PENDING"), (2, "RECEIVED")] for t in tasks)


def test_the_writer_holds_each_received_for_its_linger() -> None:
    writer = ReceivedWriter()
    task_id = _tid()
    record(Transition(task_id=task_id, state="PENDING"))
    started = time.monotonic()
    writer.put(_received(task_id), linger=0.3)
    deadline = started + 10
    while _states(task_id) == [(1, "PENDING")]:
        assert time.monotonic() < deadline, "RECEIVED was never written"
        time.sleep(0.01)
    assert time.monotonic() - started >= 0.3
    assert _states(task_id) == [(1, "PENDING"), (2, "RECEIVED")]


def test_a_flush_writes_what_lingers_at_once() -> None:
    writer = ReceivedWriter()
    task_id = _tid()
    record(Transition(task_id=task_id, state="PENDING"))
    writer.put(_received(task_id), linger=3600)
    assert writer.flush(timeout=10)
    assert _states(task_id) == [(1, "PENDING"), (2, "RECEIVED")]


def test_a_later_transition_of_this_process_writes_the_lingering_received_first() -> None:
    """A revoke or a lost child's failure, recorded by the worker's main process while the task's
    RECEIVED still lingers there, comes after it."""
    task_id = _tid()
    record(Transition(task_id=task_id, state="PENDING"))
    with mock.patch("taskstore.received.writer", ReceivedWriter()) as writer:
        writer.put(_received(task_id), linger=3600)
        record(
            Transition(task_id=task_id, state="REVOKED", error={"type": "TaskRevokedError", "message": "x"})
        )
        assert writer.take(task_id) is None
    assert _states(task_id) == [(1, "PENDING"), (2, "RECEIVED"), (3, "REVOKED")]


def test_a_received_that_expects_its_row_brings_back_no_forgotten_task() -> None:
    """The worker's RECEIVED for a message whose producer recorded PENDING is written only where
    the row still is; one for a task nobody recorded creates it."""
    gone, foreign = _tid(), _tid()
    record(Transition(task_id=gone, state="PENDING"))
    forget(gone)
    documents = record_many([replace(_received(gone), expects_row=True), _received(foreign)])
    assert [d["task_id"] for d in documents] == [foreign]
    assert not TaskRecord.objects.filter(task_id=gone).exists()


def test_a_batch_on_a_connection_the_database_dropped_is_written_on_a_fresh_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's main process keeps its connection between batches; when the database has
    dropped it meanwhile (a restart, an idle timeout), the batch, its check of what is already
    written included, goes through on a new connection instead of being lost."""
    task_ids = [_tid() for _ in range(2)]
    for task_id in task_ids:
        record(Transition(task_id=task_id, state="PENDING"))
    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    with caplog.at_level(logging.WARNING, logger="taskstore.recorder"):
        documents = record_many([replace(_received(t), expects_row=True) for t in task_ids])
    assert [(d["task_id"], d["state"]) for d in documents] == [(t, "RECEIVED") for t in task_ids]
    assert "retrying on a fresh connection" in caplog.text
