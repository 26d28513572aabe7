"""Retention: finished tasks older than the setting go, with their events, in batches."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from taskstore.models import TaskEvent, TaskRecord
from taskstore.recorder import Transition, record
from taskstore.retention import delete_expired

pytestmark = pytest.mark.django_db(transaction=True)


def _task(task_id: str, state: str, age_days: float) -> None:
    record(Transition(task_id=task_id, state="PENDING"))
    record(Transition(task_id=task_id, state=state))
    done = timezone.now() - timedelta(days=age_days) if state == "SUCCESS" else None
    TaskRecord.objects.filter(task_id=task_id).update(date_done=done)


def test_cleanup_deletes_expired_tasks_and_their_events_only() -> None:
    for n in range(7):
        _task(f"old-{n}", "SUCCESS", 10)
    _task("recent", "SUCCESS", 1)
    _task("running", "STARTED", 0)
    assert delete_expired(expires=5 * 24 * 3600, batch_size=3) == 7
    assert sorted(TaskRecord.objects.values_list("task_id", flat=True)) == ["recent", "running"]
    assert not TaskEvent.objects.filter(task__task_id__startswith="old-").exists()
    assert TaskEvent.objects.filter(task_id="recent").count() == 2


def test_the_command_reports_and_checks_its_arguments() -> None:
    _task("old", "SUCCESS", 10)
    out = StringIO()
    call_command("taskstore_cleanup", "--older-than", str(24 * 3600), stdout=out)
    assert "Deleted 1 expired task(s)." in out.getvalue()
    with pytest.raises(CommandError, match="--batch-size"):
        call_command("taskstore_cleanup", "--batch-size", "0")
    with pytest.raises(CommandError, match="--older-than"):
        call_command("taskstore_cleanup", "--older-than", "-5")
