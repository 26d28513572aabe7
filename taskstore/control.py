"""Actions on tasks from code and the admin."""

from __future__ import annotations

from celery import current_app

from taskstore import states
from taskstore.recorder import Transition, record


def revoke(task_id: str, terminate: bool = False) -> bool:
    """Revoke a task: tell the workers, and record REVOKED now (even if no worker has it yet).

    Returns whether the REVOKED transition was recorded (False if the task had already ended).
    """
    current_app.control.revoke(task_id, terminate=terminate)
    document = record(
        Transition(
            task_id=task_id,
            state=states.REVOKED,
            error={"type": "TaskRevokedError", "message": "revoked"},
        )
    )
    return document is not None
