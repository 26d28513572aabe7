"""Actions on tasks from code and the admin."""

from __future__ import annotations

from celery import current_app

from taskstore import states
from taskstore.recorder import Transition, record


def revoke(task_id: str, terminate: bool = False) -> bool:
    """Revoke a task: tell the workers, and record REVOKED now (even if no worker has it yet).

    Returns whether the REVOKED transition was recorded (False if the task had already ended).
    """
    # Record first: a worker holding the message marks it REVOKED as soon as the broadcast
    # arrives, and this call should report the revoke it made.
    document = record(
        Transition(
            task_id=task_id,
            state=states.REVOKED,
            error={"type": "TaskRevokedError", "message": "revoked"},
        )
    )
    current_app.control.revoke(task_id, terminate=terminate)
    return document is not None
