"""PENDING is recorded on every publish path, and groups, chords, revokes and beat reach the
store through a real worker."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

from celery import chain, chord, group

from realtime import tasks
from realtime.celery import app
from taskstore import addressing
from taskstore.control import revoke
from taskstore.models import GroupRecord, TaskEvent, TaskRecord
from tests.support.listener import LayerListener
from tests.support.markers import REAL_SERVICES
from tests.support.processes import ManagedProcess, wait_for

pytestmark = REAL_SERVICES


def _first_state(task_id: str) -> str | None:
    return TaskEvent.objects.filter(task_id=task_id, version=1).values_list("state", flat=True).first()


def _done(task_ids: list[str]) -> bool:
    return TaskRecord.objects.filter(task_id__in=task_ids, state="SUCCESS").count() == len(task_ids)


def test_every_publish_path_records_pending_first(worker: Any) -> None:
    sent = [
        tasks.add.delay(1, 1),
        tasks.add.apply_async((1, 2)),
        app.send_task("realtime.tasks.add", (1, 3)),
        tasks.add.s(1, 4).apply_async(),
    ]
    flow = chain(tasks.add.s(1, 1), tasks.add.s(10)).apply_async()
    ids = [r.id for r in sent] + [flow.id, flow.parent.id]
    wait_for(lambda: _done(ids), 30, "every task to succeed")
    assert [_first_state(i) for i in ids] == ["PENDING"] * len(ids)
    assert flow.get(timeout=10) == 12
    assert TaskRecord.objects.get(task_id=flow.id).parent_id == flow.parent.id


def test_a_group_is_tracked_with_its_document_pushed(worker: Any, redis_url: str) -> None:
    job = group(tasks.add.s(i, i) for i in range(4))
    result = job.freeze()
    with LayerListener(redis_url, [addressing.group_channel_group(result.id)]) as listener:
        result = job.apply_async()
        result.save()
        # Until the group is saved its total counts the members recorded so far (it may be done
        # at 3 of 4); the save makes it exact and pushes the document again.
        final = listener.wait(
            lambda docs: [d for d in docs if d["state"] == "SUCCESS" and d["total"] == 4],
            30,
            "the saved group to succeed",
        )[0]
    assert final["total"] == 4
    assert final["completed"] == 4
    assert final["results"] == [0, 2, 4, 6]
    assert final["counts"] == {"SUCCESS": 4}
    assert result.get(timeout=10) == [0, 2, 4, 6]
    assert GroupRecord.objects.get(group_id=result.id).members == [r.id for r in result.results]


def test_a_chord_runs_its_body_with_the_header_results(worker: Any) -> None:
    # add(list, [0]) concatenates: the body sees the header's results in order.
    result = chord([tasks.add.s(1, 1), tasks.add.s(2, 2), tasks.add.s(3, 3)], tasks.add.s([0])).apply_async()
    assert result.get(timeout=40) == [2, 4, 6, 0]
    header = GroupRecord.objects.get(group_id=result.parent.id)
    assert header.total == 3


def test_a_task_revoked_before_a_worker_received_it_is_revoked() -> None:
    # No worker consumes this queue: the task is revoked while it waits.
    task_id = str(uuid4())
    tasks.add.apply_async((1, 1), task_id=task_id, queue=f"nobody-{uuid4().hex[:8]}")
    assert revoke(task_id) is True
    record = TaskRecord.objects.get(task_id=task_id)
    assert record.state == "REVOKED"
    assert record.error == {"type": "TaskRevokedError", "message": "revoked"}
    assert revoke(task_id) is False


def test_beat_sends_the_cleanup_task_which_is_recorded(
    worker: Any, service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "TASKSTORE_CLEANUP_INTERVAL": "1"}
    beat = ManagedProcess(
        "celery-beat",
        [str(Path(sys.executable).parent / "celery"), "-A", "realtime", "beat", "--loglevel=INFO",
         "-s", str(tmp_path / "beat-schedule")],
        env,
    ).start(ready=r"beat: Starting")  # fmt: skip
    try:
        wait_for(
            lambda: TaskRecord.objects.filter(task_name="taskstore.tasks.cleanup", state="SUCCESS").exists(),
            30,
            "beat's cleanup task to run",
        )
    finally:
        beat.stop()
    cleanup = TaskRecord.objects.filter(task_name="taskstore.tasks.cleanup", state="SUCCESS").first()
    assert _first_state(cleanup.task_id) == "PENDING"
