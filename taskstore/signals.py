"""Celery signal handlers: the sources of transitions that work with any result backend.

With the taskstore result backend, SUCCESS and custom states reach the recorder through the
backend when Celery stores them, and the handlers below skip them; everything else is recorded
here. A transition that arrives from both (FAILURE, RETRY, REVOKED) is recorded once: the
recorder refuses duplicates. A task that asked for ``ignore_result`` still goes through its
lifecycle, without its return value.

RECEIVED is recorded in the background (:mod:`taskstore.received`), off the loop that takes
messages off the queue; the STARTED that follows it waits for it or records it, and is held for
a moment (:mod:`taskstore.linger`) so that a fast task's STARTED and end are one write.

With ``task_always_eager`` no message is published or received: the task's PENDING is recorded
when it starts, and it has no RECEIVED.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from typing import Any

from celery import signals
from celery.app.task import get_actual_ignore_result  # type: ignore[attr-defined]  # not in celery-types
from django.utils import timezone

from taskstore import conf, linger, received, states
from taskstore.failures import error_from_exception
from taskstore.owner import OWNER_HEADER, RECORDED_HEADER, current_owner_id
from taskstore.recorder import Transition, record, record_started

logger = logging.getLogger(__name__)


def connect() -> None:
    """Connect the handlers: idempotent (each has a ``dispatch_uid``), and ``weak=False`` so they
    live as long as the process."""
    for signal, handler in (
        (signals.before_task_publish, on_publish),
        (signals.task_received, on_received),
        (signals.task_prerun, on_prerun),
        (signals.task_retry, on_retry),
        (signals.task_success, on_success),
        (signals.task_failure, on_failure),
        (signals.task_revoked, on_revoked),
        (signals.task_rejected, on_rejected),
        (signals.task_unknown, on_unknown),
        (signals.worker_process_shutdown, on_process_shutdown),
        (signals.worker_shutdown, on_worker_shutdown),
    ):
        signal.connect(handler, weak=False, dispatch_uid=f"taskstore.signals.{handler.__name__}")


def _backend_stores_success(task: Any, request: Any) -> bool:
    """Whether Celery hands this task's return value to the taskstore backend.

    Celery's own rule (``celery.app.trace``): never with ``ignore_result``; in eager mode only
    with ``task_store_eager_result``.
    """
    from taskstore.backend import DatabaseBackend

    if not isinstance(getattr(task, "backend", None), DatabaseBackend):
        return False
    if get_actual_ignore_result(task, request):
        return False
    return not getattr(request, "is_eager", False) or bool(task.store_eager_result)


def on_publish(
    sender: str | None = None,
    body: Any = None,
    headers: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """PENDING when a task message is published (every path: delay, send_task, canvas, beat).

    A retry's message opens the next attempt: it is recorded as RETRY, before any worker can
    receive the new message (the worker's own ``task_retry`` signal comes later).
    """
    if not headers or "id" not in headers:
        return
    owner_id = current_owner_id()
    if owner_id is not None:
        headers.setdefault(OWNER_HEADER, owner_id)
    args, kwargs = (body[0], body[1]) if isinstance(body, (list, tuple)) and len(body) >= 2 else (None, None)
    attempt = int(headers.get("retries") or 0)
    state: str
    if attempt > 0:
        state, error = states.RETRY, error_from_exception(sys.exc_info()[1])
    else:
        state, error = states.PENDING, None
    record(
        Transition(
            task_id=headers["id"],
            state=state,
            attempt=attempt,
            task_name=headers.get("task") or sender or "",
            error=error,
            args=args,
            kwargs=kwargs,
            owner_id=owner_id,
            group_id=headers.get("group"),
            parent_id=headers.get("parent_id"),
        )
    )
    headers.setdefault(RECORDED_HEADER, True)


def on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    """RECEIVED when a worker takes the message off the queue (queued for the background writer)."""
    if request is None:
        return
    received.writer.put(
        Transition(
            task_id=request.id,
            state=states.RECEIVED,
            attempt=int(request.request_dict.get("retries") or 0),
            task_name=request.name,
            worker=request.hostname,
            owner_id=_header_owner(request.request_dict),
            expects_row=bool(request.request_dict.get(RECORDED_HEADER)),
        )
    )


def on_prerun(
    sender: Any = None,
    task_id: str | None = None,
    task: Any = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    """STARTED when the task body is about to run (no ``task_track_started`` needed).

    Held for ``TASKSTORE_STARTED_LINGER`` (taskstore.linger), then written after RECEIVED
    (``record_started``). An eager task was never published: its PENDING and STARTED are
    recorded at once (a retry's RETRY is recorded by ``task_retry``).
    """
    request = task.request
    started = Transition(
        task_id=task_id or request.id,
        state=states.STARTED,
        attempt=int(request.retries or 0),
        task_name=task.name,
        worker=request.hostname,
        group_id=request.group,
        parent_id=request.parent_id,
    )
    if not request.is_eager:
        seconds = conf.started_linger()
        if seconds > 0:
            linger.held.hold(replace(started, at=timezone.now()), seconds)
        else:
            record_started(started)
        return
    if not request.retries:
        record(
            Transition(
                task_id=task_id or request.id,
                state=states.PENDING,
                task_name=task.name,
                args=list(args) if isinstance(args, (list, tuple)) else args,
                kwargs=kwargs,
                owner_id=current_owner_id(),
                group_id=request.group,
                parent_id=request.parent_id,
            )
        )
    record(started)


def on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    """RETRY (normally recorded already when the retry message was published)."""
    if request is None:
        return
    record(
        Transition(
            task_id=request.id,
            state=states.RETRY,
            attempt=int(request.retries or 0) + 1,
            task_name=getattr(sender, "name", ""),
            error=error_from_exception(reason if isinstance(reason, BaseException) else None),
        )
    )


def on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    """SUCCESS with the return value, unless the taskstore backend stores it.

    A task that asked for ``ignore_result`` is recorded as done without its return value.
    """
    if sender is None:
        return
    request = sender.request
    if _backend_stores_success(sender, request):
        return
    record(
        Transition(
            task_id=request.id,
            state=states.SUCCESS,
            attempt=int(request.retries or 0),
            task_name=sender.name,
            result=None if get_actual_ignore_result(sender, request) else result,
        )
    )


def on_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    """FAILURE: raised errors, killed pool children (WorkerLostError), hard time limits."""
    if task_id is None:
        return
    record(
        Transition(
            task_id=task_id,
            state=states.FAILURE,
            task_name=getattr(sender, "name", ""),
            error=error_from_exception(exception),
            traceback=str(getattr(einfo, "traceback", "") or ""),
        )
    )


def on_revoked(
    sender: Any = None, request: Any = None, terminated: bool = False, expired: bool = False, **_: Any
) -> None:
    """REVOKED, also for a task revoked before a worker received it."""
    if request is None:
        return
    reason = "expired" if expired else "terminated" if terminated else "revoked"
    record(
        Transition(
            task_id=request.id,
            state=states.REVOKED,
            task_name=getattr(sender, "name", "") or getattr(request, "task", "") or "",
            error={"type": "TaskRevokedError", "message": reason},
        )
    )


def on_rejected(sender: Any = None, message: Any = None, exc: BaseException | None = None, **_: Any) -> None:
    """REJECTED: a message the worker could not accept."""
    headers = getattr(message, "headers", None) or {}
    if "id" not in headers:
        return
    record(
        Transition(
            task_id=headers["id"],
            state=states.REJECTED,
            task_name=headers.get("task", ""),
            error=error_from_exception(exc) or {"type": "Rejected", "message": "message rejected"},
        )
    )


def on_unknown(
    sender: Any = None, name: str | None = None, id: str | None = None, exc: Any = None, **_: Any
) -> None:
    """REJECTED: a message for a task this worker does not know."""
    if id is None:
        return
    record(
        Transition(
            task_id=id,
            state=states.REJECTED,
            task_name=name or "",
            error={"type": "NotRegistered", "message": f"No task named {name!r} is registered."},
        )
    )


def on_process_shutdown(**_: Any) -> None:
    """Write the STARTED still held and send what is still queued for the channel layer before a
    pool process exits."""
    from taskstore.publisher import publisher

    linger.held.release_all()
    publisher.flush(timeout=5.0)


def on_worker_shutdown(**_: Any) -> None:
    """Record the RECEIVED transitions still queued before the worker's main process exits."""
    received.writer.flush(timeout=5.0)


def _header_owner(request_dict: dict[str, Any]) -> int | None:
    value = request_dict.get(OWNER_HEADER)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
