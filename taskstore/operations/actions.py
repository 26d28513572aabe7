"""Control from the operations console: revoke, terminate, re-run, purge.

Staff only (the callers check :func:`allowed`). Each action goes through the existing write
paths (:mod:`taskstore.control`, the recorder, the broker), is recorded as a ``ControlAction``
row (who, when, what came of it) and pushed on the staff feed as ``action.recorded``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from taskstore import control, states
from taskstore.models import TaskRecord
from taskstore.operations import brokers, push
from taskstore.operations.documents import action_document
from taskstore.operations.exceptions import ActionRefused, BadAction, BrokerUnavailable, UnknownQueue
from taskstore.operations.models import ControlAction
from taskstore.permissions import Viewer, valid_id

logger = logging.getLogger(__name__)

TASK_ACTIONS = ("revoke", "terminate", "rerun")
QUEUE_ACTIONS = ("purge",)
ACTIONS = TASK_ACTIONS + QUEUE_ACTIONS
FIELDS = frozenset({"action", "task_id", "queue"})


def allowed(viewer: Viewer) -> bool:
    """Whether ``viewer`` may take control actions: active staff only."""
    return viewer.staff


def parse(body: Any) -> tuple[str, str]:
    """``(action, target)`` from a request body, or BadAction saying what is wrong."""
    if not isinstance(body, dict):
        raise BadAction(
            'The body must be a JSON object: {"action": …, "task_id": …} or {"action": "purge", "queue": …}.'
        )
    unknown = set(body) - FIELDS - {"type"}
    if unknown:
        raise BadAction(f"Unknown fields {sorted(unknown)}: only action, task_id and queue are read.")
    action = body.get("action")
    if action not in ACTIONS:
        raise BadAction(f"Unknown action {action!r}: use one of {', '.join(ACTIONS)}.")
    key = "queue" if action in QUEUE_ACTIONS else "task_id"
    target = body.get(key)
    if not valid_id(target):
        raise BadAction(f"'{action}' needs '{key}': a name of 1-255 characters without spaces.")
    return str(action), str(target)


def perform(user: Any, action: str, target: str) -> dict[str, Any]:
    """Carry out ``action`` on ``target`` for ``user`` (staff, checked by the caller); record
    and push it; return the action document."""
    if action in QUEUE_ACTIONS:
        detail = _purge(target)
    else:
        task = TaskRecord.objects.filter(task_id=target).first()
        if task is None:
            raise ActionRefused(f"No task {target!r} is recorded.")
        detail = {"revoke": _revoke, "terminate": _terminate, "rerun": _rerun}[action](task)
    return _record(user, action, target, detail)


def _revoke(task: TaskRecord) -> dict[str, Any]:
    if task.state in states.TERMINAL_STATES:
        raise ActionRefused(f"Task {task.task_id} already ended ({task.state}): nothing to revoke.")
    return {"recorded": control.revoke(task.task_id)}


def _terminate(task: TaskRecord) -> dict[str, Any]:
    if task.state in states.TERMINAL_STATES or task.date_started is None:
        raise ActionRefused(
            f"Task {task.task_id} is not running ({task.state}): only a running task can be "
            "terminated; revoke one that waits."
        )
    return {"recorded": control.terminate(task.task_id), "worker": task.worker}


def _rerun(task: TaskRecord) -> dict[str, Any]:
    if task.state not in states.TERMINAL_STATES:
        raise ActionRefused(f"Task {task.task_id} has not ended ({task.state}): re-run a finished task.")
    if not task.task_name:
        raise ActionRefused(f"Task {task.task_id} has no recorded name to send again.")
    if not isinstance(task.args, (list, type(None))) or not isinstance(task.kwargs, (dict, type(None))):
        raise ActionRefused(f"Task {task.task_id}'s arguments were not stored as JSON: it cannot be re-run.")
    try:
        new_id = control.rerun(task)
    except BrokerError as exc:
        raise BrokerUnavailable("The broker is unavailable; try again shortly.") from exc
    return {"new_task_id": new_id, "task_name": task.task_name}


def _purge(queue: str) -> dict[str, Any]:
    try:
        purged = brokers.purge(queue)
    except UnknownQueue as exc:
        raise ActionRefused(str(exc)) from None
    except (BrokerError, OSError) as exc:
        raise BrokerUnavailable("The broker is unavailable; try again shortly.") from exc
    try:
        brokers.refresh()  # show the empty queue now, not at the next round
    except Exception:
        logger.exception("Could not refresh queue depths after a purge")
    return {"purged": purged}


def _record(user: Any, action: str, target: str, detail: dict[str, Any]) -> dict[str, Any]:
    with transaction.atomic():
        row = ControlAction.objects.create(
            action=action,
            target=target,
            user_id=getattr(user, "pk", None),
            username=getattr(user, "get_username", lambda: "")(),
            ok=bool(detail.get("recorded", True)),
            detail=detail,
            created=timezone.now(),
        )
        document = action_document(row)
        push.on_commit(push.MESSAGE_ACTION, document)
    logger.info("%s %s by %s: %s", action, target, row.username, detail)
    return document
