"""Actions on tasks from code, the admin and the operations console (taskstore.operations.actions).

Each goes through the recorder: the state it causes is recorded (and pushed) like any other."""

from __future__ import annotations

from typing import Any

from celery import current_app

from taskstore import states
from taskstore.models import TaskRecord
from taskstore.owner import owned_by
from taskstore.recorder import Transition, record


def revoke(task_id: str, terminate: bool = False) -> bool:
    """Revoke a task: tell the workers, and record REVOKED now (even if no worker has it yet).

    Returns whether the REVOKED transition was recorded (False if the task had already ended).
    """
    # Record first: a worker holding the message marks it REVOKED as soon as the broadcast
    # arrives, and this call should report the revoke it made.
    recorded = _record_revoked(task_id, "revoked")
    current_app.control.revoke(task_id, terminate=terminate)
    return recorded


def terminate(task_id: str) -> bool:
    """End a running task: record REVOKED ("terminated") and have its worker kill the pool
    process running it (SIGTERM; the pool starts a new one, the worker stays up).

    Returns whether the REVOKED transition was recorded (False if the task had already ended).
    """
    recorded = _record_revoked(task_id, "terminated")
    current_app.control.revoke(task_id, terminate=True, signal="SIGTERM")
    return recorded


def _record_revoked(task_id: str, message: str) -> bool:
    """Record REVOKED with Celery's error type and ``message``; whether it was recorded."""
    error = {"type": "TaskRevokedError", "message": message}
    return record(Transition(task_id=task_id, state=states.REVOKED, error=error)) is not None


def rerun(task: TaskRecord) -> str:
    """Send ``task`` again with the same arguments, for the same owner, as a new task whose
    parent is the old one; return the new task's id."""
    args: Any = task.args if task.args is not None else []
    kwargs: Any = task.kwargs if task.kwargs is not None else {}
    with owned_by(task.owner_id):
        result = current_app.send_task(task.task_name, args=args, kwargs=kwargs, parent_id=task.task_id)
    return str(result.id)
