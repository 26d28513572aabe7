"""Celery's view of a task (``celery_meta``) beside its lifecycle, at the recorder: a store the
lifecycle refuses as a duplicate still updates Celery's view, records no version and publishes
nothing; a stored SUCCESS is never overwritten; the task document never shows it."""

from __future__ import annotations

from unittest import mock
from uuid import uuid4

import pytest

from taskstore.models import TaskEvent, TaskRecord
from taskstore.publisher import publisher
from taskstore.recorder import META_POSITION, Transition, record

pytestmark = pytest.mark.django_db(transaction=True)


def _tid() -> str:
    return f"t-{uuid4()}"


def _view(task_id: str) -> tuple[str, int, dict | None]:
    """The task's lifecycle state and version, and Celery's view without its position stamp."""
    row = TaskRecord.objects.get(task_id=task_id)
    meta = row.celery_meta
    if meta is not None:
        meta = {k: v for k, v in meta.items() if k != META_POSITION}
    return row.state, row.version, meta


def test_a_refused_duplicate_still_updates_celerys_view() -> None:
    task_id = _tid()
    record(Transition(task_id=task_id, state="PENDING"))
    record(Transition(task_id=task_id, state="STARTED"))
    started = {"status": "STARTED", "result": {"pid": 7, "hostname": "celery@here"}}
    with mock.patch.object(publisher, "publish") as publish:
        assert record(Transition(task_id=task_id, state="STARTED", celery_meta=started)) is None
    assert _view(task_id) == ("STARTED", 2, started)
    assert TaskEvent.objects.filter(task_id=task_id).count() == 2
    publish.assert_not_called()


def test_an_accepted_transition_carries_celerys_view_and_keeps_it_when_it_has_none() -> None:
    task_id = _tid()
    record(
        Transition(task_id=task_id, state="PROGRESS", progress={"n": 1}, celery_meta={"status": "PROGRESS"})
    )
    document = record(Transition(task_id=task_id, state="PROGRESS", progress={"n": 2}))
    assert _view(task_id) == ("PROGRESS", 2, {"status": "PROGRESS"})
    assert document is not None
    assert "celery_meta" not in document


def test_a_stored_success_is_never_overwritten() -> None:
    task_id = _tid()
    record(Transition(task_id=task_id, state="SUCCESS", result=5, celery_meta={"status": "SUCCESS"}))
    record(Transition(task_id=task_id, state="FAILURE", celery_meta={"status": "FAILURE", "result": None}))
    assert _view(task_id) == ("SUCCESS", 1, {"status": "SUCCESS"})


def test_a_row_celery_never_stored_has_no_view() -> None:
    task_id = _tid()
    record(Transition(task_id=task_id, state="PENDING"))
    record(Transition(task_id=task_id, state="SUCCESS", result=None))
    assert _view(task_id) == ("SUCCESS", 2, None)


def test_a_late_retry_store_does_not_replace_the_next_attempts_start() -> None:
    # The retried attempt publishes its retry (RETRY, attempt 1), another pool process starts
    # attempt 1 and Celery stores STARTED (track_started), and only then does the first process
    # store RETRY through the backend.
    task_id = _tid()
    record(Transition(task_id=task_id, state="PENDING"))
    record(Transition(task_id=task_id, state="RETRY", attempt=1))
    started = {"status": "STARTED", "result": {"pid": 8, "hostname": "celery@b"}}
    record(Transition(task_id=task_id, state="STARTED", attempt=1, celery_meta=started))
    late = {"status": "RETRY", "result": {"exc_type": "Retry"}}
    assert record(Transition(task_id=task_id, state="RETRY", attempt=1, celery_meta=late)) is None
    assert _view(task_id) == ("STARTED", 3, started)

    # Without track_started nothing newer was stored: the late RETRY is what Celery reports.
    other = _tid()
    record(Transition(task_id=other, state="PENDING"))
    record(Transition(task_id=other, state="RETRY", attempt=1))
    record(Transition(task_id=other, state="STARTED", attempt=1))
    assert record(Transition(task_id=other, state="RETRY", attempt=1, celery_meta=late)) is None
    assert _view(other) == ("STARTED", 3, late)
