"""Tasks recorded straight through the recorder, for tests that read them back."""

from __future__ import annotations

from uuid import uuid4

from taskstore.recorder import Transition, record


def failed_task(owner_id: int | None, group_id: str | None = None) -> str:
    """A task that ran and failed (PENDING, STARTED, FAILURE), with the staff-only fields filled:
    args ``["secret"]``, kwargs ``{"k": 1}``, a traceback. Returns its id."""
    task_id = str(uuid4())
    common = {"task_id": task_id, "task_name": "realtime.tasks.fail", "group_id": group_id}
    record(Transition(**common, state="PENDING", owner_id=owner_id, args=["secret"], kwargs={"k": 1}))
    record(Transition(**common, state="STARTED", worker="celery@test"))
    record(
        Transition(
            **common,
            state="FAILURE",
            error={"type": "ValueError", "message": "boom"},
            traceback='Traceback (most recent call last):\n  File "x.py"\nValueError: boom',
        )
    )
    return task_id
